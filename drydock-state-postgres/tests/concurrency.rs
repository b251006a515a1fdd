//! Concurrency on a real PostgreSQL: claimers racing for a queue, instances racing for the
//! lease, and fencing. Run with `--nocapture` to see the figures.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_testsupport::claims;
use rand::Rng;

fn config(grace: Duration, pool: u32) -> Config {
    let mut config = with_grace(grace);
    config.database.pool_size = pool;
    config.database.pool_overflow = 2;
    config
}

/// Queues `n` `deploy_nodes` tasks with 8 concurrent creators, oldest first by `created`.
async fn queue(store: &Arc<drydock_state_postgres::PgStore>, n: usize) -> HashSet<TaskId> {
    claims::queue(store, "deploy_nodes", n, 8).await
}

/// 8 concurrent claimers draining 2,000 queued tasks claim each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_drain_2000_tasks_exactly_once() {
    const TASKS: usize = 2000;
    const CLAIMERS: usize = 8;
    let (store, _db) = common::fresh_store(&config(Duration::from_secs(60), 10)).await;
    let store = Arc::new(store);
    let all = queue(&store, TASKS).await;

    let started = Instant::now();
    let per_claimer = claims::drain_concurrently(&store, "claimer", CLAIMERS).await;
    let elapsed = started.elapsed();
    let per_worker: Vec<usize> = per_claimer.iter().map(Vec::len).collect();
    let claimed: Vec<TaskId> = per_claimer.into_iter().flatten().collect();

    claims::assert_each_once(&claimed, &all);
    claims::assert_nothing_queued(&*store).await;
    let running = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), TASKS);
    assert!(running.iter().all(|t| t.claimed_at.is_some()));
    println!(
        "claim_next: {TASKS} tasks drained by {CLAIMERS} claimers in {:.3} s = {:.0} claims/s \
         (per claimer: {per_worker:?})",
        elapsed.as_secs_f64(),
        TASKS as f64 / elapsed.as_secs_f64()
    );
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

/// A leader claiming under its term while its lease lapses and another takes over: every task
/// it got was claimed before its lease expired (by the database's clock), and it is then
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_claims_stop_when_the_lease_lapses() {
    let grace = Duration::from_millis(300);
    let (store, _db) = common::fresh_store(&config(grace, 6)).await;
    let store = Arc::new(store);
    queue(&store, 400).await;
    let a = store.claim_lease("instance-a").await.unwrap();
    let a = a.held().unwrap().clone();

    let leader = {
        let store = store.clone();
        tokio::spawn(async move {
            let request = ClaimRequest::new("instance-a").fenced(a.term);
            let mut claimed = 0usize;
            loop {
                match store.claim_next(&request).await {
                    Ok(Some(_)) => claimed += 1,
                    Ok(None) => panic!("the queue ran dry before the lease lapsed"),
                    Err(Error::LeaseLost(_)) => return claimed,
                    Err(e) => panic!("claim_next: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let usurper = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                if let LeaseOutcome::Held(lease) = store.claim_lease("instance-b").await.unwrap() {
                    return lease;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let claimed = leader.await.unwrap();
    let b = usurper.await.unwrap();
    assert!(b.term > a.term);
    assert!(claimed > 0, "the leader claimed while it held the lease");
    let under_a = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(under_a.len(), claimed);
    for t in &under_a {
        assert_eq!(t.claim_term, Some(a.term));
        let at = t.claimed_at.unwrap();
        assert!(
            at < a.expires_at,
            "claimed at {at}, after the lease expired at {}",
            a.expires_at
        );
    }
    println!(
        "fencing under takeover: {claimed} tasks claimed under term {} before it lapsed; \
         term {} took over; no claim after expiry",
        a.term, b.term
    );
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
            .create_task(&Task::new("deploy_nodes").with_status(TaskStatus::Queued))
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
