//! The schema of our tables (`database.schema`, issue 12): it never shadows the tables of a
//! role's `$user` search path, and a database migrated under the old name `drydock` is
//! upgraded in place.

mod common;

use std::time::{Duration, Instant};

use drydock_state_core::testkit::kit_config;
use drydock_state_core::*;
use drydock_state_postgres::migrate::{LEGACY_CHECKSUMS, MIGRATOR};
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;
use sqlx::{Connection, PgConnection};

/// The configuration of the kit with `database.schema` = `schema`.
fn with_schema(schema: &str) -> Config {
    let mut config = kit_config();
    config.database.schema = schema.to_string();
    config
}

/// `url` with its user replaced by `user`.
fn as_user(url: &str, user: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(user).unwrap();
    url.set_password(None).unwrap();
    url.to_string()
}

/// A login role of the test's own, named `name`; dropped (with what it owns in the test
/// database) when this value is dropped, also when the test fails: roles outlive databases.
struct TestRole {
    name: String,
    db_url: String,
}

impl TestRole {
    async fn create(db_url: &str) -> TestRole {
        let name = format!("drydock_t{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(db_url).await.unwrap();
        role_ddl(&mut conn, &name, ROLE_CREATE).await;
        // PostgreSQL 15 and later no longer let every role create in `public`.
        role_ddl(&mut conn, &name, ROLE_GRANT_PUBLIC).await;
        conn.close().await.unwrap();
        TestRole {
            name,
            db_url: db_url.to_string(),
        }
    }
}

const ROLE_CREATE: &str = "DO $$ BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', current_setting('drydock_test.role'));
END $$";
const ROLE_GRANT_PUBLIC: &str = "DO $$ BEGIN
    EXECUTE format('GRANT ALL ON SCHEMA public TO %I', current_setting('drydock_test.role'));
END $$";
const ROLE_DROP_OWNED: &str = "DO $$ BEGIN
    EXECUTE format('DROP OWNED BY %I CASCADE', current_setting('drydock_test.role'));
END $$";
const ROLE_DROP: &str = "DO $$ BEGIN
    EXECUTE format('DROP ROLE IF EXISTS %I', current_setting('drydock_test.role'));
END $$";

/// Runs one of the static role statements above on role `name` (DDL takes no bind
/// parameters: the name travels as a session setting and the server quotes it).
async fn role_ddl(conn: &mut PgConnection, name: &str, statement: &'static str) {
    sql::query("SELECT set_config('drydock_test.role', $1, false)")
        .bind(name)
        .execute(&mut *conn)
        .await
        .unwrap();
    sql::query(statement).execute(&mut *conn).await.unwrap();
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let (url, name) = (self.db_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: a thread and runtime of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    // Its sessions first (a store's pool may still hold some).
                    let _ = sql::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE usename = $1",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    role_ddl(&mut conn, &name, ROLE_DROP_OWNED).await;
                    role_ddl(&mut conn, &name, ROLE_DROP).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Drydock's own tables as its alembic migrations make them (the columns this test touches),
/// unqualified: created by the role, so they land in `public` (its `$user` schema does not
/// exist).
const DRYDOCK_TABLES: [&str; 4] = [
    "CREATE TABLE tasks (
        task_id bytea PRIMARY KEY, parent_task_id bytea, subtask_id_list bytea[],
        result_status varchar(32), result_message varchar(128), action varchar(32),
        status varchar(32), created timestamp, created_by varchar(16), terminate boolean)",
    "CREATE TABLE result_message (
        sequence serial PRIMARY KEY, task_id bytea, message varchar(128), error boolean,
        ts timestamp)",
    "CREATE TABLE active_instance (
        dummy_key integer PRIMARY KEY, identity bytea, last_ping timestamp)",
    "CREATE TABLE build_data (
        node_name varchar(32), task_id bytea, collected_date timestamp,
        generator varchar(256), data_format varchar(32), data_element text)",
];

/// A role with Drydock's tables in `public` still sees them through its default search path
/// after we migrate with the default schema; and a schema named like that role is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_named_like_drydock_still_sees_public() {
    let db = common::fresh_database().await;
    let role = TestRole::create(&db.url).await;
    let role_url = as_user(&db.url, &role.name);

    let mut drydock = PgConnection::connect(&role_url).await.unwrap();
    for table in DRYDOCK_TABLES {
        sql::query(table).execute(&mut drydock).await.unwrap();
    }

    let store = PgStore::connect(&db.url, &kit_config()).await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        MIGRATOR.iter().count(),
        "migrating beside Drydock's tables"
    );
    store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .unwrap();

    // A new session of the role, with the default search path ("$user", public).
    drydock.close().await.unwrap();
    let mut drydock = PgConnection::connect(&role_url).await.unwrap();
    let path: String = sql::query_scalar("SHOW search_path")
        .fetch_one(&mut drydock)
        .await
        .unwrap();
    assert_eq!(path, "\"$user\", public");
    for (table, expected) in [
        ("tasks", "public.tasks"),
        ("result_message", "public.result_message"),
        ("active_instance", "public.active_instance"),
        ("build_data", "public.build_data"),
    ] {
        // `to_regclass(..)::text` leaves out a schema on the search path: name it apart.
        let schema: Option<String> = sql::query_scalar(
            "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)",
        )
        .bind(table)
        .fetch_optional(&mut drydock)
        .await
        .unwrap();
        assert_eq!(
            schema.map(|s| format!("{s}.{table}")).as_deref(),
            Some(expected),
            "the role's {table}"
        );
    }
    // Drydock's post_task: an unqualified INSERT lands in public, beside our own task.
    sql::query(
        "INSERT INTO tasks (task_id, action, status, result_status, created, terminate)
         VALUES (decode('00112233445566778899aabbccddeeff', 'hex'), 'deploy_nodes', 'queued',
                 'incomplete', now(), false)",
    )
    .execute(&mut drydock)
    .await
    .unwrap();
    drydock.close().await.unwrap();
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let (public, ours): (i64, i64) = sql::query_as(
        "SELECT (SELECT count(*) FROM public.tasks), (SELECT count(*) FROM drydock_state.tasks)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        (public, ours),
        (1, 1),
        "Drydock's task in public, ours in ours"
    );
    admin.close().await.unwrap();

    // A schema named like the role would shadow its tables: refused, naming the key.
    let shadowing = PgStore::connect(&db.url, &with_schema(&role.name))
        .await
        .unwrap();
    match shadowing.migrate().await {
        Err(Error::Config { key, reason, .. }) => {
            assert_eq!(key, "database.schema");
            assert!(
                reason.contains("role") && reason.contains("search_path"),
                "{reason}"
            );
        }
        other => panic!("a schema named like a role was not refused: {other:?}"),
    }
    let created: bool =
        sql::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&role.name)
            .fetch_one(shadowing.pool())
            .await
            .unwrap();
    assert!(!created, "the refused schema was not created");
    shadowing.pool().close().await;
    store.pool().close().await;
    drop(role);
}

/// Lays out a database as drydock-state did before `database.schema`: every table and the
/// history in schema `drydock`, the history stamped with the old files' checksums; returns
/// the id of a task written there.
async fn legacy_database(url: &str) -> TaskId {
    let mut admin = PgConnection::connect(url).await.unwrap();
    // The old migrate created it; created here so no role check is involved.
    sql::query("CREATE SCHEMA drydock")
        .execute(&mut admin)
        .await
        .unwrap();
    let legacy = PgStore::connect(url, &with_schema("drydock"))
        .await
        .unwrap();
    assert_eq!(legacy.migrate().await.unwrap(), MIGRATOR.iter().count());
    for (version, checksum) in LEGACY_CHECKSUMS {
        let done = sql::query(
            "UPDATE drydock._sqlx_migrations SET checksum = decode($2, 'hex') WHERE version = $1",
        )
        .bind(version)
        .bind(checksum)
        .execute(&mut admin)
        .await
        .unwrap();
        assert_eq!(done.rows_affected(), 1, "version {version}");
    }
    let task = legacy
        .create_task(&NewTask::new("prepare_site"))
        .await
        .unwrap();
    legacy.pool().close().await;
    admin.close().await.unwrap();
    task.task_id
}

/// A database migrated under the old schema name is upgraded by migrate: the schema renamed,
/// the history restamped, every row kept, and the queued-task trigger still firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_under_the_old_name_is_upgraded() {
    let db = common::fresh_database().await;
    let old_task = legacy_database(&db.url).await;

    let store = PgStore::connect(&db.url, &kit_config()).await.unwrap();
    // Not migrated yet: a clear error that says what to run.
    let e = store.get_task(old_task).await.unwrap_err();
    assert!(
        e.to_string().contains("drydock-state migrate"),
        "opening without migrating: {e}"
    );

    assert_eq!(
        store.migrate().await.expect("the upgrade"),
        0,
        "every migration was applied under the old name"
    );
    let schemas: Vec<String> = sql::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname IN ('drydock', 'drydock_state')",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(schemas, vec!["drydock_state".to_string()], "renamed");
    let history: Vec<(i64, Vec<u8>)> = sql::query_as(
        "SELECT version, checksum FROM drydock_state._sqlx_migrations ORDER BY version",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected: Vec<(i64, Vec<u8>)> = MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    assert_eq!(history, expected, "restamped with the current checksums");

    let read = store
        .get_task(old_task)
        .await
        .unwrap()
        .expect("the old task");
    assert_eq!(read.action, "prepare_site");

    // The trigger function moved with the schema: a newly queued task wakes a waiter.
    store
        .wait_for_queued(Duration::from_millis(1))
        .await
        .unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .wait_for_queued(Duration::from_secs(30))
                .await
                .unwrap();
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = PgStore::connect(&db.url, &kit_config()).await.unwrap();
    let queued_at = Instant::now();
    let new_task = other
        .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
        .await
        .unwrap();
    let woke_at = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the trigger's notification, not the 30 s poll")
        .unwrap();
    assert!(woke_at.saturating_duration_since(queued_at) < Duration::from_secs(10));
    let claimed = store
        .claim_next(&ClaimRequest::new("upgraded"))
        .await
        .unwrap()
        .expect("the new task is claimed");
    assert_eq!(claimed.task_id, new_task.task_id);

    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "a second migrate is a no-op"
    );
    let again: Vec<(i64, Vec<u8>)> = sql::query_as(
        "SELECT version, checksum FROM drydock_state._sqlx_migrations ORDER BY version",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(again, expected);
    other.pool().close().await;
}

/// Only exact legacy checksums are restamped: a history row with any other checksum still
/// fails sqlx's check, and a schema `drydock` that is not ours is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_exact_legacy_checksums_are_restamped() {
    let db = common::fresh_database().await;
    legacy_database(&db.url).await;
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    sql::query("UPDATE drydock._sqlx_migrations SET checksum = '\\x00' WHERE version = 3")
        .execute(&mut admin)
        .await
        .unwrap();
    let store = PgStore::connect(&db.url, &kit_config()).await.unwrap();
    let e = store.migrate().await.expect_err("a changed migration 3");
    assert!(e.to_string().contains("modified"), "{e}");
    admin.close().await.unwrap();

    // A schema `drydock` of someone else's (no history of ours) is not renamed.
    let other = common::fresh_database().await;
    let mut admin = PgConnection::connect(&other.url).await.unwrap();
    sql::query("CREATE SCHEMA drydock")
        .execute(&mut admin)
        .await
        .unwrap();
    sql::query("CREATE TABLE drydock.tasks (id integer)")
        .execute(&mut admin)
        .await
        .unwrap();
    let store = PgStore::connect(&other.url, &kit_config()).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), MIGRATOR.iter().count());
    let left: Option<String> = sql::query_scalar("SELECT to_regclass('drydock.tasks')::text")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some("drydock.tasks"));
    admin.close().await.unwrap();
}
