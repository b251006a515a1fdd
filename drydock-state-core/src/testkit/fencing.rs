//! Kit cases for fenced writes: claim guards, the attempt counter, claim ids, and Drydock's
//! termination semantics.
//!
//! Leadership changes here by release and claim, never by waiting for a lapse, so no case
//! depends on the machine's speed.

use uuid::Uuid;

use super::support::held_term;
use super::{kit_config, StoreFactory};
use crate::backend::now;
use crate::error::Error;
use crate::model::*;
use crate::store::StateStore;

/// `from` gives the lease up and `to` takes it: a change of leader without waiting.
async fn hand_over(store: &dyn StateStore, from: &str, to: &str) -> i64 {
    assert!(store.release_lease(from).await.unwrap(), "{from} held it");
    held_term(store, to).await
}

async fn new_queued(store: &dyn StateStore, action: &str) -> Task {
    store
        .create_task(&NewTask::new(action).with_status(TaskStatus::Queued))
        .await
        .expect("create_task")
}

async fn claim_one(store: &dyn StateStore, request: &ClaimRequest) -> Task {
    store
        .claim_next(request)
        .await
        .expect("claim_next")
        .expect("a queued task")
}

async fn get(store: &dyn StateStore, id: TaskId) -> Task {
    store.get_task(id).await.unwrap().expect("task exists")
}

fn build(task: TaskId, generator: &str) -> BuildData {
    BuildData {
        node_name: "n1".into(),
        task_id: task,
        collected_date: None,
        generator: generator.into(),
        data_format: "text/plain".into(),
        data_element: Some("x".into()),
    }
}

fn lease_lost<T: std::fmt::Debug>(result: crate::Result<T>, what: &str) -> String {
    match result {
        Err(Error::LeaseLost(why)) => why,
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// What a refused write must leave unchanged: the task, its messages, its build data and the
/// subtask it would have added.
#[derive(Debug, PartialEq)]
struct Snapshot {
    task: Task,
    build_data: usize,
    phantom_child_listed: bool,
    phantom_child_stored: bool,
}

async fn snapshot(store: &dyn StateStore, id: TaskId, phantom: TaskId) -> Snapshot {
    let task = get(store, id).await;
    let build_data = store
        .build_data(&BuildDataQuery {
            task_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    Snapshot {
        phantom_child_listed: task.subtask_id_list.contains(&phantom),
        phantom_child_stored: store.get_task(phantom).await.unwrap().is_some(),
        task,
        build_data,
    }
}

/// A new subtask with id `id`.
fn phantom_child(id: TaskId) -> NewTask {
    NewTask {
        task_id: id,
        ..NewTask::new("deploy_node")
    }
}

/// Tries every guarded write to `id` with `guard`; each must be refused with `LeaseLost`
/// and, all together, change nothing. Returns the refusals' texts.
async fn every_write_refused(store: &dyn StateStore, id: TaskId, guard: &Claim) -> Vec<String> {
    let phantom = TaskId::new();
    let before = snapshot(store, id, phantom).await;
    let finish = TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success)
        .result_message(Some("late"));
    let g = Some(guard);
    let why = vec![
        lease_lost(store.update_task(id, &finish, g).await, "update_task"),
        lease_lost(
            store.set_status(id, TaskStatus::Complete, g).await,
            "set_status",
        ),
        lease_lost(
            store.append_message(id, &NewMessage::info("late"), g).await,
            "append_message",
        ),
        lease_lost(
            store
                .append_messages(id, &[NewMessage::info("a"), NewMessage::error("b")], g)
                .await,
            "append_messages",
        ),
        lease_lost(store.add_subtask(id, phantom, g).await, "add_subtask"),
        lease_lost(
            store.create_subtask(id, &phantom_child(phantom), g).await,
            "create_subtask",
        ),
        lease_lost(
            store.record_build_data(&build(id, "late"), g).await,
            "record_build_data",
        ),
        lease_lost(store.terminate_task(id, "late", g).await, "terminate_task"),
    ];
    assert_eq!(
        snapshot(store, id, phantom).await,
        before,
        "a refused write changes nothing"
    );
    why
}

/// Every guarded write with the task's live claim goes through.
async fn every_write_accepted(store: &dyn StateStore, id: TaskId, guard: &Claim) {
    let g = Some(guard);
    let messages_before = get(store, id).await.result.details.message_list.len();
    store
        .append_message(id, &NewMessage::info("working"), g)
        .await
        .expect("append_message with the live claim");
    store
        .append_messages(id, &[NewMessage::info("a"), NewMessage::info("b")], g)
        .await
        .expect("append_messages with the live claim");
    store
        .record_build_data(&build(id, "lshw"), g)
        .await
        .expect("record_build_data with the live claim");
    let child = store
        .create_task(&NewTask::new("deploy_node").with_parent(id))
        .await
        .unwrap();
    store
        .add_subtask(id, child.task_id, g)
        .await
        .expect("add_subtask with the live claim");
    let created = store
        .create_subtask(id, &NewTask::new("deploy_node"), g)
        .await
        .expect("create_subtask with the live claim");
    store
        .update_task(id, &TaskUpdate::new().retry(1), g)
        .await
        .expect("update_task with the live claim");
    let done = store
        .update_task(
            id,
            &TaskUpdate::new()
                .status(TaskStatus::Complete)
                .result_status(ResultStatus::Success),
            g,
        )
        .await
        .expect("completion with the live claim");
    assert_eq!(done.status, TaskStatus::Complete);
    assert_eq!(done.retry, 1);
    assert_eq!(done.subtask_id_list, vec![child.task_id, created.task_id]);
    assert_eq!(done.result.details.message_list.len(), messages_before + 3);
    assert_eq!(
        done.claim().as_ref(),
        Some(guard),
        "completion keeps the record"
    );
}

/// The fail policy ends the claim: the deposed leader's late writes, every kind of them, are
/// refused, so the stored result keeps saying the task failed as an orphan.
pub async fn late_writes_after_fail_recovery_are_refused(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = new_queued(&*store, "deploy_nodes").await;
    let ta = held_term(&*store, "instance-a").await;
    let claimed = claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta)).await;
    let guard = claimed.claim().expect("a claimed task carries its claim");
    assert_eq!(guard, Claim::new("instance-a", Some(ta), 1));
    let tb = hand_over(&*store, "instance-a", "instance-b").await;
    assert_eq!(
        store.recover_orphans(tb, OrphanPolicy::Fail).await.unwrap(),
        vec![t.task_id]
    );
    let failed = get(&*store, t.task_id).await;
    assert_eq!(failed.status, TaskStatus::Complete);
    assert_eq!(failed.result.status, ResultStatus::Failure);
    assert_eq!(failed.claim(), None, "recovery ends the claim");
    let why = every_write_refused(&*store, t.task_id, &guard).await;
    assert!(why[0].contains("carries no claim"), "{}", why[0]);
    let stored = get(&*store, t.task_id).await;
    assert_eq!(stored.result.status, ResultStatus::Failure);
    assert_eq!(stored.result.details.message_list.len(), 1);
    assert!(stored.result.details.message_list[0]
        .message
        .contains("instance-a"));
}

/// The requeue policy ends the claim too; once the new leader claims the task again, the old
/// claim's writes are refused naming the new claim, and the new claim's writes go through.
pub async fn late_writes_after_requeue_are_refused(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = new_queued(&*store, "deploy_nodes").await;
    let ta = held_term(&*store, "instance-a").await;
    let old = claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta))
        .await
        .claim()
        .unwrap();
    let tb = hand_over(&*store, "instance-a", "instance-b").await;
    store
        .recover_orphans(tb, OrphanPolicy::Requeue)
        .await
        .unwrap();
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);
    every_write_refused(&*store, t.task_id, &old).await;
    let again = claim_one(&*store, &ClaimRequest::new("instance-b").fenced(tb)).await;
    assert_eq!(again.task_id, t.task_id);
    assert_eq!(again.attempt, 2, "every claim raises the attempt");
    let new = again.claim().unwrap();
    let why = every_write_refused(&*store, t.task_id, &old).await;
    assert!(
        why.iter().all(|w| w.contains(&new.to_string())),
        "a refusal names the stored claim: {why:?}"
    );
    every_write_accepted(&*store, t.task_id, &new).await;
}

/// The same instance claiming the same task again under the same term (after an operator put
/// it back in the queue) is a new claim: the first run's writes are refused while the second
/// runs. Unfenced claims are told apart the same way.
pub async fn second_run_under_the_same_term_fences_out_the_first(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let term = held_term(&*store, "instance-a").await;
    for request in [
        ClaimRequest::new("instance-a").fenced(term),
        ClaimRequest::new("instance-a"),
    ] {
        let t = new_queued(&*store, "deploy_nodes").await;
        let first = claim_one(&*store, &request).await.claim().unwrap();
        store
            .set_status(t.task_id, TaskStatus::Queued, None)
            .await
            .expect("an operator requeues the task");
        let requeued = get(&*store, t.task_id).await;
        assert_eq!(requeued.claim(), None, "a requeue ends the claim");
        assert_eq!(requeued.attempt, 1);
        every_write_refused(&*store, t.task_id, &first).await;
        let second = claim_one(&*store, &request).await;
        assert_eq!(second.task_id, t.task_id);
        let second = second.claim().unwrap();
        assert_eq!(
            (second.instance_id.as_str(), second.term, second.attempt),
            ("instance-a", request.term, 2)
        );
        every_write_refused(&*store, t.task_id, &first).await;
        every_write_accepted(&*store, t.task_id, &second).await;
    }
}

/// A guard whose claim is still stored but whose lease is gone (taken over, not yet
/// recovered) is refused: a fenced claimant may write only while it leads.
pub async fn guarded_write_after_losing_the_lease_is_refused(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = new_queued(&*store, "deploy_nodes").await;
    let ta = held_term(&*store, "instance-a").await;
    let guard = claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta))
        .await
        .claim()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let why = every_write_refused(&*store, t.task_id, &guard).await;
    assert!(
        why[0].contains("does not hold the lease"),
        "the refusal says why: {}",
        why[0]
    );
    let tb = held_term(&*store, "instance-b").await;
    assert!(tb > ta);
    every_write_refused(&*store, t.task_id, &guard).await;
    // The same instance leading again under a new term does not revive the old claim.
    let tc = hand_over(&*store, "instance-b", "instance-a").await;
    assert!(tc > tb);
    every_write_refused(&*store, t.task_id, &guard).await;
    assert_eq!(get(&*store, t.task_id).await.claim(), Some(guard));
}

/// A guard naming another instance, term or attempt than the stored claim is refused, and an
/// unfenced claim's guard needs no lease.
pub async fn guard_must_match_the_stored_claim_exactly(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = new_queued(&*store, "deploy_nodes").await;
    let claimed = claim_one(&*store, &ClaimRequest::new("worker-1")).await;
    let guard = claimed.claim().unwrap();
    assert_eq!(guard, Claim::new("worker-1", None, 1));
    for wrong in [
        Claim::new("worker-2", None, 1),
        Claim::new("worker-1", Some(1), 1),
        Claim::new("worker-1", None, 2),
        Claim::new("worker-1", None, 0),
    ] {
        every_write_refused(&*store, t.task_id, &wrong).await;
    }
    match store
        .update_task(
            t.task_id,
            &TaskUpdate::new(),
            Some(&Claim::new("bad\0id", None, 1)),
        )
        .await
    {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "guard.instance_id"),
        other => panic!("a NUL in a guard is invalid input, got {other:?}"),
    }
    assert!(store.current_lease().await.unwrap().is_none());
    every_write_accepted(&*store, t.task_id, &guard).await;
    // Finished: the claim is still the record, but a terminal task takes no write.
    match store
        .update_task(t.task_id, &TaskUpdate::new().retry(9), Some(&guard))
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => panic!("a finished task takes no write, got {other:?}"),
    }
}

/// Re-sending a claim with the same claim id returns the task already claimed under it, not
/// another; the id is the claimant's own; a new id claims the next task.
pub async fn resent_claim_id_returns_the_same_task(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let term = held_term(&*store, "instance-a").await;
    let first = new_queued(&*store, "deploy_nodes").await;
    let second = new_queued(&*store, "deploy_nodes").await;
    let id = Uuid::new_v4();
    let request = ClaimRequest::new("instance-a")
        .fenced(term)
        .with_claim_id(id);
    let claimed = claim_one(&*store, &request).await;
    assert_eq!(claimed.task_id, first.task_id);
    assert_eq!(claimed.claim_id, Some(id));
    for _ in 0..3 {
        let again = claim_one(&*store, &request).await;
        assert_eq!(again.task_id, first.task_id, "the same task, not another");
        assert_eq!(again.attempt, 1, "not claimed a second time");
        assert_eq!(again.claim(), claimed.claim());
    }
    assert_eq!(
        get(&*store, second.task_id).await.status,
        TaskStatus::Queued
    );
    match store
        .claim_next(&ClaimRequest::new("instance-b").with_claim_id(id))
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => panic!("another instance's claim id is a conflict, got {other:?}"),
    }
    assert_eq!(
        get(&*store, second.task_id).await.status,
        TaskStatus::Queued
    );
    let next = claim_one(
        &*store,
        &ClaimRequest::new("instance-a")
            .fenced(term)
            .with_claim_id(Uuid::new_v4()),
    )
    .await;
    assert_eq!(next.task_id, second.task_id);
    // A re-sent claim is fenced like any other.
    store.release_lease("instance-a").await.unwrap();
    match store.claim_next(&request).await {
        Err(Error::LeaseLost(_)) => {}
        other => panic!("a stale term is refused before the claim id is looked up, got {other:?}"),
    }
}

/// An instance finds the tasks it holds under a term (to reconcile after a restart or a lost
/// reply) by listing running tasks by claimant and term.
pub async fn list_by_claimant_and_term(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let ta = held_term(&*store, "instance-a").await;
    for _ in 0..3 {
        new_queued(&*store, "deploy_nodes").await;
    }
    let mine: Vec<TaskId> = [
        claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta)).await,
        claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta)).await,
    ]
    .iter()
    .map(|t| t.task_id)
    .collect();
    let theirs = claim_one(&*store, &ClaimRequest::new("instance-b")).await;
    let list = |by: &str, term: Option<i64>| TaskFilter {
        status: Some(TaskStatus::Running),
        claimed_by: Some(by.into()),
        claim_term: term,
        ..Default::default()
    };
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_tasks(&list("instance-a", Some(ta)))
            .await
            .unwrap()),
        mine
    );
    assert!(store
        .list_tasks(&list("instance-a", Some(ta + 1)))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(store.list_tasks(&list("instance-b", None)).await.unwrap()),
        vec![theirs.task_id]
    );
}

/// Terminating a parent marks its whole subtree, each task as its status says; a terminated
/// or terminating parent takes no new subtask.
pub async fn terminate_marks_the_whole_subtree(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let root = store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .unwrap();
    let queued_child = store
        .create_task(
            &NewTask::new("prepare_node")
                .with_parent(root.task_id)
                .with_status(TaskStatus::Queued),
        )
        .await
        .unwrap();
    let running_child = store
        .create_task(
            &NewTask::new("deploy_node")
                .with_parent(root.task_id)
                .with_status(TaskStatus::Queued),
        )
        .await
        .unwrap();
    let running = claim_one(&*store, &ClaimRequest::new("w").actions(["deploy_node"])).await;
    assert_eq!(running.task_id, running_child.task_id);
    let done_child = store
        .create_task(
            &NewTask::new("deploy_node")
                .with_parent(root.task_id)
                .with_status(TaskStatus::Complete),
        )
        .await
        .unwrap();
    let grandchild = store
        .create_task(&NewTask::new("boot_node").with_parent(running_child.task_id))
        .await
        .unwrap();
    let unrelated = new_queued(&*store, "prepare_site").await;

    let stored = store
        .terminate_task(root.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(stored.task_id, root.task_id);
    assert_eq!(stored.status, TaskStatus::Terminated);
    for (id, status) in [
        (root.task_id, TaskStatus::Terminated),
        (queued_child.task_id, TaskStatus::Terminated),
        (running_child.task_id, TaskStatus::Terminating),
        (done_child.task_id, TaskStatus::Complete),
        (grandchild.task_id, TaskStatus::Terminated),
    ] {
        let t = get(&*store, id).await;
        assert_eq!(t.status, status, "task {id}");
        assert!(t.terminate, "task {id} is marked");
        assert_eq!(t.terminated_by.as_deref(), Some("operator"), "task {id}");
        assert!(t.terminated.is_some(), "task {id}");
    }
    let other = get(&*store, unrelated.task_id).await;
    assert!(!other.terminate && other.status == TaskStatus::Queued);

    let new_child = TaskId::new();
    for parent in [root.task_id, running_child.task_id] {
        match store.add_subtask(parent, new_child, None).await {
            Err(Error::Conflict { .. }) => {}
            other => panic!("no new subtask under a stopped parent, got {other:?}"),
        }
        assert!(!get(&*store, parent)
            .await
            .subtask_id_list
            .contains(&new_child));
    }
    // The running child's worker winds down and finishes it with its claim.
    let guard = running.claim().unwrap();
    store
        .set_status(running_child.task_id, TaskStatus::Terminated, Some(&guard))
        .await
        .expect("the worker finishes its terminating task");
}

/// A queued task marked for termination is never handed out: the claim moves it to
/// `terminated` and takes the next one.
pub async fn claim_terminates_a_marked_queued_task(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let marked = new_queued(&*store, "deploy_nodes").await;
    let next = new_queued(&*store, "deploy_nodes").await;
    // Marked while running, then put back in the queue by its worker.
    let running = claim_one(&*store, &ClaimRequest::new("w")).await;
    assert_eq!(running.task_id, marked.task_id);
    store
        .terminate_task(marked.task_id, "operator", None)
        .await
        .unwrap();
    store
        .set_status(marked.task_id, TaskStatus::Queued, running.claim().as_ref())
        .await
        .unwrap();
    let back = get(&*store, marked.task_id).await;
    assert_eq!((back.status, back.terminate), (TaskStatus::Queued, true));
    let claimed = claim_one(&*store, &ClaimRequest::new("w")).await;
    assert_eq!(claimed.task_id, next.task_id, "the marked task is skipped");
    let skipped = get(&*store, marked.task_id).await;
    assert_eq!(skipped.status, TaskStatus::Terminated);
    assert_eq!(skipped.attempt, 1, "never claimed again");
    assert!(store
        .claim_next(&ClaimRequest::new("w"))
        .await
        .unwrap()
        .is_none());
}

/// A terminating task of a dead leader does not stay stuck: recovery terminates it, whatever
/// the policy, and ends its claim.
pub async fn recover_orphans_terminates_terminating_tasks(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let ta = held_term(&*store, "instance-a").await;
    let stopping = new_queued(&*store, "deploy_nodes").await;
    let working = new_queued(&*store, "deploy_nodes").await;
    let s = claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta)).await;
    assert_eq!(s.task_id, stopping.task_id);
    let w = claim_one(&*store, &ClaimRequest::new("instance-a").fenced(ta)).await;
    assert_eq!(w.task_id, working.task_id);
    store
        .terminate_task(stopping.task_id, "operator", None)
        .await
        .unwrap();
    let tb = hand_over(&*store, "instance-a", "instance-b").await;
    let mut recovered = store
        .recover_orphans(tb, OrphanPolicy::Requeue)
        .await
        .unwrap();
    recovered.sort();
    let mut expected = vec![stopping.task_id, working.task_id];
    expected.sort();
    assert_eq!(recovered, expected);
    let stopped = get(&*store, stopping.task_id).await;
    assert_eq!(stopped.status, TaskStatus::Terminated);
    assert_eq!(stopped.claim(), None);
    assert!(stopped.result.details.message_list[0]
        .message
        .contains("terminated"));
    assert_eq!(
        get(&*store, working.task_id).await.status,
        TaskStatus::Queued
    );
    every_write_refused(&*store, stopping.task_id, &s.claim().unwrap()).await;
    assert!(store
        .recover_orphans(tb, OrphanPolicy::Requeue)
        .await
        .unwrap()
        .is_empty());
}

/// An update may move a task under another parent that exists; a parent that does not exist
/// is `NotFound` and nothing is written.
pub async fn update_parent_must_exist(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let a = new_queued(&*store, "deploy_nodes").await;
    let b = new_queued(&*store, "deploy_nodes").await;
    let moved = store
        .update_task(b.task_id, &TaskUpdate::new().parent(Some(a.task_id)), None)
        .await
        .unwrap();
    assert_eq!(moved.parent_task_id, Some(a.task_id));
    match store
        .update_task(
            b.task_id,
            &TaskUpdate::new().parent(Some(TaskId::new())).retry(5),
            None,
        )
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a missing parent is NotFound, got {other:?}"),
    }
    let stored = get(&*store, b.task_id).await;
    assert_eq!(stored.parent_task_id, Some(a.task_id));
    assert_eq!(stored.retry, 0, "nothing written");
    let root = store
        .update_task(b.task_id, &TaskUpdate::new().parent(None), None)
        .await
        .unwrap();
    assert_eq!(root.parent_task_id, None);
}

/// Keyset pages never lose or repeat a task, for every page size, when creation times tie
/// across page boundaries and ids are in no particular order.
pub async fn keyset_pages_with_ties_across_boundaries(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let base = now() - chrono::Duration::seconds(3600);
    let mut expected = Vec::new();
    for i in 0..37u32 {
        // Five instants only, so most pages end inside a run of equal times.
        let mut t = NewTask::new("deploy_nodes")
            .with_created(base + chrono::Duration::seconds(i64::from(i % 5)));
        t.task_id = TaskId(Uuid::new_v4());
        store.create_task(&t).await.unwrap();
        expected.push((t.created, t.task_id));
    }
    expected.sort();
    for size in 1..=25u32 {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_tasks(&TaskFilter {
                    after,
                    limit: Some(size),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(page.len() <= size as usize);
            let Some(last) = page.last() else { break };
            after = Some((last.created, last.task_id));
            seen.extend(page.iter().map(|t| (t.created, t.task_id)));
            if page.len() < size as usize {
                break;
            }
        }
        assert_eq!(seen, expected, "page size {size}");
    }
}
