//! `drydock-state worker`, run as real processes on SQLite and PostgreSQL: two workers drain
//! a queue while the leader is frozen with SIGSTOP and resumed, a command's output, exit
//! status and environment reach its task, a termination request stops the command, SIGTERM
//! releases the lease, and `/metrics` reports the counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drydock_state::{Config, NewTask, ResultStatus, StateStore, TaskFilter, TaskId, TaskStatus};
use drydock_state_testsupport::postgres::{fresh_database, TestDatabase};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{sleep, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");

/// A database for the workers: a SQLite file or a PostgreSQL database of the test's own.
struct Site {
    url: String,
    store: Arc<dyn StateStore>,
    _dir: tempfile::TempDir,
    _pg: Option<TestDatabase>,
}

async fn site(postgres: bool) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let pg = if postgres {
        Some(fresh_database().await)
    } else {
        None
    };
    let url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("state.db").display()),
    };
    let mut config = Config::default();
    config.leader.grace_period = GRACE;
    let store = drydock_state::open(&url, &config).await.unwrap();
    Site {
        url,
        store,
        _dir: dir,
        _pg: pg,
    }
}

const GRACE: Duration = Duration::from_secs(3);

/// A worker process and the JSON lines it has printed so far.
struct Worker {
    name: String,
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Worker {
    fn start(site: &Site, name: &str, exec: &str, extra: &[&str]) -> Worker {
        let mut child = tokio::process::Command::new(BIN)
            .args(["--output", "json", "--database-url", &site.url, "worker"])
            .args(["--instance", name, "--action", "work", "--exec", exec])
            .args(extra)
            .env("DRYDOCK_LEADER__GRACE_PERIOD", "3s")
            .env("DRYDOCK_LEADER__CLAIM_INTERVAL", "300ms")
            .env("DRYDOCK_LEADER__POLL_INTERVAL", "100ms")
            .env("WORKER_NAME", name)
            .env_remove("DRYDOCK_DATABASE__URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary runs");
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        Worker {
            name: name.to_string(),
            child,
            lines,
        }
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l["event"] == kind)
            .cloned()
            .collect()
    }

    /// Waits until `ready` holds of the lines printed so far.
    async fn wait(&self, what: &str, ready: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(&self.lines.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "{}: waited 60 s for {what}; it printed:\n{}",
                self.name,
                self.printed()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn printed(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGTERM, and the exit status.
    async fn stop(mut self) -> (i32, String) {
        self.signal("-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop in 30 s after SIGTERM", self.name))
            .unwrap();
        sleep(Duration::from_millis(100)).await;
        (status.code().unwrap_or(-1), self.printed())
    }
}

/// SIGSTOP to `w`. SQLite's lock is the file's: a process frozen inside a write transaction
/// holds it, and every writer of the database (the other worker's lease claim too) waits
/// until it resumes. That is SQLite, not the runtime, so on SQLite the freeze is retried until
/// it lands between two transactions.
async fn freeze(site: &Site, w: &Worker) {
    use drydock_state_testsupport::sql;
    use sqlx::{ConnectOptions, Connection};
    for _ in 0..50 {
        w.signal("-STOP");
        if !site.url.starts_with("sqlite:") {
            return;
        }
        let options: sqlx::sqlite::SqliteConnectOptions = site.url.parse().unwrap();
        let mut probe = options
            .busy_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap();
        let writable = sql::query("BEGIN IMMEDIATE")
            .execute(&mut probe)
            .await
            .is_ok();
        if writable {
            sql::query("ROLLBACK").execute(&mut probe).await.unwrap();
        }
        probe.close().await.unwrap();
        if writable {
            return;
        }
        w.signal("-CONT");
        sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} was inside a write transaction at each of 50 freezes",
        w.name
    );
}

fn count(lines: &[Value], kind: &str) -> usize {
    lines.iter().filter(|l| l["event"] == kind).count()
}

fn task_of(line: &Value) -> TaskId {
    line["task_id"].as_str().unwrap().parse().unwrap()
}

async fn queue(store: &dyn StateStore, n: usize) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let task = NewTask::new("work").with_status(TaskStatus::Queued);
        ids.push(store.create_task(&task).await.unwrap().task_id);
    }
    ids
}

async fn all_finished(store: &dyn StateStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
        let done = tasks.iter().filter(|t| t.status.is_terminal()).count();
        if done == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} tasks finished in 90 s"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_every_task_once_with_the_leader_frozen_midway() {
    for postgres in [false, true] {
        drain_with_a_frozen_leader(postgres).await;
    }
}

async fn drain_with_a_frozen_leader(postgres: bool) {
    let site = site(postgres).await;
    let n = 40;
    let tasks = queue(&*site.store, n).await;
    let exec = r#"sleep 0.4; echo "ran by $WORKER_NAME attempt $DRYDOCK_ATTEMPT""#;
    let w1 = Worker::start(&site, "w1", exec, &["--concurrency", "4"]);
    w1.wait("its election", |l| count(l, "elected") == 1).await;
    let w2 = Worker::start(&site, "w2", exec, &["--concurrency", "4"]);
    w2.wait("it to follow w1", |l| {
        l.iter()
            .any(|e| e["event"] == "follower" && e["holder"] == "w1")
    })
    .await;
    w1.wait("a few tasks", |l| count(l, "finished") >= 4).await;
    w1.wait("a task to start", |l| {
        count(l, "started") > count(l, "finished")
    })
    .await;
    freeze(&site, &w1).await;
    let printed_before = w1.lines.lock().unwrap().len();
    w2.wait("its election", |l| count(l, "elected") == 1).await;
    let elected = w2.events("elected").remove(0);
    assert_eq!(elected["term"], 2, "postgres={postgres}");
    // What w1 held when it froze, as the store saw it: the tasks still running under term 1.
    let in_flight: HashSet<TaskId> = elected["recovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        !in_flight.is_empty(),
        "postgres={postgres}: w1 froze with tasks running"
    );
    sleep(Duration::from_secs(1)).await;
    w1.signal("-CONT");
    all_finished(&*site.store, n).await;
    // w1, resumed, has stepped down and left what it held; it finished none of it.
    w1.wait("it to step down", |l| {
        l.iter()
            .any(|e| e["event"] == "stepped_down" && e["term"] == 1)
    })
    .await;
    let after: Vec<Value> = w1.lines.lock().unwrap()[printed_before..].to_vec();
    let (w1_code, w1_out) = w1.stop().await;
    let (w2_code, w2_out) = w2.stop().await;
    assert_eq!((w1_code, w2_code), (0, 0), "w1:\n{w1_out}\nw2:\n{w2_out}");
    for line in &after {
        if line["event"] == "finished" {
            assert!(
                !in_flight.contains(&task_of(line)),
                "postgres={postgres}: w1 finished a task it had lost: {line}"
            );
        }
    }
    let left: HashSet<TaskId> = after
        .iter()
        .filter(|l| l["event"] == "abandoned")
        .map(task_of)
        .collect();
    assert_eq!(
        left, in_flight,
        "postgres={postgres}: w1 after resuming:\n{w1_out}"
    );

    // Every task complete, finished exactly once across the two workers, and no message of
    // a deposed attempt: w1's late output was refused.
    let mut finished: HashMap<TaskId, usize> = HashMap::new();
    for out in [&w1_out, &w2_out] {
        for line in out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
        {
            if line["event"] == "finished" {
                *finished.entry(task_of(&line)).or_default() += 1;
            }
        }
    }
    assert_eq!(finished.len(), n, "postgres={postgres}");
    assert!(
        finished.values().all(|&c| c == 1),
        "postgres={postgres}: {finished:?}"
    );
    for id in &tasks {
        let task = site.store.get_task(*id).await.unwrap().unwrap();
        assert_eq!(
            (task.status, task.result.status),
            (TaskStatus::Complete, ResultStatus::Success),
            "postgres={postgres}: {id}"
        );
        let ran: Vec<&str> = task
            .result
            .details
            .message_list
            .iter()
            .map(|m| m.message.as_str())
            .filter(|m| m.starts_with("ran by"))
            .collect();
        let owner = format!(
            "ran by {} attempt {}",
            task.claimed_by.as_deref().unwrap(),
            task.attempt
        );
        assert_eq!(ran, [owner.as_str()], "postgres={postgres}: {id}");
        if in_flight.contains(id) {
            assert_eq!(
                (task.claimed_by.as_deref(), task.attempt),
                (Some("w2"), 2),
                "postgres={postgres}: {id} was run again by the new leader"
            );
        }
    }
    assert!(
        site.store.current_lease().await.unwrap().is_none(),
        "both released"
    );
}

/// GET /metrics on 127.0.0.1:port, the body.
fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics port");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of `name{instance="w"}` in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{instance=\"w\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_s_output_status_and_termination_reach_its_task_and_the_metrics() {
    for postgres in [false, true] {
        one_worker(postgres).await;
    }
}

async fn one_worker(postgres: bool) {
    let site = site(postgres).await;
    let ids = queue(&*site.store, 3).await;
    let (ok, bad, slow) = (ids[0], ids[1], ids[2]);
    let script = format!(
        r#"case "$DRYDOCK_TASK_ID" in
  {ok}) grep -q "\"task_id\":\"$DRYDOCK_TASK_ID\"" && echo "the task is on stdin"
        echo "$DRYDOCK_ACTION attempt $DRYDOCK_ATTEMPT"; echo "a warning" >&2; exit 0;;
  {bad}) echo "half done"; exit 7;;
  {slow}) trap 'echo "got TERM"; exit 3' TERM; echo "waiting"; sleep 30 & wait;;
esac"#
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let w = Worker::start(
        &site,
        "w",
        &script,
        &[
            "--concurrency",
            "3",
            "--metrics-addr",
            &addr,
            "--kill-grace",
            "5s",
        ],
    );
    w.wait("the slow task's first line", |_| true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let task = site.store.get_task(slow).await.unwrap().unwrap();
        if task
            .result
            .details
            .message_list
            .iter()
            .any(|m| m.message == "waiting")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow command never started:\n{}",
            w.printed()
        );
        sleep(Duration::from_millis(50)).await;
    }
    site.store
        .terminate_task(slow, "operator", None)
        .await
        .unwrap();
    all_finished(&*site.store, 3).await;
    w.wait("three finished lines", |l| count(l, "finished") == 3)
        .await;
    sleep(Duration::from_millis(200)).await;
    let body = scrape(port);
    let (code, out) = w.stop().await;
    assert_eq!(code, 0, "{out}");

    let get = |id| {
        let store = site.store.clone();
        async move { store.get_task(id).await.unwrap().unwrap() }
    };
    let texts = |t: &drydock_state::Task| -> Vec<(String, bool)> {
        t.result
            .details
            .message_list
            .iter()
            .map(|m| (m.message.clone(), m.error))
            .collect()
    };
    let ok = get(ok).await;
    assert_eq!(
        (ok.status, ok.result.status),
        (TaskStatus::Complete, ResultStatus::Success)
    );
    // stdout and stderr are two pipes: each keeps its order, not one against the other.
    let (errors, infos): (Vec<_>, Vec<_>) = texts(&ok).into_iter().partition(|(_, e)| *e);
    assert_eq!(
        infos,
        [
            ("the task is on stdin".to_string(), false),
            ("work attempt 1".to_string(), false)
        ],
        "postgres={postgres}"
    );
    assert_eq!(
        errors,
        [("a warning".to_string(), true)],
        "postgres={postgres}"
    );
    assert_eq!(ok.result.details.error_count, 1);
    let bad = get(bad).await;
    assert_eq!(
        (bad.status, bad.result.status),
        (TaskStatus::Complete, ResultStatus::Failure)
    );
    assert_eq!(
        bad.result.reason.as_deref(),
        Some("the command exited with status 7")
    );
    assert_eq!(texts(&bad), [("half done".to_string(), false)]);
    let slow = get(slow).await;
    assert_eq!(
        slow.status,
        TaskStatus::Terminated,
        "postgres={postgres}: {out}"
    );
    assert_eq!(
        texts(&slow),
        [
            ("waiting".to_string(), false),
            ("got TERM".to_string(), false)
        ],
        "postgres={postgres}"
    );
    assert!(
        site.store.current_lease().await.unwrap().is_none(),
        "released on SIGTERM"
    );

    let expected: BTreeMap<&str, f64> = [
        ("drydock_tasks_claimed_total", 3.0),
        ("drydock_tasks_completed_total", 1.0),
        ("drydock_tasks_failed_total", 1.0),
        ("drydock_tasks_terminated_total", 1.0),
        ("drydock_tasks_recovered_total", 0.0),
        ("drydock_term_changes_total", 1.0),
        ("drydock_lease_held", 1.0),
        ("drydock_tasks_running", 0.0),
        ("drydock_tasks_queued", 0.0),
        ("drydock_handler_duration_seconds_count", 3.0),
        ("drydock_claim_to_start_seconds_count", 3.0),
    ]
    .into();
    let seen: BTreeMap<&str, f64> = expected
        .keys()
        .map(|name| (*name, metric(&body, name).unwrap_or(f64::NAN)))
        .collect();
    assert_eq!(
        format!("{seen:?}"),
        format!("{expected:?}"),
        "postgres={postgres}: /metrics said:\n{body}"
    );
}

#[test]
fn a_metrics_address_in_use_is_refused_before_anything_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--database-url",
            &format!("sqlite://{}/s.db", dir.path().display()),
        ])
        .args([
            "worker",
            "--instance",
            "w",
            "--action",
            "work",
            "--exec",
            "true",
        ])
        .args(["--metrics-addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics at {addr}")),
        "{stderr}"
    );
    let out = std::process::Command::new(BIN)
        .args([
            "worker",
            "--instance",
            "w",
            "--action",
            "work",
            "--exec",
            "true",
        ])
        .args(["--concurrency", "0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
