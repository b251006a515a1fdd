//! Database faults on a real PostgreSQL, under a running workload of claims, message appends,
//! task creation, lease renewals and an idle claimer waiting on `LISTEN`:
//!
//! * every server connection of the test database is killed (`pg_terminate_backend`) three
//!   times, on the tests' server;
//! * the server itself is stopped and started again: a throwaway cluster of this test's own
//!   (never the shared server).
//!
//! The workload re-sends what failed the way an application would: a claim with the same
//! claim id (which answers with the task the lost reply had claimed), a message or batch only
//! after reading the task's messages shows it did not land, a task creation with the same id.
//! The leading instance claims fenced work under its term with claim ids, stalls once so the
//! other takes over, and every new leader recovers the orphans of the old one.
//!
//! Afterwards: every write that was acknowledged is stored, once, and no re-send stored a
//! second copy; each writer's messages are stored in the order it wrote them; no claim is left
//! in doubt (a claim whose reply was lost is answered by its re-send, or, fenced, recovered by
//! the next leader); no task is handed out twice under one attempt and every fenced claim was
//! made under a term its claimant held; every failed call failed with a retryable error,
//! within the pool timeout plus a margin; the pool and the listener recover in the same process
//! (new calls succeed, an idle claimer is woken by a queued task long before its 60 s poll);
//! and the lease holders' views agree with the database (no two holders, and a holder that
//! believes it holds term T is the holder of term T). Run with `--nocapture` for the figures.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drydock_state_core::backend::now;
use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

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

/// One acknowledged claim: the task, who claimed it, under which term, its claim id and the
/// attempt it made.
#[derive(Clone, Debug)]
struct Claimed {
    task: TaskId,
    by: String,
    term: Option<i64>,
    claim_id: Uuid,
    attempt: i64,
}

/// What the workload was told: acknowledged writes, re-sends, writes left in doubt, failures.
#[derive(Default)]
struct Ledger {
    /// Claims acknowledged (a re-sent claim id's answer included).
    claims: Vec<Claimed>,
    /// Claims re-sent with their claim id after a retryable error.
    resent_claims: usize,
    /// Fenced claims whose re-send was refused with `LeaseLost`: the lost reply may have
    /// claimed a task, which the next leader must recover.
    fenced_in_doubt: usize,
    /// Fenced claims refused with `LeaseLost` (a deposed leader's late claims).
    fenced_out: usize,
    /// Recoveries run by new leaders: term, tasks recovered.
    recoveries: Vec<(i64, Vec<TaskId>)>,
    /// Messages stored: task, text (texts are unique). Acknowledged ones, and those whose
    /// append failed but a read showed stored.
    messages: Vec<(TaskId, String)>,
    /// Batches stored, the same way: all or none must be stored.
    batches: Vec<(TaskId, Vec<String>)>,
    /// Appends that failed yet were found stored by the read after the error (not re-sent).
    landed_despite_error: usize,
    /// Appends re-sent after an error and a read that showed them missing.
    resent_appends: usize,
    /// Writes whose outcome is still unknown (the re-sends gave up): messages, batches.
    doubtful_messages: Vec<(TaskId, String)>,
    doubtful_batches: Vec<(TaskId, Vec<String>)>,
    /// Tasks whose creation was acknowledged (a re-send's `Conflict` included: it landed).
    created: Vec<TaskId>,
    /// Creations re-sent after an error, and those found stored by the re-send's `Conflict`.
    resent_creates: usize,
    /// Each lease call: who, when, what it said (`None` for an error).
    lease_calls: Vec<(String, Instant, Option<LeaseOutcome>)>,
    /// When the idle claimer woke.
    wakes: Vec<Instant>,
    /// Successful calls, by operation and instant.
    successes: Vec<(&'static str, Instant)>,
    failures: Vec<Failure>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Runs one call, timing it and recording its success or failure (`LeaseLost` is an answer
/// a fenced call may get, not a fault, and is not recorded as a failure).
async fn call<T>(
    ledger: &Shared,
    op: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = fut.await;
    let took = started.elapsed();
    let mut ledger = ledger.lock().unwrap();
    match &result {
        Ok(_) => ledger.successes.push((op, Instant::now())),
        Err(Error::LeaseLost(_)) => {}
        Err(e) => ledger.failures.push(Failure {
            op,
            at: Instant::now(),
            took,
            retryable: e.is_retryable(),
            error: e.to_string(),
        }),
    }
    result
}

/// How long a writer keeps re-sending one write after the workload was told to stop: a write
/// still in doubt after this is reported as such.
const RESEND_DEADLINE: Duration = Duration::from_secs(20);

/// Appends `texts` (one message, or a batch when `batch`) to `task` with `guard` until they
/// are stored exactly once: after a retryable error the writer reads the task's messages and
/// re-sends only if the first text is not there (the texts are unique, so the read tells).
async fn append_once(
    store: &PgStore,
    ledger: &Shared,
    task: TaskId,
    texts: Vec<String>,
    batch: bool,
    guard: Option<&Claim>,
) {
    let deadline = Instant::now() + RESEND_DEADLINE;
    let messages: Vec<NewMessage> = texts.iter().map(NewMessage::info).collect();
    let mut resend = false;
    loop {
        if resend {
            ledger.lock().unwrap().resent_appends += 1;
        }
        let sent = if batch {
            call(
                ledger,
                "append_messages",
                store.append_messages(task, &messages, guard),
            )
            .await
            .map(|stored| assert_eq!(stored.len(), messages.len()))
        } else {
            call(
                ledger,
                "append_message",
                store.append_message(task, &messages[0], guard),
            )
            .await
            .map(drop)
        };
        let stored = match sent {
            Ok(()) => true,
            Err(e) if !e.is_retryable() => panic!("append to {task}: {e}"),
            Err(_) => {
                // Did it land? Ask until the store answers (or give up: in doubt).
                let mut found = None;
                while found.is_none() && Instant::now() < deadline {
                    match store.messages(task).await {
                        Ok(stored) => found = Some(stored.iter().any(|m| m.message == texts[0])),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                match found {
                    Some(true) => {
                        ledger.lock().unwrap().landed_despite_error += 1;
                        true
                    }
                    Some(false) if Instant::now() < deadline => {
                        resend = true;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    _ => {
                        let mut l = ledger.lock().unwrap();
                        if batch {
                            l.doubtful_batches.push((task, texts));
                        } else {
                            l.doubtful_messages.push((task, texts[0].clone()));
                        }
                        return;
                    }
                }
            }
        };
        assert!(stored);
        let mut l = ledger.lock().unwrap();
        if batch {
            l.batches.push((task, texts));
        } else {
            l.messages.push((task, texts[0].clone()));
        }
        return;
    }
}

/// Claims with `request` (which carries a new claim id), re-sending it with the same id after
/// a retryable error until it is answered: the answer is the task the first send claimed, if
/// it did. `Err` only for `LeaseLost` (a fenced claim by an instance that no longer leads).
async fn claim_once(
    store: &PgStore,
    ledger: &Shared,
    request: &ClaimRequest,
) -> Result<Option<Task>> {
    let deadline = Instant::now() + RESEND_DEADLINE;
    let mut resent = false;
    loop {
        match call(ledger, "claim_next", store.claim_next(request)).await {
            Ok(Some(task)) => {
                assert_eq!(
                    task.claimed_by.as_deref(),
                    Some(request.instance_id.as_str())
                );
                assert_eq!(task.claim_id, request.claim_id);
                ledger.lock().unwrap().claims.push(Claimed {
                    task: task.task_id,
                    by: request.instance_id.clone(),
                    term: request.term,
                    claim_id: request.claim_id.expect("claims carry an id"),
                    attempt: task.attempt,
                });
                return Ok(Some(task));
            }
            Ok(None) => return Ok(None),
            Err(Error::LeaseLost(why)) => {
                let mut l = ledger.lock().unwrap();
                l.fenced_out += 1;
                if resent {
                    l.fenced_in_doubt += 1;
                }
                return Err(Error::LeaseLost(why));
            }
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                resent = true;
                ledger.lock().unwrap().resent_claims += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("claim_next: {e}"),
        }
    }
}

/// Creates `task`, re-sending after a retryable error: a re-send answered `Conflict` found
/// the first one stored.
async fn create_once(store: &PgStore, ledger: &Shared, task: &NewTask) {
    let deadline = Instant::now() + RESEND_DEADLINE;
    let mut resent = false;
    loop {
        match call(ledger, "create_task", store.create_task(task)).await {
            Ok(_) => break,
            Err(Error::Conflict(_)) if resent => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                resent = true;
                ledger.lock().unwrap().resent_creates += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create_task: {e}"),
        }
    }
    ledger.lock().unwrap().created.push(task.task_id);
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

async fn queue(store: &PgStore, action: &'static str, n: usize) {
    let base = now() - chrono::Duration::hours(1);
    let mut creators = Vec::new();
    for chunk in 0..4 {
        let store = store.clone();
        creators.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(4) {
                let t = NewTask::new(action)
                    .with_status(TaskStatus::Queued)
                    .with_created(base + chrono::Duration::milliseconds(i as i64));
                store.create_task(&t).await.expect("create_task");
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
}

/// The actions the plain claimers take, and the one the leader claims fenced.
const PLAIN_ACTIONS: [&str; 2] = ["deploy_nodes", "prepare_nodes"];
const FENCED_ACTION: &str = "fenced_work";

/// The workload's actors, running until `stop` is set. `logs` are running tasks (with the
/// claim their appenders write under) that collect the appenders' messages.
fn start_workload(
    store: &PgStore,
    ledger: &Shared,
    stop: &Arc<AtomicBool>,
    logs: &[(TaskId, Claim)],
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut actors = Vec::new();
    // Four claimers, unfenced, with a claim id per claim; each notes its claim on the task
    // under the claim's guard.
    for w in 0..4 {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            let me = format!("claimer-{w}");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let request = ClaimRequest::new(&me)
                    .actions(PLAIN_ACTIONS)
                    .with_claim_id(Uuid::new_v4());
                if let Ok(Some(task)) = claim_once(&store, &ledger, &request).await {
                    n += 1;
                    let guard = task.claim();
                    let text = format!("{me} claimed it ({n})");
                    append_once(
                        &store,
                        &ledger,
                        task.task_id,
                        vec![text],
                        false,
                        guard.as_ref(),
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    // Two appenders writing to long-running tasks under their claims, one message or a batch
    // of three at a time, numbered so that each one's order can be checked.
    for a in 0..2 {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        let logs = logs.to_vec();
        actors.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (task, guard) = &logs[n % logs.len()];
                if n % 4 == 0 {
                    let texts: Vec<String> = (0..3)
                        .map(|k| format!("appender-{a} batch {n}.{k}"))
                        .collect();
                    append_once(&store, &ledger, *task, texts, true, Some(guard)).await;
                } else {
                    let text = format!("appender-{a} message {n}");
                    append_once(&store, &ledger, *task, vec![text], false, Some(guard)).await;
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
                let t = NewTask::new("prepare_nodes").with_status(TaskStatus::Queued);
                create_once(&store, &ledger, &t).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    // Two instances contending for the lease: renew while holding, claim otherwise. After an
    // error an instance does not know whether it holds the lease, so it renews (a renewal
    // takes nothing it does not hold). The leader recovers the orphans of older terms once
    // per term, then claims fenced work under its term with a claim id. Each instance stalls
    // once, past the grace period, after leading for a while: the other takes over and
    // recovers its fenced claims, and its first claim on waking is a late one.
    for i in ["instance-a", "instance-b"] {
        let (store, ledger, stop) = (store.clone(), ledger.clone(), stop.clone());
        actors.push(tokio::spawn(async move {
            let mut holding = false;
            let mut recovered_term = None;
            let mut led_rounds = 0;
            let mut stalled = false;
            while !stop.load(Ordering::Relaxed) {
                let outcome = if holding {
                    call(&ledger, "renew_lease", store.renew_lease(i)).await
                } else {
                    call(&ledger, "claim_lease", store.claim_lease(i)).await
                }
                .ok();
                if let Some(o) = &outcome {
                    holding = o.held().is_some();
                    if let Some(lease) = o.held() {
                        assert_eq!(lease.instance_id, i);
                    }
                }
                ledger.lock().unwrap().lease_calls.push((
                    i.to_string(),
                    Instant::now(),
                    outcome.clone(),
                ));
                if let Some(LeaseOutcome::Held(lease)) = outcome {
                    let term = lease.term;
                    if recovered_term != Some(term) {
                        let deadline = Instant::now() + RESEND_DEADLINE;
                        loop {
                            match call(
                                &ledger,
                                "recover_orphans",
                                store.recover_orphans(term, OrphanPolicy::Requeue),
                            )
                            .await
                            {
                                Ok(ids) => {
                                    ledger.lock().unwrap().recoveries.push((term, ids));
                                    recovered_term = Some(term);
                                    break;
                                }
                                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                                    tokio::time::sleep(Duration::from_millis(50)).await
                                }
                                Err(e) => panic!("recover_orphans: {e}"),
                            }
                        }
                    }
                    let request = ClaimRequest::new(i)
                        .actions([FENCED_ACTION])
                        .fenced(term)
                        .with_claim_id(Uuid::new_v4());
                    if claim_once(&store, &ledger, &request).await.is_err() {
                        holding = false;
                    }
                    led_rounds += 1;
                    if led_rounds >= 15 && !stalled {
                        stalled = true;
                        let until = Instant::now() + GRACE + Duration::from_millis(500);
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        // The late claim of a leader that stalled: refused if another took over.
                        let late = ClaimRequest::new(i)
                            .actions([FENCED_ACTION])
                            .fenced(term)
                            .with_claim_id(Uuid::new_v4());
                        let _ = claim_once(&store, &ledger, &late).await;
                    }
                }
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

/// Each writer's messages on one task, in stored (sequence) order, are in the order it wrote
/// them: `appender-A message N` and `appender-A batch N.K` rise in `(N, K)`.
fn assert_each_writers_order(label: &str, task: &Task) {
    let mut last: HashMap<&str, (usize, usize)> = HashMap::new();
    for m in &task.result.details.message_list {
        let Some((writer, rest)) = m.message.split_once(' ') else {
            continue;
        };
        if !writer.starts_with("appender-") {
            continue;
        }
        let key = match rest.split_once(' ') {
            Some(("message", n)) => (n.parse().unwrap(), 0),
            Some(("batch", nk)) => {
                let (n, k) = nk.split_once('.').unwrap();
                (n.parse().unwrap(), k.parse().unwrap())
            }
            _ => panic!("{label}: unexpected message {:?}", m.message),
        };
        if let Some(before) = last.insert(writer, key) {
            assert!(
                before < key,
                "{label}: {writer}'s messages on {} are stored out of the order written: \
                 {before:?} before {key:?}",
                task.task_id
            );
        }
    }
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
    queue(&store, "deploy_nodes", 1500).await;
    queue(&store, FENCED_ACTION, 600).await;
    // The appenders' tasks: claimed (unfenced) before the workload starts, so they run.
    let mut logs = Vec::new();
    for _ in 0..8 {
        let t = NewTask::new("log_sink").with_status(TaskStatus::Queued);
        store.create_task(&t).await.unwrap();
        let claimed = store
            .claim_next(&ClaimRequest::new("appender").actions(["log_sink"]))
            .await
            .unwrap()
            .expect("the log task just queued");
        logs.push((claimed.task_id, claimed.claim().unwrap()));
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
    // The terms each instance was told it held.
    let mut holder_of: HashMap<i64, &str> = HashMap::new();
    for (i, _, o) in &ledger.lease_calls {
        if let Some(LeaseOutcome::Held(l)) = o {
            holder_of.insert(l.term, i.as_str());
        }
    }
    let mut handed: HashMap<(TaskId, i64), &Claimed> = HashMap::new();
    let acknowledged_ids: HashSet<Uuid> = ledger.claims.iter().map(|c| c.claim_id).collect();
    for c in &ledger.claims {
        let previous = handed.insert((c.task, c.attempt), c);
        assert!(
            previous.is_none(),
            "{label}: task {} was handed out twice under attempt {}: {c:?} and {previous:?}",
            c.task,
            c.attempt
        );
        let t = by_id
            .get(&c.task)
            .unwrap_or_else(|| panic!("{label}: claimed task {} is gone", c.task));
        match c.term {
            None => {
                // Unfenced claims are never recovered: the task still carries the claim.
                assert_eq!(
                    t.status,
                    TaskStatus::Running,
                    "{label}: claimed task {}",
                    c.task
                );
                assert_eq!(
                    (t.claimed_by.as_deref(), t.claim_id, t.attempt),
                    (Some(c.by.as_str()), Some(c.claim_id), c.attempt),
                    "{label}: claimed task {}",
                    c.task
                );
            }
            Some(term) => {
                assert_eq!(
                    holder_of.get(&term).copied(),
                    Some(c.by.as_str()),
                    "{label}: {} claimed {} under term {term}, which it was never told it held",
                    c.by,
                    c.task
                );
                assert!(
                    t.attempt >= c.attempt,
                    "{label}: the attempt never goes down"
                );
                if t.claim_id == Some(c.claim_id) {
                    assert_eq!(
                        (t.claimed_by.as_deref(), t.claim_term, t.attempt),
                        (Some(c.by.as_str()), Some(term), c.attempt),
                        "{label}: fenced claim of {}",
                        c.task
                    );
                }
            }
        }
    }
    // Claims whose reply was lost and never answered by a re-send: an unfenced one is lost
    // (stranded running), a fenced one waits for the next leader's recovery (checked below).
    let unanswered = |t: &&Task| {
        t.status.is_live()
            && t.claimed_by.is_some()
            && t.claim_id.is_some_and(|id| !acknowledged_ids.contains(&id))
    };
    let lost_claims: Vec<TaskId> = all
        .iter()
        .filter(unanswered)
        .filter(|t| t.claim_term.is_none())
        .map(|t| t.task_id)
        .collect();
    assert!(
        lost_claims.is_empty(),
        "{label}: claims in doubt, never reconciled by their re-sent claim id: {lost_claims:?}"
    );
    let fenced_unanswered: Vec<TaskId> = all
        .iter()
        .filter(unanswered)
        .filter(|t| t.claim_term.is_some())
        .map(|t| t.task_id)
        .collect();
    // Each recovery left its message on every task it recovered.
    let orphans_recovered: usize = ledger.recoveries.iter().map(|(_, ids)| ids.len()).sum();
    for (term, ids) in &ledger.recoveries {
        for id in ids {
            let t = by_id[id];
            let note = format!("leadership passed to term {term}; requeued");
            assert!(
                t.result
                    .details
                    .message_list
                    .iter()
                    .any(|m| m.message.contains(&note)),
                "{label}: task {id} recovered under term {term} without its orphan message"
            );
        }
    }
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
    // Nothing stored twice: every text is unique, re-sends included.
    let duplicated: usize = stored
        .values()
        .map(|texts| {
            let mut seen = HashSet::new();
            texts.iter().filter(|t| !seen.insert(**t)).count()
        })
        .sum();
    assert_eq!(duplicated, 0, "{label}: {duplicated} messages stored twice");
    // Each appender's messages are stored in the order it wrote them.
    for t in &all {
        assert_each_writers_order(label, t);
    }
    let fenced_claims = ledger.claims.iter().filter(|c| c.term.is_some()).count();
    let acknowledged = ledger.claims.len()
        + ledger.messages.len()
        + ledger.batches.len() * 3
        + ledger.created.len();

    // ---- the lease: no two holders, and each holder's view agrees with the database ------
    let lease_summary = check_lease(label, &store, &ledger.lease_calls).await;

    // ---- fenced claims in doubt: the next leader recovers them -------------------------
    for i in ["instance-a", "instance-b"] {
        settled("release_lease", || store.release_lease(i)).await;
    }
    let last = settled("claim_lease", || store.claim_lease("instance-z")).await;
    let last = last.held().expect("the released lease is free").term;
    let finally: HashSet<TaskId> = settled("recover_orphans", || {
        store.recover_orphans(last, OrphanPolicy::Requeue)
    })
    .await
    .into_iter()
    .collect();
    for id in &fenced_unanswered {
        assert!(
            finally.contains(id),
            "{label}: fenced claim in doubt of {id} not recovered by the next leader"
        );
    }
    let running_fenced = TaskFilter {
        action: Some(FENCED_ACTION.into()),
        status: Some(TaskStatus::Running),
        ..Default::default()
    };
    let fenced_running = settled("list_tasks", || store.list_tasks(&running_fenced)).await;
    assert!(
        fenced_running.is_empty(),
        "{label}: fenced work still running after the last recovery: {}",
        fenced_running.len()
    );

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
        let t = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
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
        "{label}: ran {:.1} s, outages {:?}; {} acknowledged writes ({} claims of which {} fenced, {} messages, {} batches, \
         {} tasks) all stored once; re-sent after a retryable error: {} claims (same claim id), {} appends (after a read \
         showed them missing), {} creates; {} failed appends found stored and not re-sent; 0 duplicated; claims in doubt: \
         0 unfenced left unreconciled, {} fenced ({} re-sends refused LeaseLost) recovered by the next leader; \
         {} late fenced claims refused LeaseLost; {} recoveries by new leaders took {} tasks; still in doubt: {} messages \
         ({} found stored), {} batches (all-or-none); {} failures, all retryable, slowest {:?} (bound {:?}), by op {:?}, \
         last {:?} after the outage ended; first success after the outage ended: {:?}; idle claimer's first wake after: \
         {:?}; LISTEN wake latency after: {:?}; lease: {}",
        ran.as_secs_f64(),
        outages.iter().map(|o| o.ended - o.began).collect::<Vec<_>>(),
        acknowledged,
        ledger.claims.len(),
        fenced_claims,
        ledger.messages.len(),
        ledger.batches.len(),
        ledger.created.len(),
        ledger.resent_claims,
        ledger.resent_appends,
        ledger.resent_creates,
        ledger.landed_despite_error,
        fenced_unanswered.len(),
        ledger.fenced_in_doubt,
        ledger.fenced_out,
        ledger.recoveries.len(),
        orphans_recovered,
        ledger.doubtful_messages.len(),
        doubtful_stored,
        ledger.doubtful_batches.len(),
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
    let t = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
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
