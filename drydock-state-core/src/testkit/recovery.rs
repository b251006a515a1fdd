//! Kit cases for a change of leader: orphans requeued or failed, a stalled leader fenced
//! out, and late writes under a stale claim refused.

use std::time::Duration;

use super::support::*;
use super::{with_grace, StoreFactory};
use crate::error::Error;
use crate::model::*;

/// After a change of leader, tasks running under the old term are requeued once, each with a
/// message saying why; tasks of the current term are left alone.
pub async fn recover_orphans_requeues_with_message(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t1 = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    let t2 = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let unfenced = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let a = held(&*store, "instance-a").await;
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store
        .claim_next(&ClaimRequest::new("instance-a"))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let b = held(&*store, "instance-b").await;
    let mut recovered = store
        .recover_orphans(b.term, OrphanPolicy::Requeue)
        .await
        .unwrap();
    recovered.sort();
    let mut expected = vec![t1.task_id, t2.task_id];
    expected.sort();
    assert_eq!(recovered, expected);
    for id in [t1.task_id, t2.task_id] {
        let t = get(&*store, id).await;
        assert_eq!(t.status, TaskStatus::Queued);
        assert_eq!(t.claimed_by, None);
        let msgs = &t.result.details.message_list;
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].message.contains("instance-a"),
            "{}",
            msgs[0].message
        );
        assert!(
            msgs[0].message.contains(&format!("term {}", b.term)),
            "{}",
            msgs[0].message
        );
    }
    assert_eq!(
        get(&*store, unfenced.task_id).await.status,
        TaskStatus::Running
    );
    assert!(
        store
            .recover_orphans(b.term, OrphanPolicy::Requeue)
            .await
            .unwrap()
            .is_empty(),
        "recovered once"
    );
    // The new leader can claim the requeued work under its own term, which is not orphaned.
    let again = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(b.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.task_id, t1.task_id);
    assert!(store
        .recover_orphans(b.term, OrphanPolicy::Requeue)
        .await
        .unwrap()
        .is_empty());
}

/// Under the fail policy, orphans are finished as failures with an error message.
pub async fn recover_orphans_fail_policy(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    let a = held(&*store, "instance-a").await;
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let b = held(&*store, "instance-b").await;
    assert_eq!(
        store
            .recover_orphans(b.term, OrphanPolicy::Fail)
            .await
            .unwrap(),
        vec![t.task_id]
    );
    let stored = get(&*store, t.task_id).await;
    assert_eq!(stored.status, TaskStatus::Complete);
    assert_eq!(stored.result.status, ResultStatus::Failure);
    assert_eq!(stored.result.details.error_count, 1);
    assert!(store
        .recover_orphans(b.term, OrphanPolicy::Fail)
        .await
        .unwrap()
        .is_empty());
}

/// A leader that stops renewing past the grace period loses the lease to another with a
/// higher term; its renewal and fenced claims are refused and take nothing; its running tasks
/// are recovered exactly once, by two recoveries racing and a repeat.
pub async fn stalled_leader_is_fenced_out_and_recovered_once(factory: &dyn StoreFactory) {
    // Long enough that four claims fit in it on a loaded machine; the case waits it out once.
    let grace = Duration::from_secs(3);
    let store = factory.open(with_grace(grace)).await;
    for i in 0..6 {
        queued(&*store, "deploy_nodes", secs_ago(600 - i)).await;
    }
    let ta = held(&*store, "instance-a").await;
    let fenced_a = ClaimRequest::new("instance-a").fenced(ta.term);
    let mut running_a = Vec::new();
    for _ in 0..4 {
        running_a.push(store.claim_next(&fenced_a).await.unwrap().unwrap().task_id);
    }
    tokio::time::sleep(grace + Duration::from_millis(200)).await;
    let tb = held(&*store, "instance-b").await;
    assert!(tb.term > ta.term);
    match store.renew_lease("instance-a").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => assert_eq!(
            (holder.instance_id.as_str(), holder.term),
            ("instance-b", tb.term)
        ),
        other => panic!("a stale renewal must be denied, naming the new holder: {other:?}"),
    }
    assert!(store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .is_none());
    let queued_before = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    for _ in 0..3 {
        assert_kind(
            store.claim_next(&fenced_a).await,
            "stale fenced claim",
            |e| matches!(e, Error::LeaseLost(_)),
        );
    }
    let queued_after = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(queued_before, queued_after, "refused claims took nothing");
    let (r1, r2) = tokio::join!(
        store.recover_orphans(tb.term, OrphanPolicy::Requeue),
        store.recover_orphans(tb.term, OrphanPolicy::Requeue)
    );
    let mut recovered: Vec<TaskId> = r1.unwrap().into_iter().chain(r2.unwrap()).collect();
    recovered.sort();
    running_a.sort();
    assert_eq!(recovered, running_a, "each task recovered exactly once");
    assert!(store
        .recover_orphans(tb.term, OrphanPolicy::Requeue)
        .await
        .unwrap()
        .is_empty());
    for id in running_a {
        let t = get(&*store, id).await;
        assert_eq!(t.status, TaskStatus::Queued);
        assert_eq!(
            t.result.details.message_list.len(),
            1,
            "one recovery message"
        );
    }
}

/// A write from a copy whose claim is no longer the stored one (the task was recovered, or
/// claimed again by a new leader) is refused with `LeaseLost` and writes nothing; the current
/// claimant's write goes through. A copy without a claim is not refused for this.
pub async fn late_write_with_a_stale_claim_is_refused(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = queued(&*store, "deploy_nodes", secs_ago(60)).await;
    let ta = held(&*store, "instance-a").await;
    let claimed_a = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(ta.term))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let tb = held(&*store, "instance-b").await;
    store
        .recover_orphans(tb.term, OrphanPolicy::Requeue)
        .await
        .unwrap();

    // Recovered, not yet claimed again: a's late finish is refused.
    let guard_a = claimed_a.claim().expect("a claimed task carries its claim");
    let finish = TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success);
    assert_kind(
        store.update_task(t.task_id, &finish, Some(&guard_a)).await,
        "late write after recovery",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);

    // Claimed again by b: a's late finish is still refused, b's own goes through.
    let claimed_b = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(tb.term))
        .await
        .unwrap()
        .unwrap();
    assert_kind(
        store.update_task(t.task_id, &finish, Some(&guard_a)).await,
        "late write after re-claim",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    let stored = get(&*store, t.task_id).await;
    assert_eq!(
        (
            stored.status,
            stored.claimed_by.as_deref(),
            stored.claim_term
        ),
        (TaskStatus::Running, Some("instance-b"), Some(tb.term))
    );
    let guard_b = claimed_b.claim().unwrap();
    store
        .update_task(t.task_id, &finish, Some(&guard_b))
        .await
        .unwrap();
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Complete);

    // An unguarded write is judged by status alone.
    let other = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    store
        .update_task(other.task_id, &TaskUpdate::new().retry(3), None)
        .await
        .unwrap();
    assert_eq!(get(&*store, other.task_id).await.retry, 3);
}
