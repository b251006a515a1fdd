//! The SQLite store as a file: reopening, migrations, URL forms, pragmas, registration, error
//! classification and the in-process wake-up of waiting claimers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::{
    BackendRegistry, ClaimRequest, Config, Error, InstanceLock, MessageStore, NewMessage, NewTask,
    OrphanPolicy, TaskStatus, TaskStore,
};
use drydock_state_sqlite::migrate::MIGRATIONS;
use drydock_state_sqlite::SqliteStore;
use drydock_state_testsupport::sql;
use sqlx::Connection;

fn url_of(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn history(store: &SqliteStore) -> Vec<(i64, String)> {
    sql::query_as("SELECT version, description FROM drydock_schema_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_of(&dir.path().join("state.db"));
    let config = Config::default();
    let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    {
        let store = SqliteStore::open(&url, &config).await.unwrap();
        assert_eq!(
            store.migrate().await.unwrap(),
            MIGRATIONS.len(),
            "first run applies every migration"
        );
        assert_eq!(
            store.migrate().await.unwrap(),
            0,
            "second run applies nothing"
        );
        store.create_task(&task).await.unwrap();
        store
            .append_message(task.task_id, &NewMessage::error("kept"), None)
            .await
            .unwrap();
        store.close().await;
    }
    for _ in 0..2 {
        let store = SqliteStore::open(&url, &config).await.unwrap();
        assert_eq!(
            store.migrate().await.unwrap(),
            0,
            "reopened: nothing to apply"
        );
        assert_eq!(
            history(&store).await.len(),
            MIGRATIONS.len(),
            "one history row per migration"
        );
        let stored = store.get_task(task.task_id).await.unwrap().expect("kept");
        assert_eq!(stored.status, TaskStatus::Queued);
        assert_eq!(stored.created, task.created);
        assert_eq!(stored.result.details.error_count, 1);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh file: the first start of several instances at once.
    let url = url_of(&dir.path().join("state.db"));
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
                store.migrate().await.unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for s in starts {
        applied += s.await.unwrap();
    }
    assert_eq!(
        applied,
        MIGRATIONS.len(),
        "exactly one instance applied each migration"
    );
}

#[tokio::test]
async fn url_forms_and_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c/state.db");
    for url in [
        format!("sqlite://{}", nested.display()),
        format!("sqlite:{}", dir.path().join("x/plain.db").display()),
    ] {
        let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.path().unwrap().exists(), "{url} created its file");
        store.close().await;
    }
    assert!(nested.exists());

    let memory = SqliteStore::open("sqlite::memory:", &Config::default())
        .await
        .unwrap();
    assert_eq!(memory.path(), None);
    memory.migrate().await.unwrap();
    let task = NewTask::new("deploy_nodes");
    memory.create_task(&task).await.unwrap();
    assert!(memory.get_task(task.task_id).await.unwrap().is_some());

    match SqliteStore::open("sqlite://", &Config::default()).await {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "database.url"),
        other => panic!("expected invalid database.url, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_get_the_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.pool_timeout = Duration::from_millis(4321);
    let store = SqliteStore::open(&url_of(&dir.path().join("state.db")), &config)
        .await
        .unwrap();
    let pool = store.pool();
    let journal: String = sql::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let synchronous: i64 = sql::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
    let foreign_keys: i64 = sql::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1);
    let busy: i64 = sql::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(busy, 4321, "busy timeout follows pool_timeout");
}

#[tokio::test]
async fn a_write_locked_database_is_retryable_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_of(&dir.path().join("state.db"));
    let mut config = Config::default();
    config.database.pool_timeout = Duration::from_millis(200);
    let store = SqliteStore::open(&url, &config).await.unwrap();
    store.migrate().await.unwrap();

    // Another connection (as if another process) holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sql::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let task = NewTask::new("deploy_nodes");
    let started = Instant::now();
    match store.create_task(&task).await {
        Err(e @ Error::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(150), "it waited");
    sql::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.create_task(&task).await.expect("retry succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claimer_wakes_when_this_store_queues_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&url_of(&dir.path().join("state.db")), &Config::default())
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            store
                .wait_for_queued(Duration::from_secs(30))
                .await
                .unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    store.create_task(&task).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
}

#[tokio::test]
async fn registered_under_sqlite_and_opens_migrated() {
    let registry = BackendRegistry::from_inventory().unwrap();
    assert!(
        registry.schemes().contains(&"sqlite"),
        "{:?}",
        registry.schemes()
    );
    let mut explicit = BackendRegistry::default();
    explicit
        .register(&drydock_state_sqlite::REGISTRATION)
        .unwrap();
    assert_eq!(explicit.schemes(), vec!["sqlite"]);

    let dir = tempfile::tempdir().unwrap();
    let url = url_of(&dir.path().join("via-registry.db"));
    let store = registry.open(&url, &Config::default()).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    let task = NewTask::new("deploy_nodes");
    store.create_task(&task).await.expect("schema is in place");
    assert!(store.get_task(task.task_id).await.unwrap().is_some());
}

/// A file written by a version-1 build (before attempts and claim ids) is brought up to date
/// with its tasks kept: existing tasks get attempt 0 and no claim id, the queue and orphan
/// recovery work on them, and a claim raises the attempt.
#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_of(&dir.path().join("state.db"));
    let v1 = &MIGRATIONS[0];
    assert_eq!(v1.version, 1);
    {
        // What a version-1 build left: its history row, a queued task, and a running task
        // claimed under term 1.
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        drydock_state_testsupport::sql::execute_script(
            &mut conn,
            "CREATE TABLE drydock_schema_migrations (
                 version INTEGER NOT NULL PRIMARY KEY, description TEXT NOT NULL,
                 checksum TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
        )
        .await
        .unwrap();
        drydock_state_testsupport::sql::execute_script(&mut conn, v1.sql)
            .await
            .unwrap();
        drydock_state_testsupport::sql::query(
            "INSERT INTO drydock_schema_migrations VALUES (1, ?1, ?2, 0)",
        )
        .bind(v1.description)
        .bind(v1.checksum())
        .execute(&mut conn)
        .await
        .unwrap();
        for (id, status, by, term, created) in [
            (
                "00000000-0000-7000-8000-000000000001",
                "queued",
                None,
                None,
                1_000_000,
            ),
            (
                "00000000-0000-7000-8000-000000000002",
                "running",
                Some("old-leader"),
                Some(1_i64),
                2_000_000,
            ),
        ] {
            drydock_state_testsupport::sql::query(
                "INSERT INTO drydock_tasks (task_id, action, status, result_status, created, \
                 claimed_by, claim_term) VALUES (?1, 'deploy_nodes', ?2, 'incomplete', ?3, ?4, ?5)",
            )
            .bind(id)
            .bind(status)
            .bind(created)
            .bind(by)
            .bind(term)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
    }
    let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        MIGRATIONS.len() - 1,
        "only the migrations after version 1"
    );
    assert_eq!(history(&store).await.len(), MIGRATIONS.len());
    let running_id = "00000000-0000-7000-8000-000000000002".parse().unwrap();
    let running = store.get_task(running_id).await.unwrap().unwrap();
    assert_eq!((running.attempt, running.claim_id), (0, None));
    assert_eq!(running.claim().unwrap().term, Some(1));

    let claimed = store
        .claim_next(&ClaimRequest::new("new-leader"))
        .await
        .unwrap()
        .expect("the queued task of version 1");
    assert_eq!(claimed.attempt, 1, "a claim raises the attempt");
    let term = store
        .claim_lease("new-leader")
        .await
        .unwrap()
        .held()
        .unwrap()
        .term;
    assert_eq!(
        store
            .recover_orphans(term.max(2), OrphanPolicy::Requeue)
            .await
            .unwrap(),
        vec![running_id],
        "the old leader's running task is an orphan"
    );
    let requeued = store.get_task(running_id).await.unwrap().unwrap();
    assert_eq!(requeued.status, TaskStatus::Queued);
    assert_eq!(requeued.claim(), None);
}

/// Parent links may form a cycle (an update can move a task under its own descendant); the
/// recursive walk of `terminate_task` still ends, marking each member once.
#[tokio::test]
async fn terminate_task_ends_on_a_parent_cycle() {
    let store = SqliteStore::open("sqlite::memory:", &Config::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let a = store.create_task(&NewTask::new("a")).await.unwrap();
    let b = store
        .create_task(&NewTask::new("b").with_parent(a.task_id))
        .await
        .unwrap();
    store
        .update_task(
            a.task_id,
            &drydock_state_core::TaskUpdate::new().parent(Some(b.task_id)),
            None,
        )
        .await
        .unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        store.terminate_task(a.task_id, "operator", None),
    )
    .await
    .expect("the walk ends")
    .unwrap();
    assert_eq!(stopped.status, TaskStatus::Terminated);
    let b = store.get_task(b.task_id).await.unwrap().unwrap();
    assert_eq!((b.status, b.terminate), (TaskStatus::Terminated, true));
}
