//! Exactly-once claims on a real MariaDB: claimers racing for one queue, in one process and in
//! two. Run with `--nocapture` to see the figures.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_mysql::MySqlStore;
use drydock_state_testsupport::claims;

/// Claimers per process.
const CLAIMERS: usize = 8;
/// The database the child process claims from.
const CHILD_URL: &str = "DRYDOCK_MYSQL_DRAIN_CHILD_URL";
/// A file whose appearance tells the child to start claiming.
const CHILD_GO: &str = "DRYDOCK_MYSQL_DRAIN_CHILD_GO";
/// Prefix of the line the child prints for each task it claimed.
const CLAIMED: &str = "drydock-claimed ";
/// The line the child prints once its store is open and it waits for the go file.
const READY: &str = "drydock-child-ready";

fn config() -> Config {
    let mut config = with_grace(Duration::from_secs(60));
    config.database.pool_size = CLAIMERS as u32;
    config.database.pool_overflow = 2;
    config
}

async fn queue(store: &Arc<MySqlStore>, n: usize) -> HashSet<TaskId> {
    claims::queue(store, "deploy_nodes", n, 8).await
}

/// 8 concurrent claimers draining 2,000 queued tasks claim each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_drain_2000_tasks_exactly_once() {
    const TASKS: usize = 2000;
    let (store, _db) = common::fresh_store(&config()).await;
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
    println!(
        "mysql claim_next: {TASKS} tasks drained by {CLAIMERS} claimers in one process in \
         {:.3} s = {:.0} claims/s; duplicates 0 (per claimer: {per_worker:?})",
        elapsed.as_secs_f64(),
        TASKS as f64 / elapsed.as_secs_f64()
    );
}

/// 16 claimers in two processes (this test binary run again as a child) draining 4,000
/// queued tasks claim each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_claimers_in_two_processes_claim_each_task_once() {
    const TASKS: usize = 4000;
    let (store, db) = common::fresh_store(&config()).await;
    let store = Arc::new(store);
    let all = queue(&store, TASKS).await;

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
    let parent = claims::drain_concurrently(&store, "parent-claimer", CLAIMERS).await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait for the child");
    let elapsed = started.elapsed();
    assert!(status.success(), "the child process failed: {status}");
    let from_child = reader.join().expect("child output reader");

    let mut claimed: Vec<TaskId> = parent.into_iter().flatten().collect();
    let parent_claims = claimed.len();
    claimed.extend(from_child.iter().copied());
    claims::assert_each_once(&claimed, &all);
    claims::assert_nothing_queued(&*store).await;
    println!(
        "mysql drain: {TASKS} tasks, {} claims by {} claimers in 2 processes (parent \
         {parent_claims}, child {}) in {:.2} s = {:.0} claims/s; duplicates 0, left 0",
        claimed.len(),
        2 * CLAIMERS,
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
    let store = Arc::new(MySqlStore::connect(&url, &config()).await.expect("connect"));
    println!("{READY}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mine = claims::drain_concurrently(&store, "child-claimer", CLAIMERS).await;
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
