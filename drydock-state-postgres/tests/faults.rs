//! Database faults on a real PostgreSQL, under a running workload of claims, message appends,
//! task creation, lease renewals and an idle claimer waiting on `LISTEN`:
//!
//! * every server connection of the test database is killed (`pg_terminate_backend`) three
//!   times, on the tests' server;
//! * the server itself is stopped and started again: a throwaway cluster of this test's own
//!   (never the shared server).
//!
//! Afterwards: every write that was acknowledged is stored; every failed call failed with a
//! retryable error, within the pool timeout plus a margin; the pool and the listener recover in
//! the same process (new calls succeed, an idle claimer is woken by a queued task long before
//! its 60 s poll); and the lease holders' views agree with the database (no two holders, and a
//! holder that believes it holds term T is the holder of term T). Run with `--nocapture` for
//! the figures.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;
use sqlx::{Connection, PgConnection};

/// Kills every session of database `$1` but the caller's; returns how many were signalled.
const KILL_DATABASE_SESSIONS: &str = "
SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()";

/// The database's clock, to judge whether a lease a holder saw has lapsed since.
const DATABASE_NOW: &str = "SELECT now()";

/// The test's pool timeout: how long a call may wait for a connection before failing.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// A failing call must return within the pool timeout plus this: a bound on a hang, not a
/// performance figure (a call may make a round trip before the one that waits and fails).
const HANG_MARGIN: Duration = Duration::from_secs(3);

/// The poll interval of the idle claimer: a wake-up much sooner than this came from `LISTEN`.
const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The lease's grace period: longer than a kill, about as long as a restart.
const GRACE: Duration = Duration::from_secs(3);

fn config() -> Config {
    let mut config = with_grace(GRACE);
    config.database.pool_size = 8;
    config.database.pool_overflow = 2;
    config.database.pool_timeout = POOL_TIMEOUT;
    config.leader.poll_interval = POLL_INTERVAL;
    config
}

/// One call that failed.
#[derive(Debug)]
struct Failure {
    op: &'static str,
    at: Instant,
    took: Duration,
    retryable: bool,
    error: String,
}

/// What the workload was told: acknowledged writes, writes whose outcome is unknown, failures.
#[derive(Default)]
struct Ledger {
    /// Claims acknowledged: task, claimer.
    claims: Vec<(TaskId, String)>,
    /// Messages acknowledged: task, text (texts are unique).
    messages: Vec<(TaskId, String)>,
    /// Messages whose append failed: they may or may not be stored (the commit's outcome is
    /// unknown when the connection dies after the server committed).
    doubtful_messages: Vec<(TaskId, String)>,
    /// Batches acknowledged, and batches whose append failed: all or none must be stored.
    batches: Vec<(TaskId, Vec<String>)>,
    doubtful_batches: Vec<(TaskId, Vec<String>)>,
    /// Tasks whose creation was acknowledged, and those whose creation failed.
    created: Vec<TaskId>,
    doubtful_created: Vec<TaskId>,
    /// Each lease call: who, when, what it said (`None` for an error).
    lease_calls: Vec<(String, Instant, Option<LeaseOutcome>)>,
    /// When the idle claimer woke.
    wakes: Vec<Instant>,
    /// Successful calls, by operation and instant.
    successes: Vec<(&'static str, Instant)>,
    failures: Vec<Failure>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Runs one call, timing it and recording its success or failure.
async fn call<T>(
    ledger: &Shared,
    op: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Option<T> {
    let started = Instant::now();
    let result = fut.await;
    let took = started.elapsed();
    let mut ledger = ledger.lock().unwrap();
    match result {
        Ok(value) => {
            ledger.successes.push((op, Instant::now()));
            Some(value)
        }
        Err(e) => {
            ledger.failures.push(Failure {
                op,
                at: Instant::now(),
                took,
                retryable: e.is_retryable(),
                error: e.to_string(),
            });
            None
        }
    }
}

/// Retries a call until it succeeds (for the reads after the workload, when a pooled
/// connection killed but not used since may still fail once); panics on a permanent error.
async fn settled<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

async fn queue(store: &PgStore, n: usize) {
    let base = now() - chrono::Duration::hours(1);
    let mut creators = Vec::new();
    for chunk in 0..4 {
        let store = store.clone();
        creators.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(4) {
                let mut t = Task::new("deploy_nodes").with_status(TaskStatus::Queued);
                t.created = base + chrono::Duration::milliseconds(i as i64);
                store.create_task(&t).await.expect("create_task");
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
}

/// The workload's actors, running until `stop` is set.
fn start_workload(
    store: &PgStore,
    ledger: &Shared,
    stop: &Arc<AtomicBool>,
    logs: &[TaskId],
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut actors = Vec::new();
    // Four claimers; each notes its claim on the task.
    for w in 0..4 {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            let me = format!("claimer-{w}");
            let request = ClaimRequest::new(&me);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(Some(task)) =
                    call(&ledger, "claim_next", store.claim_next(&request)).await
                {
                    assert_eq!(task.claimed_by.as_deref(), Some(me.as_str()));
                    ledger
                        .lock()
                        .unwrap()
                        .claims
                        .push((task.task_id, me.clone()));
                    n += 1;
                    let text = format!("{me} claimed it ({n})");
                    let msg = NewMessage::info(&text);
                    match call(
                        &ledger,
                        "append_message",
                        store.append_message(task.task_id, &msg),
                    )
                    .await
                    {
                        Some(_) => ledger.lock().unwrap().messages.push((task.task_id, text)),
                        None => ledger
                            .lock()
                            .unwrap()
                            .doubtful_messages
                            .push((task.task_id, text)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    // Two appenders writing to long-running tasks, one message or a batch of three at a time.
    for a in 0..2 {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        let logs = logs.to_vec();
        actors.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let task = logs[n % logs.len()];
                if n % 4 == 0 {
                    let texts: Vec<String> = (0..3)
                        .map(|k| format!("appender-{a} batch {n}.{k}"))
                        .collect();
                    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::info).collect();
                    match call(
                        &ledger,
                        "append_messages",
                        store.append_messages(task, &batch),
                    )
                    .await
                    {
                        Some(stored) => {
                            assert_eq!(stored.len(), 3);
                            ledger.lock().unwrap().batches.push((task, texts));
                        }
                        None => ledger.lock().unwrap().doubtful_batches.push((task, texts)),
                    }
                } else {
                    let text = format!("appender-{a} message {n}");
                    match call(
                        &ledger,
                        "append_message",
                        store.append_message(task, &NewMessage::info(&text)),
                    )
                    .await
                    {
                        Some(_) => ledger.lock().unwrap().messages.push((task, text)),
                        None => ledger.lock().unwrap().doubtful_messages.push((task, text)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // One creator of queued tasks (which also wakes the idle claimer).
    {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Task::new("prepare_nodes").with_status(TaskStatus::Queued);
                match call(&ledger, "create_task", store.create_task(&t)).await {
                    Some(()) => ledger.lock().unwrap().created.push(t.task_id),
                    None => ledger.lock().unwrap().doubtful_created.push(t.task_id),
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    // Two instances contending for the lease: renew while holding, claim otherwise. After an
    // error an instance does not know whether it holds the lease, so it renews (a renewal
    // takes nothing it does not hold).
    for i in ["instance-a", "instance-b"] {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            let mut holding = false;
            while !stop.load(Ordering::Relaxed) {
                let outcome = if holding {
                    call(&ledger, "renew_lease", store.renew_lease(i)).await
                } else {
                    call(&ledger, "claim_lease", store.claim_lease(i)).await
                };
                if let Some(o) = &outcome {
                    holding = o.held().is_some();
                    if let Some(lease) = o.held() {
                        assert_eq!(lease.instance_id, i);
                    }
                }
                ledger
                    .lock()
                    .unwrap()
                    .lease_calls
                    .push((i.to_string(), Instant::now(), outcome));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // The idle claimer, waiting on LISTEN with a 60 s poll.
    {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if tokio::time::timeout(
                    Duration::from_secs(1),
                    store.wait_for_queued(POLL_INTERVAL),
                )
                .await
                .is_ok()
                {
                    ledger.lock().unwrap().wakes.push(Instant::now());
                }
            }
        }));
    }
    actors
}

/// One outage: from when the fault was injected to when the server was whole again.
#[derive(Clone, Copy, Debug)]
struct Outage {
    began: Instant,
    ended: Instant,
}

/// Runs the workload on `store`, lets `fault` inject its outages, keeps going `after` the
/// last one, stops, and checks everything. Returns the printed summary.
async fn run_and_check<F, Fut>(label: &str, store: PgStore, fault: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Vec<Outage>>,
{
    queue(&store, 1500).await;
    let mut logs = Vec::new();
    for _ in 0..8 {
        let t = Task::new("deploy_nodes").with_status(TaskStatus::Running);
        store.create_task(&t).await.unwrap();
        logs.push(t.task_id);
    }
    // The listener is up before the faults begin.
    store
        .wait_for_queued(Duration::from_millis(1))
        .await
        .unwrap();

    let ledger: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let actors = start_workload(&store, &ledger, &stop, &logs);
    let outages = fault().await;
    let last_end = outages.iter().map(|o| o.ended).max().expect("an outage");
    // Run on after the last outage, long enough for the listener's backoff to reconnect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for a in actors {
        a.await.expect("no workload task panicked");
    }
    let ran = started.elapsed();
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();

    // ---- failures: retryable, and within the pool timeout plus a margin -----------------
    assert!(
        !ledger.failures.is_empty(),
        "{label}: the fault made no call fail; nothing was tested"
    );
    for f in &ledger.failures {
        assert!(
            f.retryable,
            "{label}: {} failed with a permanent error: {}",
            f.op, f.error
        );
        assert!(
            f.took <= POOL_TIMEOUT + HANG_MARGIN,
            "{label}: {} took {:?} to fail ({}), more than the pool timeout {:?} + {:?}",
            f.op,
            f.took,
            f.error,
            POOL_TIMEOUT,
            HANG_MARGIN
        );
    }
    let max_failure = ledger.failures.iter().map(|f| f.took).max().unwrap();
    let mut failed_ops: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &ledger.failures {
        *failed_ops.entry(f.op).or_default() += 1;
    }
    let last_failure = ledger.failures.iter().map(|f| f.at).max().unwrap();

    // ---- recovery: every kind of call succeeds again after the last outage --------------
    let mut recovered: BTreeMap<&str, Duration> = BTreeMap::new();
    for op in [
        "claim_next",
        "append_message",
        "append_messages",
        "create_task",
        "renew_lease",
    ] {
        let first = ledger
            .successes
            .iter()
            .filter(|(o, at)| *o == op && *at > last_end)
            .map(|(_, at)| *at)
            .min();
        let Some(first) = first else {
            // The lease may have changed hands instead of being renewed: claim_lease counts.
            if op == "renew_lease" {
                let claimed = ledger
                    .successes
                    .iter()
                    .any(|(o, at)| *o == "claim_lease" && *at > last_end);
                assert!(claimed, "{label}: no lease call succeeded after the outage");
                continue;
            }
            panic!("{label}: no {op} succeeded after the outage: the pool did not recover");
        };
        recovered.insert(op, first - last_end);
    }
    let wake_after = ledger
        .wakes
        .iter()
        .filter(|w| **w > last_end)
        .min()
        .map(|w| *w - last_end);

    // ---- acknowledged writes are stored -------------------------------------------------
    let every = TaskFilter::default();
    let all = settled("list_tasks", || store.list_tasks(&every)).await;
    let by_id: HashMap<TaskId, &Task> = all.iter().map(|t| (t.task_id, t)).collect();
    let mut claimed_by: HashMap<TaskId, &str> = HashMap::new();
    for (id, who) in &ledger.claims {
        let previous = claimed_by.insert(*id, who.as_str());
        assert!(
            previous.is_none(),
            "{label}: task {id} was handed to {who} and to {previous:?}"
        );
        let t = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{label}: claimed task {id} is gone"));
        assert_eq!(t.status, TaskStatus::Running, "{label}: claimed task {id}");
        assert_eq!(
            t.claimed_by.as_deref(),
            Some(who.as_str()),
            "{label}: claimed task {id}"
        );
    }
    // Claims whose acknowledgement was lost: running under a claimer that was not told. Each
    // is still one claim of one task (never requeued, never handed to another).
    let doubtful_claims = all
        .iter()
        .filter(|t| t.claimed_by.is_some() && !claimed_by.contains_key(&t.task_id))
        .count();
    let stored: HashMap<TaskId, Vec<&str>> = all
        .iter()
        .map(|t| {
            (
                t.task_id,
                t.result
                    .details
                    .message_list
                    .iter()
                    .map(|m| m.message.as_str())
                    .collect(),
            )
        })
        .collect();
    let count = |task: &TaskId, text: &str| {
        stored
            .get(task)
            .map_or(0, |m| m.iter().filter(|s| **s == text).count())
    };
    for (task, text) in &ledger.messages {
        assert_eq!(
            count(task, text),
            1,
            "{label}: acknowledged message {text:?} stored once"
        );
    }
    let mut doubtful_stored = 0;
    for (task, text) in &ledger.doubtful_messages {
        let n = count(task, text);
        assert!(n <= 1, "{label}: message {text:?} stored {n} times");
        doubtful_stored += n;
    }
    for (task, texts) in &ledger.batches {
        for text in texts {
            assert_eq!(
                count(task, text),
                1,
                "{label}: acknowledged batch message {text:?}"
            );
        }
    }
    for (task, texts) in &ledger.doubtful_batches {
        let n: usize = texts.iter().map(|t| count(task, t)).sum();
        assert!(
            n == 0 || n == texts.len(),
            "{label}: a failed batch was stored in part ({n} of {})",
            texts.len()
        );
    }
    for id in &ledger.created {
        assert!(
            by_id.contains_key(id),
            "{label}: acknowledged task {id} is missing"
        );
    }
    // Sequence order survived: each task's messages are in rising sequence.
    for t in &all {
        let seqs: Vec<i64> = t
            .result
            .details
            .message_list
            .iter()
            .map(|m| m.sequence)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{label}: messages of {} out of order",
            t.task_id
        );
    }
    let acknowledged = ledger.claims.len()
        + ledger.messages.len()
        + ledger.batches.len() * 3
        + ledger.created.len();

    // ---- the lease: no two holders, and each holder's view agrees with the database ------
    let lease_summary = check_lease(label, &store, &ledger.lease_calls).await;

    // ---- LISTEN works again: an idle claimer is woken by a queued task -------------------
    let mut latencies = Vec::new();
    for _ in 0..3 {
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store.wait_for_queued(POLL_INTERVAL).await.unwrap();
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued_at = Instant::now();
        let t = Task::new("deploy_nodes").with_status(TaskStatus::Queued);
        settled("create_task", || store.create_task(&t)).await;
        let woke = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap_or_else(|_| {
                panic!("{label}: the idle claimer was not woken by LISTEN after the outage")
            })
            .unwrap();
        latencies.push(woke.saturating_duration_since(queued_at));
    }

    let summary = format!(
        "{label}: ran {:.1} s, outages {:?}; {} acknowledged writes ({} claims, {} messages, {} batches, {} tasks) all stored, \
         0 lost, 0 duplicated; in doubt: {} claims (running, unacknowledged), {} of {} failed messages stored, {} failed batches \
         (all-or-none), {} failed creates; {} failures, all retryable, slowest {:?} (bound {:?}), by op {:?}, last {:?} after \
         the outage ended; first success after the outage ended: {:?}; idle claimer's first wake after: {:?}; LISTEN wake \
         latency after: {:?}; lease: {}",
        ran.as_secs_f64(),
        outages.iter().map(|o| o.ended - o.began).collect::<Vec<_>>(),
        acknowledged,
        ledger.claims.len(),
        ledger.messages.len(),
        ledger.batches.len(),
        ledger.created.len(),
        doubtful_claims,
        doubtful_stored,
        ledger.doubtful_messages.len(),
        ledger.doubtful_batches.len(),
        ledger.doubtful_created.len(),
        ledger.failures.len(),
        max_failure,
        POOL_TIMEOUT + HANG_MARGIN,
        failed_ops,
        last_failure.saturating_duration_since(last_end),
        recovered,
        wake_after,
        latencies,
        lease_summary,
    );
    println!("{summary}");
    summary
}

#[derive(Debug)]
struct Held {
    instance: String,
    term: i64,
    renewed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// Checks the lease calls: the `Held` intervals of different instances never overlap, one
/// instance per term, and each instance's last word agrees with the database now.
async fn check_lease(
    label: &str,
    store: &PgStore,
    calls: &[(String, Instant, Option<LeaseOutcome>)],
) -> String {
    let mut held: Vec<Held> = calls
        .iter()
        .filter_map(|(i, _, o)| o.as_ref()?.held().map(|l| (i, l)))
        .map(|(i, l)| Held {
            instance: i.clone(),
            term: l.term,
            renewed_at: l.renewed_at,
            expires_at: l.expires_at,
        })
        .collect();
    assert!(!held.is_empty(), "{label}: nobody ever held the lease");
    held.sort_by_key(|h| h.renewed_at);
    for (k, a) in held.iter().enumerate() {
        for b in &held[k + 1..] {
            if b.renewed_at >= a.expires_at {
                break;
            }
            assert_eq!(
                a.instance, b.instance,
                "{label}: two holders at once: {a:?} and {b:?}"
            );
        }
    }
    let mut holder_of: BTreeMap<i64, &str> = BTreeMap::new();
    for h in &held {
        let first = holder_of.entry(h.term).or_insert(&h.instance);
        assert_eq!(
            *first, h.instance,
            "{label}: term {} held by two instances",
            h.term
        );
    }
    let errors = calls.iter().filter(|(_, _, o)| o.is_none()).count();
    let denied = calls
        .iter()
        .filter(|(_, _, o)| matches!(o, Some(LeaseOutcome::Denied(_))))
        .count();

    // Each instance's last answer: if it says Held(T) and T has not lapsed by the database's
    // clock, the database says T is held by it.
    let current = settled("current_lease", || store.current_lease()).await;
    let db_now: DateTime<Utc> = settled("now", || async {
        sql::query_scalar(DATABASE_NOW)
            .fetch_one(store.pool())
            .await
            .map_err(|e| Error::unavailable("now", e))
    })
    .await;
    let mut believers = Vec::new();
    for instance in ["instance-a", "instance-b"] {
        let last = calls
            .iter()
            .rev()
            .find(|(i, _, o)| i == instance && o.is_some())
            .and_then(|(_, _, o)| o.clone());
        if let Some(LeaseOutcome::Held(lease)) = last {
            if lease.expires_at > db_now {
                let current = current.as_ref().unwrap_or_else(|| {
                    panic!("{label}: {instance} believes it holds term {} but the database has no live lease", lease.term)
                });
                assert_eq!(
                    (current.instance_id.as_str(), current.term),
                    (instance, lease.term),
                    "{label}: {instance} believes it holds term {}",
                    lease.term
                );
                believers.push(instance);
            }
        }
    }
    assert!(
        believers.len() <= 1,
        "{label}: both instances believe they hold the lease"
    );
    format!(
        "{} held outcomes, {denied} denials, {errors} errors, terms {:?}, no overlap; at the end {:?} holds it \
         (database: {:?})",
        held.len(),
        holder_of.keys().collect::<Vec<_>>(),
        believers,
        current.map(|l| (l.instance_id, l.term)),
    )
}

async fn kill_sessions(admin_url: &str, database: &str) -> i64 {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("admin connection");
    let killed: i64 = sql::query_scalar(KILL_DATABASE_SESSIONS)
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .expect("pg_terminate_backend");
    let _ = admin.close().await;
    killed
}

/// Every connection of the test database is killed three times, 1.5 s apart, under the
/// workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_lose_no_acknowledged_write_and_recover() {
    let db = common::fresh_database().await;
    let store = PgStore::connect(&db.url, &config()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let (admin_url, name) = (common::server_url().await, db.name.clone());
    let killed = Arc::new(Mutex::new(Vec::new()));
    let kills = killed.clone();
    run_and_check("kill", store, || async move {
        let mut outages = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let began = Instant::now();
            let n = kill_sessions(&admin_url, &name).await;
            kills.lock().unwrap().push(n);
            outages.push(Outage {
                began,
                ended: Instant::now(),
            });
        }
        outages
    })
    .await;
    let killed = killed.lock().unwrap().clone();
    println!("kill: sessions killed per round: {killed:?}");
    assert!(
        killed.iter().all(|n| *n > 0),
        "every round killed some sessions: {killed:?}"
    );
}

/// The server (a throwaway cluster of this test's own) is stopped (`-m fast`), left down for
/// a second longer than the pool timeout (and about as long as the lease's grace period) and
/// started again, under the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_server_loses_no_acknowledged_write_and_recovers() {
    let cluster = Arc::new(common::Cluster::start().await.unwrap_or_else(|why| {
        panic!(
            "this test restarts a PostgreSQL server of its own and needs the machine's PostgreSQL \
             binaries (initdb and pg_ctl under /usr/lib/postgresql/*/bin): {why}"
        )
    }));
    let db = common::fresh_database_on(&cluster.admin_url).await;
    let store = PgStore::connect(&db.url, &config()).await.expect("connect");
    store.migrate().await.expect("migrate");
    // A second instance that has not listened yet: its first wait comes during the outage.
    let late = PgStore::connect(&db.url, &config()).await.expect("connect");
    let late_in_outage = late.clone();
    let restarted = cluster.clone();
    let first_wait = Arc::new(Mutex::new(Duration::ZERO));
    let first_wait_seen = first_wait.clone();
    run_and_check("restart", store, || async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let began = Instant::now();
        let server = restarted.clone();
        tokio::task::spawn_blocking(move || server.stop_server("fast").expect("pg_ctl stop"))
            .await
            .unwrap();
        // Starting a listener against a server that is down must not hold the caller past
        // its max_wait.
        let t = Instant::now();
        late_in_outage
            .wait_for_queued(Duration::from_millis(500))
            .await
            .unwrap();
        *first_wait_seen.lock().unwrap() = t.elapsed();
        // Down for longer than the pool timeout: calls must give up, not wait it out.
        let down = POOL_TIMEOUT + Duration::from_secs(1);
        tokio::time::sleep(down.saturating_sub(began.elapsed())).await;
        let server = restarted.clone();
        tokio::task::spawn_blocking(move || server.start_server().expect("pg_ctl start"))
            .await
            .unwrap();
        vec![Outage {
            began,
            ended: Instant::now(),
        }]
    })
    .await;
    let first_wait = *first_wait.lock().unwrap();
    println!(
        "restart: a first wait_for_queued(500 ms) while the server was down took {first_wait:?}"
    );
    assert!(
        first_wait < Duration::from_millis(1500),
        "wait_for_queued(500 ms) took {first_wait:?} while the server was down"
    );
    // That instance's listener, whose first connection failed, listens once the server is back.
    let late = Arc::new(late);
    let waiter = {
        let late = late.clone();
        tokio::spawn(async move { late.wait_for_queued(POLL_INTERVAL).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Task::new("deploy_nodes").with_status(TaskStatus::Queued);
    settled("create_task", || late.create_task(&t)).await;
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("a listener that started while the server was down hears queued tasks later")
        .unwrap()
        .unwrap();
    drop(late);
    drop(db);
    drop(cluster);
}
