//! Load: 16 claimers in 2 processes drain a queue on a real PostgreSQL; each task is claimed
//! exactly once and none is left.
//!
//! The task count comes from `DRYDOCK_LOAD_TASKS` (default 4,000, the normal suite). The full
//! run of 100,000 claims:
//!
//! ```text
//! DRYDOCK_LOAD_TASKS=100000 cargo test --release -p drydock-state-postgres --test load -- --nocapture
//! ```
//!
//! The second process re-executes this test binary to run `child_claimers` (told what to do
//! through environment variables); `child_claimers` does nothing when run without them.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::claims;

/// How many tasks to queue and claim.
const TASKS_VAR: &str = "DRYDOCK_LOAD_TASKS";
const DEFAULT_TASKS: usize = 4_000;
/// Claimers per process; two processes.
const CLAIMERS_PER_PROCESS: usize = 8;

/// The database the child claims from.
const CHILD_URL: &str = "DRYDOCK_PG_LOAD_CHILD_URL";
/// A file whose appearance tells the child to start claiming.
const CHILD_GO: &str = "DRYDOCK_PG_LOAD_CHILD_GO";
/// Prefix of the line the child prints for each task it claimed.
const CLAIMED: &str = "drydock-claimed ";
/// The line the child prints once its store is open and it waits for the go file.
const READY: &str = "drydock-child-ready";

fn task_count() -> usize {
    match std::env::var(TASKS_VAR) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{TASKS_VAR} must be a number of tasks, not {v:?}")),
        Err(_) => DEFAULT_TASKS,
    }
}

fn config() -> Config {
    let mut config = with_grace(Duration::from_secs(60));
    config.database.pool_size = CLAIMERS_PER_PROCESS as u32;
    config.database.pool_overflow = 2;
    config
}

/// Queues `n` `deploy_nodes` tasks with 16 concurrent creators, oldest first by `created`
/// (1 µs apart).
async fn queue(store: &Arc<PgStore>, n: usize) -> HashSet<TaskId> {
    claims::queue_spaced(
        store,
        "deploy_nodes",
        n,
        16,
        chrono::Duration::microseconds(1),
    )
    .await
}

/// `CLAIMERS_PER_PROCESS` claimers draining the queue; every claim is checked to be theirs.
async fn drain(store: &Arc<PgStore>, process: &str) -> Vec<Vec<TaskId>> {
    claims::drain_concurrently(store, &format!("{process}-claimer"), CLAIMERS_PER_PROCESS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_claimers_in_two_processes_claim_each_task_once() {
    let tasks = task_count();
    let db = common::fresh_database().await;
    let store = Arc::new(PgStore::connect(&db.url, &config()).await.expect("connect"));
    store.migrate().await.expect("migrate");
    let queued_at = Instant::now();
    let all = queue(&store, tasks).await;
    let queueing = queued_at.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "child_claimers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &db.url)
        .env(CHILD_GO, &go)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child process");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut claimed = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output");
            // libtest may print `test child_claimers ... ` ahead of the first line.
            if line.ends_with(READY) {
                let _ = ready_tx.send(());
            } else if let Some(at) = line.find(CLAIMED) {
                let id = &line[at + CLAIMED.len()..];
                claimed.push(id.parse::<TaskId>().expect("a claimed task id"));
            }
        }
        claimed
    });
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the child opens the store and reports ready");

    std::fs::write(&go, b"go").unwrap();
    let started = Instant::now();
    let parent = drain(&store, "parent").await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait for the child");
    let elapsed = started.elapsed();
    assert!(status.success(), "the child process failed: {status}");
    let from_child = reader.join().expect("child output reader");

    let per_parent_claimer: Vec<usize> = parent.iter().map(Vec::len).collect();
    let mut claimed: Vec<TaskId> = parent.into_iter().flatten().collect();
    let parent_claims = claimed.len();
    claimed.extend(from_child.iter().copied());
    claims::assert_each_once(&claimed, &all);
    claims::assert_nothing_queued(&*store).await;
    println!(
        "postgres load: {} tasks queued in {:.1} s; {} claims by {} claimers in 2 processes \
         (parent {parent_claims}, child {}) in {:.2} s = {:.0} claims/s; duplicates 0, \
         left 0 (parent's claimers: {per_parent_claimer:?})",
        tasks,
        queueing.as_secs_f64(),
        claimed.len(),
        2 * CLAIMERS_PER_PROCESS,
        from_child.len(),
        elapsed.as_secs_f64(),
        claimed.len() as f64 / elapsed.as_secs_f64(),
    );
}

/// The second process of `sixteen_claimers_in_two_processes_claim_each_task_once`. Without its
/// environment variables (a normal test run) it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_claimers() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let go = std::env::var_os(CHILD_GO).expect("go file");
    let store = Arc::new(PgStore::connect(&url, &config()).await.expect("connect"));
    println!("{READY}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mine = drain(&store, "child").await;
    let mut out = String::new();
    for id in mine.iter().flatten() {
        out.push_str(CLAIMED);
        out.push_str(&id.to_string());
        out.push('\n');
    }
    print!("{out}");
    eprintln!(
        "child: claimed {} ({:?} per claimer)",
        mine.iter().map(Vec::len).sum::<usize>(),
        mine.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
