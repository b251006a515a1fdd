//! Kit cases for the batch operations: [`crate::TaskStore::claim_batch`] (order, the cap, two
//! concurrent batch claimers partitioning the queue, the fence, a re-sent claim id, marked
//! tasks terminated) and [`crate::TaskStore::update_tasks`] (per-task outcomes).

use std::collections::HashSet;
use std::sync::Arc;

use super::support::*;
use super::StoreFactory;
use crate::error::Error;
use crate::model::*;
use crate::store::StateStore;

/// `n` queued tasks of `action`, created `n`..1 seconds ago plus `offset` (oldest first).
async fn queue_n(store: &dyn StateStore, action: &str, n: usize, offset: i64) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(queued(store, action, secs_ago(offset + (n - i) as i64)).await);
    }
    tasks
}

/// `n` queued `deploy_nodes` tasks claimed in one batch by `instance-a` under the lease term
/// it takes.
async fn queue_and_claim(store: &dyn StateStore, n: usize) -> Vec<Task> {
    queue_n(store, "deploy_nodes", n, 10).await;
    let term = held_term(store, "instance-a").await;
    let claimed = store
        .claim_batch(&ClaimRequest::new("instance-a").fenced(term), n)
        .await
        .unwrap();
    assert_eq!(claimed.len(), n);
    claimed
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.task_id).collect()
}

/// A batch claims the oldest queued tasks of the allowed actions, oldest first, each running
/// with its claim recorded and its attempt raised; `n` caps the batch; an empty queue is an
/// empty batch; a queued task marked for termination is terminated, not handed out.
pub async fn claim_batch_takes_the_oldest_up_to_n(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let tasks = queue_n(&*store, "deploy_nodes", 5, 100).await;
    let other = queued(&*store, "prepare_site", secs_ago(1000)).await;
    let req = ClaimRequest::new("instance-a").actions(["deploy_nodes"]);
    let first = store.claim_batch(&req, 3).await.unwrap();
    assert_eq!(
        ids(&first),
        tasks[..3].iter().map(|t| t.task_id).collect::<Vec<_>>(),
        "the three oldest, oldest first"
    );
    for t in &first {
        assert_eq!(t.status, TaskStatus::Running);
        assert_eq!(t.claimed_by.as_deref(), Some("instance-a"));
        assert_eq!(t.attempt, 1);
        assert_eq!(t.claim_id, None);
        assert!(t.claimed_at.is_some());
        let stored = get(&*store, t.task_id).await;
        assert_eq!(stored.status, TaskStatus::Running);
        assert_eq!(stored.claim(), t.claim());
    }
    // The fourth is marked for termination while queued (claimed, marked, put back).
    let marked = store
        .claim_next(&req)
        .await
        .unwrap()
        .expect("the fourth task");
    assert_eq!(marked.task_id, tasks[3].task_id);
    store
        .terminate_task(marked.task_id, "operator", None)
        .await
        .unwrap();
    store
        .set_status(marked.task_id, TaskStatus::Queued, marked.claim().as_ref())
        .await
        .unwrap();
    let rest = store.claim_batch(&req, 10).await.unwrap();
    assert_eq!(ids(&rest), vec![tasks[4].task_id], "fewer than n queued");
    assert_eq!(
        get(&*store, tasks[3].task_id).await.status,
        TaskStatus::Terminated,
        "the marked task is terminated instead of handed out"
    );
    assert!(store.claim_batch(&req, 10).await.unwrap().is_empty());
    assert_eq!(
        get(&*store, other.task_id).await.status,
        TaskStatus::Queued,
        "another action is not claimed"
    );
    let any = store
        .claim_batch(&ClaimRequest::new("instance-a"), 1)
        .await
        .unwrap();
    assert_eq!(ids(&any), vec![other.task_id]);
}

/// `n` of zero or above the cap is `InvalidInput` and claims nothing.
pub async fn claim_batch_size_is_bounded(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    for n in [0, MAX_CLAIM_BATCH + 1] {
        assert_kind(
            store.claim_batch(&ClaimRequest::new("i"), n).await,
            "batch size out of range",
            |e| matches!(e, Error::InvalidInput { .. }),
        );
    }
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);
    assert_eq!(
        store
            .claim_batch(&ClaimRequest::new("i"), MAX_CLAIM_BATCH)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Concurrent batch claimers (and a single claimer among them) partition the queue: every
/// task is handed out exactly once, and none is left queued.
pub async fn claim_batch_concurrent_claimers_partition_the_queue(factory: &dyn StoreFactory) {
    const TASKS: usize = 120;
    let store = store(factory).await;
    let queued_ids: HashSet<TaskId> = queue_n(&*store, "deploy_nodes", TASKS, 10)
        .await
        .iter()
        .map(|t| t.task_id)
        .collect();
    let claimers: Vec<_> = (0..4)
        .map(|c| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let req = ClaimRequest::new(format!("claimer-{c}"));
                let mut mine = Vec::new();
                loop {
                    let batch = if c == 3 {
                        store.claim_next(&req).await.unwrap().into_iter().collect()
                    } else {
                        store.claim_batch(&req, 7).await.unwrap()
                    };
                    if batch.is_empty() {
                        break mine;
                    }
                    for t in batch {
                        assert_eq!(t.claimed_by, Some(req.instance_id.clone()));
                        mine.push(t.task_id);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for claimer in claimers {
        for id in claimer.await.expect("claimer") {
            total += 1;
            assert!(seen.insert(id), "task {id} handed out twice");
        }
    }
    assert_eq!(total, TASKS);
    assert_eq!(seen, queued_ids, "every task claimed exactly once");
    let left = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing left queued");
}

/// A fenced batch claim succeeds only for the live holder with its term: after a takeover the
/// deposed holder's batch is `LeaseLost` and claims nothing; the new holder's batch records its
/// term.
pub async fn claim_batch_is_fenced_by_the_term(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let tasks = queue_n(&*store, "deploy_nodes", 4, 10).await;
    let a = held(&*store, "instance-a").await;
    let first = store
        .claim_batch(&ClaimRequest::new("instance-a").fenced(a.term), 1)
        .await
        .unwrap();
    assert_eq!(ids(&first), vec![tasks[0].task_id]);
    assert_eq!(first[0].claim_term, Some(a.term));
    store.release_lease("instance-a").await.unwrap();
    let b = held(&*store, "instance-b").await;
    for (who, term) in [("instance-a", a.term), ("instance-b", a.term)] {
        assert_kind(
            store
                .claim_batch(&ClaimRequest::new(who).fenced(term), 3)
                .await,
            "a stale term",
            |e| matches!(e, Error::LeaseLost(_)),
        );
    }
    for t in &tasks[1..] {
        let stored = get(&*store, t.task_id).await;
        assert_eq!(
            (stored.status, stored.attempt),
            (TaskStatus::Queued, 0),
            "a refused batch claims nothing"
        );
    }
    let ok = store
        .claim_batch(&ClaimRequest::new("instance-b").fenced(b.term), 3)
        .await
        .unwrap();
    assert_eq!(
        ids(&ok),
        tasks[1..].iter().map(|t| t.task_id).collect::<Vec<_>>()
    );
    assert!(ok.iter().all(|t| t.claim_term == Some(b.term)));
}

/// With a claim id, task `i` of the batch carries `batch_claim_id(id, i)`; the same request
/// re-sent returns the tasks already claimed and claims no more; the id sent by another
/// instance is a `Conflict`.
pub async fn claim_batch_resent_claim_id_returns_the_same_tasks(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let tasks = queue_n(&*store, "deploy_nodes", 5, 10).await;
    let claim_id = uuid::Uuid::new_v4();
    let req = ClaimRequest::new("instance-a").with_claim_id(claim_id);
    let first = store.claim_batch(&req, 3).await.unwrap();
    assert_eq!(
        ids(&first),
        tasks[..3].iter().map(|t| t.task_id).collect::<Vec<_>>()
    );
    for (i, t) in first.iter().enumerate() {
        assert_eq!(t.claim_id, Some(batch_claim_id(claim_id, i)), "task {i}");
    }
    let again = store.claim_batch(&req, 3).await.unwrap();
    assert_eq!(ids(&again), ids(&first), "the re-sent batch's tasks");
    assert!(again.iter().all(|t| t.attempt == 1), "not claimed twice");
    for t in &tasks[3..] {
        assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);
    }
    assert_kind(
        store
            .claim_batch(&ClaimRequest::new("instance-b").with_claim_id(claim_id), 3)
            .await,
        "another instance's claim id",
        |e| matches!(e, Error::Conflict { .. }),
    );
    for t in &tasks[3..] {
        assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);
    }
}

/// `update_tasks` answers each update on its own: one stale guard among good ones is refused
/// (and writes nothing to its task), an unknown task is `NotFound`, a finished one `Conflict`,
/// an unknown parent `NotFound`, and the others, before and after, are written.
pub async fn update_tasks_outcomes_are_per_task(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let claimed = queue_and_claim(&*store, 3).await;
    let done = create(
        &*store,
        &NewTask::new("deploy_nodes").with_status(TaskStatus::Complete),
    )
    .await;
    let loose = create(&*store, &NewTask::new("deploy_nodes")).await;
    let finish = TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success);
    let mut stale = claimed[1].claim().expect("claimed");
    stale.attempt += 1;
    let updates = vec![
        GuardedUpdate::new(claimed[0].task_id, finish.clone(), claimed[0].claim()),
        GuardedUpdate::new(claimed[1].task_id, finish.clone(), Some(stale)),
        GuardedUpdate::new(TaskId::new(), finish.clone(), None),
        GuardedUpdate::new(done.task_id, TaskUpdate::new().retry(3), None),
        GuardedUpdate::new(
            loose.task_id,
            TaskUpdate::new().retry(4).parent(Some(TaskId::new())),
            None,
        ),
        GuardedUpdate::new(claimed[2].task_id, finish.clone(), claimed[2].claim()),
    ];
    let outcomes = store
        .update_tasks(&updates)
        .await
        .expect("no store failure");
    assert_eq!(outcomes.len(), updates.len(), "one outcome per update");
    let mut outcomes = outcomes.into_iter();
    let written = outcomes.next().unwrap().expect("good guard written");
    assert_eq!(written.status, TaskStatus::Complete);
    assert_eq!(written.task_id, claimed[0].task_id);
    assert_kind(outcomes.next().unwrap(), "stale guard", |e| {
        matches!(e, Error::LeaseLost(_))
    });
    assert_kind(outcomes.next().unwrap(), "unknown task", |e| {
        matches!(e, Error::NotFound { .. })
    });
    assert_kind(outcomes.next().unwrap(), "finished task", |e| {
        matches!(e, Error::Conflict { .. })
    });
    assert_kind(outcomes.next().unwrap(), "unknown parent", |e| {
        matches!(e, Error::NotFound { .. })
    });
    let written = outcomes
        .next()
        .unwrap()
        .expect("written after a refused statement");
    assert_eq!(written.task_id, claimed[2].task_id);
    assert_eq!(
        get(&*store, claimed[0].task_id).await.status,
        TaskStatus::Complete
    );
    assert_eq!(
        get(&*store, claimed[2].task_id).await.status,
        TaskStatus::Complete
    );
    let refused = get(&*store, claimed[1].task_id).await;
    assert_eq!(
        refused.status,
        TaskStatus::Running,
        "the refused one unwritten"
    );
    assert_eq!(refused.updated, claimed[1].updated);
    assert_eq!(get(&*store, done.task_id).await.retry, 0);
    let loose = get(&*store, loose.task_id).await;
    assert_eq!((loose.retry, loose.parent_task_id), (0, None));
    assert!(store.update_tasks(&[]).await.unwrap().is_empty());
}

/// `update_tasks` with several updates of one task applies them in the order given, each
/// seeing the one before: a patch under the claim, then the completion under the same
/// claim, then an unguarded retry change, refused (`Conflict`) since the task is now
/// finished; a second task's completion between them is written too.
pub async fn update_tasks_of_one_task_apply_in_order(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let claimed = queue_and_claim(&*store, 2).await;
    let (task, other) = (&claimed[0], &claimed[1]);
    let finish = TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success);
    let updates = vec![
        GuardedUpdate::new(
            task.task_id,
            TaskUpdate::new().retry(1).result_message(Some("first")),
            task.claim(),
        ),
        GuardedUpdate::new(other.task_id, finish.clone(), other.claim()),
        GuardedUpdate::new(task.task_id, finish.clone(), task.claim()),
        GuardedUpdate::new(task.task_id, TaskUpdate::new().retry(2), None),
    ];
    let outcomes = store
        .update_tasks(&updates)
        .await
        .expect("no store failure");
    assert_eq!(outcomes.len(), updates.len(), "one outcome per update");
    let mut outcomes = outcomes.into_iter();
    let first = outcomes.next().unwrap().expect("the patch under the claim");
    assert_eq!((first.status, first.retry), (TaskStatus::Running, 1));
    let second = outcomes
        .next()
        .unwrap()
        .expect("the other task's completion");
    assert_eq!(
        (second.task_id, second.status),
        (other.task_id, TaskStatus::Complete)
    );
    let third = outcomes
        .next()
        .unwrap()
        .expect("the completion after the patch");
    assert_eq!(
        (third.status, third.retry, third.result.message.as_deref()),
        (TaskStatus::Complete, 1, Some("first")),
        "the completion sees the patch before it"
    );
    assert_kind(
        outcomes.next().unwrap(),
        "a change after the completion",
        |e| matches!(e, Error::Conflict { .. }),
    );
    let stored = get(&*store, task.task_id).await;
    assert_eq!((stored.status, stored.retry), (TaskStatus::Complete, 1));
}

/// `create_task_tree` stores the parent and its subtasks: each subtask's parent is the
/// parent, the parent lists them in the order given, and they come back parent first.
pub async fn create_task_tree_links_parent_and_subtasks(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let grandparent = create(&*store, &NewTask::new("deploy_site")).await;
    let parent = NewTask::new("deploy_nodes")
        .with_parent(grandparent.task_id)
        .with_status(TaskStatus::Queued);
    let subtasks = vec![
        NewTask::new("deploy_node").with_created(secs_ago(5)),
        NewTask::new("deploy_node").with_parent(parent.task_id),
        NewTask::new("deploy_node").with_created(secs_ago(50)),
    ];
    let stored = store.create_task_tree(&parent, &subtasks).await.unwrap();
    let listed: Vec<TaskId> = subtasks.iter().map(|t| t.task_id).collect();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[0].task_id, parent.task_id);
    assert_eq!(stored[0].subtask_id_list, listed);
    assert_eq!(stored[0].parent_task_id, Some(grandparent.task_id));
    assert_eq!(
        stored[1..].iter().map(|t| t.task_id).collect::<Vec<_>>(),
        listed
    );
    let read = get(&*store, parent.task_id).await;
    assert_eq!(read.subtask_id_list, listed, "the list in the order given");
    assert_eq!(read.status, TaskStatus::Queued);
    for t in &subtasks {
        let child = get(&*store, t.task_id).await;
        assert_eq!(child.parent_task_id, Some(parent.task_id));
        assert_eq!(child.status, TaskStatus::Requested);
        assert_eq!(child.created, t.created);
    }
    let children = store
        .subtasks(parent.task_id, SubtaskFilter::All)
        .await
        .unwrap();
    assert_eq!(
        children.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        listed
    );
    let lone = store
        .create_task_tree(&NewTask::new("prepare_site"), &[])
        .await
        .unwrap();
    assert_eq!(lone.len(), 1);
    assert!(lone[0].subtask_id_list.is_empty());
}

/// A tree is stored whole or not at all: an id already stored (`AlreadyExists`), an unknown
/// parent of the parent (`NotFound`), an id twice in the tree, a subtask naming another
/// parent or refused input (`InvalidInput`) store nothing.
pub async fn create_task_tree_is_all_or_nothing(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let taken = create(&*store, &NewTask::new("deploy_node")).await;
    let other = create(&*store, &NewTask::new("deploy_nodes")).await;
    let before = snapshot(&*store).await;
    let parent = NewTask::new("deploy_nodes");
    let fresh = NewTask::new("deploy_node");
    let mut taken_again = NewTask::new("deploy_node");
    taken_again.task_id = taken.task_id;
    assert_kind(
        store
            .create_task_tree(&parent, &[fresh.clone(), taken_again])
            .await,
        "a subtask id already stored",
        |e| matches!(e, Error::AlreadyExists { .. }),
    );
    assert_kind(
        store
            .create_task_tree(
                &parent.clone().with_parent(TaskId::new()),
                std::slice::from_ref(&fresh),
            )
            .await,
        "an unknown parent of the parent",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_kind(
        store
            .create_task_tree(&parent, &[fresh.clone(), fresh.clone()])
            .await,
        "an id twice in the tree",
        |e| matches!(e, Error::InvalidInput { .. }),
    );
    assert_kind(
        store
            .create_task_tree(&parent, &[fresh.clone().with_parent(other.task_id)])
            .await,
        "a subtask naming another parent",
        |e| matches!(e, Error::InvalidInput { .. }),
    );
    assert_kind(
        store
            .create_task_tree(&parent, &[fresh.clone(), NewTask::new("bad action")])
            .await,
        "a subtask refused by create_task",
        |e| matches!(e, Error::InvalidInput { .. }),
    );
    let too_many: Vec<NewTask> = (0..=MAX_TREE_SUBTASKS)
        .map(|_| NewTask::new("deploy_node"))
        .collect();
    assert_kind(
        store.create_task_tree(&parent, &too_many).await,
        "more than the largest tree",
        |e| matches!(e, Error::InvalidInput { .. }),
    );
    assert_eq!(snapshot(&*store).await, before, "nothing stored");
}
