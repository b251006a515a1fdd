//! Concurrency on a real PostgreSQL: instances racing for the lease, fencing under a takeover,
//! and wake-ups across pools. The exactly-once drains (claimers racing for a queue, in one
//! process and across processes) are the kit's, run from `tests/conformance.rs`.
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drydock_state_core::testkit::drains;
use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use rand::Rng;

fn config(grace: Duration, pool: u32) -> Config {
    let mut config = with_grace(grace);
    config.database.pool_size = pool;
    config.database.pool_overflow = 2;
    config
}

/// Queues `n` `deploy_nodes` tasks with 8 concurrent creators, oldest first by `created`.
async fn queue(store: &Arc<drydock_state_postgres::PgStore>, n: usize) -> HashSet<TaskId> {
    drains::queue(store, "deploy_nodes", n, 8).await
}

#[derive(Clone, Debug)]
struct Holding {
    instance: usize,
    term: i64,
    acquired_at: DateTime<Utc>,
    renewed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// One term's holding: who, since when, and its latest expiry.
struct TermSpan {
    instance: usize,
    acquired_at: DateTime<Utc>,
    last_expiry: DateTime<Utc>,
}

/// 4 instances contend for a 200 ms lease over 400 rounds each, some stalling past the grace
/// period: at no instant do two instances hold it, and every new holding has a higher term.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_never_hold_the_lease_at_once() {
    const INSTANCES: usize = 4;
    const ROUNDS: usize = 400;
    let grace = Duration::from_millis(200);
    let (store, _db) = common::fresh_store(&config(grace, 6)).await;
    let store = Arc::new(store);

    let started = Instant::now();
    let mut contenders = Vec::new();
    for me in 0..INSTANCES {
        let store = store.clone();
        contenders.push(tokio::spawn(async move {
            let id = format!("instance-{me}");
            let mut held = Vec::new();
            let (mut denied, mut stalls) = (0usize, 0usize);
            let mut holding = false;
            for _ in 0..ROUNDS {
                let outcome = if holding {
                    store.renew_lease(&id).await
                } else {
                    store.claim_lease(&id).await
                }
                .expect("lease call");
                let (pause, stall) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(0..=8u64), rng.gen_ratio(1, 30))
                };
                match outcome {
                    LeaseOutcome::Held(lease) => {
                        assert_eq!(lease.instance_id, id);
                        held.push(Holding {
                            instance: me,
                            term: lease.term,
                            acquired_at: lease.acquired_at,
                            renewed_at: lease.renewed_at,
                            expires_at: lease.expires_at,
                        });
                        holding = true;
                        if stall {
                            // A stalled leader: no renewal for longer than the grace period.
                            stalls += 1;
                            tokio::time::sleep(grace + Duration::from_millis(50)).await;
                        }
                    }
                    LeaseOutcome::Denied(_) => {
                        holding = false;
                        denied += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            (held, denied, stalls)
        }));
    }
    let mut held: Vec<Holding> = Vec::new();
    let (mut denied, mut stalls) = (0, 0);
    for c in contenders {
        let (h, d, s) = c.await.unwrap();
        held.extend(h);
        denied += d;
        stalls += s;
    }
    let elapsed = started.elapsed();

    // At no instant two holders: the [renewed_at, expires_at) of different instances never meet.
    held.sort_by_key(|h| h.renewed_at);
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            if b.renewed_at >= a.expires_at {
                break; // sorted by start: no later interval can overlap `a`
            }
            assert_eq!(
                a.instance, b.instance,
                "two holders at once: {a:?} and {b:?}"
            );
        }
    }
    // One holder per term, and terms rise with time: each holding starts after the one before
    // it has expired, and carries a higher term.
    let mut terms: BTreeMap<i64, TermSpan> = BTreeMap::new();
    for h in &held {
        let span = terms.entry(h.term).or_insert(TermSpan {
            instance: h.instance,
            acquired_at: h.acquired_at,
            last_expiry: h.expires_at,
        });
        assert_eq!(span.instance, h.instance, "term {} has two holders", h.term);
        assert_eq!(
            span.acquired_at, h.acquired_at,
            "term {} re-acquired",
            h.term
        );
        span.last_expiry = span.last_expiry.max(h.expires_at);
    }
    let holdings: Vec<(&i64, &TermSpan)> = terms.iter().collect();
    let mut changes_of_holder = 0;
    for pair in holdings.windows(2) {
        let ((t1, before), (t2, after)) = (pair[0], pair[1]);
        assert!(t2 > t1);
        assert!(
            after.acquired_at >= before.last_expiry,
            "term {t2} acquired at {} before term {t1} expired at {}",
            after.acquired_at,
            before.last_expiry
        );
        if before.instance != after.instance {
            changes_of_holder += 1;
        }
    }
    assert!(
        holdings.len() > 1,
        "the stalls should have handed the lease on at least once"
    );
    println!(
        "lease: {INSTANCES} instances x {ROUNDS} rounds in {:.2} s: {} held outcomes, {denied} \
         denials, {stalls} stalls, {} holdings (terms {}..={}), {changes_of_holder} changes of \
         holder; no overlap",
        elapsed.as_secs_f64(),
        held.len(),
        holdings.len(),
        holdings.first().map(|(t, _)| **t).unwrap_or_default(),
        holdings.last().map(|(t, _)| **t).unwrap_or_default(),
    );
}

/// A claim fenced with a stale term, a lapsed lease or another's term is refused with
/// `LeaseLost` and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_term_claim_is_refused_and_claims_nothing() {
    let grace = Duration::from_millis(300);
    let (store, _db) = common::fresh_store(&config(grace, 4)).await;
    let store = Arc::new(store);
    let queued = queue(&store, 5).await;

    let a = store.claim_lease("instance-a").await.unwrap();
    let a = a.held().expect("a holds the lease").clone();
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    let refused = |r: Result<Option<Task>>| matches!(r, Err(Error::LeaseLost(_)));
    assert!(
        refused(
            store
                .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
                .await
        ),
        "a lapsed lease fences its holder out"
    );
    let b = store.claim_lease("instance-b").await.unwrap();
    let b = b.held().expect("b takes the lapsed lease").clone();
    assert!(b.term > a.term);
    for (who, term) in [
        ("instance-a", a.term),
        ("instance-b", a.term),
        ("instance-a", b.term),
    ] {
        assert!(
            refused(store.claim_next(&ClaimRequest::new(who).fenced(term)).await),
            "{who} with term {term} must be refused"
        );
    }
    let untouched = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        untouched.iter().map(|t| t.task_id).collect::<HashSet<_>>(),
        queued,
        "refused claims took nothing"
    );
    assert!(untouched.iter().all(|t| t.claimed_by.is_none()));
    let ok = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(b.term))
        .await
        .unwrap()
        .expect("the holder claims");
    assert_eq!(ok.claim_term, Some(b.term));
    println!(
        "fencing: terms {} (lapsed) and {} (live); 3 stale claims refused, 0 tasks taken",
        a.term, b.term
    );
}

/// The guarded writes of a fenced claimant, each run by [`takeover_during_a_guarded_write`].
#[derive(Clone, Copy, Debug)]
enum GuardedWrite {
    UpdateTask,
    SetStatus,
    AppendMessage,
    AppendMessages,
    AddSubtask,
    RecordBuildData,
    TerminateTask,
    ClaimNext,
}

impl GuardedWrite {
    const ALL: [GuardedWrite; 8] = [
        GuardedWrite::UpdateTask,
        GuardedWrite::SetStatus,
        GuardedWrite::AppendMessage,
        GuardedWrite::AppendMessages,
        GuardedWrite::AddSubtask,
        GuardedWrite::RecordBuildData,
        GuardedWrite::TerminateTask,
        GuardedWrite::ClaimNext,
    ];

    /// Makes the write to `task` as `guard`'s claimant would (a claim: the next task, under
    /// the guard's term); `Ok` when the store accepted it.
    async fn run(
        self,
        store: &drydock_state_postgres::PgStore,
        task: TaskId,
        guard: &Claim,
    ) -> Result<()> {
        let g = Some(guard);
        match self {
            GuardedWrite::UpdateTask => store
                .update_task(
                    task,
                    &TaskUpdate::new()
                        .status(TaskStatus::Complete)
                        .result_status(ResultStatus::Success),
                    g,
                )
                .await
                .map(drop),
            GuardedWrite::SetStatus => store
                .set_status(task, TaskStatus::Complete, g)
                .await
                .map(drop),
            GuardedWrite::AppendMessage => store
                .append_message(task, &NewMessage::info("late"), g)
                .await
                .map(drop),
            GuardedWrite::AppendMessages => store
                .append_messages(task, &[NewMessage::info("a"), NewMessage::error("b")], g)
                .await
                .map(drop),
            GuardedWrite::AddSubtask => store.add_subtask(task, TaskId::new(), g).await,
            GuardedWrite::RecordBuildData => {
                let data = BuildData {
                    node_name: "n1".into(),
                    task_id: task,
                    collected_date: None,
                    generator: "lshw".into(),
                    data_format: "text/plain".into(),
                    data_element: Some("x".into()),
                };
                store.record_build_data(&data, g).await
            }
            GuardedWrite::TerminateTask => store.terminate_task(task, "late", g).await.map(drop),
            GuardedWrite::ClaimNext => {
                let request = ClaimRequest::new(guard.instance_id.clone())
                    .fenced(guard.term.expect("a fenced guard"));
                match store.claim_next(&request).await? {
                    Some(_) => Ok(()),
                    None => panic!("{self:?}: a task was queued for the claim"),
                }
            }
        }
    }
}

/// Everything a write could change: every task with its messages, and all build data.
async fn everything(store: &drydock_state_postgres::PgStore) -> (Vec<Task>, Vec<BuildData>) {
    (
        store.list_tasks(&TaskFilter::default()).await.unwrap(),
        store.build_data(&BuildDataQuery::default()).await.unwrap(),
    )
}

/// Whether a session other than `holder` waits for a lock `holder` holds.
async fn blocked_by(pool: &sqlx::PgPool, holder: i32) -> bool {
    drydock_state_testsupport::sql::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                        WHERE wait_event_type = 'Lock' AND $1 = ANY (pg_blocking_pids(pid)))",
    )
    .bind(holder)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A session of its own on the database at `url` (as another process would have), and its
/// backend pid, to tell who waits for whom.
async fn session(url: &str) -> (sqlx::PgConnection, i32) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let pid = drydock_state_testsupport::sql::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (conn, pid)
}

/// `instance-a` takes the free lease and claims a task it queues, fenced with its term:
/// the term, the claimed task and its claim.
async fn claimed_by_a(store: &drydock_state_postgres::PgStore) -> (i64, Task, Claim) {
    let term = match store.claim_lease("instance-a").await.unwrap() {
        LeaseOutcome::Held(lease) => lease.term,
        denied => panic!("instance-a takes the free lease: {denied:?}"),
    };
    store
        .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
        .await
        .unwrap();
    let claimed = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(term))
        .await
        .unwrap()
        .expect("the task just queued");
    let guard = claimed.claim().expect("a claimed task carries its claim");
    (term, claimed, guard)
}

/// One deterministic interleaving of a guarded write with a change of leader, in two
/// sessions. The takeover session locks the lease row (a takeover in progress); the
/// claimant's guarded write starts and is seen waiting on that lock; the takeover then hands
/// the lease to `instance-b` with a higher term and commits (`commit`), or gives up (rolls
/// back). Returns the write's outcome and whether the store changed.
async fn takeover_during_a_guarded_write(
    store: &Arc<drydock_state_postgres::PgStore>,
    url: &str,
    write: GuardedWrite,
    commit: bool,
) -> (Result<()>, bool) {
    use sqlx::Connection;
    let (_, claimed, guard) = claimed_by_a(store).await;
    // Work for a claim to take, had it gone through.
    store
        .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
        .await
        .unwrap();
    let before = everything(store).await;

    let (mut takeover, pid) = session(url).await;
    let mut tx = takeover.begin().await.unwrap();
    drydock_state_testsupport::sql::query(
        "SELECT term FROM drydock_state.active_instance FOR UPDATE",
    )
    .execute(&mut *tx)
    .await
    .unwrap();

    let writer = {
        let store = store.clone();
        let task = claimed.task_id;
        tokio::spawn(async move { write.run(&store, task, &guard).await })
    };
    let waited = Instant::now();
    while !blocked_by(store.pool(), pid).await {
        assert!(
            !writer.is_finished(),
            "{write:?} finished without waiting for the lease row a takeover holds: \
             its fence is not checked under the lease's lock"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "{write:?} never waited for the lease row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    if commit {
        drydock_state_testsupport::sql::query(
            "UPDATE drydock_state.active_instance SET instance_id = 'instance-b', term = term + 1,
                 acquired_at = now(), renewed_at = now(), expires_at = now() + interval '1 hour'",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    let outcome = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the write finishes once the takeover does")
        .unwrap();
    let changed = everything(store).await != before;
    // Hand the lease back to nobody, for the next round.
    store.release_lease("instance-a").await.unwrap();
    store.release_lease("instance-b").await.unwrap();
    (outcome, changed)
}

/// A change of leader that commits while a fenced claimant's write waits for the lease row
/// refuses the write (`LeaseLost`) and leaves everything as it was, for every kind of guarded
/// write; the same interleaving with a takeover that gives up lets the write through. Two
/// sessions in a fixed order (the write is seen waiting on the lock before the takeover
/// commits), so nothing depends on timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_committed_during_a_guarded_write_refuses_it() {
    let (store, db) = common::fresh_store(&config(Duration::from_secs(3600), 4)).await;
    let store = Arc::new(store);
    for write in GuardedWrite::ALL {
        let (outcome, changed) =
            takeover_during_a_guarded_write(&store, &db.url, write, true).await;
        match outcome {
            Err(Error::LeaseLost(why)) => assert!(
                why.contains("does not hold the lease"),
                "{write:?}: the refusal says the lease is gone: {why}"
            ),
            other => panic!("{write:?} after a takeover: expected LeaseLost, got {other:?}"),
        }
        assert!(!changed, "{write:?}: a refused write changed nothing");

        let (outcome, changed) =
            takeover_during_a_guarded_write(&store, &db.url, write, false).await;
        outcome.unwrap_or_else(|e| panic!("{write:?} after an abandoned takeover: {e}"));
        assert!(changed, "{write:?}: an accepted write is stored");
    }
    println!(
        "fencing under takeover: {} kinds of guarded write, each refused when a takeover \
         commits while it waits for the lease row, accepted when the takeover gives up",
        GuardedWrite::ALL.len()
    );
}

/// The pid of the session waiting for a lock that `holder` holds (the first, if several).
async fn waiter_on(pool: &sqlx::PgPool, holder: i32) -> Option<i32> {
    drydock_state_testsupport::sql::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND $1 = ANY (pg_blocking_pids(pid)) LIMIT 1",
    )
    .bind(holder)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// A fenced write in flight holds the lease row against a change of holder but not against
/// the holder's renewal: while a guarded `set_status` has passed its fence and waits for its
/// task row (locked by a third session), the holder renews through `renew_lease` and through
/// `claim_lease` (the runtime's way), and a takeover's update of the row waits for the write.
/// Once the write commits, the takeover goes through. With the fence taken `FOR SHARE` (as
/// before migration `0007_fencing_key`) the renewals would wait behind the write, and without
/// the term as a key of the row the takeover would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewal_does_not_wait_for_fenced_writes_but_a_takeover_does() {
    use sqlx::Connection;
    let (store, db) = common::fresh_store(&config(Duration::from_secs(3600), 4)).await;
    let store = Arc::new(store);
    let (term, claimed, guard) = claimed_by_a(&store).await;

    // A third session holds the task row, so the guarded write stops after its fence.
    let (mut blocker, blocker_pid) = session(&db.url).await;
    let mut hold = blocker.begin().await.unwrap();
    drydock_state_testsupport::sql::query(
        "SELECT 1 FROM drydock_state.tasks WHERE task_id = $1 FOR UPDATE",
    )
    .bind(claimed.task_id.0)
    .execute(&mut *hold)
    .await
    .unwrap();
    let writer = {
        let store = store.clone();
        let task = claimed.task_id;
        tokio::spawn(async move {
            store
                .set_status(task, TaskStatus::Complete, Some(&guard))
                .await
        })
    };
    let waited = Instant::now();
    let writer_pid = loop {
        if let Some(pid) = waiter_on(store.pool(), blocker_pid).await {
            break pid;
        }
        assert!(!writer.is_finished(), "the write waits for the task row");
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the write never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The holder renews both ways while the write holds its fence.
    for claim in [false, true] {
        let how = if claim { "claim_lease" } else { "renew_lease" };
        let renewal = async {
            if claim {
                store.claim_lease("instance-a").await
            } else {
                store.renew_lease("instance-a").await
            }
        };
        let renewal = tokio::time::timeout(Duration::from_secs(20), renewal)
            .await
            .unwrap_or_else(|_| panic!("{how} waited for a fenced write in flight"));
        match renewal.unwrap() {
            LeaseOutcome::Held(lease) => assert_eq!(lease.term, term, "{how} keeps the term"),
            denied => panic!("{how} by the holder: {denied:?}"),
        }
    }

    // A takeover's update of the row waits for the write's fence.
    let (mut takeover, takeover_pid) = session(&db.url).await;
    let taker = tokio::spawn(async move {
        drydock_state_testsupport::sql::query(
            "UPDATE drydock_state.active_instance SET instance_id = 'instance-b', term = term + 1,
                 acquired_at = now(), renewed_at = now(), expires_at = now() + interval '1 hour'",
        )
        .execute(&mut takeover)
        .await
        .map(|done| done.rows_affected())
    });
    let waited = Instant::now();
    while waiter_on(store.pool(), writer_pid).await != Some(takeover_pid) {
        assert!(
            !taker.is_finished(),
            "a takeover committed while a fenced write was in flight: the fence does not \
             hold the lease row against a change of term"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the takeover never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    hold.rollback().await.unwrap();
    let written = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the write finishes once its task row is free")
        .unwrap();
    written.expect("the write's fence held: it lands under its term");
    let taken = tokio::time::timeout(Duration::from_secs(20), taker)
        .await
        .expect("the takeover finishes once the write commits")
        .unwrap()
        .unwrap();
    assert_eq!(taken, 1, "the takeover went through after the write");
    match store.current_lease().await.unwrap() {
        Some(lease) => assert_eq!(
            (lease.instance_id.as_str(), lease.term),
            ("instance-b", term + 1)
        ),
        None => panic!("instance-b holds the lease"),
    }
}

/// A claimer waiting in `wait_for_queued` wakes as soon as another instance (another pool, as
/// another process would be) queues a task, long before its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_claimer_wakes_when_another_instance_queues() {
    const ROUNDS: usize = 10;
    let max_wait = Duration::from_secs(30);
    let (waiter, db) = common::fresh_store(&config(Duration::from_secs(60), 2)).await;
    let waiter = Arc::new(waiter);
    let other =
        drydock_state_postgres::PgStore::connect(&db.url, &config(Duration::from_secs(60), 2))
            .await
            .unwrap();
    // The first wait starts the listener; nothing is queued yet, so it times out at once.
    waiter
        .wait_for_queued(Duration::from_millis(1))
        .await
        .unwrap();

    let mut latencies = Vec::new();
    for _ in 0..ROUNDS {
        let waiting = {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                waiter.wait_for_queued(max_wait).await.unwrap();
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued_at = Instant::now();
        other
            .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
            .await
            .unwrap();
        let woke_at = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken by the notification, not the 30 s poll")
            .unwrap();
        latencies.push(woke_at.saturating_duration_since(queued_at));
        assert!(
            waiter
                .claim_next(&ClaimRequest::new("waiter"))
                .await
                .unwrap()
                .is_some(),
            "the wake-up was for a real task"
        );
    }
    latencies.sort();
    println!(
        "wait_for_queued: {ROUNDS} wake-ups across pools, median {:?}, max {:?} (max_wait {max_wait:?})",
        latencies[ROUNDS / 2],
        latencies[ROUNDS - 1]
    );
}
