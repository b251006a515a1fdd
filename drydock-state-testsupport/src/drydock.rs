//! A Drydock database of the tests' own: Airship Drydock's schema at alembic head
//! `4713e7ebca9` ([`DRYDOCK_SCHEMA_SQL`]), rows written into it the way Drydock's Python wrote
//! them ([`DrydockSite`]), defects included, a canonical site with every defect adoption must
//! handle ([`create`], described by [`Expected`]), and a fingerprint of every row
//! ([`fingerprint`]) to show a source was left unchanged.
//!
//! How Drydock encoded its rows (its `objects/task.py`, `objects/builddata.py` and
//! `statemgmt/state.py`), and so how [`DrydockSite`] writes them:
//! * times are aware UTC `datetime`s written into `timestamp without time zone` columns by
//!   psycopg2, in a session whose `TimeZone` is the server's or database's default: the stored
//!   naive value is the wall time in that zone. [`DrydockSite`] binds a `timestamptz` and casts
//!   it to `timestamp` in a session with the zone it was given;
//! * build data's `collected_date` was written as `str(datetime)` (`... +00:00`), text whose
//!   zone PostgreSQL ignores for a `timestamp`: UTC wall time, whatever the session's zone;
//! * `request_context` and message `extra` went through `json.dumps` before SQLAlchemy's JSON
//!   type serialized them again: a JSON string holding JSON ([`python_dumps`] both times);
//! * SQLAlchemy's JSON type writes Python `None` as JSON `null`, not SQL NULL;
//! * message texts longer than 128 characters were cut to 127.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::postgres::{fresh_database, TestDatabase};
use crate::sql::{execute_pg_script, query, query_scalar};

/// SQL that creates Drydock's schema as its alembic migrations `9593a123e7c5`, `4a5bef3702b`
/// and `4713e7ebca9` do on PostgreSQL, `alembic_version` included (holding `4713e7ebca9`).
/// Written from reading the migrations and `statemgmt/db/tables.py`.
pub const DRYDOCK_SCHEMA_SQL: &str = include_str!("drydock_schema.sql");

/// Drydock's alembic head, the revision [`DRYDOCK_SCHEMA_SQL`] leaves.
pub const DRYDOCK_HEAD: &str = "4713e7ebca9";

/// Drydock's tables, in the order [`fingerprint`] reports them.
pub const DRYDOCK_TABLES: &[&str] = &[
    "alembic_version",
    "tasks",
    "result_message",
    "active_instance",
    "boot_action",
    "boot_action_status",
    "build_data",
];

/// The zone the canonical site's database defaults to, and its sessions wrote in.
pub const SITE_TIME_ZONE: &str = "America/New_York";

const SET_FIXTURE_ZONE: &str = "SELECT set_config('drydock_fixture.time_zone', $1, false)";
const SET_SESSION_ZONE: &str = "SELECT set_config('TimeZone', $1, false)";
const ALTER_DATABASE_ZONE: &str =
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone TO %L', \
     current_database(), current_setting('drydock_fixture.time_zone')); END $$";
const ALTER_ROLE_IN_DATABASE_ZONE: &str =
    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET timezone TO %L', \
     current_user, current_database(), current_setting('drydock_fixture.time_zone')); END $$";

const INSERT_TASK: &str = "INSERT INTO public.tasks (task_id, parent_task_id, subtask_id_list, \
     result_status, result_message, result_reason, result_error_count, result_successes, \
     result_failures, retry, status, created, created_by, updated, design_ref, request_context, \
     node_filter, action, terminated, terminated_by, terminate, result_links) VALUES ($1, $2, $3, \
     $4, $5, $6, $7, $8, $9, $10, $11, CAST($12::timestamptz AS timestamp), $13, \
     CAST($14::timestamptz AS timestamp), $15, $16::text::json, $17::text::json, $18, \
     CAST($19::timestamptz AS timestamp), $20, $21, $22::text::json)";
const INSERT_MESSAGE: &str =
    "INSERT INTO public.result_message (task_id, message, error, context, \
     context_type, ts, extra) VALUES ($1, $2, $3, $4, $5, CAST($6::timestamptz AS timestamp), \
     $7::text::json) RETURNING sequence";
const INSERT_BUILD_DATA: &str =
    "INSERT INTO public.build_data (node_name, task_id, collected_date, \
     generator, data_format, data_element) VALUES ($1, $2, $3::text::timestamp, $4, $5, $6)";
const INSERT_BOOT_CONTEXT: &str =
    "INSERT INTO public.boot_action (node_name, task_id, identity_key) VALUES ($1, $2, $3)";
const INSERT_BOOT_ACTION: &str = "INSERT INTO public.boot_action_status (node_name, action_id, \
     action_name, task_id, identity_key, action_status) VALUES ($1, $2, $3, $4, $5, $6)";
const INSERT_ACTIVE_INSTANCE: &str = "INSERT INTO public.active_instance (dummy_key, identity, \
     last_ping) VALUES (1, $1, timezone('UTC', now()))";

const FINGERPRINT_ALEMBIC: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.alembic_version t";
const FINGERPRINT_TASKS: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.tasks t";
const FINGERPRINT_MESSAGES: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.result_message t";
const FINGERPRINT_INSTANCES: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.active_instance t";
const FINGERPRINT_CONTEXTS: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.boot_action t";
const FINGERPRINT_ACTIONS: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.boot_action_status t";
const FINGERPRINT_BUILD_DATA: &str = "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM public.build_data t";
const FINGERPRINT_COLUMNS: &str =
    "SELECT count(*), coalesce(md5(string_agg(c, ',' ORDER BY c)), '') FROM \
     (SELECT concat_ws(':', table_name, ordinal_position, column_name, data_type, udt_name, \
     character_maximum_length, is_nullable, column_default) AS c \
     FROM information_schema.columns WHERE table_schema = 'public') cols";
const FINGERPRINT_SEQUENCES: &str = "SELECT 2::bigint, concat_ws(',', \
     (SELECT last_value || '/' || is_called FROM public.result_message_sequence_seq), \
     (SELECT last_value || '/' || is_called FROM public.active_instance_dummy_key_seq))";

/// Python's `json.dumps` with its defaults (`", "` and `": "` separators, keys in order,
/// non-ASCII escaped as `\uXXXX`): the text Drydock's JSON columns hold.
pub fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    dump_into(value, &mut out);
    out
}

fn dump_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => dump_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_into(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(k, out);
                out.push_str(": ");
                dump_into(v, out);
            }
            out.push('}');
        }
    }
}

fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value passed through `json.dumps` before SQLAlchemy's JSON type serialized it again: a
/// JSON string holding the value's JSON, as Drydock stored `request_context` and `extra`.
pub fn dumped_twice(value: &Value) -> Value {
    Value::String(python_dumps(value))
}

/// Python's `str(datetime)` of an aware UTC time: `2017-11-09 14:03:36.951263+00:00`, the
/// microseconds left out when they are zero. How Drydock wrote `collected_date`.
pub fn python_str(time: DateTime<Utc>) -> String {
    if time.timestamp_subsec_micros() == 0 {
        time.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    } else {
        time.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

/// Drydock's cut of a status message (`TaskStatusMessage.to_db`): longer than 128
/// characters, it keeps the first 127.
pub fn drydock_cut(text: &str) -> String {
    if text.chars().count() > 128 {
        text.chars().take(127).collect()
    } else {
        text.to_string()
    }
}

/// A row of `tasks` as it is written: each JSON cell is the JSON stored (`None` is SQL NULL,
/// [`Value::Null`] JSON `null`), each list `None` for SQL NULL. [`TaskRow::drydock`] fills
/// it as `Task.to_db()` does for a new task.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub parent_task_id: Option<Uuid>,
    pub subtask_id_list: Option<Vec<Uuid>>,
    pub result_status: Option<String>,
    pub result_message: Option<String>,
    pub result_reason: Option<String>,
    pub result_error_count: Option<i32>,
    pub result_successes: Option<Vec<String>>,
    pub result_failures: Option<Vec<String>>,
    pub retry: Option<i32>,
    pub status: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub updated: Option<DateTime<Utc>>,
    pub design_ref: Option<String>,
    pub request_context: Option<Value>,
    pub node_filter: Option<Value>,
    pub action: Option<String>,
    pub terminated: Option<DateTime<Utc>>,
    pub terminated_by: Option<String>,
    pub terminate: Option<bool>,
    pub result_links: Option<Value>,
}

impl TaskRow {
    /// A task as Drydock's `Task.to_db()` writes a new one: `requested`, result `incomplete`,
    /// empty lists, `retry` 0, `terminate` false, `result_links` `{}`, and JSON `null` for the
    /// absent request context and node filter (SQLAlchemy's JSON type writes `None` so).
    pub fn drydock(task_id: Uuid, action: &str, created: DateTime<Utc>) -> TaskRow {
        TaskRow {
            task_id,
            parent_task_id: None,
            subtask_id_list: Some(Vec::new()),
            result_status: Some("incomplete".into()),
            result_message: None,
            result_reason: None,
            result_error_count: Some(0),
            result_successes: Some(Vec::new()),
            result_failures: Some(Vec::new()),
            retry: Some(0),
            status: Some("requested".into()),
            created: Some(created),
            created_by: None,
            updated: None,
            design_ref: None,
            request_context: Some(Value::Null),
            node_filter: Some(Value::Null),
            action: Some(action.into()),
            terminated: None,
            terminated_by: None,
            terminate: Some(false),
            result_links: Some(json!({})),
        }
    }

    /// The request context as Drydock stored it: `json.dumps(context)` into a JSON column, a
    /// JSON string holding JSON; its `user` becomes `created_by`.
    pub fn with_context(mut self, context: &Value) -> TaskRow {
        self.created_by = context
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.request_context = Some(dumped_twice(context));
        self
    }
}

/// A row of `result_message` as written: `extra` is the JSON stored (see
/// [`MessageRow::drydock`]).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct MessageRow {
    pub task_id: Option<Uuid>,
    pub message: Option<String>,
    pub error: Option<bool>,
    pub context: Option<String>,
    pub context_type: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub extra: Option<Value>,
}

impl MessageRow {
    /// A message as `TaskStatusMessage.to_db()` writes it: the text cut to 127 characters
    /// when longer than 128, `extra` (the message's keyword arguments, `{}` when none)
    /// through `json.dumps`, so a JSON string holding JSON.
    pub fn drydock(
        task_id: Uuid,
        text: &str,
        error: bool,
        context: (&str, &str),
        ts: DateTime<Utc>,
        extra: &Value,
    ) -> MessageRow {
        MessageRow {
            task_id: Some(task_id),
            message: Some(drydock_cut(text)),
            error: Some(error),
            context_type: Some(context.0.into()),
            context: Some(context.1.into()),
            ts: Some(ts),
            extra: Some(dumped_twice(extra)),
        }
    }
}

/// A row of `build_data` as `BuildData.to_db()` writes it (`collected_date` as Python's
/// `str(datetime)`).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct BuildDataRow {
    pub node_name: String,
    pub task_id: Uuid,
    pub collected_date: DateTime<Utc>,
    pub generator: String,
    pub data_format: String,
    pub data_element: String,
}

/// A row of `boot_action_status`.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct BootActionRow {
    pub node_name: String,
    pub action_id: [u8; 16],
    pub action_name: String,
    pub task_id: Uuid,
    pub identity_key: [u8; 32],
    pub action_status: String,
}

/// A connection that writes rows into a Drydock database as Drydock's sessions did: its
/// `TimeZone` is the zone it was opened with (what a psycopg2 session got from the server's
/// or database's default).
pub struct DrydockSite {
    conn: PgConnection,
}

fn opt_bytes(id: Option<Uuid>) -> Option<Vec<u8>> {
    id.map(|id| id.as_bytes().to_vec())
}

fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(python_dumps)
}

impl DrydockSite {
    /// Connects to `url` and sets the session's `TimeZone` to `session_time_zone` (sqlx itself
    /// asks for UTC at connect, which a Drydock session never did).
    pub async fn connect(url: &str, session_time_zone: &str) -> sqlx::Result<DrydockSite> {
        let mut conn = PgConnection::connect(url).await?;
        query(SET_SESSION_ZONE)
            .bind(session_time_zone)
            .execute(&mut conn)
            .await?;
        Ok(DrydockSite { conn })
    }

    /// The connection, for a test's own statements.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Creates Drydock's schema ([`DRYDOCK_SCHEMA_SQL`]).
    pub async fn create_schema(&mut self) -> sqlx::Result<()> {
        execute_pg_script(&mut self.conn, DRYDOCK_SCHEMA_SQL).await
    }

    /// `ALTER DATABASE <current> SET timezone TO zone`: the default of later sessions.
    pub async fn set_database_time_zone(&mut self, zone: &str) -> sqlx::Result<()> {
        query(SET_FIXTURE_ZONE)
            .bind(zone)
            .execute(&mut self.conn)
            .await?;
        query(ALTER_DATABASE_ZONE).execute(&mut self.conn).await?;
        Ok(())
    }

    /// `ALTER ROLE <current> IN DATABASE <current> SET timezone TO zone`: wins over the
    /// database's setting for this role's later sessions.
    pub async fn set_role_time_zone(&mut self, zone: &str) -> sqlx::Result<()> {
        query(SET_FIXTURE_ZONE)
            .bind(zone)
            .execute(&mut self.conn)
            .await?;
        query(ALTER_ROLE_IN_DATABASE_ZONE)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Inserts a task row (times written as this session's wall time).
    pub async fn add_task(&mut self, t: &TaskRow) -> sqlx::Result<()> {
        let subtasks: Option<Vec<Vec<u8>>> = t
            .subtask_id_list
            .as_ref()
            .map(|l| l.iter().map(|id| id.as_bytes().to_vec()).collect());
        query(INSERT_TASK)
            .bind(t.task_id.as_bytes().to_vec())
            .bind(opt_bytes(t.parent_task_id))
            .bind(subtasks)
            .bind(&t.result_status)
            .bind(&t.result_message)
            .bind(&t.result_reason)
            .bind(t.result_error_count)
            .bind(&t.result_successes)
            .bind(&t.result_failures)
            .bind(t.retry)
            .bind(&t.status)
            .bind(t.created)
            .bind(&t.created_by)
            .bind(t.updated)
            .bind(&t.design_ref)
            .bind(json_text(&t.request_context))
            .bind(json_text(&t.node_filter))
            .bind(&t.action)
            .bind(t.terminated)
            .bind(&t.terminated_by)
            .bind(t.terminate)
            .bind(json_text(&t.result_links))
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Inserts a message row; returns the `sequence` the SERIAL gave it.
    pub async fn add_message(&mut self, m: &MessageRow) -> sqlx::Result<i32> {
        query_scalar(INSERT_MESSAGE)
            .bind(opt_bytes(m.task_id))
            .bind(&m.message)
            .bind(m.error)
            .bind(&m.context)
            .bind(&m.context_type)
            .bind(m.ts)
            .bind(json_text(&m.extra))
            .fetch_one(&mut self.conn)
            .await
    }

    /// Inserts a build-data row, `collected_date` as `str(datetime)` (UTC wall time).
    pub async fn add_build_data(&mut self, b: &BuildDataRow) -> sqlx::Result<()> {
        query(INSERT_BUILD_DATA)
            .bind(&b.node_name)
            .bind(b.task_id.as_bytes().to_vec())
            .bind(python_str(b.collected_date))
            .bind(&b.generator)
            .bind(&b.data_format)
            .bind(&b.data_element)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Inserts a node's boot-action context.
    pub async fn add_boot_context(
        &mut self,
        node_name: &str,
        task_id: Uuid,
        identity_key: &[u8; 32],
    ) -> sqlx::Result<()> {
        query(INSERT_BOOT_CONTEXT)
            .bind(node_name)
            .bind(task_id.as_bytes().to_vec())
            .bind(identity_key.to_vec())
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Inserts a boot action's status row.
    pub async fn add_boot_action(&mut self, a: &BootActionRow) -> sqlx::Result<()> {
        query(INSERT_BOOT_ACTION)
            .bind(&a.node_name)
            .bind(a.action_id.to_vec())
            .bind(&a.action_name)
            .bind(a.task_id.as_bytes().to_vec())
            .bind(a.identity_key.to_vec())
            .bind(&a.action_status)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Inserts the leader row as `claim_leadership` does (`last_ping` the UTC wall time).
    pub async fn add_active_instance(&mut self, identity: Uuid) -> sqlx::Result<()> {
        query(INSERT_ACTIVE_INSTANCE)
            .bind(identity.as_bytes().to_vec())
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Closes the connection.
    pub async fn close(self) -> sqlx::Result<()> {
        self.conn.close().await
    }
}

/// The UTC times of a task of the canonical site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskTimes {
    /// `created`.
    pub created: DateTime<Utc>,
    /// `updated`, if set.
    pub updated: Option<DateTime<Utc>>,
    /// `terminated`, if set.
    pub terminated: Option<DateTime<Utc>>,
}

/// A message of the canonical site, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedMessage {
    /// Its `sequence`.
    pub sequence: i32,
    /// Its task (which may not exist: see [`Expected::message_of_missing_task`]).
    pub task_id: Uuid,
    /// The text as stored (after Drydock's cut).
    pub text: String,
    /// Its time, UTC.
    pub ts: DateTime<Utc>,
    /// Its `extra` once decoded (`{}` when it had none).
    pub extra: Value,
}

/// What the canonical site holds, and where its defects are, so tests check results without
/// re-deriving them.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// The zone the database defaults to and task and message times were written in.
    pub time_zone: &'static str,
    /// Every task row's id, in `(created, task_id)` order.
    pub task_ids: Vec<Uuid>,
    /// Every task's UTC times.
    pub times: BTreeMap<Uuid, TaskTimes>,
    /// The root `deploy_nodes` task, its 3 subtasks below.
    pub root: Uuid,
    /// The root's subtasks in the order a correct list has them: `listed_once`,
    /// `listed_twice`, then `unlisted`.
    pub children: Vec<Uuid>,
    /// A child the root's `subtask_id_list` names once.
    pub listed_once: Uuid,
    /// A child the root's `subtask_id_list` names twice.
    pub listed_twice: Uuid,
    /// A child naming the root as parent that the root's list misses.
    pub unlisted: Uuid,
    /// An id the root's list names that is in no row.
    pub listed_missing: Uuid,
    /// The root's `subtask_id_list` as stored.
    pub root_list_as_stored: Vec<Uuid>,
    /// The root's request context, once decoded (stored as a JSON string holding it).
    pub request_context: Value,
    /// The root's `result_links` as `{rel: [href]}`.
    pub result_links: Value,
    /// A subtask whose parent was purged.
    pub orphan: Uuid,
    /// The purged parent `orphan` names.
    pub purged_parent: Uuid,
    /// A `queued` task with `terminate` true.
    pub queued_terminate: Uuid,
    /// A `running` task.
    pub running: Uuid,
    /// A task whose `terminate` is SQL NULL.
    pub terminate_null: Uuid,
    /// A task whose `node_filter` is JSON `null` (and `request_context` too).
    pub node_filter_json_null: Uuid,
    /// A task whose arrays (`subtask_id_list`, successes, failures) are SQL NULL, and whose
    /// `node_filter` and `result_links` are SQL NULL too.
    pub null_arrays: Uuid,
    /// The node filter of `listed_once` (single-encoded JSON).
    pub node_filter: Value,
    /// Every message, in `sequence` order.
    pub messages: Vec<ExpectedMessage>,
    /// The sequence of the message whose text is exactly 127 characters (a longer text cut).
    pub truncated_message: i32,
    /// The sequence of the message whose task is in no row.
    pub message_of_missing_task: i32,
    /// The sequence of the message with a non-empty `extra`.
    pub message_with_extra: i32,
    /// Build data rows as written, in collection order (two of them identical).
    pub build_data: Vec<BuildDataRow>,
    /// The two nodes with build data.
    pub build_data_nodes: [String; 2],
    /// The node mid-deploy: its boot-action context.
    pub boot_node: String,
    /// The node's task.
    pub boot_task: Uuid,
    /// The node's 32-byte identity key.
    pub identity_key: [u8; 32],
    /// The node's boot actions (16-byte ULIDs), with their names and statuses.
    pub boot_actions: Vec<BootActionRow>,
    /// Rows in `active_instance`.
    pub active_instances: u64,
}

/// A Drydock database of the test's own, dropped with it.
pub struct DrydockDb {
    /// The database (kept alive while this value is).
    pub db: TestDatabase,
    /// Its URL.
    pub url: String,
    /// What it holds.
    pub expected: Expected,
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a valid fixed time")
        + chrono::Duration::microseconds(i64::from(micros))
}

fn id(n: u8) -> Uuid {
    // Version-4 looking ids with a readable last byte.
    Uuid::from_bytes([
        0x5d, 0x1f, 0x3a, 0x20, 0x8e, 0x41, 0x4c, 0x6b, 0x9a, 0x0e, 0x42, 0x17, 0x00, 0x00, 0x00, n,
    ])
}

/// Creates a fresh database holding Drydock's schema, its default `timezone` set to
/// [`SITE_TIME_ZONE`], and the canonical site written through a session in that zone (see
/// [`Expected`] for what is where).
pub async fn create() -> DrydockDb {
    let db = fresh_database().await;
    let url = db.url.clone();
    let expected = fill_canonical_site(&url)
        .await
        .expect("write the canonical Drydock site");
    DrydockDb { db, url, expected }
}

/// Writes the canonical site into the (empty) database at `url`.
pub async fn fill_canonical_site(url: &str) -> sqlx::Result<Expected> {
    let mut site = DrydockSite::connect(url, SITE_TIME_ZONE).await?;
    site.create_schema().await?;
    site.set_database_time_zone(SITE_TIME_ZONE).await?;

    let root = id(0x01);
    let (listed_once, listed_twice, unlisted) = (id(0x02), id(0x03), id(0x04));
    let listed_missing = id(0x0f);
    let (orphan, purged_parent) = (id(0x05), id(0x0e));
    let (queued_terminate, running, terminate_null, node_filter_json_null, null_arrays) =
        (id(0x06), id(0x07), id(0x08), id(0x09), id(0x0a));
    let missing_task = id(0x0d);

    let context = json!({
        "user": "shipyard",
        "user_id": "a1b2c3",
        "roles": ["admin", "member"],
        "project_id": "p-77",
        "request_id": "req-1",
        "end_user": "operator é",
        "external_marker": "",
        "policy_engine": null,
        "authenticated": true
    });
    let links =
        json!({"detail_logs": ["https://maas.example/logs/1", "https://maas.example/logs/2"]});
    let filter = json!({"filter_set_type": "union", "filter_set": [
        {"filter_type": "intersection", "node_names": ["n1", "n2"]}
    ]});

    // Winter (EST, UTC-5) for the tree, summer (EDT, UTC-4) for others.
    let t_root = at(2026, 1, 15, 14, 0, 0, 250_000);
    let t_c1 = at(2026, 1, 15, 14, 0, 1, 0);
    let t_c2 = at(2026, 1, 15, 14, 0, 2, 500_001);
    let t_c3 = at(2026, 1, 15, 14, 0, 3, 0);
    let t_orphan = at(2026, 1, 10, 4, 30, 0, 0);
    let t_queued = at(2026, 7, 1, 3, 15, 0, 0);
    let t_running = at(2026, 7, 1, 12, 0, 0, 123_456);
    let t_tnull = at(2026, 7, 2, 0, 30, 0, 0);
    let t_jnull = at(2026, 7, 2, 1, 0, 0, 0);
    let t_nulls = at(2026, 7, 2, 2, 0, 0, 0);

    let mut tasks = Vec::new();
    let mut r = TaskRow::drydock(root, "deploy_nodes", t_root).with_context(&context);
    r.design_ref =
        Some("deckhand+http://deckhand-int:9000/api/v1.0/revisions/3/rendered-documents".into());
    r.status = Some("complete".into());
    r.result_status = Some("partial_success".into());
    r.result_message = Some("Deployed 1 of 2 nodes".into());
    r.result_successes = Some(vec!["n1".into()]);
    r.result_failures = Some(vec!["n2".into()]);
    r.result_error_count = Some(1);
    r.subtask_id_list = Some(vec![
        listed_once,
        listed_twice,
        listed_missing,
        listed_twice,
    ]);
    r.result_links = Some(links.clone());
    r.updated = Some(at(2026, 1, 15, 15, 0, 0, 0));
    let root_list_as_stored = r.subtask_id_list.clone().unwrap_or_default();
    tasks.push(r);
    for (child, t, action) in [
        (listed_once, t_c1, "prepare_nodes"),
        (listed_twice, t_c2, "deploy_nodes"),
        (unlisted, t_c3, "relabel_nodes"),
    ] {
        let mut c = TaskRow::drydock(child, action, t).with_context(&context);
        c.parent_task_id = Some(root);
        c.status = Some("complete".into());
        c.result_status = Some("success".into());
        c.updated = Some(t + chrono::Duration::minutes(5));
        if child == listed_once {
            c.node_filter = Some(filter.clone());
        }
        tasks.push(c);
    }
    let mut o = TaskRow::drydock(orphan, "prepare_site", t_orphan);
    o.parent_task_id = Some(purged_parent);
    o.status = Some("complete".into());
    o.result_status = Some("success".into());
    tasks.push(o);
    let mut q = TaskRow::drydock(queued_terminate, "prepare_nodes", t_queued);
    q.status = Some("queued".into());
    q.terminate = Some(true);
    // Drydock's terminate_task stamps terminated, terminated_by and terminate.
    q.terminated = Some(at(2026, 7, 1, 3, 20, 0, 0));
    q.terminated_by = Some("shipyard".into());
    q.updated = Some(at(2026, 7, 1, 3, 20, 0, 0));
    tasks.push(q);
    let mut run = TaskRow::drydock(running, "deploy_nodes", t_running).with_context(&context);
    run.status = Some("running".into());
    run.updated = Some(at(2026, 7, 1, 12, 5, 0, 0));
    tasks.push(run);
    let mut tn = TaskRow::drydock(terminate_null, "validate_design", t_tnull);
    tn.status = Some("terminated".into());
    tn.terminate = None;
    tn.terminated = Some(at(2026, 7, 2, 0, 45, 0, 999_999));
    tn.terminated_by = Some("operator".into());
    tasks.push(tn);
    // TaskRow::drydock already writes JSON null for node_filter and request_context.
    tasks.push(TaskRow::drydock(
        node_filter_json_null,
        "verify_site",
        t_jnull,
    ));
    let mut nulls = TaskRow::drydock(null_arrays, "verify_site", t_nulls);
    nulls.subtask_id_list = None;
    nulls.result_successes = None;
    nulls.result_failures = None;
    nulls.node_filter = None;
    nulls.request_context = None;
    nulls.result_links = None;
    nulls.retry = None;
    tasks.push(nulls);

    let mut times = BTreeMap::new();
    for t in &tasks {
        site.add_task(t).await?;
        times.insert(
            t.task_id,
            TaskTimes {
                created: t.created.expect("every canonical task has created"),
                updated: t.updated,
                terminated: t.terminated,
            },
        );
    }
    let mut order: Vec<(DateTime<Utc>, Uuid)> =
        times.iter().map(|(id, t)| (t.created, *id)).collect();
    order.sort();
    let task_ids = order.into_iter().map(|(_, id)| id).collect();

    let long = "Node n2 failed to deploy: MaaS reported 'Failed deployment' after 3 attempts; \
                see the detail logs linked from this task for the curtin output and the reason";
    assert!(long.chars().count() > 128);
    let extra = json!({"node": "n2", "attempts": 3, "detail": "curtin «exit 1»"});
    let empty = json!({});
    let plain = [
        (
            root,
            "Task created.",
            false,
            ("task", "deploy_nodes"),
            at(2026, 1, 15, 14, 0, 0, 300_000),
            &empty,
        ),
        (
            listed_once,
            "Prepared n1.",
            false,
            ("node", "n1"),
            at(2026, 1, 15, 14, 4, 0, 0),
            &empty,
        ),
        (
            root,
            long,
            true,
            ("node", "n2"),
            at(2026, 1, 15, 14, 30, 0, 0),
            &extra,
        ),
        (
            missing_task,
            "A message of a purged task.",
            false,
            ("task", "x"),
            at(2026, 1, 9, 1, 0, 0, 0),
            &empty,
        ),
        (
            running,
            "Deploying n3.",
            false,
            ("node", "n3"),
            at(2026, 7, 1, 12, 1, 0, 0),
            &empty,
        ),
    ];
    let mut messages = Vec::new();
    let (mut truncated_message, mut message_of_missing_task, mut message_with_extra) = (0, 0, 0);
    for (task, text, error, ctx, ts, extra) in plain {
        let row = MessageRow::drydock(task, text, error, ctx, ts, extra);
        let sequence = site.add_message(&row).await?;
        if text == long {
            truncated_message = sequence;
            message_with_extra = sequence;
        }
        if task == missing_task {
            message_of_missing_task = sequence;
        }
        messages.push(ExpectedMessage {
            sequence,
            task_id: task,
            text: drydock_cut(text),
            ts,
            extra: extra.clone(),
        });
    }

    let lshw = "<?xml version=\"1.0\"?><list><node id=\"n1\"/></list>";
    let mut build_data = Vec::new();
    for (node, generator, date, element) in [
        ("n1", "lshw", at(2026, 1, 15, 14, 10, 0, 0), lshw),
        ("n2", "lshw", at(2026, 1, 15, 14, 11, 0, 500_000), "<list/>"),
        (
            "n1",
            "lldp",
            at(2026, 1, 15, 14, 12, 0, 0),
            "{\"ports\": []}",
        ),
        (
            "n1",
            "lldp",
            at(2026, 1, 15, 14, 12, 0, 0),
            "{\"ports\": []}",
        ),
        (
            "n1",
            "lshw",
            at(2026, 1, 15, 14, 20, 0, 0),
            "<list><node id=\"n1b\"/></list>",
        ),
    ] {
        let row = BuildDataRow {
            node_name: node.into(),
            task_id: listed_twice,
            collected_date: date,
            generator: generator.into(),
            data_format: if generator == "lshw" {
                "text/xml"
            } else {
                "application/json"
            }
            .into(),
            data_element: element.into(),
        };
        site.add_build_data(&row).await?;
        build_data.push(row);
    }

    let boot_node = "n3".to_string();
    let identity_key: [u8; 32] =
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    site.add_boot_context(&boot_node, running, &identity_key)
        .await?;
    let mut boot_actions = Vec::new();
    for (n, name, status) in [
        (1u8, "promjoin", "success"),
        (2, "hw-config", "incomplete"),
        (3, "signal", "failure"),
    ] {
        // A ULID: 48-bit millisecond time, then 80 random bits.
        let ms = t_running.timestamp_millis() as u64 + u64::from(n);
        let mut ulid = [0u8; 16];
        ulid[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        for (i, b) in ulid[6..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(29) ^ n.wrapping_mul(101);
        }
        let row = BootActionRow {
            node_name: boot_node.clone(),
            action_id: ulid,
            action_name: name.into(),
            task_id: running,
            identity_key,
            action_status: status.into(),
        };
        site.add_boot_action(&row).await?;
        boot_actions.push(row);
    }
    site.add_active_instance(id(0x0c)).await?;
    site.close().await?;

    Ok(Expected {
        time_zone: SITE_TIME_ZONE,
        task_ids,
        times,
        root,
        children: vec![listed_once, listed_twice, unlisted],
        listed_once,
        listed_twice,
        unlisted,
        listed_missing,
        root_list_as_stored,
        request_context: context,
        result_links: links,
        orphan,
        purged_parent,
        queued_terminate,
        running,
        terminate_null,
        node_filter_json_null,
        null_arrays,
        node_filter: filter,
        messages,
        truncated_message,
        message_of_missing_task,
        message_with_extra,
        build_data,
        build_data_nodes: ["n1".into(), "n2".into()],
        boot_node,
        boot_task: running,
        identity_key,
        boot_actions,
        active_instances: 1,
    })
}

/// A checksum of every row of every Drydock table (and of `public`'s columns and its two
/// sequences), by name: `count:md5` of the rows' text in a fixed order. Equal fingerprints
/// before and after mean nothing in the source changed.
pub async fn fingerprint(url: &str) -> sqlx::Result<BTreeMap<&'static str, String>> {
    let mut conn = PgConnection::connect(url).await?;
    let statements: [(&'static str, &'static str); 9] = [
        ("alembic_version", FINGERPRINT_ALEMBIC),
        ("tasks", FINGERPRINT_TASKS),
        ("result_message", FINGERPRINT_MESSAGES),
        ("active_instance", FINGERPRINT_INSTANCES),
        ("boot_action", FINGERPRINT_CONTEXTS),
        ("boot_action_status", FINGERPRINT_ACTIONS),
        ("build_data", FINGERPRINT_BUILD_DATA),
        ("(columns)", FINGERPRINT_COLUMNS),
        ("(sequences)", FINGERPRINT_SEQUENCES),
    ];
    let mut out = BTreeMap::new();
    for (name, statement) in statements {
        let (count, sum): (i64, String) =
            crate::sql::query_as(statement).fetch_one(&mut conn).await?;
        out.insert(name, format!("{count}:{sum}"));
    }
    conn.close().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW_ROOT: &str = "SELECT created::text, request_context::text, \
         json_typeof(request_context), json_typeof(node_filter), subtask_id_list IS NULL \
         FROM public.tasks WHERE task_id = $1";
    const RAW_EXTRA: &str = "SELECT extra::text, json_typeof(extra), length(message), ts::text \
         FROM public.result_message WHERE sequence = $1";
    const RAW_BUILD_DATA: &str =
        "SELECT collected_date::text FROM public.build_data ORDER BY collected_date LIMIT 1";
    const DB_SETTINGS: &str = "SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND \
         setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())";
    const REVISION: &str = "SELECT version_num FROM public.alembic_version";
    const TOUCH: &str = "UPDATE public.build_data SET generator = generator || '' WHERE ctid = \
         (SELECT ctid FROM public.build_data LIMIT 1)";
    const CHANGE: &str = "UPDATE public.tasks SET retry = 7 WHERE task_id = $1";

    #[test]
    fn python_dumps_matches_json_dumps() {
        let v = json!({"a": [1, "é", null], "b": {"c": true}, "d": "q\"\n"});
        assert_eq!(
            python_dumps(&v),
            r#"{"a": [1, "\u00e9", null], "b": {"c": true}, "d": "q\"\n"}"#
        );
        assert_eq!(python_dumps(&dumped_twice(&json!({}))), r#""{}""#);
        assert_eq!(drydock_cut(&"x".repeat(128)).len(), 128);
        assert_eq!(drydock_cut(&"x".repeat(129)).len(), 127);
        assert_eq!(
            python_str(at(2026, 1, 2, 3, 4, 5, 0)),
            "2026-01-02 03:04:05+00:00"
        );
        assert_eq!(
            python_str(at(2026, 1, 2, 3, 4, 5, 7)),
            "2026-01-02 03:04:05.000007+00:00"
        );
    }

    #[tokio::test]
    async fn the_canonical_site_is_stored_as_drydock_stored_it() {
        let site = create().await;
        let e = &site.expected;
        let mut conn = PgConnection::connect(&site.url).await.unwrap();
        let rev: String = query_scalar(REVISION).fetch_one(&mut conn).await.unwrap();
        assert_eq!(rev, DRYDOCK_HEAD);
        let (created, context, context_type, filter_type, list_null): (
            String,
            String,
            String,
            String,
            bool,
        ) = crate::sql::query_as(RAW_ROOT)
            .bind(e.root.as_bytes().to_vec())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        // 14:00:00.25 UTC in January is 09:00:00.25 in New York (EST).
        assert_eq!(created, "2026-01-15 09:00:00.25");
        assert_eq!(context_type, "string", "{context}");
        assert!(
            context.starts_with(r#""{\"user\": \"shipyard\""#),
            "{context}"
        );
        assert_eq!(filter_type, "null");
        assert!(!list_null);
        let (created, ..): (String, String, String, String, bool) = crate::sql::query_as(RAW_ROOT)
            .bind(e.running.as_bytes().to_vec())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        // July: EDT, UTC-4.
        assert_eq!(created, "2026-07-01 08:00:00.123456");
        let (_, _, _, _, list_null): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
        ) = crate::sql::query_as(RAW_ROOT)
            .bind(e.null_arrays.as_bytes().to_vec())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(list_null);
        let (extra, extra_type, length, _): (String, String, i32, String) =
            crate::sql::query_as(RAW_EXTRA)
                .bind(e.truncated_message)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(extra_type, "string");
        assert!(extra.starts_with(r#""{\"node\": \"n2\""#), "{extra}");
        assert_eq!(length, 127);
        let (extra, ..): (String, String, i32, String) = crate::sql::query_as(RAW_EXTRA)
            .bind(e.messages[0].sequence)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(extra, r#""{}""#);
        let collected: String = query_scalar(RAW_BUILD_DATA)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            collected, "2026-01-15 14:10:00",
            "build data is UTC wall time"
        );
        conn.close().await.unwrap();
        // The database's default zone, which Drydock's sessions got.
        let mut fresh = PgConnection::connect(&site.url).await.unwrap();
        let settings: Vec<String> = query_scalar(DB_SETTINGS)
            .fetch_one(&mut fresh)
            .await
            .unwrap();
        assert_eq!(settings, vec![format!("TimeZone={SITE_TIME_ZONE}")]);
        fresh.close().await.unwrap();
        assert_eq!(e.task_ids.len(), 10);
        assert_eq!(e.messages.len(), 5);
    }

    #[tokio::test]
    async fn the_fingerprint_sees_every_change() {
        let site = create().await;
        let before = fingerprint(&site.url).await.unwrap();
        assert_eq!(before, fingerprint(&site.url).await.unwrap());
        assert!(before["tasks"].starts_with("10:"), "{before:?}");
        let mut conn = PgConnection::connect(&site.url).await.unwrap();
        query(TOUCH).execute(&mut conn).await.unwrap();
        // Rewriting a row to the same values changes no value.
        assert_eq!(before, fingerprint(&site.url).await.unwrap());
        query(CHANGE)
            .bind(site.expected.orphan.as_bytes().to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
        let after = fingerprint(&site.url).await.unwrap();
        assert_ne!(before["tasks"], after["tasks"]);
        assert_eq!(before["result_message"], after["result_message"]);
        conn.close().await.unwrap();
    }
}
