//! Conformance cases for purge's live-work rule, run by every
//! backend through [`crate::conformance_tests!`] (re-exported by [`super::cases`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{kit_config, StoreFactory};
use crate::model::*;
use crate::store::StateStore;

const DAY: i64 = 86_400;

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(days * DAY)
}

/// Creates a task of `status` under `parent`, created `days` ago, with `messages` messages.
async fn task_in_tree(
    store: &dyn StateStore,
    parent: Option<TaskId>,
    status: TaskStatus,
    days: i64,
    messages: usize,
) -> TaskId {
    let mut t = Task::new("deploy_node").with_status(status);
    if let Some(parent) = parent {
        t = t.with_parent(parent);
    }
    t.created = days_ago(days);
    store.create_task(&t).await.expect("create_task");
    for i in 0..messages {
        store
            .append_message(t.task_id, &NewMessage::info(format!("m{i}")))
            .await
            .expect("append_message");
    }
    t.task_id
}

/// A tree with a running or terminating task is kept whole, however old its root, messages
/// included; an old tree whose tasks are only requested, queued or finished is purged.
pub async fn purge_keeps_trees_with_live_tasks(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let store = &*store;
    // Old tree A: a finished root, a complete child, a running grandchild.
    let a_root = task_in_tree(store, None, TaskStatus::Complete, 40, 1).await;
    let a_child = task_in_tree(store, Some(a_root), TaskStatus::Complete, 40, 2).await;
    let a_grandchild = task_in_tree(store, Some(a_child), TaskStatus::Running, 40, 1).await;
    // Old tree B: a terminating root with a queued child.
    let b_root = task_in_tree(store, None, TaskStatus::Terminating, 50, 1).await;
    let b_child = task_in_tree(store, Some(b_root), TaskStatus::Queued, 50, 0).await;
    // Old tree C: requested and queued leftovers and finished work, all of it older than the
    // retention: purged.
    let c_root = task_in_tree(store, None, TaskStatus::Requested, 45, 2).await;
    let c_queued = task_in_tree(store, Some(c_root), TaskStatus::Queued, 45, 1).await;
    let c_done = task_in_tree(store, Some(c_root), TaskStatus::Complete, 45, 1).await;
    let c_terminated = task_in_tree(store, Some(c_done), TaskStatus::Terminated, 45, 1).await;

    let report = store
        .purge(Duration::from_secs(30 * DAY as u64))
        .await
        .expect("purge");
    assert_eq!(
        report,
        PurgeReport {
            tasks: 4,
            messages: 5
        },
        "only tree C goes"
    );
    for (id, messages) in [
        (a_root, 1),
        (a_child, 2),
        (a_grandchild, 1),
        (b_root, 1),
        (b_child, 0),
    ] {
        assert!(
            store.get_task(id).await.unwrap().is_some(),
            "task {id} of a tree with live work is kept"
        );
        assert_eq!(
            store.messages(id).await.unwrap().len(),
            messages,
            "the messages of task {id} are kept"
        );
    }
    for id in [c_root, c_queued, c_done, c_terminated] {
        assert!(store.get_task(id).await.unwrap().is_none(), "{id} purged");
        assert!(store.messages(id).await.unwrap().is_empty());
    }
    // Nothing else to do: the kept trees are kept again, not counted.
    assert_eq!(
        store
            .purge(Duration::from_secs(30 * DAY as u64))
            .await
            .unwrap(),
        PurgeReport::default()
    );
}
