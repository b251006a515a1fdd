//! Kit cases for purge (old trees removed, young ones and trees with live work kept, a zero
//! retention refused) and for JSON kept as given.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::support::*;
use super::{kit_config, StoreFactory};
use crate::backend::now;
use crate::error::Error;
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
    // An action of its own, so the claim below takes this task and no other.
    let first = if status == TaskStatus::Requested {
        TaskStatus::Requested
    } else {
        TaskStatus::Queued
    };
    let mut t = NewTask::new("deploy_node").with_status(first);
    t.action = format!("deploy_node_{}", t.task_id.0.simple());
    if let Some(parent) = parent {
        t = t.with_parent(parent);
    }
    t.created = days_ago(days);
    store.create_task(&t).await.expect("create_task");
    match status {
        TaskStatus::Requested | TaskStatus::Queued => {}
        TaskStatus::Running | TaskStatus::Terminating => {
            let claimed = store
                .claim_next(&ClaimRequest::new("kit").actions([t.action.clone()]))
                .await
                .expect("claim_next")
                .expect("the task just queued");
            assert_eq!(claimed.task_id, t.task_id);
            if status == TaskStatus::Terminating {
                store
                    .terminate_task(t.task_id, "kit", None)
                    .await
                    .expect("terminate_task");
            }
        }
        done => {
            store
                .set_status(t.task_id, done, None)
                .await
                .expect("set_status");
        }
    }
    for i in 0..messages {
        store
            .append_message(t.task_id, &NewMessage::info(format!("m{i}")), None)
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

/// `node_filter`, `request_context` and a message's `extra` come back as the caller gave
/// them, key order included (compared as text: `serde_json::Value` equality ignores order).
pub async fn json_text_kept_as_given(factory: &dyn StoreFactory) {
    const UNSORTED: &str = r#"{"zeta":1,"alpha":{"b":2,"a":1},"mid":[{"y":true,"x":null}]}"#;
    const OTHER: &str =
        r#"{"user":"shipyard","request_id":"r-1","external_ctx":{"z":"1","a":"2"}}"#;
    let store = factory.open(kit_config()).await;
    let unsorted: serde_json::Value = serde_json::from_str(UNSORTED).unwrap();
    let other: serde_json::Value = serde_json::from_str(OTHER).unwrap();
    assert_eq!(serde_json::to_string(&unsorted).unwrap(), UNSORTED);

    let mut task = NewTask::new("deploy_nodes").with_node_filter(unsorted.clone());
    task.request_context = Some(other.clone());
    store.create_task(&task).await.expect("create_task");
    let one = NewMessage {
        extra: Some(unsorted.clone()),
        ..NewMessage::info("one")
    };
    let batch = [
        NewMessage {
            extra: Some(other.clone()),
            ..NewMessage::info("two")
        },
        NewMessage {
            extra: Some(unsorted.clone()),
            ..NewMessage::error("three")
        },
    ];
    let appended = store
        .append_message(task.task_id, &one, None)
        .await
        .unwrap();
    let appended_batch = store
        .append_messages(task.task_id, &batch, None)
        .await
        .unwrap();

    let text = |v: &Option<serde_json::Value>| {
        serde_json::to_string(v.as_ref().expect("a value")).unwrap()
    };
    let expected_extras = [UNSORTED, OTHER, UNSORTED];
    let returned: Vec<String> = std::iter::once(&appended)
        .chain(&appended_batch)
        .map(|m| text(&m.extra))
        .collect();
    assert_eq!(returned, expected_extras, "extras as appended");

    let stored = store.get_task(task.task_id).await.unwrap().expect("stored");
    assert_eq!(text(&stored.node_filter), UNSORTED, "get_task node_filter");
    assert_eq!(
        text(&stored.request_context),
        OTHER,
        "get_task request_context"
    );
    let listed: Vec<String> = stored
        .result
        .details
        .message_list
        .iter()
        .map(|m| text(&m.extra))
        .collect();
    assert_eq!(listed, expected_extras, "get_task messages' extra");
    let read: Vec<String> = store
        .messages(task.task_id)
        .await
        .unwrap()
        .iter()
        .map(|m| text(&m.extra))
        .collect();
    assert_eq!(read, expected_extras, "messages() extra");
    let page = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        text(&page[0].node_filter),
        UNSORTED,
        "list_tasks node_filter"
    );
    assert_eq!(
        text(&page[0].request_context),
        OTHER,
        "list_tasks request_context"
    );
}

/// Purge removes old trees with their subtasks and messages, and leaves younger ones whole.
pub async fn purge_removes_old_trees_keeps_young(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let day = 86_400;
    let old_root = full_task("deploy_nodes", secs_ago(40 * day));
    create(&*store, &old_root).await;
    let mut old_child = NewTask::new("deploy_node").with_parent(old_root.task_id);
    old_child.created = secs_ago(40 * day - 10);
    create(&*store, &old_child).await;
    let young_grandchild = NewTask::new("deploy_node").with_parent(old_child.task_id);
    create(&*store, &young_grandchild).await;
    store
        .add_subtask(old_root.task_id, old_child.task_id, None)
        .await
        .unwrap();
    for id in [
        old_root.task_id,
        old_child.task_id,
        young_grandchild.task_id,
    ] {
        store
            .append_messages(id, &[NewMessage::info("a"), NewMessage::error("b")], None)
            .await
            .unwrap();
    }
    let young_root = full_task("deploy_nodes", secs_ago(day));
    create(&*store, &young_root).await;
    let young_child = NewTask::new("deploy_node").with_parent(young_root.task_id);
    create(&*store, &young_child).await;
    store
        .append_message(young_root.task_id, &NewMessage::info("keep me"), None)
        .await
        .unwrap();

    let report = store
        .purge(Duration::from_secs(30 * day as u64))
        .await
        .unwrap();
    assert_eq!(report.tasks, 3);
    assert_eq!(report.messages, 6);
    for gone in [
        old_root.task_id,
        old_child.task_id,
        young_grandchild.task_id,
    ] {
        assert!(store.get_task(gone).await.unwrap().is_none());
        assert!(store.messages(gone).await.unwrap().is_empty());
    }
    assert_eq!(
        get(&*store, young_root.task_id)
            .await
            .result
            .details
            .message_list
            .len(),
        1
    );
    assert!(store.get_task(young_child.task_id).await.unwrap().is_some());
    let again = store
        .purge(Duration::from_secs(30 * day as u64))
        .await
        .unwrap();
    assert_eq!(again, PurgeReport::default());
}

/// A zero retention is refused rather than deleting everything.
pub async fn purge_zero_retention_is_invalid(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = NewTask::new("deploy_nodes");
    create(&*store, &t).await;
    assert_kind(store.purge(Duration::ZERO).await, "zero retention", |e| {
        matches!(e, Error::InvalidInput { .. })
    });
    assert!(store.get_task(t.task_id).await.unwrap().is_some());
}
