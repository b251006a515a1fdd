//! A stalled leader on a real PostgreSQL: an instance that stops renewing past the grace
//! period loses the lease to another with a higher term; its renewal and fenced claims are
//! refused; its running tasks are recovered exactly once, by two recoveries racing on two
//! pools and a repeat; and its late update of a task the new leader re-claimed is shown (see
//! docs/ARCHITECTURE.md, "Leadership and fencing"). The same scenario runs on SQLite in
//! drydock-state-sqlite/tests/stalled_leader.rs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;

const GRACE: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_leader_is_fenced_out_and_its_tasks_recovered_once() {
    let config = with_grace(GRACE);
    let (a, db) = common::fresh_store(&config).await;
    let b1 = PgStore::connect(&db.url, &config).await.unwrap();
    let b2 = PgStore::connect(&db.url, &config).await.unwrap();
    let summary = stalled_leader(Arc::new(a), Arc::new(b1), Arc::new(b2)).await;
    println!("postgres {summary}");
}

/// The stalled-leader scenario on three handles to one database (`a` is the instance that
/// stalls; `b1` and `b2` are the new leader's two connections, whose recoveries race).
/// Returns a one-line summary.
async fn stalled_leader<S: StateStore + 'static>(a: Arc<S>, b1: Arc<S>, b2: Arc<S>) -> String {
    // A leads and claims four of six queued tasks under its term.
    let base = now() - chrono::Duration::minutes(10);
    let mut queued = Vec::new();
    for i in 0..6 {
        let mut t = Task::new("deploy_nodes").with_status(TaskStatus::Queued);
        t.created = base + chrono::Duration::seconds(i);
        a.create_task(&t).await.unwrap();
        queued.push(t.task_id);
    }
    let ta = a.claim_lease("instance-a").await.unwrap();
    let ta = ta.held().expect("a leads").clone();
    let fenced_a = ClaimRequest::new("instance-a").fenced(ta.term);
    let mut running_a = Vec::new();
    for _ in 0..4 {
        let t = a.claim_next(&fenced_a).await.unwrap().expect("a claims");
        assert_eq!(t.claim_term, Some(ta.term));
        running_a.push(t);
    }

    // A stalls past the grace period; B takes the lease with a higher term.
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    let tb = b1.claim_lease("instance-b").await.unwrap();
    let tb = tb.held().expect("b takes the lapsed lease").clone();
    assert!(tb.term > ta.term, "term {} after {}", tb.term, ta.term);

    // The stale instance wakes up: its renewal and its claims are refused, and take nothing.
    match a.renew_lease("instance-a").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => {
            assert_eq!(
                (holder.instance_id.as_str(), holder.term),
                ("instance-b", tb.term)
            )
        }
        other => panic!("a stale renewal must be denied, naming the new holder: {other:?}"),
    }
    assert!(
        a.claim_lease("instance-a").await.unwrap().held().is_none(),
        "a live lease is not taken over"
    );
    let before = queued_ids(&*b1).await;
    for _ in 0..3 {
        match a.claim_next(&fenced_a).await {
            Err(Error::LeaseLost(_)) => {}
            other => panic!("a fenced claim with a stale term must be refused: {other:?}"),
        }
    }
    assert_eq!(
        queued_ids(&*b1).await,
        before,
        "refused claims took nothing"
    );
    let current = b1.current_lease().await.unwrap().expect("a live lease");
    assert_eq!(
        (current.instance_id.as_str(), current.term),
        ("instance-b", tb.term)
    );

    // B recovers A's running tasks: two recoveries racing, then a third; each task once.
    let (r1, r2) = tokio::join!(
        b1.recover_orphans(tb.term, OrphanPolicy::Requeue),
        b2.recover_orphans(tb.term, OrphanPolicy::Requeue)
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let again = b1
        .recover_orphans(tb.term, OrphanPolicy::Requeue)
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a repeated recovery recovers nothing: {again:?}"
    );
    let mut recovered: Vec<TaskId> = r1.iter().chain(r2.iter()).copied().collect();
    recovered.sort();
    let mut expected: Vec<TaskId> = running_a.iter().map(|t| t.task_id).collect();
    expected.sort();
    assert_eq!(
        recovered,
        expected,
        "each of a's tasks recovered exactly once (racing: {} + {})",
        r1.len(),
        r2.len()
    );
    for id in &expected {
        let t = b1.get_task(*id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Queued);
        assert_eq!((t.claimed_by.as_deref(), t.claim_term), (None, None));
        let notes = t.result.details.message_list.len();
        assert_eq!(notes, 1, "one recovery message per task, not {notes}");
    }

    // B claims the recovered tasks (the oldest) under its own term.
    let fenced_b = ClaimRequest::new("instance-b").fenced(tb.term);
    let reclaimed = b1.claim_next(&fenced_b).await.unwrap().expect("b claims");
    assert_eq!(reclaimed.task_id, running_a[0].task_id);
    assert_eq!(reclaimed.claim_term, Some(tb.term));

    // The stale instance finishes that task late, from its old copy. `update_task` is a whole
    // put that is not fenced: it is applied (see docs/ARCHITECTURE.md, "Leadership and
    // fencing"). It does not touch the claim, so the task still names B and B's term, and B's
    // own finish is then refused because the task is terminal.
    let mut late = running_a[0].clone();
    late.status = TaskStatus::Complete;
    late.result.status = ResultStatus::Success;
    let applied = a.update_task(&late).await;
    let stored = b1.get_task(late.task_id).await.unwrap().unwrap();
    let late_applied = applied.is_ok();
    if late_applied {
        assert_eq!(stored.status, TaskStatus::Complete);
        assert_eq!(
            stored.claimed_by.as_deref(),
            Some("instance-b"),
            "the claim is never rewritten by update_task"
        );
        assert_eq!(stored.claim_term, Some(tb.term));
        let mut b_requeue = reclaimed.clone();
        b_requeue.status = TaskStatus::Queued;
        assert!(
            matches!(b1.update_task(&b_requeue).await, Err(Error::Conflict(_))),
            "a finished task never runs again"
        );
    } else {
        assert!(matches!(applied, Err(Error::LeaseLost(_))), "{applied:?}");
        assert_eq!(stored.status, TaskStatus::Running);
    }
    format!(
        "stalled leader: term {} lapsed, term {} took over; 1 stale renewal denied, 3 stale fenced claims refused \
         (0 taken); {} tasks recovered by two racing recoveries ({} + {}), 0 by a repeat; late update of a re-claimed \
         task {}",
        ta.term,
        tb.term,
        recovered.len(),
        r1.len(),
        r2.len(),
        if late_applied { "applied (update_task is unfenced)" } else { "refused with LeaseLost" }
    )
}

async fn queued_ids<S: StateStore>(store: &S) -> Vec<TaskId> {
    store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect()
}
