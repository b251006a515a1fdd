//! Reading rows into the model and writing the model into bind parameters.
//!
//! Ids are hyphenated UUID text; lists (`subtask_id_list`, successes, failures, links) and
//! JSON values (`node_filter`, `request_context`, message `extra`) are JSON text, written
//! with `serde_json` (which keeps an object's key order as given) and parsed back.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BuildData, IdentityKey, Lease, Link, Result,
    ResultDetails, ResultMessage, Task, TaskId, TaskResult,
};
use sqlx::mysql::{MySql, MySqlArguments, MySqlRow};
use sqlx::query::Query;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{corrupt, decode_error};

/// A column by name. Decoded without sqlx's type check: the server flags every column of a
/// `_bin` collation BINARY, which sqlx then refuses to read as a string (its check predates
/// binary collations); the decoders themselves still refuse what is not their type (text
/// must be UTF-8, a time must be a time).
fn col<'r, T>(row: &'r MySqlRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, MySql> + sqlx::Type<MySql>,
{
    row.try_get_unchecked(name)
        .map_err(|e| decode_error(name, &e))
}

/// A task id as stored: hyphenated lower-case text.
pub(crate) fn id_text(id: TaskId) -> String {
    id.0.hyphenated().to_string()
}

/// Task ids as the JSON array the `JSON_TABLE` statements take.
pub(crate) fn id_array(ids: impl IntoIterator<Item = TaskId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(id_text).collect();
    serde_json::Value::from(ids).to_string()
}

/// Strings as a JSON array.
pub(crate) fn text_array(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

fn parse_id(what: &str, text: &str) -> Result<TaskId> {
    Uuid::parse_str(text)
        .map(TaskId)
        .map_err(|e| corrupt(what, e))
}

fn opt_id(row: &MySqlRow, name: &str) -> Result<Option<TaskId>> {
    col::<Option<String>>(row, name)?
        .map(|t| parse_id(name, &t))
        .transpose()
}

fn json_col<T: serde::de::DeserializeOwned>(row: &MySqlRow, name: &str) -> Result<T> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| corrupt(name, e))
}

fn opt_json(row: &MySqlRow, name: &str) -> Result<Option<serde_json::Value>> {
    col::<Option<String>>(row, name)?
        .map(|t| serde_json::from_str(&t).map_err(|e| corrupt(name, e)))
        .transpose()
}

/// JSON text of a value, as stored.
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

/// A `drydock_tasks` row as a task, without its messages.
pub(crate) fn task(row: &MySqlRow) -> Result<Task> {
    let status: String = col(row, "status")?;
    let result_status: String = col(row, "result_status")?;
    let links: Vec<Link> = json_col(row, "result_links")?;
    let subtasks: Vec<TaskId> = json_col(row, "subtask_id_list")?;
    let task_id: String = col(row, "task_id")?;
    Ok(Task {
        kind: "Task".into(),
        api_version: "v1".into(),
        task_id: parse_id("task_id", &task_id)?,
        action: col(row, "action")?,
        parent_task_id: opt_id(row, "parent_task_id")?,
        design_ref: col(row, "design_ref")?,
        status: status.parse().map_err(|e| corrupt("task status", e))?,
        result: TaskResult {
            status: result_status
                .parse()
                .map_err(|e| corrupt("result status", e))?,
            message: col(row, "result_message")?,
            reason: col(row, "result_reason")?,
            successes: json_col(row, "result_successes")?,
            failures: json_col(row, "result_failures")?,
            links,
            details: ResultDetails::default(),
        },
        node_filter: opt_json(row, "node_filter")?,
        subtask_id_list: subtasks,
        created: col(row, "created")?,
        created_by: col(row, "created_by")?,
        updated: col(row, "updated")?,
        retry: col(row, "retry")?,
        terminated: col(row, "terminated")?,
        terminated_by: col(row, "terminated_by")?,
        terminate: col(row, "terminate")?,
        request_context: opt_json(row, "request_context")?,
        claimed_by: col(row, "claimed_by")?,
        claim_term: col(row, "claim_term")?,
        claimed_at: col(row, "claimed_at")?,
        attempt: col(row, "attempt")?,
        claim_id: col::<Option<String>>(row, "claim_id")?
            .map(|t| Uuid::parse_str(&t).map_err(|e| corrupt("claim_id", e)))
            .transpose()?,
    })
}

/// Rows of `drydock_tasks` as tasks, without their messages.
pub(crate) fn tasks(rows: &[MySqlRow]) -> Result<Vec<Task>> {
    rows.iter().map(task).collect()
}

/// Binds every column of [`crate::queries::INSERT_TASK`], in its order.
pub(crate) fn bind_new_task<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    t: &Task,
) -> Query<'q, MySql, MySqlArguments> {
    q.bind(id_text(t.task_id))
        .bind(t.parent_task_id.map(id_text))
        .bind(id_array(t.subtask_id_list.iter().copied()))
        .bind(t.action.clone())
        .bind(t.design_ref.clone())
        .bind(t.status.as_str())
        .bind(t.result.status.as_str())
        .bind(t.result.message.clone())
        .bind(t.result.reason.clone())
        .bind(text_array(&t.result.successes))
        .bind(text_array(&t.result.failures))
        .bind(links_text(&t.result.links))
        .bind(t.node_filter.as_ref().map(json_text))
        .bind(t.created.naive_utc())
        .bind(t.created_by.clone())
        .bind(naive(t.updated))
        .bind(t.retry)
        .bind(naive(t.terminated))
        .bind(t.terminated_by.clone())
        .bind(t.terminate)
        .bind(t.request_context.as_ref().map(json_text))
        .bind(t.claimed_by.clone())
        .bind(t.claim_term)
        .bind(naive(t.claimed_at))
        .bind(t.attempt)
        .bind(t.claim_id.map(|c| c.hyphenated().to_string()))
}

/// Binds every parameter of [`crate::queries::WRITE_TASK`], in its order.
pub(crate) fn bind_write_task<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    t: &Task,
) -> Query<'q, MySql, MySqlArguments> {
    q.bind(t.parent_task_id.map(id_text))
        .bind(id_array(t.subtask_id_list.iter().copied()))
        .bind(t.design_ref.clone())
        .bind(t.status.as_str())
        .bind(t.result.status.as_str())
        .bind(t.result.message.clone())
        .bind(t.result.reason.clone())
        .bind(text_array(&t.result.successes))
        .bind(text_array(&t.result.failures))
        .bind(links_text(&t.result.links))
        .bind(t.node_filter.as_ref().map(json_text))
        .bind(naive(t.updated))
        .bind(t.retry)
        .bind(naive(t.terminated))
        .bind(t.terminated_by.clone())
        .bind(t.terminate)
        .bind(t.claimed_by.clone())
        .bind(t.claim_term)
        .bind(naive(t.claimed_at))
        .bind(t.attempt)
        .bind(t.claim_id.map(|c| c.hyphenated().to_string()))
        .bind(id_text(t.task_id))
}

/// A time as bound: `DATETIME` (sqlx binds a `DateTime<Utc>` as `TIMESTAMP`, whose range ends
/// in 2038 and starts in 1970; a `DATETIME` holds years 1000 to 9999).
pub(crate) fn naive(at: Option<DateTime<Utc>>) -> Option<chrono::NaiveDateTime> {
    at.map(|t| t.naive_utc())
}

fn links_text(links: &[Link]) -> String {
    // A Vec of plain structs always serializes.
    serde_json::to_string(links).unwrap_or_else(|_| "[]".into())
}

/// A `drydock_result_message` row.
pub(crate) fn message(row: &MySqlRow) -> Result<ResultMessage> {
    let task_id: String = col(row, "task_id")?;
    Ok(ResultMessage {
        sequence: col(row, "sequence")?,
        task_id: parse_id("result_message.task_id", &task_id)?,
        message: col(row, "message")?,
        error: col(row, "error")?,
        context_type: col(row, "context_type")?,
        context: col(row, "context")?,
        ts: col(row, "ts")?,
        extra: opt_json(row, "extra")?,
    })
}

/// Attaches to each task its messages (rows of `MESSAGES_OF_TASKS`, in sequence order) and
/// error count.
pub(crate) fn attach_messages(tasks: &mut [Task], rows: &[MySqlRow]) -> Result<()> {
    let mut by_task: HashMap<TaskId, Vec<ResultMessage>> = HashMap::new();
    for row in rows {
        let m = message(row)?;
        by_task.entry(m.task_id).or_default().push(m);
    }
    for task in tasks {
        let mut list = by_task.remove(&task.task_id).unwrap_or_default();
        if !list.is_sorted_by_key(|m| m.sequence) {
            list.sort_by_key(|m| m.sequence);
        }
        task.result.details = ResultDetails {
            error_count: list.iter().filter(|m| m.error).count() as u64,
            message_list: list,
        };
    }
    Ok(())
}

/// A `drydock_build_data` row (`data_element` is NULL when read briefly).
pub(crate) fn build_data(row: &MySqlRow) -> Result<BuildData> {
    let task_id: String = col(row, "task_id")?;
    Ok(BuildData {
        node_name: col(row, "node_name")?,
        task_id: parse_id("build_data.task_id", &task_id)?,
        collected_date: Some(col::<DateTime<Utc>>(row, "collected_date")?),
        generator: col(row, "generator")?,
        data_format: col(row, "data_format")?,
        data_element: col(row, "data_element")?,
    })
}

/// A `drydock_boot_action` row: a node's boot-action context.
pub(crate) fn boot_action_context(row: &MySqlRow) -> Result<BootActionContext> {
    let task_id: String = col(row, "task_id")?;
    Ok(BootActionContext {
        node_name: col(row, "node_name")?,
        task_id: parse_id("boot_action.task_id", &task_id)?,
        identity_key: identity_key(row)?,
    })
}

/// A `drydock_boot_action_status` row: a boot action, id and key byte for byte.
pub(crate) fn boot_action(row: &MySqlRow) -> Result<BootAction> {
    let id: Vec<u8> = col(row, "action_id")?;
    let status: String = col(row, "action_status")?;
    let task_id: String = col(row, "task_id")?;
    Ok(BootAction {
        action_id: BootActionId::from_slice(&id)
            .map_err(|e| corrupt("boot_action_status.action_id", e))?,
        node_name: col(row, "node_name")?,
        action_name: col(row, "action_name")?,
        task_id: parse_id("boot_action_status.task_id", &task_id)?,
        identity_key: identity_key(row)?,
        action_status: status
            .parse()
            .map_err(|e| corrupt("boot action status", e))?,
    })
}

fn identity_key(row: &MySqlRow) -> Result<IdentityKey> {
    let key: Vec<u8> = col(row, "identity_key")?;
    IdentityKey::from_slice(&key).map_err(|e| corrupt("identity_key", e))
}

/// The lease row and the database's now read with it.
pub(crate) struct LeaseRow {
    /// The row as a lease (live or not).
    pub(crate) lease: Lease,
    /// The database's clock when it was read.
    pub(crate) now: DateTime<Utc>,
}

impl LeaseRow {
    /// Whether the row is a live lease: taken at least once and not lapsed.
    pub(crate) fn is_live(&self) -> bool {
        self.lease.term > 0 && self.lease.expires_at > self.now
    }

    /// Whether `instance_id` holds the live lease with `term`.
    pub(crate) fn held_by(&self, instance_id: &str, term: i64) -> bool {
        self.is_live() && self.lease.instance_id == instance_id && self.lease.term == term
    }
}

/// A `drydock_active_instance` row read with `UTC_TIMESTAMP(6) AS now`.
pub(crate) fn lease(row: &MySqlRow) -> Result<LeaseRow> {
    Ok(LeaseRow {
        lease: Lease {
            instance_id: col(row, "instance_id")?,
            term: col(row, "term")?,
            acquired_at: col(row, "acquired_at")?,
            renewed_at: col(row, "renewed_at")?,
            expires_at: col(row, "expires_at")?,
        },
        now: col(row, "now")?,
    })
}
