//! Load on one SQLite file: 4 processes with 4 claimers each drain a queue; each task is
//! claimed exactly once and none is left.
//!
//! The task count comes from `DRYDOCK_SQLITE_LOAD_TASKS` (default 2,000, the normal suite).
//! The full run of 20,000 claims:
//!
//! ```text
//! DRYDOCK_SQLITE_LOAD_TASKS=20000 cargo test --release -p drydock-state-sqlite --test load -- --nocapture
//! ```
//!
//! The other three processes re-execute this test binary to run `child_claimers` (told what
//! to do through environment variables); `child_claimers` does nothing when run without them.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::{Config, TaskId};
use drydock_state_sqlite::SqliteStore;
use drydock_state_testsupport::claims;

const TASKS_VAR: &str = "DRYDOCK_SQLITE_LOAD_TASKS";
const DEFAULT_TASKS: usize = 2_000;
/// Processes, the parent included.
const PROCESSES: usize = 4;
const CLAIMERS_PER_PROCESS: usize = 4;

/// The database file a child claims from.
const CHILD_DB: &str = "DRYDOCK_SQLITE_LOAD_CHILD_DB";
/// The child's number, part of its claimers' instance ids.
const CHILD_NUMBER: &str = "DRYDOCK_SQLITE_LOAD_CHILD_NUMBER";
/// A file whose appearance tells the children to start claiming.
const CHILD_GO: &str = "DRYDOCK_SQLITE_LOAD_CHILD_GO";
/// Prefix of the line a child prints for each task it claimed.
const CLAIMED: &str = "drydock-claimed ";
/// The line a child prints once its store is open and it waits for the go file.
const READY: &str = "drydock-child-ready";

fn task_count() -> usize {
    match std::env::var(TASKS_VAR) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{TASKS_VAR} must be a number of tasks, not {v:?}")),
        Err(_) => DEFAULT_TASKS,
    }
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    let mut config = Config::default();
    config.database.pool_size = CLAIMERS_PER_PROCESS as u32;
    config.database.pool_overflow = 1;
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()), &config)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

/// `n` `deploy_nodes` tasks queued one after another, oldest first by `created` (1 µs apart).
async fn queue(store: &Arc<SqliteStore>, n: usize) -> HashSet<TaskId> {
    claims::queue_spaced(
        store,
        "deploy_nodes",
        n,
        1,
        chrono::Duration::microseconds(1),
    )
    .await
}

/// This process's claimers draining the queue; each claim is checked to be theirs.
async fn drain(store: &Arc<SqliteStore>, process: &str) -> Vec<Vec<TaskId>> {
    claims::drain_concurrently(store, &format!("{process}-claimer"), CLAIMERS_PER_PROCESS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_processes_of_four_claimers_claim_each_task_once() {
    let tasks = task_count();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let go = dir.path().join("go");
    let store = open(&db).await;
    let queued_at = Instant::now();
    let all = queue(&store, tasks).await;
    let queueing = queued_at.elapsed();

    let exe = std::env::current_exe().expect("the test binary");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut children = Vec::new();
    for number in 1..PROCESSES {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_claimers",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db)
            .env(CHILD_NUMBER, number.to_string())
            .env(CHILD_GO, &go)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a child process");
        let stdout = child.stdout.take().unwrap();
        let ready_tx = ready_tx.clone();
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
        children.push((child, reader));
    }
    drop(ready_tx);
    for _ in 1..PROCESSES {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every child opens the store and reports ready");
    }

    std::fs::write(&go, b"go").unwrap();
    let started = Instant::now();
    let parent = drain(&store, "process-0").await;
    let mut claimed: Vec<TaskId> = parent.into_iter().flatten().collect();
    let mut per_process = vec![claimed.len()];
    for (mut child, reader) in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .expect("wait for a child");
        assert!(status.success(), "a child process failed: {status}");
        let mine = reader.join().expect("child output reader");
        per_process.push(mine.len());
        claimed.extend(mine);
    }
    let elapsed = started.elapsed();

    claims::assert_each_once(&claimed, &all);
    claims::assert_nothing_queued(&*store).await;
    println!(
        "sqlite load: {tasks} tasks queued in {:.1} s; {} claims by {} claimers in {PROCESSES} \
         processes on one file (per process {per_process:?}) in {:.2} s = {:.0} claims/s; \
         duplicates 0, left 0",
        queueing.as_secs_f64(),
        claimed.len(),
        PROCESSES * CLAIMERS_PER_PROCESS,
        elapsed.as_secs_f64(),
        claimed.len() as f64 / elapsed.as_secs_f64(),
    );
}

/// A child process of `four_processes_of_four_claimers_claim_each_task_once`. Without its
/// environment variables (a normal test run) it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_claimers() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let number = std::env::var(CHILD_NUMBER).expect("child number");
    let go = std::env::var_os(CHILD_GO).expect("go file");
    let store = open(Path::new(&db)).await;
    println!("{READY}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mine = drain(&store, &format!("process-{number}")).await;
    let mut out = String::new();
    for id in mine.iter().flatten() {
        out.push_str(CLAIMED);
        out.push_str(&id.to_string());
        out.push('\n');
    }
    print!("{out}");
}
