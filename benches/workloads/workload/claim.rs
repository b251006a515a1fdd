//! W5 and the enqueue-to-claim latency: draining the queue with one and with eight claimers,
//! and how soon a waiting claimer gets a task just queued.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state::{
    ClaimRequest, Config, GuardedUpdate, NewTask, StateStore, TaskStatus, TaskUpdate,
};
use serde_json::json;

use crate::baseline::Baselines;
use crate::measure::{count_statements, create_many, rate};
use crate::report::{round3, Figure};
use crate::BenchResult;

/// What one drain measured.
struct Drained {
    claims_per_s: f64,
    duplicates: usize,
    unclaimed: usize,
    /// Mean latency of one `claim_next` call that claimed a task, and of one completion.
    claim_ms: f64,
    complete_ms: f64,
}

/// Drains the `n` queued tasks of `action` with `claimers` concurrent claimers, each claiming
/// then marking complete under its claim (the guarded write a worker makes).
async fn drain(
    store: Arc<dyn StateStore>,
    n: usize,
    action: &'static str,
    claimers: usize,
) -> Drained {
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let request = ClaimRequest::new(format!("bench-{w}")).actions([action]);
            let mut mine = Vec::new();
            let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
            loop {
                let at = Instant::now();
                let Some(t) = store.claim_next(&request).await.expect("claim") else {
                    break;
                };
                let claimed = Instant::now();
                let guard = t.claim().expect("a claimed task carries its claim");
                store
                    .set_status(t.task_id, TaskStatus::Complete, Some(&guard))
                    .await
                    .expect("complete");
                claiming += claimed - at;
                completing += claimed.elapsed();
                mine.push(t.task_id);
            }
            (mine, claiming, completing)
        }));
    }
    let mut all = Vec::new();
    let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
    for h in handles {
        let (mine, c, d) = h.await.expect("claimer");
        all.extend(mine);
        claiming += c;
        completing += d;
    }
    let elapsed = started.elapsed();
    let unique: HashSet<_> = all.iter().collect();
    let per_call = |d: Duration| d.as_secs_f64() * 1e3 / all.len().max(1) as f64;
    Drained {
        claims_per_s: rate(all.len(), elapsed),
        duplicates: all.len() - unique.len(),
        unclaimed: n - unique.len(),
        claim_ms: per_call(claiming),
        complete_ms: per_call(completing),
    }
}

/// The batch size of `W5_claim_batch_8`: each claimer claims this many tasks in one
/// `claim_batch` and completes them in one `update_tasks`.
const BATCH: usize = 250;

/// Drains the `n` queued tasks of `action` with `claimers` concurrent claimers of one
/// instance holding the lease: each claims up to [`BATCH`] tasks fenced with the term, then
/// completes them in one `update_tasks`, each under its own claim. Returns the drain and how
/// many completions were refused (none should be), whether the lease lapsed, and the
/// slowest renewal.
async fn drain_batched(
    store: Arc<dyn StateStore>,
    n: usize,
    action: &'static str,
    claimers: usize,
) -> (Drained, Batched) {
    const INSTANCE: &str = "bench-batch";
    let term = store
        .claim_lease(INSTANCE)
        .await
        .expect("claim the lease")
        .held()
        .expect("the bench's lease is free")
        .term;
    // The bench's grace period is 2 s: keep the lease while the drain runs, and record the
    // slowest renewal (on PostgreSQL before migration 0007 a renewal waited for the lease row
    // behind the claims' share locks).
    let slowest_renewal = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let renewer = {
        let (store, slowest) = (store.clone(), slowest_renewal.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let at = Instant::now();
                store.renew_lease(INSTANCE).await.expect("renew the lease");
                let took = at.elapsed();
                let mut slowest = slowest.lock().unwrap();
                *slowest = (*slowest).max(took);
            }
        })
    };
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..claimers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let request = ClaimRequest::new(INSTANCE).actions([action]).fenced(term);
            let (mut mine, mut refused, mut lost) = (Vec::new(), 0, false);
            let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
            loop {
                let at = Instant::now();
                let tasks = match store.claim_batch(&request, BATCH).await {
                    Ok(tasks) => tasks,
                    // The lease lapsed under the drain: reported, not retried.
                    Err(drydock_state::Error::LeaseLost(_)) => {
                        lost = true;
                        break;
                    }
                    Err(e) => panic!("claim: {e}"),
                };
                if tasks.is_empty() {
                    break;
                }
                let claimed = Instant::now();
                let done: Vec<GuardedUpdate> = tasks
                    .iter()
                    .map(|t| {
                        GuardedUpdate::new(
                            t.task_id,
                            TaskUpdate::new().status(TaskStatus::Complete),
                            t.claim(),
                        )
                    })
                    .collect();
                let outcomes = store.update_tasks(&done).await.expect("complete");
                refused += outcomes.iter().filter(|o| o.is_err()).count();
                claiming += claimed - at;
                completing += claimed.elapsed();
                mine.extend(tasks.iter().map(|t| t.task_id));
            }
            (mine, refused, lost, claiming, completing)
        }));
    }
    let (mut all, mut refused, mut lost) = (Vec::new(), 0, false);
    let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
    for h in handles {
        let (mine, r, l, c, d) = h.await.expect("claimer");
        all.extend(mine);
        refused += r;
        lost |= l;
        claiming += c;
        completing += d;
    }
    let elapsed = started.elapsed();
    renewer.abort();
    store
        .release_lease(INSTANCE)
        .await
        .expect("release the lease");
    // What the drain left (after a lapse): drained unfenced, so later workloads start empty.
    let rest = ClaimRequest::new("bench-batch-rest").actions([action]);
    while !store
        .claim_batch(&rest, BATCH)
        .await
        .expect("claim")
        .is_empty()
    {}
    let unique: HashSet<_> = all.iter().collect();
    // Per task, as W5's other drains report it.
    let per_task = |d: Duration| d.as_secs_f64() * 1e3 / all.len().max(1) as f64;
    let drained = Drained {
        claims_per_s: rate(all.len(), elapsed),
        duplicates: all.len() - unique.len(),
        unclaimed: n - unique.len(),
        claim_ms: per_task(claiming),
        complete_ms: per_task(completing),
    };
    let slowest = *slowest_renewal.lock().unwrap();
    (
        drained,
        Batched {
            refused,
            lost,
            slowest_renewal: slowest,
        },
    )
}

/// What only the batched drain reports.
struct Batched {
    /// Completions the store refused (none should be).
    refused: usize,
    /// Whether the lease lapsed during the drain (a claim came back `LeaseLost`).
    lost: bool,
    /// The slowest renewal of the lease during the drain.
    slowest_renewal: Duration,
}

/// W5: the drains, and the statements of one claim and its completion.
pub struct W5 {
    one: Drained,
    eight: Drained,
    batched: Drained,
    batch: Batched,
    statements: u64,
    counted: usize,
}

pub async fn w5_claim(store: &Arc<dyn StateStore>, s: usize) -> W5 {
    eprintln!("W5 claim...");
    let n = 2000 / s;
    create_many(store, n, "bench_w5a", TaskStatus::Queued).await;
    let w5_1 = drain(store.clone(), n, "bench_w5a", 1).await;
    // The statements of a claim and a completion, counted on a drain of their own (untimed).
    let counted = 100 / s.min(10);
    create_many(store, counted, "bench_w5c", TaskStatus::Queued).await;
    let (_, w5_1_statements) =
        count_statements(drain(store.clone(), counted, "bench_w5c", 1)).await;
    create_many(store, n, "bench_w5b", TaskStatus::Queued).await;
    let w5_8 = drain(store.clone(), n, "bench_w5b", 8).await;
    let batched_n = 20_000 / s;
    create_many(store, batched_n, "bench_w5d", TaskStatus::Queued).await;
    let (batched, batch) = drain_batched(store.clone(), batched_n, "bench_w5d", 8).await;
    W5 {
        one: w5_1,
        eight: w5_8,
        batched,
        batch,
        statements: w5_1_statements,
        counted,
    }
}

impl W5 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        let (w5_1, w5_8) = (&self.one, &self.eight);
        vec![
            Figure::rate(
                "W5_claim_1",
                w5_1.claims_per_s,
                "claims/s",
                "update_c1",
                base.update_c1,
            )
            .with("duplicates", json!(w5_1.duplicates))
            .with("unclaimed", json!(w5_1.unclaimed))
            .with(
                "statements_per_claim",
                json!(self.statements as f64 / self.counted as f64),
            )
            .with("claim_ms", json!(round3(w5_1.claim_ms)))
            .with("complete_ms", json!(round3(w5_1.complete_ms)))
            .target("0 duplicates", |_| {
                w5_1.duplicates == 0 && w5_1.unclaimed == 0
            }),
            Figure::rate(
                "W5_claim_8",
                w5_8.claims_per_s,
                "claims/s",
                "update_c8",
                base.update_c8,
            )
            .with("duplicates", json!(w5_8.duplicates))
            .with("unclaimed", json!(w5_8.unclaimed))
            .with("claim_ms", json!(round3(w5_8.claim_ms)))
            .with("complete_ms", json!(round3(w5_8.complete_ms)))
            .target(">= 0.5 x update_c8, 0 duplicates", |f| {
                f.at_least(0.5) && w5_8.duplicates == 0 && w5_8.unclaimed == 0
            }),
            Figure::rate(
                "W5_claim_batch_8",
                self.batched.claims_per_s,
                "claims/s",
                "update_c8",
                base.update_c8,
            )
            .with("batch", json!(BATCH))
            .with("duplicates", json!(self.batched.duplicates))
            .with("unclaimed", json!(self.batched.unclaimed))
            .with("refused_completions", json!(self.batch.refused))
            .with("lease_lapsed", json!(self.batch.lost))
            .with(
                "slowest_renewal_ms",
                json!(round3(self.batch.slowest_renewal.as_secs_f64() * 1e3)),
            )
            .with("claim_ms_per_task", json!(round3(self.batched.claim_ms)))
            .with(
                "complete_ms_per_task",
                json!(round3(self.batched.complete_ms)),
            )
            .target(
                ">= 3.0 x update_c8, 0 duplicates, every completion fenced",
                |f| {
                    f.at_least(3.0)
                        && self.batched.duplicates == 0
                        && self.batched.unclaimed == 0
                        && self.batch.refused == 0
                        && !self.batch.lost
                },
            ),
        ]
    }
}

/// The enqueue-to-claim latencies, in seconds, sorted.
pub struct Latency {
    latencies: Vec<f64>,
}

/// One claimer waits for queued tasks (`wait_for_queued`, as an idle orchestrator does); each
/// round queues one task and measures until the claimer has it.
pub async fn latency(
    store: &Arc<dyn StateStore>,
    s: usize,
    config: &Config,
) -> BenchResult<Latency> {
    eprintln!("enqueue-to-claim latency...");
    let rounds = 200 / s.min(4);
    // The PostgreSQL store starts its LISTEN connection on the first wait; a claimer that has
    // run for a while has it, so start it before measuring.
    store.wait_for_queued(Duration::from_millis(1)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let claimer = {
        let store = store.clone();
        let poll = config.leader.poll_interval;
        tokio::spawn(async move {
            let request = ClaimRequest::new("bench-latency").actions(["bench_latency"]);
            let mut claimed = 0;
            while claimed < rounds {
                match store.claim_next(&request).await.expect("claim") {
                    Some(t) => {
                        claimed += 1;
                        let _ = tx.send((t.task_id, Instant::now()));
                    }
                    None => store.wait_for_queued(poll).await.expect("wait"),
                }
            }
        })
    };
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        // Enqueue only once the claimer is waiting, as an idle orchestrator is.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = NewTask::new("bench_latency").with_status(TaskStatus::Queued);
        let enqueued = Instant::now();
        store.create_task(&t).await?;
        let (id, at) = rx.recv().await.expect("claimed");
        assert_eq!(id, t.task_id);
        latencies.push(at.duration_since(enqueued).as_secs_f64());
    }
    claimer.await?;
    latencies.sort_by(f64::total_cmp);
    Ok(Latency { latencies })
}

impl Latency {
    pub fn figures(&self, _: &Baselines) -> Vec<Figure> {
        let latencies = &self.latencies;
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        vec![
            Figure::seconds(
                "latency_enqueue_claim_p50",
                pct(0.5),
                "drydock_poll_10s",
                10.0,
            )
            .with("samples", json!(latencies.len()))
            .target("<= 5 ms", |f| f.value <= 0.005),
            Figure::seconds(
                "latency_enqueue_claim_p99",
                pct(0.99),
                "drydock_poll_10s",
                10.0,
            )
            .with("samples", json!(latencies.len())),
        ]
    }
}
