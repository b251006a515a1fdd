//! The exactly-once drains: claimers racing for one queue, in one process and in several OS
//! processes, each task claimed exactly once and none left queued.
//!
//! The helpers are public, for a backend's own load tests: queue with [`queue`] (or
//! [`queue_spaced`]), drain with [`drain`] or [`drain_concurrently`] (in as many processes as
//! you like), then check every claim together with [`assert_each_once`] and
//! [`assert_nothing_queued`].
//!
//! `DRYDOCK_LOAD_TASKS` sets how many tasks each drain queues (default 1,000 in one process,
//! 2,000 across processes); `DRYDOCK_LOAD_PROCESSES` how many processes the multi-process
//! drain runs, the test's own included (default 3).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{case_name, env_number, kit_config, StoreFactory};
use crate::backend::now;
use crate::model::{ClaimRequest, NewTask, TaskFilter, TaskId, TaskStatus};
use crate::store::TaskStore;

/// How many tasks each drain queues.
pub const TASKS_VAR: &str = "DRYDOCK_LOAD_TASKS";
/// How many processes the multi-process drain runs, the test's own included.
pub const PROCESSES_VAR: &str = "DRYDOCK_LOAD_PROCESSES";
/// Claimers in the one-process drain.
const CLAIMERS: usize = 8;
/// Claimers in each process of the multi-process drain.
const CLAIMERS_PER_PROCESS: usize = 4;

/// The URL a child process opens; set only in a child.
const CHILD_URL: &str = "DRYDOCK_KIT_CHILD_URL";
/// The child's number, part of its claimers' instance ids.
const CHILD_NUMBER: &str = "DRYDOCK_KIT_CHILD_NUMBER";
/// A file whose appearance tells the children to start claiming.
const CHILD_GO: &str = "DRYDOCK_KIT_CHILD_GO";
/// Prefix of the line a child prints for each task it claimed.
const CLAIMED: &str = "drydock-claimed ";
/// The line a child prints once its store is open and it waits for the go file.
const READY: &str = "drydock-child-ready";

/// Queues `n` tasks of `action` with `creators` concurrent creators; task `i` is created an
/// hour ago plus `i` ms, so the oldest is claimed first. Returns their ids.
pub async fn queue<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    action: &str,
    n: usize,
    creators: usize,
) -> HashSet<TaskId> {
    queue_spaced(
        store,
        action,
        n,
        creators,
        chrono::Duration::milliseconds(1),
    )
    .await
}

/// [`queue`] with task `i` created an hour ago plus `i * spacing`.
pub async fn queue_spaced<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    action: &str,
    n: usize,
    creators: usize,
    spacing: chrono::Duration,
) -> HashSet<TaskId> {
    assert!(creators > 0, "at least one creator");
    let base = now() - chrono::Duration::hours(1);
    let workers: Vec<_> = (0..creators)
        .map(|first| {
            let store = store.clone();
            let action = action.to_string();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (first..n).step_by(creators) {
                    let t = NewTask::new(action.as_str())
                        .with_status(TaskStatus::Queued)
                        .with_created(
                            base + spacing * i32::try_from(i).expect("task index fits i32"),
                        );
                    let stored = store.create_task(&t).await.expect("create_task");
                    assert_eq!(stored.task_id, t.task_id, "created under its own id");
                    ids.push(t.task_id);
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::with_capacity(n);
    for w in workers {
        all.extend(w.await.expect("a creator panicked"));
    }
    assert_eq!(
        all.len(),
        n,
        "every task queued, each with an id of its own"
    );
    all
}

/// Claims as `instance` until nothing is queued, checking that each claimed task is `running`,
/// claimed by `instance`, has a claim time and an attempt of at least one. Returns the claimed
/// ids in claim order.
pub async fn drain<S: TaskStore + ?Sized>(store: &S, instance: &str) -> Vec<TaskId> {
    let request = ClaimRequest::new(instance);
    let mut mine = Vec::new();
    while let Some(task) = store.claim_next(&request).await.expect("claim_next") {
        assert_eq!(task.status, TaskStatus::Running);
        assert_eq!(task.claimed_by.as_deref(), Some(instance));
        assert!(task.claimed_at.is_some(), "a claim records its time");
        assert!(
            task.attempt >= 1,
            "a claim raises the attempt: {}",
            task.attempt
        );
        assert_eq!(
            task.claim().map(|c| c.instance_id),
            Some(instance.to_string()),
            "the claimed task carries the claim"
        );
        mine.push(task.task_id);
    }
    mine
}

/// `claimers` concurrent [`drain`]s, claimer `w` claiming as `{prefix}-{w}`. Returns what each
/// claimer claimed, in claimer order.
pub async fn drain_concurrently<S: TaskStore + ?Sized + 'static>(
    store: &Arc<S>,
    prefix: &str,
    claimers: usize,
) -> Vec<Vec<TaskId>> {
    let workers: Vec<_> = (0..claimers)
        .map(|w| {
            let store = store.clone();
            let me = format!("{prefix}-{w}");
            tokio::spawn(async move { drain(&*store, &me).await })
        })
        .collect();
    let mut out = Vec::with_capacity(claimers);
    for w in workers {
        out.push(w.await.expect("a claimer panicked"));
    }
    out
}

/// Asserts that `claimed` (the claims of every claimer, in any order) holds each task of
/// `queued` exactly once: none claimed twice, none missed, none other.
pub fn assert_each_once(claimed: &[TaskId], queued: &HashSet<TaskId>) {
    let unique: HashSet<TaskId> = claimed.iter().copied().collect();
    let duplicates = claimed.len() - unique.len();
    assert_eq!(duplicates, 0, "{duplicates} tasks were claimed twice");
    assert_eq!(
        &unique, queued,
        "every queued task claimed, and nothing else"
    );
}

/// Asserts that no task is left queued.
pub async fn assert_nothing_queued<S: TaskStore + ?Sized>(store: &S) {
    let left = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .expect("list_tasks");
    assert!(left.is_empty(), "{} tasks left queued", left.len());
}

/// Eight concurrent claimers drain a queue (1,000 tasks unless `DRYDOCK_LOAD_TASKS` says
/// otherwise): each task is claimed exactly once, all are running, none is left queued.
pub async fn claims_drained_once_by_concurrent_claimers(factory: &dyn StoreFactory) {
    let tasks = env_number(TASKS_VAR, 1_000);
    let store = factory.open(kit_config()).await;
    let all = queue(&store, "deploy_nodes", tasks, 4).await;

    let started = Instant::now();
    let per_claimer = drain_concurrently(&store, "claimer", CLAIMERS).await;
    let elapsed = started.elapsed();
    let counts: Vec<usize> = per_claimer.iter().map(Vec::len).collect();
    let claimed: Vec<TaskId> = per_claimer.into_iter().flatten().collect();

    assert_each_once(&claimed, &all);
    assert_nothing_queued(&*store).await;
    let running = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Running),
            ..Default::default()
        })
        .await
        .expect("list_tasks");
    assert_eq!(running.len(), tasks, "every claimed task is running");
    println!(
        "{}: {tasks} tasks drained by {CLAIMERS} claimers in {:.2} s = {:.0} claims/s \
         (per claimer: {counts:?})",
        store.backend_name(),
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64()
    );
}

/// Several OS processes, four claimers each, drain one store (2,000 tasks and 3 processes
/// unless `DRYDOCK_LOAD_TASKS` and `DRYDOCK_LOAD_PROCESSES` say otherwise): each task is
/// claimed exactly once and none is left queued. The test re-runs its own binary for the
/// other processes, which reach the store by the URL [`StoreFactory::open_shared`] gave.
/// Runs only when the backend declares
/// [`Capabilities::shared_between_processes`](super::Capabilities::shared_between_processes).
pub async fn claims_drained_once_across_processes(factory: &dyn StoreFactory) {
    if let Ok(url) = std::env::var(CHILD_URL) {
        return child(factory, url).await;
    }
    if !factory.capabilities().shared_between_processes {
        println!("skipped: the backend does not declare shared_between_processes");
        return;
    }
    let Some(shared) = factory.open_shared(kit_config()).await else {
        panic!(
            "the backend declares shared_between_processes, \
             but its factory's open_shared gives no store"
        );
    };
    let test = case_name().expect("run through conformance_tests!, which names the test");
    let tasks = env_number(TASKS_VAR, 2_000);
    let processes = env_number(PROCESSES_VAR, 3).max(1);
    let store = shared.store;
    let queued_at = Instant::now();
    let all = queue_spaced(
        &store,
        "deploy_nodes",
        tasks,
        4,
        chrono::Duration::microseconds(1),
    )
    .await;
    let queueing = queued_at.elapsed();

    let go = GoFile(std::env::temp_dir().join(format!("drydock-kit-go-{}", uuid::Uuid::new_v4())));
    let go = &go.0;
    let exe = std::env::current_exe().expect("the test binary");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut children = Vec::new();
    for number in 1..processes {
        let mut child = Command::new(&exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, &shared.url)
            .env(CHILD_NUMBER, number.to_string())
            .env(CHILD_GO, go)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a child process");
        let stdout = child.stdout.take().expect("the child's stdout");
        let ready_tx = ready_tx.clone();
        let reader = std::thread::spawn(move || {
            let mut claimed = Vec::new();
            let mut ready = false;
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("child output");
                // libtest may print `test name ... ` ahead of the first line.
                if line.ends_with(READY) {
                    ready = true;
                    let _ = ready_tx.send(());
                } else if let Some(at) = line.find(CLAIMED) {
                    let id = &line[at + CLAIMED.len()..];
                    claimed.push(id.parse::<TaskId>().expect("a claimed task id"));
                }
            }
            (ready, claimed)
        });
        children.push((child, reader));
    }
    drop(ready_tx);
    for _ in 1..processes {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every child opens the store and reports ready");
    }

    std::fs::write(go, b"go").expect("write the go file");
    let started = Instant::now();
    let mine = drain_concurrently(&store, "process-0", CLAIMERS_PER_PROCESS).await;
    let mut claimed: Vec<TaskId> = mine.into_iter().flatten().collect();
    let mut per_process = vec![claimed.len()];
    for (mut child, reader) in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait for a child")
            .expect("wait for a child");
        let (ready, theirs) = reader.join().expect("child output reader");
        assert!(ready, "a child never reported ready");
        assert!(status.success(), "a child process failed: {status}");
        per_process.push(theirs.len());
        claimed.extend(theirs);
    }
    let elapsed = started.elapsed();

    assert_each_once(&claimed, &all);
    assert_nothing_queued(&*store).await;
    println!(
        "{}: {tasks} tasks queued in {:.1} s; drained by {processes} processes x \
         {CLAIMERS_PER_PROCESS} claimers (per process {per_process:?}) in {:.2} s = {:.0} claims/s",
        store.backend_name(),
        queueing.as_secs_f64(),
        elapsed.as_secs_f64(),
        claimed.len() as f64 / elapsed.as_secs_f64(),
    );
}

/// The go file, removed when dropped.
struct GoFile(std::path::PathBuf);

impl Drop for GoFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A child process of [`claims_drained_once_across_processes`]: opens the store at `url`,
/// says it is ready, waits for the go file, drains and prints every task it claimed.
async fn child(factory: &dyn StoreFactory, url: String) {
    let number = std::env::var(CHILD_NUMBER).expect("the child's number");
    let go = std::env::var_os(CHILD_GO).expect("the go file");
    let store = factory
        .connect(url, kit_config())
        .await
        .unwrap_or_else(|e| panic!("child {number}: open the shared store: {e}"));
    println!("{READY}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mine = drain_concurrently(&store, &format!("process-{number}"), CLAIMERS_PER_PROCESS).await;
    let mut out = String::new();
    for id in mine.iter().flatten() {
        out.push_str(CLAIMED);
        out.push_str(&id.to_string());
        out.push('\n');
    }
    print!("{out}");
}
