//! Queueing tasks and draining the queue with claimers, every claim checked: the exactly-once
//! claim tests of every backend, written once against [`TaskStore`].
//!
//! A test queues with [`queue`] (or [`queue_spaced`]), drains with [`drain`] or
//! [`drain_concurrently`] (in as many processes as it likes), then checks the claims of all of
//! them together with [`assert_each_once`] and [`assert_nothing_queued`].

use std::collections::HashSet;
use std::sync::Arc;

use drydock_state_core::backend::now;
use drydock_state_core::{ClaimRequest, NewTask, TaskFilter, TaskId, TaskStatus, TaskStore};

/// Queues `n` tasks of `action` with `creators` concurrent creators; task `i` is created an
/// hour ago plus `i` ms, so the oldest is claimed first. Returns their ids.
pub async fn queue<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    action: &str,
    n: usize,
    creators: usize,
) -> HashSet<TaskId> {
    queue_spaced(
        store,
        action,
        n,
        creators,
        chrono::Duration::milliseconds(1),
    )
    .await
}

/// [`queue`] with task `i` created an hour ago plus `i * spacing`.
pub async fn queue_spaced<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    action: &str,
    n: usize,
    creators: usize,
    spacing: chrono::Duration,
) -> HashSet<TaskId> {
    assert!(creators > 0, "at least one creator");
    let base = now() - chrono::Duration::hours(1);
    let workers: Vec<_> = (0..creators)
        .map(|first| {
            let store = store.clone();
            let action = action.to_string();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (first..n).step_by(creators) {
                    let t = NewTask::new(action.as_str())
                        .with_status(TaskStatus::Queued)
                        .with_created(
                            base + spacing * i32::try_from(i).expect("task index fits i32"),
                        );
                    let stored = store.create_task(&t).await.expect("create_task");
                    assert_eq!(stored.task_id, t.task_id, "created under its own id");
                    ids.push(t.task_id);
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::with_capacity(n);
    for w in workers {
        all.extend(w.await.expect("a creator panicked"));
    }
    assert_eq!(
        all.len(),
        n,
        "every task queued, each with an id of its own"
    );
    all
}

/// Claims as `instance` until nothing is queued, checking that each claimed task is `running`,
/// claimed by `instance`, has a claim time and an attempt of at least one. Returns the claimed ids in claim order.
pub async fn drain<S: TaskStore + ?Sized>(store: &S, instance: &str) -> Vec<TaskId> {
    let request = ClaimRequest::new(instance);
    let mut mine = Vec::new();
    while let Some(task) = store.claim_next(&request).await.expect("claim_next") {
        assert_eq!(task.status, TaskStatus::Running);
        assert_eq!(task.claimed_by.as_deref(), Some(instance));
        assert!(task.claimed_at.is_some(), "a claim records its time");
        assert!(
            task.attempt >= 1,
            "a claim raises the attempt: {}",
            task.attempt
        );
        assert_eq!(
            task.claim().map(|c| c.instance_id),
            Some(instance.to_string()),
            "the claimed task carries the claim"
        );
        mine.push(task.task_id);
    }
    mine
}

/// `claimers` concurrent [`drain`]s, claimer `w` claiming as `{prefix}-{w}`. Returns what each
/// claimer claimed, in claimer order.
pub async fn drain_concurrently<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    prefix: &str,
    claimers: usize,
) -> Vec<Vec<TaskId>> {
    let workers: Vec<_> = (0..claimers)
        .map(|w| {
            let store = store.clone();
            let me = format!("{prefix}-{w}");
            tokio::spawn(async move { drain(&*store, &me).await })
        })
        .collect();
    let mut out = Vec::with_capacity(claimers);
    for w in workers {
        out.push(w.await.expect("a claimer panicked"));
    }
    out
}

/// Asserts that `claimed` (the claims of every claimer, in any order) holds each task of
/// `queued` exactly once: none claimed twice, none missed, none other.
pub fn assert_each_once(claimed: &[TaskId], queued: &HashSet<TaskId>) {
    let unique: HashSet<TaskId> = claimed.iter().copied().collect();
    let duplicates = claimed.len() - unique.len();
    assert_eq!(duplicates, 0, "{duplicates} tasks were claimed twice");
    assert_eq!(
        &unique, queued,
        "every queued task claimed, and nothing else"
    );
}

/// Asserts that no task is left queued.
pub async fn assert_nothing_queued<S: TaskStore + ?Sized>(store: &S) {
    let left = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .expect("list_tasks");
    assert!(left.is_empty(), "{} tasks left queued", left.len());
}
