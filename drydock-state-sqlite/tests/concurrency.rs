//! Claims under contention: many claimers in one process, and several processes on one file.
//! Each task must be claimed exactly once, and none may be left queued.
//!
//! The multi-process case re-executes this test binary to run `child_claimer` in three child
//! processes (told what to do through environment variables); `child_claimer` does nothing
//! when run without them.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::{Config, TaskFilter, TaskId, TaskStatus, TaskStore};
use drydock_state_sqlite::SqliteStore;
use drydock_state_testsupport::claims::{
    assert_each_once, assert_nothing_queued, drain, drain_concurrently, queue,
};

/// The database file a child claims from.
const CHILD_DB: &str = "DRYDOCK_SQLITE_TEST_CHILD_DB";
/// The child's worker id, part of its instance id.
const CHILD_WORKER: &str = "DRYDOCK_SQLITE_TEST_CHILD_WORKER";
/// A file whose appearance tells the children to start claiming.
const CHILD_GO: &str = "DRYDOCK_SQLITE_TEST_CHILD_GO";
/// Prefix of the line a child prints for each task it claimed.
const CLAIMED: &str = "drydock-claimed ";
/// The line a child prints once its store is open and it waits for the go file.
const READY: &str = "drydock-child-ready";

fn url_of(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    let store = SqliteStore::open(&url_of(path), &Config::default())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_in_one_process_claim_1000_tasks_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("state.db")).await;
    let all = queue(&store, "deploy_nodes", 1000, 1).await;

    let started = Instant::now();
    let per_claimer = drain_concurrently(&store, "worker", 8).await;
    let elapsed = started.elapsed();
    let per_worker: Vec<usize> = per_claimer.iter().map(Vec::len).collect();
    let claimed: Vec<TaskId> = per_claimer.into_iter().flatten().collect();

    assert_each_once(&claimed, &all);
    assert_nothing_queued(&*store).await;
    println!(
        "sqlite, 1 process x 8 claimers: {} claims in {:.3} s = {:.0} claims/s (per claimer: {:?})",
        claimed.len(),
        elapsed.as_secs_f64(),
        claimed.len() as f64 / elapsed.as_secs_f64(),
        per_worker
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_and_the_parent_claim_600_tasks_once_each() {
    const TASKS: usize = 600;
    const CHILDREN: usize = 3;
    const PARENT_CLAIMERS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let go = dir.path().join("go");
    let store = open(&db).await;
    let all = queue(&store, "deploy_nodes", TASKS, 1).await;

    let exe = std::env::current_exe().expect("the test binary");
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let mut children = Vec::new();
    for worker in 0..CHILDREN {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_claimer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db)
            .env(CHILD_WORKER, worker.to_string())
            .env(CHILD_GO, &go)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a child claimer");
        let stdout = child.stdout.take().unwrap();
        let ready_tx = ready_tx.clone();
        let reader = std::thread::spawn(move || {
            let mut claimed = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("child output");
                // libtest may print `test child_claimer ... ` ahead of the first line.
                if line.ends_with(READY) {
                    let _ = ready_tx.send(worker);
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
    for _ in 0..CHILDREN {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every child opens the store and reports ready");
    }

    // Everyone starts together: the children poll for this file.
    std::fs::write(&go, b"go").unwrap();
    let started = Instant::now();
    let mut claimed = Vec::new();
    let mut counts = Vec::new();
    for mine in drain_concurrently(&store, "parent", PARENT_CLAIMERS).await {
        counts.push(("parent", mine.len()));
        claimed.extend(mine);
    }
    for (mut child, reader) in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .expect("wait for child");
        assert!(status.success(), "a child claimer failed: {status}");
        let mine = reader.join().expect("child output reader");
        counts.push(("child", mine.len()));
        claimed.extend(mine);
    }
    let elapsed = started.elapsed();

    assert_each_once(&claimed, &all);
    assert_nothing_queued(&*store).await;
    let stored = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert!(stored.iter().all(|t| t.status == TaskStatus::Running));
    println!(
        "sqlite, {CHILDREN} processes + {PARENT_CLAIMERS} claimers in the parent on one file: \
         {} claims in {:.3} s = {:.0} claims/s (per claimer: {:?})",
        claimed.len(),
        elapsed.as_secs_f64(),
        claimed.len() as f64 / elapsed.as_secs_f64(),
        counts
    );
}

/// A child claimer process of `three_processes_and_the_parent_claim_600_tasks_once_each`.
/// Without its environment variables (a normal test run) it returns at once.
#[tokio::test]
async fn child_claimer() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let worker = std::env::var(CHILD_WORKER).expect("worker id");
    let go = std::env::var_os(CHILD_GO).expect("go file");
    let instance = format!("process-{worker}");
    let store = open(Path::new(&db)).await;
    println!("{READY}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mine = drain(&*store, &instance).await;
    for id in &mine {
        println!("{CLAIMED}{id}");
    }
    let unique: HashSet<_> = mine.iter().collect();
    assert_eq!(unique.len(), mine.len(), "claimed a task twice");
    // What this process claimed is stored as its claim.
    for id in &mine {
        let t = store.get_task(*id).await.unwrap().expect("claimed task");
        assert_eq!(t.claimed_by.as_deref(), Some(instance.as_str()));
    }
    // It stopped because the queue was empty, not for any other reason.
    assert_nothing_queued(&*store).await;
    eprintln!("child {instance}: claimed {}", mine.len());
}
