//! Purge on SQLite: trees deeper than SQLite's trigger depth (the foreign-key cascade counts as
//! a trigger), one tree that cannot be deleted not blocking the others, and the roots of a
//! batch, found before its write transaction, checked again under the write lock.

use std::time::Duration;

use drydock_state_core::backend::now;
use drydock_state_core::{
    Config, MessageStore, NewMessage, NewTask, PurgeReport, TaskId, TaskStatus, TaskStore,
    TaskUpdate,
};
use drydock_state_sqlite::{plan_checked, SqliteStore};

const DAY: i64 = 86_400;
const RETENTION: Duration = Duration::from_secs(30 * DAY as u64);

async fn fresh(dir: &tempfile::TempDir) -> SqliteStore {
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

async fn task(store: &SqliteStore, parent: Option<TaskId>, days: i64) -> TaskId {
    let mut t = NewTask::new("deploy_node").with_status(TaskStatus::Complete);
    if let Some(parent) = parent {
        t = t.with_parent(parent);
    }
    t.created = now() - chrono::Duration::seconds(days * DAY);
    store.create_task(&t).await.unwrap();
    t.task_id
}

/// An old root with two children, two messages on one of them: 3 tasks, 2 messages.
async fn normal_tree(store: &SqliteStore, days: i64) -> Vec<TaskId> {
    let root = task(store, None, days).await;
    let a = task(store, Some(root), days).await;
    let b = task(store, Some(root), days).await;
    store
        .append_messages(a, &[NewMessage::info("x"), NewMessage::error("y")], None)
        .await
        .unwrap();
    vec![root, a, b]
}

/// A chain 1,500 levels deep (beyond SQLITE_MAX_TRIGGER_DEPTH, 1,000) is purged and counted,
/// and so is the ordinary old tree beside it, younger than the chain's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_deeper_than_the_trigger_depth_is_purged_with_the_trees_beside_it() {
    const DEPTH: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(&dir).await;
    let mut chain = vec![task(&store, None, 50).await];
    for _ in 1..DEPTH {
        let parent = *chain.last().unwrap();
        chain.push(task(&store, Some(parent), 50).await);
    }
    store
        .append_message(chain[DEPTH - 1], &NewMessage::info("at the bottom"), None)
        .await
        .unwrap();
    let tree = normal_tree(&store, 40).await;
    let young = task(&store, None, 1).await;

    let report = store.purge(RETENTION).await.expect("purge");
    assert_eq!(
        report,
        PurgeReport {
            tasks: DEPTH as u64 + 3,
            messages: 3
        }
    );
    for id in [
        chain[0],
        chain[DEPTH / 2],
        chain[DEPTH - 1],
        tree[0],
        tree[1],
    ] {
        assert!(store.get_task(id).await.unwrap().is_none(), "{id} purged");
    }
    assert!(store.get_task(young).await.unwrap().is_some());
    assert_eq!(
        store.purge(RETENTION).await.unwrap(),
        PurgeReport::default()
    );
}

/// A tree whose delete fails (a trigger refuses it here) is skipped, left whole, and the old
/// trees after it are purged; the purge succeeds and counts only what it deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_that_cannot_be_deleted_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(&dir).await;
    let stuck = normal_tree(&store, 50).await;
    let after = normal_tree(&store, 40).await;
    // A stand-in for any failure confined to one tree; the statement is constant (no values
    // are spliced in), the id is compared through a table of the test's own.
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>(
        "CREATE TABLE undeletable (task_id TEXT PRIMARY KEY)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>(
        "INSERT INTO undeletable (task_id) VALUES (?1)",
    )
    .bind(stuck[2].to_string())
    .execute(store.pool())
    .await
    .unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>(
        "CREATE TRIGGER refuse_delete BEFORE DELETE ON drydock_tasks
         WHEN old.task_id IN (SELECT task_id FROM undeletable)
         BEGIN SELECT RAISE(ABORT, 'this tree cannot be deleted'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();

    let report = store
        .purge(RETENTION)
        .await
        .expect("purge skips the tree it cannot delete");
    assert_eq!(
        report,
        PurgeReport {
            tasks: 3,
            messages: 2
        }
    );
    for id in &stuck {
        assert!(
            store.get_task(*id).await.unwrap().is_some(),
            "{id} kept whole"
        );
    }
    assert_eq!(store.messages(stuck[1]).await.unwrap().len(), 2);
    for id in &after {
        assert!(store.get_task(*id).await.unwrap().is_none(), "{id} purged");
    }
}

/// A batch's roots are read before its write transaction, so under the lock
/// `PURGE_ROOTS_RECHECK` keeps only those that still are old roots: not one deleted since
/// (never stored, here), given a parent since (its tree is its new root's, young and live
/// here), or younger than the cutoff (statuses are `purge_tree`'s, read again with the tree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recheck_under_the_lock_keeps_only_roots_that_still_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(&dir).await;
    let root = task(&store, None, 40).await;
    // Queued (a finished task takes no further writes), which a purge does not keep.
    let mut queued = NewTask::new("deploy_node").with_status(TaskStatus::Queued);
    queued.created = now() - chrono::Duration::seconds(40 * DAY);
    let adopted = store.create_task(&queued).await.unwrap().task_id;
    let gone = TaskId::new();
    let young = task(&store, None, 1).await;
    let new_parent = task(&store, None, 1).await;
    store
        .update_task(adopted, &TaskUpdate::new().parent(Some(new_parent)), None)
        .await
        .unwrap();
    let cutoff = (now() - chrono::Duration::seconds(30 * DAY)).timestamp_micros();
    let found = serde_json::json!([root, adopted, gone, young]).to_string();

    let still: Vec<String> = drydock_state_testsupport::sql::query_scalar::<sqlx::Sqlite, String>(
        plan_checked::PURGE_ROOTS_RECHECK,
    )
    .bind(found)
    .bind(cutoff)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(still, [root.to_string()]);

    // And the purge itself leaves the adopted task with its new, young parent.
    assert_eq!(
        store.purge(RETENTION).await.unwrap(),
        PurgeReport {
            tasks: 1,
            messages: 0
        }
    );
    assert!(store.get_task(adopted).await.unwrap().is_some());
    assert!(store.get_task(root).await.unwrap().is_none());
}
