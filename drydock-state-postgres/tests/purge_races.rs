//! Purge racing other writers, as deterministic two-session interleavings: session S changes a
//! tree and holds its transaction open, the purge P starts and blocks on S's row locks (seen in
//! `pg_stat_activity`), then S commits and P goes on. What P deletes and reports must follow
//! the committed state, not the snapshot P started from.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::backend::now;
use drydock_state_core::testkit::kit_config;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
use sqlx::{Connection, PgConnection};

const DAY: i64 = 86_400;
const RETENTION: Duration = Duration::from_secs(30 * DAY as u64);

/// A task of `status` under `parent`, created `days` ago.
async fn task(store: &PgStore, parent: Option<TaskId>, status: TaskStatus, days: i64) -> TaskId {
    let mut t = NewTask::new("deploy_node").with_status(status);
    if let Some(parent) = parent {
        t = t.with_parent(parent);
    }
    t.created = now() - chrono::Duration::seconds(days * DAY);
    store.create_task(&t).await.unwrap();
    t.task_id
}

/// Session S: a connection of its own with an open transaction.
async fn session(url: &str) -> PgConnection {
    let mut s = PgConnection::connect(url).await.unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Postgres>("BEGIN")
        .execute(&mut s)
        .await
        .unwrap();
    s
}

/// Starts the purge in a task and returns once it waits for a row lock S holds.
async fn purge_blocked_on(
    store: &Arc<PgStore>,
    s: &mut PgConnection,
) -> tokio::task::JoinHandle<Result<PurgeReport>> {
    let s_pid: i32 = drydock_state_testsupport::sql::query_scalar::<sqlx::Postgres, _>(
        "SELECT pg_backend_pid()",
    )
    .fetch_one(&mut *s)
    .await
    .unwrap();
    let purging = {
        let store = Arc::clone(store);
        tokio::spawn(async move { store.purge(RETENTION).await })
    };
    let started = Instant::now();
    loop {
        // Asked on the store's pool (autocommit): a transaction would cache the statistics.
        let waiting: i64 = drydock_state_testsupport::sql::query_scalar::<sqlx::Postgres, _>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1",
        )
        .bind(s_pid)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            return purging;
        }
        assert!(
            !purging.is_finished(),
            "the purge finished without waiting for S: {:?}",
            purging.await
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the purge never blocked on S's locks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn commit(mut s: PgConnection) {
    drydock_state_testsupport::sql::query::<sqlx::Postgres>("COMMIT")
        .execute(&mut s)
        .await
        .unwrap();
    s.close().await.unwrap();
}

async fn fresh() -> (Arc<PgStore>, common::TestDatabase) {
    let (store, db) = common::fresh_store(&kit_config()).await;
    (Arc::new(store), db)
}

/// S moves old child X (with its own child and a message) from old root R under young root Y;
/// the purge waits for X. After S commits, X's subtree belongs to Y's young tree and survives;
/// only R goes, and only R is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_moved_into_a_young_tree_while_purge_waited_survives() {
    let (store, db) = fresh().await;
    let r = task(&store, None, TaskStatus::Complete, 40).await;
    let x = task(&store, Some(r), TaskStatus::Complete, 40).await;
    let x_child = task(&store, Some(x), TaskStatus::Complete, 40).await;
    store
        .append_message(x, &NewMessage::info("keep me"), None)
        .await
        .unwrap();
    let y = task(&store, None, TaskStatus::Complete, 1).await;

    let mut s = session(&db.url).await;
    drydock_state_testsupport::sql::query::<sqlx::Postgres>(
        "UPDATE drydock_state.tasks SET parent_task_id = $1 WHERE task_id = $2",
    )
    .bind(y.0)
    .bind(x.0)
    .execute(&mut s)
    .await
    .unwrap();
    let purging = purge_blocked_on(&store, &mut s).await;
    commit(s).await;
    let report = purging.await.unwrap().unwrap();

    let moved = store.get_task(x).await.unwrap();
    assert!(moved.is_some(), "X, moved under young root Y, was purged");
    assert_eq!(moved.unwrap().parent_task_id, Some(y));
    assert!(store.get_task(x_child).await.unwrap().is_some());
    assert_eq!(store.messages(x).await.unwrap().len(), 1);
    assert!(
        store.get_task(r).await.unwrap().is_none(),
        "old root R goes"
    );
    assert_eq!(
        report,
        PurgeReport {
            tasks: 1,
            messages: 0
        }
    );
}

/// S gives old root R2 (with a child) a young parent Y; the purge waits for R2. After S
/// commits, R2 is no root any more: it and its child survive and nothing is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_root_that_got_a_parent_while_purge_waited_survives() {
    let (store, db) = fresh().await;
    let r2 = task(&store, None, TaskStatus::Complete, 40).await;
    let r2_child = task(&store, Some(r2), TaskStatus::Complete, 40).await;
    let y = task(&store, None, TaskStatus::Complete, 1).await;

    let mut s = session(&db.url).await;
    drydock_state_testsupport::sql::query::<sqlx::Postgres>(
        "UPDATE drydock_state.tasks SET parent_task_id = $1 WHERE task_id = $2",
    )
    .bind(y.0)
    .bind(r2.0)
    .execute(&mut s)
    .await
    .unwrap();
    let purging = purge_blocked_on(&store, &mut s).await;
    commit(s).await;
    let report = purging.await.unwrap().unwrap();

    assert!(
        store.get_task(r2).await.unwrap().is_some(),
        "R2, now under young root Y, was purged"
    );
    assert!(store.get_task(r2_child).await.unwrap().is_some());
    assert_eq!(report, PurgeReport::default());
}

/// S inserts a child C under old root R, with a message, while the purge waits for R. The
/// cascade would take C with R; the report must count C and its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_inserted_while_purge_waited_is_counted() {
    let (store, db) = fresh().await;
    let r = task(&store, None, TaskStatus::Complete, 40).await;
    store
        .append_message(r, &NewMessage::info("r's"), None)
        .await
        .unwrap();
    let c = TaskId::new();

    let mut s = session(&db.url).await;
    drydock_state_testsupport::sql::query::<sqlx::Postgres>(
        "INSERT INTO drydock_state.tasks (task_id, parent_task_id, action, status, result_status, created)
         VALUES ($1, $2, 'deploy_node', 'complete', 'success', now())",
    )
    .bind(c.0)
    .bind(r.0)
    .execute(&mut s)
    .await
    .unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Postgres>(
        "INSERT INTO drydock_state.result_message (task_id, message, context_type, context)
         VALUES ($1, 'c''s', 'task', '')",
    )
    .bind(c.0)
    .execute(&mut s)
    .await
    .unwrap();
    let purging = purge_blocked_on(&store, &mut s).await;
    commit(s).await;
    let report = purging.await.unwrap().unwrap();

    assert!(store.get_task(r).await.unwrap().is_none());
    assert!(store.get_task(c).await.unwrap().is_none());
    let left: i64 = drydock_state_testsupport::sql::query_scalar::<sqlx::Postgres, _>(
        "SELECT count(*) FROM drydock_state.result_message",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        report,
        PurgeReport {
            tasks: 2,
            messages: 2
        },
        "the report counts what the purge deleted"
    );
}

/// S starts a queued subtask of an old tree (status running) while the purge waits for it:
/// after S commits the tree has live work, and the purge keeps it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_started_while_purge_waited_keeps_its_tree() {
    let (store, db) = fresh().await;
    let r = task(&store, None, TaskStatus::Complete, 40).await;
    let q = task(&store, Some(r), TaskStatus::Queued, 40).await;

    let mut s = session(&db.url).await;
    drydock_state_testsupport::sql::query::<sqlx::Postgres>(
        "UPDATE drydock_state.tasks SET status = 'running' WHERE task_id = $1",
    )
    .bind(q.0)
    .execute(&mut s)
    .await
    .unwrap();
    let purging = purge_blocked_on(&store, &mut s).await;
    commit(s).await;
    let report = purging.await.unwrap().unwrap();

    assert!(
        store.get_task(q).await.unwrap().is_some(),
        "the running task was purged"
    );
    assert!(store.get_task(r).await.unwrap().is_some());
    assert_eq!(report, PurgeReport::default());
}
