//! Kit cases for subtasks and termination: appends, the active and complete views, and
//! what terminating a task records.

use std::collections::HashSet;

use super::support::*;
use super::StoreFactory;
use crate::backend::now;
use crate::error::{Entity, Error};
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

/// `create_subtask` stores the child under its parent and lists it, in call order over
/// several calls, guarded or not; the child comes back as stored, its parent set whether the
/// task named it or not; an id the parent already lists is not listed twice.
pub async fn create_subtask_writes_child_and_link_together(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let parent = claimed(&*store, NewTask::new("deploy_nodes"), "kit").await;
    let guard = parent.claim().expect("a claimed task carries its claim");
    let mut made = Vec::new();
    for (i, task) in [
        NewTask::new("prepare_node"),
        NewTask::new("deploy_node").with_parent(parent.task_id),
        full_task("boot_node", secs_ago(5)).with_status(TaskStatus::Queued),
    ]
    .into_iter()
    .enumerate()
    {
        let g = (i % 2 == 0).then_some(&guard);
        let stored = store
            .create_subtask(parent.task_id, &task, g)
            .await
            .expect("create_subtask");
        let expected = NewTask {
            parent_task_id: Some(parent.task_id),
            ..task.clone()
        }
        .to_task();
        assert_same_task(&stored, &expected);
        assert_same_task(&get(&*store, task.task_id).await, &expected);
        made.push(task.task_id);
        assert_eq!(
            get(&*store, parent.task_id).await.subtask_id_list,
            made,
            "each child listed once it is stored, in call order"
        );
    }
    // An id listed before its task was stored.
    let early = NewTask::new("deploy_node");
    store
        .add_subtask(parent.task_id, early.task_id, None)
        .await
        .unwrap();
    made.push(early.task_id);
    store
        .create_subtask(parent.task_id, &early, Some(&guard))
        .await
        .expect("create_subtask of an id already listed");
    assert_eq!(get(&*store, parent.task_id).await.subtask_id_list, made);
    let listed: Vec<TaskId> = store
        .subtasks(parent.task_id, crate::SubtaskFilter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(listed, made);
    let stored = get(&*store, parent.task_id).await;
    assert_eq!(stored.status, TaskStatus::Running);
    assert_eq!(
        stored.claim(),
        Some(guard),
        "the parent's claim is untouched"
    );
}

/// Tries `create_subtask(parent, task, guard)`, which must be refused as `check` says and
/// write nothing: no task with the child's id (or the one stored before, unchanged) and the
/// parent's list as it was. Returns the error.
async fn refused_subtask(
    store: &dyn crate::StateStore,
    parent: TaskId,
    task: &NewTask,
    guard: Option<&Claim>,
    what: &str,
    check: impl Fn(&Error) -> bool,
) -> Error {
    let parent_before = store.get_task(parent).await.unwrap();
    let child_before = store.get_task(task.task_id).await.unwrap();
    let outcome = store.create_subtask(parent, task, guard).await;
    assert_eq!(
        store.get_task(task.task_id).await.unwrap(),
        child_before,
        "{what}: no child written"
    );
    assert_eq!(
        store.get_task(parent).await.unwrap(),
        parent_before,
        "{what}: the parent is unchanged"
    );
    match outcome {
        Err(e) if check(&e) => e,
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

/// Each refusal of `create_subtask` writes nothing: an unknown parent (`NotFound`), a
/// finished, terminating or marked parent (`Conflict`), a taken child id (`AlreadyExists`),
/// a task naming another parent or otherwise invalid (`InvalidInput`).
pub async fn create_subtask_refused_writes_nothing(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let child = || NewTask::new("deploy_node");
    let e = refused_subtask(
        &*store,
        TaskId::new(),
        &child(),
        None,
        "unknown parent",
        |e| {
            matches!(
                e,
                Error::NotFound {
                    entity: Entity::Task,
                    ..
                }
            )
        },
    )
    .await;
    assert!(e.to_string().contains("task"), "{e}");
    let conflict = |e: &Error| matches!(e, Error::Conflict { .. });
    for status in [TaskStatus::Complete, TaskStatus::Terminated] {
        let done = NewTask::new("deploy_nodes").with_status(status);
        create(&*store, &done).await;
        refused_subtask(&*store, done.task_id, &child(), None, "finished", conflict).await;
    }
    // Terminating: running when termination was asked.
    let stopping = claimed(&*store, NewTask::new("deploy_nodes"), "kit").await;
    store
        .terminate_task(stopping.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(
        get(&*store, stopping.task_id).await.status,
        TaskStatus::Terminating
    );
    let g = stopping.claim();
    refused_subtask(
        &*store,
        stopping.task_id,
        &child(),
        None,
        "terminating",
        conflict,
    )
    .await;
    refused_subtask(
        &*store,
        stopping.task_id,
        &child(),
        g.as_ref(),
        "terminating, guarded by its claim",
        conflict,
    )
    .await;
    // Marked for termination while running, then put back in the queue by its worker.
    let marked = claimed(&*store, NewTask::new("prepare_site"), "kit").await;
    store
        .terminate_task(marked.task_id, "operator", None)
        .await
        .unwrap();
    store
        .set_status(marked.task_id, TaskStatus::Queued, marked.claim().as_ref())
        .await
        .unwrap();
    let back = get(&*store, marked.task_id).await;
    assert_eq!((back.status, back.terminate), (TaskStatus::Queued, true));
    refused_subtask(&*store, marked.task_id, &child(), None, "marked", conflict).await;

    let parent = NewTask::new("deploy_nodes");
    create(&*store, &parent).await;
    let other = NewTask::new("deploy_nodes");
    create(&*store, &other).await;
    let mut taken = child();
    taken.task_id = other.task_id;
    refused_subtask(&*store, parent.task_id, &taken, None, "taken id", |e| {
        matches!(
            e,
            Error::AlreadyExists {
                entity: Entity::Task,
                ..
            }
        )
    })
    .await;
    let mut itself = child();
    itself.task_id = parent.task_id;
    refused_subtask(
        &*store,
        parent.task_id,
        &itself,
        None,
        "the parent's id",
        |e| matches!(e, Error::AlreadyExists { .. } | Error::InvalidInput { .. }),
    )
    .await;
    let invalid = |field: &'static str| move |e: &Error| matches!(e, Error::InvalidInput { field: f, .. } if f == field);
    refused_subtask(
        &*store,
        parent.task_id,
        &child().with_parent(other.task_id),
        None,
        "another parent",
        invalid("task.parent_task_id"),
    )
    .await;
    refused_subtask(
        &*store,
        parent.task_id,
        &NewTask::new("deploy node"),
        None,
        "bad action",
        invalid("task.action"),
    )
    .await;
    refused_subtask(
        &*store,
        parent.task_id,
        &child().with_status(TaskStatus::Running),
        None,
        "created running",
        invalid("task.status"),
    )
    .await;
    assert!(get(&*store, parent.task_id)
        .await
        .subtask_id_list
        .is_empty());
}

/// A guarded `create_subtask` is checked against the parent's claim and the lease in the
/// write's own transaction: a guard of another instance, attempt or term, on a parent with
/// no claim, or whose lease was released or taken over, is `LeaseLost` and writes nothing;
/// the live claim's guard is accepted.
pub async fn create_subtask_guard_is_checked_with_the_write(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let lost = |e: &Error| matches!(e, Error::LeaseLost(_));
    let unclaimed = NewTask::new("deploy_nodes");
    create(&*store, &unclaimed).await;
    let any = Claim::new("instance-a", None, 1);
    let why = refused_subtask(
        &*store,
        unclaimed.task_id,
        &NewTask::new("deploy_node"),
        Some(&any),
        "a parent with no claim",
        lost,
    )
    .await;
    assert!(why.to_string().contains("carries no claim"), "{why}");

    let ta = held_term(&*store, "instance-a").await;
    let parent = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    create(&*store, &parent).await;
    let guard = store
        .claim_next(
            &ClaimRequest::new("instance-a")
                .fenced(ta)
                .actions(["deploy_nodes"]),
        )
        .await
        .unwrap()
        .expect("the queued parent")
        .claim()
        .unwrap();
    let first = store
        .create_subtask(parent.task_id, &NewTask::new("deploy_node"), Some(&guard))
        .await
        .expect("the live claim's guard is accepted");
    let wrong = |f: fn(&mut Claim)| {
        let mut c = guard.clone();
        f(&mut c);
        c
    };
    for (what, g) in [
        (
            "another instance",
            wrong(|c| c.instance_id = "instance-b".into()),
        ),
        ("another attempt", wrong(|c| c.attempt += 1)),
        ("an older term", wrong(|c| c.term = c.term.map(|t| t - 1))),
        ("no term", wrong(|c| c.term = None)),
    ] {
        refused_subtask(
            &*store,
            parent.task_id,
            &NewTask::new("deploy_node"),
            Some(&g),
            what,
            lost,
        )
        .await;
    }
    // The claim is still stored, but its lease is given up, then taken over.
    assert!(store.release_lease("instance-a").await.unwrap());
    let why = refused_subtask(
        &*store,
        parent.task_id,
        &NewTask::new("deploy_node"),
        Some(&guard),
        "the lease given up",
        lost,
    )
    .await;
    assert!(why.to_string().contains("does not hold the lease"), "{why}");
    let tb = held_term(&*store, "instance-b").await;
    assert!(tb > ta);
    refused_subtask(
        &*store,
        parent.task_id,
        &NewTask::new("deploy_node"),
        Some(&guard),
        "the lease taken over",
        lost,
    )
    .await;
    assert_eq!(
        get(&*store, parent.task_id).await.subtask_id_list,
        vec![first.task_id]
    );
    assert_eq!(get(&*store, parent.task_id).await.claim(), Some(guard));
}
