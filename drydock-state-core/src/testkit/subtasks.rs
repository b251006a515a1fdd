//! Kit cases for subtasks and termination: appends, the active and complete views, and
//! what terminating a task records.

use std::collections::HashSet;

use super::support::*;
use super::StoreFactory;
use crate::backend::now;
use crate::error::Error;
use crate::model::*;

/// Concurrent subtask appends are all kept, once each; a repeated append is a no-op.
pub async fn subtask_append_is_atomic(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let parent = NewTask::new("deploy_nodes");
    create(&*store, &parent).await;
    let mut children = Vec::new();
    for _ in 0..40 {
        let c = NewTask::new("deploy_node").with_parent(parent.task_id);
        create(&*store, &c).await;
        children.push(c.task_id);
    }
    let mut handles = Vec::new();
    for chunk in children.chunks(5) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        let parent = parent.task_id;
        handles.push(tokio::spawn(async move {
            for c in chunk {
                store.add_subtask(parent, c, None).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    store
        .add_subtask(parent.task_id, children[0], None)
        .await
        .unwrap();
    let stored = get(&*store, parent.task_id).await.subtask_id_list;
    assert_eq!(stored.len(), children.len(), "every append kept once");
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        children.iter().collect::<HashSet<_>>()
    );
}

/// Active subtasks are the unfinished ones; complete ones are those in a terminal status.
pub async fn subtasks_active_vs_complete(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let parent = NewTask::new("deploy_nodes");
    create(&*store, &parent).await;
    let statuses = [
        TaskStatus::Requested,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Terminating,
        TaskStatus::Terminated,
        TaskStatus::Complete,
    ];
    let mut ids = Vec::new();
    for s in statuses {
        let c = NewTask::new(format!("deploy_node_{s}")).with_parent(parent.task_id);
        let id = c.task_id;
        match s {
            TaskStatus::Running => {
                claimed(&*store, c, "kit").await;
            }
            TaskStatus::Terminating => {
                claimed(&*store, c, "kit").await;
                store.terminate_task(id, "kit", None).await.unwrap();
            }
            _ => {
                create(&*store, &c.with_status(TaskStatus::Queued)).await;
                store.set_status(id, s, None).await.unwrap();
            }
        }
        assert_eq!(get(&*store, id).await.status, s);
        store.add_subtask(parent.task_id, id, None).await.unwrap();
        ids.push(id);
    }
    let pick = |which| {
        let store = store.clone();
        async move {
            store
                .subtasks(parent.task_id, which)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.task_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(pick(crate::SubtaskFilter::All).await, ids);
    assert_eq!(pick(crate::SubtaskFilter::Active).await, ids[..4].to_vec());
    assert_eq!(
        pick(crate::SubtaskFilter::Complete).await,
        ids[4..].to_vec()
    );
}

/// Subtask operations on an unknown parent are `NotFound`.
pub async fn subtask_of_unknown_parent_is_not_found(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let ghost = TaskId::new();
    assert_kind(
        store.add_subtask(ghost, TaskId::new(), None).await,
        "add_subtask",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_kind(
        store.subtasks(ghost, crate::SubtaskFilter::All).await,
        "subtasks",
        |e| matches!(e, Error::NotFound { .. }),
    );
}

/// Terminating records who and when; a running task becomes terminated, a finished one keeps
/// Termination records who asked and when, and moves each task as Drydock did: a waiting task
/// is terminated at once, a running one becomes `terminating` (its worker finishes it), a
/// finished one only records the request.
pub async fn terminate_task_records_who_and_when(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let running = claimed(&*store, NewTask::new("deploy_nodes"), "kit").await;
    let waiting = queued(&*store, "prepare_site", now()).await;
    let done = NewTask::new("deploy_nodes").with_status(TaskStatus::Complete);
    create(&*store, &done).await;
    let t = store
        .terminate_task(running.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Terminating);
    let stored = get(&*store, running.task_id).await;
    assert_eq!(stored.status, TaskStatus::Terminating);
    assert!(stored.terminate);
    assert_eq!(stored.terminated_by.as_deref(), Some("operator"));
    assert!(stored.terminated.is_some());
    assert_eq!(
        stored.claim(),
        running.claim(),
        "the worker keeps its claim"
    );
    let t = store
        .terminate_task(waiting.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Terminated);
    assert!(t.terminate);
    store
        .terminate_task(done.task_id, "operator", None)
        .await
        .unwrap();
    let stored = get(&*store, done.task_id).await;
    assert_eq!(stored.status, TaskStatus::Complete);
    assert!(stored.terminate);
    assert_kind(
        store.terminate_task(TaskId::new(), "x", None).await,
        "unknown",
        |e| matches!(e, Error::NotFound { .. }),
    );
}
