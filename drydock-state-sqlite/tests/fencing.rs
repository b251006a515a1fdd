//! Fencing against a change of leader that commits while a guarded write is under way, made
//! deterministic with two connections.
//!
//! A raw connection (as if another orchestrator process) takes SQLite's write lock with
//! `BEGIN IMMEDIATE` and, inside that transaction, hands the lease to `instance-b` with a
//! higher term. Meanwhile `instance-a` starts a guarded write with its claim under the old
//! term; the write must wait on the busy timeout (the test checks it has not finished). Then
//! the raw transaction commits. The write must then be refused with `LeaseLost`, having
//! written nothing: the check and the write are one `BEGIN IMMEDIATE` transaction, so the
//! check sees the committed takeover. A store that checked the lease before taking the write
//! lock, or not at all, would let the write through.
//!
//! A control case shows the setup refuses nothing by itself: behind a raw transaction that
//! does not touch the lease, the same write waits and then goes through.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drydock_state_core::{
    BuildData, BuildDataQuery, BuildStore, Claim, ClaimRequest, Config, Error, InstanceLock,
    MessageStore, NewMessage, NewTask, Result, ResultStatus, Task, TaskFilter, TaskId, TaskStatus,
    TaskStore, TaskUpdate,
};
use drydock_state_sqlite::SqliteStore;
use sqlx::{Connection, SqliteConnection};

/// How long the write is given to reach SQLite's lock before the test checks it is waiting.
const LET_IT_START: Duration = Duration::from_millis(300);

/// A store whose claimant `instance-a` runs one task under its lease term, with a second task
/// still queued (what a wrongly accepted claim would take).
struct Fixture {
    store: Arc<SqliteStore>,
    url: String,
    task: TaskId,
    guard: Claim,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let mut config = Config::default();
    // The busy timeout: long enough that the write waits for the raw transaction, whatever
    // the machine's load.
    config.database.pool_timeout = Duration::from_secs(30);
    let store = SqliteStore::open(&url, &config).await.unwrap();
    store.migrate().await.unwrap();
    let term = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .expect("instance-a takes the free lease")
        .term;
    for _ in 0..2 {
        store
            .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
            .await
            .unwrap();
    }
    let claimed = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(term))
        .await
        .unwrap()
        .expect("a queued task");
    let guard = claimed.claim().expect("a claimed task carries its claim");
    assert_eq!(guard, Claim::new("instance-a", Some(term), 1));
    Fixture {
        store: Arc::new(store),
        url,
        task: claimed.task_id,
        guard,
        _dir: dir,
    }
}

/// Everything a refused write could have changed: every task with its messages, and every
/// build-data element.
async fn everything(store: &SqliteStore) -> (Vec<Task>, Vec<BuildData>) {
    (
        store.list_tasks(&TaskFilter::default()).await.unwrap(),
        store.build_data(&BuildDataQuery::default()).await.unwrap(),
    )
}

/// A raw connection holding the write lock, having (when `takeover`) handed the lease to
/// `instance-b` with the next term, uncommitted.
async fn writer_holding_the_lock(url: &str, takeover: bool) -> SqliteConnection {
    let mut raw = SqliteConnection::connect(url).await.unwrap();
    drydock_state_testsupport::sql::query("BEGIN IMMEDIATE")
        .execute(&mut raw)
        .await
        .unwrap();
    if takeover {
        let moved = drydock_state_testsupport::sql::query(
            "UPDATE drydock_active_instance SET instance_id = 'instance-b', term = term + 1, \
             acquired_at = renewed_at, expires_at = expires_at + 3600000000",
        )
        .execute(&mut raw)
        .await
        .unwrap();
        assert_eq!(moved.rows_affected(), 1, "the lease row changed hands");
    } else {
        // Some other write, under the same lock.
        drydock_state_testsupport::sql::query(
            "UPDATE drydock_active_instance SET renewed_at = renewed_at",
        )
        .execute(&mut raw)
        .await
        .unwrap();
    }
    raw
}

/// Starts `write` while the raw connection holds the lock, checks it waits, commits the raw
/// transaction and returns what the write returned.
async fn race<T, F, Fut>(f: &Fixture, name: &str, takeover: bool, write: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<SqliteStore>, TaskId, Claim) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut raw = writer_holding_the_lock(&f.url, takeover).await;
    let pending = tokio::spawn(write(f.store.clone(), f.task, f.guard.clone()));
    tokio::time::sleep(LET_IT_START).await;
    assert!(
        !pending.is_finished(),
        "{name} must wait for the write lock the raw transaction holds"
    );
    drydock_state_testsupport::sql::query("COMMIT")
        .execute(&mut raw)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .unwrap_or_else(|_| panic!("{name} finished once the lock was released"))
        .unwrap()
}

/// The case of every guarded write: refused with `LeaseLost` for the lease, nothing written.
async fn refused_when_the_lease_changes_hands_meanwhile<T, F, Fut>(name: &str, write: F)
where
    T: std::fmt::Debug + Send + 'static,
    F: FnOnce(Arc<SqliteStore>, TaskId, Claim) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let f = fixture().await;
    let before = everything(&f.store).await;
    match race(&f, name, true, write).await {
        Err(Error::LeaseLost(why)) => assert!(
            why.contains("instance-a does not hold the lease with term 1"),
            "{name}: the refusal says why: {why}"
        ),
        other => panic!("{name}: expected LeaseLost, got {other:?}"),
    }
    assert_eq!(everything(&f.store).await, before, "{name} wrote nothing");
    let lease = f.store.current_lease().await.unwrap().unwrap();
    assert_eq!((lease.instance_id.as_str(), lease.term), ("instance-b", 2));
}

fn finish() -> TaskUpdate {
    TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success)
        .result_message(Some("late"))
}

fn element(task: TaskId) -> BuildData {
    BuildData {
        node_name: "n1".into(),
        task_id: task,
        collected_date: None,
        generator: "lshw".into(),
        data_format: "text/plain".into(),
        data_element: Some("late".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_task_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("update_task", |s, id, g| async move {
        s.update_task(id, &finish(), Some(&g)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("set_status", |s, id, g| async move {
        s.set_status(id, TaskStatus::Complete, Some(&g)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_message_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("append_message", |s, id, g| async move {
        s.append_message(id, &NewMessage::info("late"), Some(&g))
            .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_messages_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("append_messages", |s, id, g| async move {
        s.append_messages(
            id,
            &[NewMessage::info("late"), NewMessage::error("later")],
            Some(&g),
        )
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_subtask_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("add_subtask", |s, id, g| async move {
        s.add_subtask(id, TaskId::new(), Some(&g)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_build_data_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("record_build_data", |s, id, g| async move {
        s.record_build_data(&element(id), Some(&g)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_task_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("terminate_task", |s, id, g| async move {
        s.terminate_task(id, "late", Some(&g)).await
    })
    .await;
}

/// A fenced claim under the old term takes nothing: the second task stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_next_is_refused_when_the_lease_changes_hands_meanwhile() {
    refused_when_the_lease_changes_hands_meanwhile("claim_next", |s, _, g| async move {
        let term = g.term.expect("a fenced claim");
        s.claim_next(&ClaimRequest::new("instance-a").fenced(term))
            .await
    })
    .await;
}

/// The control: behind a raw transaction that leaves the lease alone, the same writes wait
/// and then go through, so the refusals above come from the takeover, not from the setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_behind_another_writer_go_through_when_the_lease_stays() {
    let f = fixture().await;
    let message = race(&f, "append_message", false, |s, id, g| async move {
        s.append_message(id, &NewMessage::info("working"), Some(&g))
            .await
    })
    .await
    .expect("the live claim appends");
    assert_eq!(message.message, "working");
    let claimed = race(&f, "claim_next", false, |s, _, g| async move {
        s.claim_next(&ClaimRequest::new("instance-a").fenced(g.term.unwrap()))
            .await
    })
    .await
    .expect("the leader claims")
    .expect("the second task");
    assert_ne!(claimed.task_id, f.task);
    let done = race(&f, "update_task", false, |s, id, g| async move {
        s.update_task(id, &finish(), Some(&g)).await
    })
    .await
    .expect("the live claim completes its task");
    assert_eq!(done.status, TaskStatus::Complete);
    assert_eq!(done.result.details.message_list.len(), 1);
}
