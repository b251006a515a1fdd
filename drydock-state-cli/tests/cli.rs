//! End to end: the `drydock-state` binary run as a process against a SQLite file and a real
//! PostgreSQL database, every command, JSON and exit statuses checked.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use drydock_state_testsupport::postgres::fresh_database_blocking;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");

struct Cli {
    url: String,
    home: tempfile::TempDir,
}

impl Cli {
    fn new(url: String) -> Self {
        Cli {
            url,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--database-url").arg(&self.url).args(args);
        // No configuration from the developer's environment leaks in.
        cmd.env_remove("DRYDOCK_DATABASE__URL")
            .env("DRYDOCK_STATE_HOME", self.home.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    /// [`Cli::run`] with extra environment variables.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("the binary runs")
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs with `--output json`, expects exit status `code`, returns the parsed stdout.
    fn json(&self, args: &[&str], code: i32) -> Value {
        self.json_env(args, &[], code)
    }

    /// [`Cli::json`] with extra environment variables.
    fn json_env(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run_env(&all, env);
        assert_status(&out, code, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

fn assert_status(out: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole tour, identical for every backend.
fn tour(cli: &Cli) {
    let migrated = cli.json(&["migrate"], 0);
    assert_eq!(migrated["migrated"], true);

    // Tasks.
    let root = cli.json(
        &[
            "task",
            "create",
            "--action",
            "deploy_nodes",
            "--status",
            "queued",
            "--design-ref",
            "file:///etc/drydock/site.yaml",
            "--node-filter",
            r#"{"filter_set_type":"union","filter_set":[]}"#,
        ],
        0,
    );
    assert_eq!(root["kind"], "Task");
    assert_eq!(root["status"], "queued");
    let root_id = root["task_id"].as_str().unwrap().to_string();
    let child = cli.json(
        &[
            "task",
            "create",
            "--action",
            "deploy_node",
            "--parent",
            &root_id,
        ],
        0,
    );
    let child_id = child["task_id"].as_str().unwrap().to_string();
    let got = cli.json(&["task", "get", &root_id], 0);
    assert_eq!(got["subtask_id_list"][0], child_id.as_str());
    assert_eq!(got["node_filter"]["filter_set_type"], "union");
    assert_eq!(got["apiVersion"], "v1");
    // The result is Drydock's `kind: Status` document; the request context is not shown.
    assert_eq!(got["result"]["kind"], "Status");
    assert_eq!(got["result"]["apiVersion"], "v1.0");
    assert_eq!(got["result"]["metadata"], serde_json::json!({}));
    assert!(got.get("request_context").is_none(), "{got}");
    let listed = cli.json(&["task", "list", "--status", "queued"], 0);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let children = cli.json(&["task", "list", "--parent", &root_id, "--limit", "5"], 0);
    assert_eq!(children[0]["task_id"], child_id.as_str());
    let text = cli.run(&["task", "list"]);
    assert_status(&text, 0, &["task list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("deploy_nodes"));

    // Claims.
    let claimed = cli.json(
        &[
            "task",
            "claim",
            "--action",
            "deploy_nodes",
            "--action",
            "prepare_site",
            "--instance",
            "cli-test",
        ],
        0,
    );
    assert_eq!(claimed["task_id"], root_id.as_str());
    assert_eq!(claimed["status"], "running");
    assert_eq!(claimed["claimed_by"], "cli-test");
    assert_eq!(
        claimed["attempt"], 1,
        "the claimed task's JSON carries its attempt"
    );
    assert_eq!(cli.json(&["task", "claim"], 0), Value::Null);

    // Messages: inline, from stdin, long.
    let m = cli.json(
        &[
            "message",
            "add",
            &root_id,
            "--message",
            "IPMI timeout",
            "--error",
            "--context-type",
            "node",
            "--context",
            "n1",
        ],
        0,
    );
    assert_eq!(m["error"], true);
    let long = "x".repeat(5000);
    let out = cli.run_stdin(&["message", "add", &root_id, "--message-file", "-"], &long);
    assert_status(&out, 0, &["message add --message-file -"]);
    let got = cli.json(&["task", "get", &root_id], 0);
    assert_eq!(got["result"]["details"]["errorCount"], 1);
    assert_eq!(
        got["result"]["details"]["messageList"][1]["message"]
            .as_str()
            .unwrap()
            .len(),
        5000
    );
    let detail = cli.run(&["task", "get", &root_id]);
    assert!(String::from_utf8_lossy(&detail.stdout).contains("IPMI timeout"));

    // Build data.
    cli.json(
        &[
            "build-data",
            "add",
            "--node",
            "n1",
            "--task",
            &root_id,
            "--generator",
            "lshw",
            "--format",
            "text/plain",
            "--data",
            "old",
        ],
        0,
    );
    cli.json(
        &[
            "build-data",
            "add",
            "--node",
            "n1",
            "--task",
            &root_id,
            "--generator",
            "lshw",
            "--format",
            "text/plain",
            "--data",
            "new",
        ],
        0,
    );
    let all = cli.json(&["build-data", "list", "--node", "n1"], 0);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let latest = cli.json(
        &[
            "build-data",
            "list",
            "--node",
            "n1",
            "--task",
            &root_id,
            "--latest",
        ],
        0,
    );
    assert_eq!(latest.as_array().unwrap().len(), 1);
    assert_eq!(latest[0]["data_element"], "new");
    let brief = cli.json(&["build-data", "list", "--latest", "--brief"], 0);
    assert_eq!(brief[0]["data_element"], Value::Null);

    // The lease: 0 when held afterwards, 3 when another holds it.
    let held = cli.json(&["lease", "claim", "--instance", "a"], 0);
    assert_eq!(held["outcome"], "held");
    let term = held["lease"]["term"].as_i64().unwrap();
    let denied = cli.json(&["lease", "claim", "--instance", "b"], 3);
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["lease"]["instance_id"], "a");
    cli.json(&["lease", "renew", "--instance", "b"], 3);
    cli.json(&["lease", "renew", "--instance", "a"], 0);
    assert_eq!(cli.json(&["lease", "show"], 0)["instance_id"], "a");
    assert_eq!(
        cli.json(&["lease", "release", "--instance", "a"], 0)["released"],
        true
    );
    assert!(
        cli.json(&["lease", "claim", "--instance", "b"], 0)["lease"]["term"]
            .as_i64()
            .unwrap()
            > term
    );
    // A claim fenced with a's old term is refused.
    let queued = cli.json(
        &[
            "task",
            "create",
            "--action",
            "deploy_nodes",
            "--status",
            "queued",
        ],
        0,
    );
    let out = cli.run(&[
        "task",
        "claim",
        "--instance",
        "a",
        "--term",
        &term.to_string(),
    ]);
    assert_status(&out, 1, &["fenced claim"]);
    assert!(stderr(&out).contains("lease lost"), "{}", stderr(&out));
    assert_eq!(
        cli.json(&["task", "get", queued["task_id"].as_str().unwrap()], 0)["status"],
        "queued"
    );

    // Status changes and termination.
    assert_eq!(
        cli.json(&["task", "set-status", &root_id, "complete"], 0)["status"],
        "complete"
    );
    let out = cli.run(&["task", "set-status", &root_id, "running"]);
    assert_status(&out, 1, &["illegal status change"]);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "one line on stderr");
    let terminated = cli.json(&["task", "terminate", &child_id, "--by", "operator"], 0);
    assert_eq!(terminated["status"], "terminated");
    assert_eq!(terminated["terminated_by"], "operator");

    // Purge: nothing is that old; a zero retention is a usage error.
    assert_eq!(cli.json(&["purge", "--older-than", "30d"], 0)["tasks"], 0);
    assert_status(&cli.run(&["purge", "--older-than", "0s"]), 2, &["purge 0"]);

    // Errors: one line, status 1.
    let out = cli.run(&["task", "get", "018f0000-0000-7000-8000-000000000000"]);
    assert_status(&out, 1, &["get unknown"]);
    assert!(stderr(&out).contains("not found"));
    assert_status(&cli.run(&["task", "get", "not-a-uuid"]), 2, &["bad uuid"]);
    assert_status(&cli.run(&["task", "frobnicate"]), 2, &["unknown command"]);
    assert_status(
        &cli.run(&["message", "add", &root_id]),
        2,
        &["message without text"],
    );
}

#[test]
fn cli_tour_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    tour(&Cli::new(url));
}

#[test]
fn cli_tour_on_postgres() {
    let db = fresh_database_blocking();
    tour(&Cli::new(db.url.clone()));
}

#[test]
fn default_database_is_the_embedded_sqlite_file() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--output", "json", "migrate"])
        .env_remove("DRYDOCK_DATABASE__URL")
        .env("DRYDOCK_STATE_HOME", home.path())
        .output()
        .unwrap();
    assert_status(&out, 0, &["migrate with no URL"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backend"], "sqlite");
    assert!(home.path().join("state.db").is_file());
}

#[test]
fn errors_never_show_the_password() {
    let out = Command::new(BIN)
        .args([
            "--database-url",
            "postgres://drydock:hunter2@127.0.0.1:1/x",
            "task",
            "list",
        ])
        .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "2s")
        .output()
        .unwrap();
    assert_status(&out, 1, &["unreachable database"]);
    let err = stderr(&out);
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.starts_with("drydock-state: error:"), "{err}");
    let out = Command::new(BIN)
        .args(["config", "--output", "json"])
        .env("DRYDOCK_DATABASE__URL", "postgres://drydock:hunter2@db/x")
        .output()
        .unwrap();
    assert_status(&out, 0, &["config"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains("hunter2") && shown.contains("postgres://drydock:***@db/x"),
        "{shown}"
    );
    let out = Command::new(BIN)
        .args(["config"])
        .env("DRYDOCK_DATABASE__POOL_SIZE", "lots")
        .output()
        .unwrap();
    assert_status(&out, 1, &["bad config"]);
    assert!(
        stderr(&out).contains("DRYDOCK_DATABASE__POOL_SIZE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn design_commands() {
    let cli = Cli::new("memory://".into());
    let schemes = cli.json(&["design", "schemes"], 0);
    let names: Vec<&str> = schemes
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scheme"].as_str().unwrap())
        .collect();
    for expected in ["deckhand+http", "deckhand+https", "file", "http", "https"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/designs/site.yaml"
    );
    let fixture = std::fs::canonicalize(fixture).unwrap();
    let uri = format!("file://{}", fixture.display());
    let fetched = cli.json(&["design", "fetch", &uri], 0);
    assert_eq!(
        fetched["document"].as_str().unwrap(),
        std::fs::read_to_string(&fixture).unwrap()
    );
    let out_file = cli.home.path().join("copy.yaml");
    cli.json(
        &[
            "design",
            "fetch",
            &uri,
            "--output-file",
            out_file.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&fixture).unwrap()
    );
    let out = cli.run(&["design", "fetch", "file://relative/site.yaml"]);
    assert_status(&out, 1, &["relative file uri"]);
    let out = cli.run(&["design", "fetch", "gopher://u:hunter2@h/x"]);
    assert_status(&out, 1, &["unknown scheme"]);
    assert!(
        stderr(&out).contains("registered schemes") && !stderr(&out).contains("hunter2"),
        "{}",
        stderr(&out)
    );
}

fn id_of(task: &Value) -> String {
    task["task_id"].as_str().expect("a task id").to_string()
}

fn create_queued(cli: &Cli, action: &str) -> String {
    id_of(&cli.json(
        &["task", "create", "--action", action, "--status", "queued"],
        0,
    ))
}

/// Asserts a guarded write was refused: exit 1, one line on stderr saying the lease is lost
/// and containing each of `names`, and the task exactly as it was.
fn assert_refused(cli: &Cli, args: &[&str], task: &str, names: &[&str]) {
    let before = cli.json(&["task", "get", task], 0);
    let out = cli.run(args);
    assert_status(&out, 1, args);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(
        err.starts_with("drydock-state: error: lease lost:"),
        "{err}"
    );
    for name in names {
        assert!(err.contains(name), "stderr does not name {name:?}: {err}");
    }
    assert_eq!(
        cli.json(&["task", "get", task], 0),
        before,
        "{args:?}: a refused write changes nothing"
    );
}

/// The fencing scenario of issue 9, by hand: claim under term 1 with a claim id (re-sent
/// safely), guarded writes with the current claim, a lapse (a short grace period on the last
/// renewal), a takeover with term 2, `recover-orphans --policy fail`, and the deposed leader's
/// late `task update` refused with one line naming the stored claim, the task unchanged. Then
/// the ABA case: a stale attempt of the same instance is refused after a requeue and reclaim.
fn fencing(cli: &Cli) {
    cli.json(&["migrate"], 0);
    let task = create_queued(cli, "deploy_nodes");
    let other = create_queued(cli, "deploy_nodes");

    let held = cli.json(&["lease", "claim", "--instance", "A"], 0);
    let t1 = held["lease"]["term"].as_i64().unwrap();
    let t1s = t1.to_string();
    let claim_id = "0190e5a1-1111-4000-8000-00000000c1a1";
    let claim = [
        "task",
        "claim",
        "--instance",
        "A",
        "--term",
        &t1s,
        "--claim-id",
        claim_id,
    ];
    let claimed = cli.json(&claim, 0);
    assert_eq!(claimed["task_id"], task.as_str(), "the oldest queued task");
    assert_eq!(claimed["status"], "running");
    assert_eq!(claimed["claimed_by"], "A");
    assert_eq!(claimed["claim_term"], t1);
    assert_eq!(claimed["attempt"], 1);
    assert_eq!(claimed["claim_id"], claim_id);
    // Re-sent (as after a lost reply): the same task under the same claim, nothing more claimed.
    let again = cli.json(&claim, 0);
    assert_eq!(
        again["task_id"],
        task.as_str(),
        "a re-sent claim id answers its task"
    );
    assert_eq!(again["attempt"], 1, "and does not claim it again");
    assert_eq!(cli.json(&["task", "get", &other], 0)["status"], "queued");
    // The same claim id from another instance is a conflict, and claims nothing.
    let out = cli.run(&["task", "claim", "--instance", "B", "--claim-id", claim_id]);
    assert_status(&out, 1, &["claim id of another instance"]);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    assert_eq!(cli.json(&["task", "get", &other], 0)["status"], "queued");

    // Guarded writes with the current claim go through.
    let guard = ["--instance", "A", "--term", t1s.as_str(), "--attempt", "1"];
    let mut update = vec!["task", "update", &task, "--result-message", "deploying"];
    update.extend_from_slice(&guard);
    let updated = cli.json(&update, 0);
    assert_eq!(updated["result"]["message"], "deploying");
    assert_eq!(updated["status"], "running");
    let mut set = vec!["task", "set-status", &task, "running"];
    set.extend_from_slice(&guard);
    assert_eq!(cli.json(&set, 0)["claimed_by"], "A");
    // A guard of another attempt, another term or another instance is refused.
    assert_refused(
        cli,
        &[
            "task",
            "update",
            &task,
            "--retry",
            "3",
            "--instance",
            "A",
            "--term",
            &t1s,
            "--attempt",
            "2",
        ],
        &task,
        &["claimed by A under term", "(attempt 1)"],
    );
    assert_refused(
        cli,
        &[
            "task",
            "set-status",
            &task,
            "complete",
            "--instance",
            "A",
            "--attempt",
            "1",
        ],
        &task,
        &["claimed by A under term", "not by A without a term"],
    );

    // A stalls: its last renewal gives it one second, then it lapses.
    let short = [("DRYDOCK_LEADER__GRACE_PERIOD", "1s")];
    assert_eq!(
        cli.json_env(&["lease", "renew", "--instance", "A"], &short, 0)["outcome"],
        "held"
    );
    std::thread::sleep(std::time::Duration::from_millis(1600));
    // Lapsed but not yet taken over: the task still carries A's claim, the term is dead.
    let mut late = vec![
        "task",
        "update",
        &task,
        "--status",
        "complete",
        "--result-status",
        "success",
    ];
    late.extend_from_slice(&guard);
    assert_refused(cli, &late, &task, &["A", "term"]);

    // B takes over with a higher term and fails A's orphans.
    let taken = cli.json_env(&["lease", "claim", "--instance", "B"], &short, 0);
    assert_eq!(taken["outcome"], "held");
    let t2 = taken["lease"]["term"].as_i64().unwrap();
    assert!(t2 > t1, "a change of holder raises the term");
    let t2s = t2.to_string();
    let recovered = cli.json(&["recover-orphans", "--term", &t2s, "--policy", "fail"], 0);
    assert_eq!(recovered, serde_json::json!([task.as_str()]));
    let out = cli.run(&["recover-orphans", "--term", &t2s, "--policy", "fail"]);
    assert_status(&out, 0, &["recover-orphans again"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "a second recovery finds nothing"
    );
    let failed = cli.json(&["task", "get", &task], 0);
    assert_eq!(failed["status"], "complete");
    assert_eq!(failed["result"]["status"], "failure");
    assert_eq!(failed["claimed_by"], Value::Null, "recovery ends the claim");
    let orphan = failed["result"]["details"]["messageList"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["message"].as_str().unwrap().contains("orphaned"));
    assert!(orphan, "the orphan message keeps the record: {failed}");

    // A wakes and finishes its task late: refused, one line naming the stored claim (none:
    // it ended with the recovery), nothing changed.
    assert_refused(cli, &late, &task, &[&task, "carries no claim"]);

    // ABA: the same instance, the same (absent) term, a later attempt.
    let first = cli.json(&["task", "claim", "--instance", "C"], 0);
    assert_eq!(first["task_id"], other.as_str());
    assert_eq!(first["attempt"], 1);
    assert_eq!(
        cli.json(&["task", "set-status", &other, "queued"], 0)["claimed_by"],
        Value::Null,
        "back to the queue ends the claim"
    );
    let second = cli.json(&["task", "claim", "--instance", "C"], 0);
    assert_eq!(second["task_id"], other.as_str());
    assert_eq!(second["attempt"], 2);
    assert_refused(
        cli,
        &[
            "task",
            "set-status",
            &other,
            "complete",
            "--instance",
            "C",
            "--attempt",
            "1",
        ],
        &other,
        &["claimed by C without a term (attempt 2)"],
    );
    let done = cli.json(
        &[
            "task",
            "set-status",
            &other,
            "complete",
            "--instance",
            "C",
            "--attempt",
            "2",
        ],
        0,
    );
    assert_eq!(done["status"], "complete");
    assert_eq!(
        done["claimed_by"], "C",
        "completion keeps the record of who ran it"
    );
    // A finished task takes no further write, guarded or not.
    let out = cli.run(&["task", "update", &other, "--retry", "1"]);
    assert_status(&out, 1, &["write to a finished task"]);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
}

#[test]
fn fencing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    fencing(&Cli::new(url));
}

#[test]
fn fencing_on_postgres() {
    let db = fresh_database_blocking();
    fencing(&Cli::new(db.url.clone()));
}

/// `task update` with every field, `task create --created --created-by`, `task subtasks`
/// with and without `--active`/`--complete`, and `recover-orphans --policy requeue` in text.
fn typed_writes(cli: &Cli) {
    cli.json(&["migrate"], 0);
    let parent = id_of(&cli.json(&["task", "create", "--action", "deploy_nodes"], 0));
    let waiting = id_of(&cli.json(
        &[
            "task",
            "create",
            "--action",
            "deploy_node",
            "--parent",
            &parent,
        ],
        0,
    ));
    let finished = id_of(&cli.json(
        &[
            "task",
            "create",
            "--action",
            "deploy_node",
            "--parent",
            &parent,
        ],
        0,
    ));
    let updated = cli.json(
        &[
            "task",
            "update",
            &finished,
            "--status",
            "complete",
            "--result-status",
            "partial_success",
            "--result-message",
            "1 of 2 deployed",
            "--result-reason",
            "n2: IPMI timeout",
            "--success",
            "n1",
            "--failure",
            "n2",
            "--failure",
            "n3",
            "--link",
            "detail_logs=https://logs.example/1?a=b",
            "--retry",
            "2",
        ],
        0,
    );
    assert_eq!(updated["status"], "complete");
    let result = &updated["result"];
    assert_eq!(result["status"], "partial_success");
    assert_eq!(result["message"], "1 of 2 deployed");
    assert_eq!(result["reason"], "n2: IPMI timeout");
    assert_eq!(result["successes"], serde_json::json!(["n1"]));
    assert_eq!(result["failures"], serde_json::json!(["n2", "n3"]));
    assert_eq!(
        result["links"],
        serde_json::json!([{"rel": "detail_logs", "href": "https://logs.example/1?a=b"}])
    );
    assert_eq!(updated["retry"], 2);
    assert!(updated["updated"].is_string());
    // What is not given is kept.
    let again = cli.json(&["task", "update", &waiting, "--result-message", "soon"], 0);
    assert_eq!(again["status"], "requested");
    assert_eq!(again["result"]["status"], "incomplete");
    // Running only by a claim.
    let out = cli.run(&["task", "update", &waiting, "--status", "running"]);
    assert_status(&out, 1, &["update to running"]);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));

    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(cli.json(&["task", "subtasks", &parent], 0)),
        vec![waiting.clone(), finished.clone()]
    );
    assert_eq!(
        ids(cli.json(&["task", "subtasks", &parent, "--active"], 0)),
        vec![waiting.clone()]
    );
    assert_eq!(
        ids(cli.json(&["task", "subtasks", &parent, "--complete"], 0)),
        vec![finished.clone()]
    );
    let text = cli.run(&["task", "subtasks", &parent, "--complete"]);
    assert_status(&text, 0, &["subtasks in text"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&finished) && !text.contains(&waiting),
        "{text}"
    );
    let out = cli.run(&["task", "subtasks", "0190e5a1-0000-7000-8000-000000000000"]);
    assert_status(&out, 1, &["subtasks of an unknown task"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // Back-dated creation, kept to the microsecond, and purged as old.
    let old = cli.json(
        &[
            "task",
            "create",
            "--action",
            "import",
            "--created",
            "2020-02-29T23:30:00.1234567-01:00",
            "--created-by",
            "importer",
        ],
        0,
    );
    assert_eq!(old["created"], "2020-03-01T00:30:00.123456Z");
    assert_eq!(old["created_by"], "importer");
    assert_eq!(
        cli.json(&["task", "get", &id_of(&old)], 0)["created"],
        "2020-03-01T00:30:00.123456Z"
    );
    let listed = cli.json(&["task", "list"], 0);
    assert_eq!(
        listed[0]["task_id"], old["task_id"],
        "the oldest task lists first"
    );
    assert_eq!(
        cli.json(&["task", "create", "--action", "x"], 0)["created_by"],
        "drydock-state-cli"
    );
    assert_eq!(cli.json(&["purge", "--older-than", "365d"], 0)["tasks"], 1);

    // Recovery by requeue, in text: one id per line.
    let held = cli.json(&["lease", "claim", "--instance", "A"], 0);
    let t1 = held["lease"]["term"].as_i64().unwrap().to_string();
    let queued = create_queued(cli, "prepare_site");
    let claimed = cli.json(&["task", "claim", "--instance", "A", "--term", &t1], 0);
    assert_eq!(claimed["task_id"], queued.as_str());
    cli.json(&["lease", "release", "--instance", "A"], 0);
    let t2 = cli.json(&["lease", "claim", "--instance", "B"], 0)["lease"]["term"]
        .as_i64()
        .unwrap()
        .to_string();
    let out = cli.run(&["recover-orphans", "--term", &t2, "--policy", "requeue"]);
    assert_status(&out, 0, &["recover-orphans requeue"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), queued);
    let requeued = cli.json(&["task", "get", &queued], 0);
    assert_eq!(requeued["status"], "queued");
    assert_eq!(requeued["claimed_by"], Value::Null);
    assert_eq!(requeued["attempt"], 1, "the attempt is never lowered");
    let reclaimed = cli.json(&["task", "claim", "--instance", "B", "--term", &t2], 0);
    assert_eq!(reclaimed["attempt"], 2);
}

#[test]
fn typed_writes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    typed_writes(&Cli::new(url));
}

#[test]
fn typed_writes_on_postgres() {
    let db = fresh_database_blocking();
    typed_writes(&Cli::new(db.url.clone()));
}

/// Runs `args` in text mode, expecting exit status `code`; returns stdout.
fn text(cli: &Cli, args: &[&str], code: i32) -> String {
    let out = cli.run(args);
    assert_status(&out, code, args);
    stdout(&out)
}

/// Runs `args`, expecting exit 1 with one line on stderr containing each of `says`; returns it.
fn refused(cli: &Cli, args: &[&str], says: &[&str]) -> String {
    let out = cli.run(args);
    assert_status(&out, 1, args);
    let err = stderr(&out);
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line on stderr: {err}"
    );
    assert!(err.starts_with("drydock-state: error:"), "{err}");
    for say in says {
        assert!(
            err.contains(say),
            "{args:?}: stderr does not say {say:?}: {err}"
        );
    }
    err
}

/// The field names of a boot action's JSON, Drydock's.
const BOOT_ACTION_FIELDS: [&str; 6] = [
    "action_id",
    "action_name",
    "action_status",
    "identity_key",
    "node_name",
    "task_id",
];

fn assert_boot_action_fields(action: &Value) {
    let mut keys: Vec<&str> = action
        .as_object()
        .unwrap_or_else(|| panic!("a boot action is an object: {action}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, BOOT_ACTION_FIELDS, "{action}");
}

/// Issue 11, item 1, from the shell: contexts (generated and given keys, replaced), boot
/// actions added, listed by name, read by id, their status set once to a final value and
/// refused after that, unknown and invalid ids; every command in both output modes, ids and
/// keys compared byte for byte.
fn boot_actions(cli: &Cli) {
    cli.json(&["migrate"], 0);
    let task = id_of(&cli.json(&["task", "create", "--action", "deploy_nodes"], 0));
    let other_task = id_of(&cli.json(&["task", "create", "--action", "deploy_nodes"], 0));

    // A context with a generated key: text prints the key alone, and get shows it.
    let key = text(
        cli,
        &[
            "boot-action",
            "context",
            "set",
            "--node",
            "n1",
            "--task",
            &task,
        ],
        0,
    )
    .trim()
    .to_string();
    assert_eq!(key.len(), 64, "{key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex: {key}"
    );
    let context = cli.json(&["boot-action", "context", "get", "--node", "n1"], 0);
    assert_eq!(
        context,
        serde_json::json!({"node_name": "n1", "task_id": task, "identity_key": key})
    );
    let shown = text(cli, &["boot-action", "context", "get", "--node", "n1"], 0);
    assert!(
        shown.contains(&key) && shown.contains(&task) && shown.contains("n1"),
        "{shown}"
    );
    // Set again with a key given (upper case): replaced; the bytes are kept.
    let given = "00ff10ef".repeat(8);
    let set = cli.json(
        &[
            "boot-action",
            "context",
            "set",
            "--node",
            "n1",
            "--task",
            &other_task,
            "--key",
            &given.to_uppercase(),
        ],
        0,
    );
    assert_eq!(
        set,
        serde_json::json!({"node_name": "n1", "task_id": other_task, "identity_key": given})
    );
    assert_eq!(
        cli.json(&["boot-action", "context", "get", "--node", "n1"], 0),
        set,
        "context get shows what context set printed"
    );
    let generated = cli.json(
        &[
            "boot-action",
            "context",
            "set",
            "--node",
            "n2",
            "--task",
            &task,
        ],
        0,
    );
    assert_ne!(
        generated["identity_key"],
        key.as_str(),
        "a new key each time"
    );
    assert_eq!(
        cli.json(&["boot-action", "context", "get", "--node", "n2"], 0),
        generated
    );
    refused(
        cli,
        &["boot-action", "context", "get", "--node", "n3"],
        &["not found", "n3"],
    );

    // Boot actions: add prints the id in text, the action in JSON.
    let id = text(
        cli,
        &[
            "boot-action",
            "add",
            "--node",
            "n1",
            "--task",
            &task,
            "--key",
            &key,
            "--name",
            "hello",
        ],
        0,
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 26, "{id}");
    let parsed: drydock_state::BootActionId = id.parse().expect("the id parses back");
    assert_eq!(parsed.to_string(), id, "and prints back byte for byte");
    let quiet = cli.json(
        &[
            "boot-action",
            "add",
            "--node",
            "n1",
            "--task",
            &task,
            "--key",
            &key,
            "--name",
            "quiet",
            "--status",
            "unreported",
        ],
        0,
    );
    assert_boot_action_fields(&quiet);
    assert_eq!(quiet["node_name"], "n1");
    assert_eq!(quiet["action_name"], "quiet");
    assert_eq!(quiet["task_id"], task.as_str());
    assert_eq!(quiet["identity_key"], key.as_str());
    assert_eq!(quiet["action_status"], "unreported");
    let quiet_id = quiet["action_id"].as_str().unwrap().to_string();
    assert_eq!(quiet_id.len(), 26);
    quiet_id
        .parse::<drydock_state::BootActionId>()
        .expect("the id parses back");
    cli.json(
        &[
            "boot-action",
            "add",
            "--node",
            "n2",
            "--task",
            &other_task,
            "--key",
            &given,
            "--name",
            "hello",
        ],
        0,
    );

    // get: by id (either case), in both modes.
    let got = cli.json(&["boot-action", "get", &id], 0);
    assert_boot_action_fields(&got);
    assert_eq!(got["action_id"], id.as_str());
    assert_eq!(got["action_name"], "hello");
    assert_eq!(got["identity_key"], key.as_str());
    assert_eq!(got["action_status"], "incomplete", "the default status");
    assert_eq!(
        cli.json(&["boot-action", "get", &id.to_lowercase()], 0),
        got,
        "an id in lower case names the same action"
    );
    let shown = text(cli, &["boot-action", "get", &id], 0);
    for part in [id.as_str(), "hello", "n1", "incomplete", &task, &key] {
        assert!(shown.contains(part), "{part} in {shown}");
    }

    // list: an object keyed by action name, this node's only.
    let listed = cli.json(&["boot-action", "list", "--node", "n1"], 0);
    let names: Vec<&String> = listed.as_object().unwrap().keys().collect();
    assert_eq!(names, ["hello", "quiet"]);
    assert_eq!(listed["hello"], got);
    assert_eq!(listed["quiet"], quiet);
    let table = text(cli, &["boot-action", "list", "--node", "n1"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per action: {table}");
    assert!(
        lines[0].contains("ACTION ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines[1].contains(&id) && lines[1].contains("hello"),
        "{table}"
    );
    assert!(
        lines[2].contains(&quiet_id) && lines[2].contains("unreported"),
        "{table}"
    );
    assert_eq!(
        cli.json(&["boot-action", "list", "--node", "n9"], 0),
        serde_json::json!({})
    );

    // set-status: success, reported on the action's task; then final.
    let said = text(cli, &["boot-action", "set-status", &id, "success"], 0);
    assert!(said.contains(&id) && said.contains("success"), "{said}");
    let after = cli.json(&["task", "get", &task], 0);
    let messages = after["result"]["details"]["messageList"]
        .as_array()
        .unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["context"] == id.as_str()
                && m["message"].as_str().unwrap().contains("success")),
        "the status change is a message on the task: {after}"
    );
    let before = (
        cli.json(&["boot-action", "get", &id], 0),
        cli.json(&["boot-action", "list", "--node", "n1"], 0),
        after,
    );
    for again in ["failure", "success", "incomplete"] {
        refused(
            cli,
            &["boot-action", "set-status", &id, again],
            &["conflict", &id, "final"],
        );
    }
    assert_eq!(
        (
            cli.json(&["boot-action", "get", &id], 0),
            cli.json(&["boot-action", "list", "--node", "n1"], 0),
            cli.json(&["task", "get", &task], 0),
        ),
        before,
        "a refused status change changes nothing"
    );
    // In JSON: the action as stored.
    let changed = cli.json(&["boot-action", "set-status", &quiet_id, "failure"], 0);
    assert_boot_action_fields(&changed);
    assert_eq!(changed["action_id"], quiet_id.as_str());
    assert_eq!(changed["action_status"], "failure");
    assert_eq!(
        cli.json(&["boot-action", "get", &quiet_id], 0)["action_status"],
        "failure"
    );

    // Unknown and invalid ids: exit 1, one line.
    let unknown = drydock_state::BootActionId::new().to_string();
    refused(
        cli,
        &["boot-action", "set-status", &unknown, "success"],
        &["not found", &unknown],
    );
    refused(cli, &["boot-action", "get", &unknown], &["not found"]);
    for bad in ["not-a-ulid", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", &id[..25]] {
        refused(
            cli,
            &["boot-action", "set-status", bad, "success"],
            &["boot_action.action_id"],
        );
        refused(
            cli,
            &["boot-action", "get", bad],
            &["boot_action.action_id"],
        );
    }
    assert_eq!(
        cli.json(&["boot-action", "list", "--node", "n1"], 0)["hello"]["action_status"],
        "success"
    );
}

#[test]
fn boot_actions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    boot_actions(&Cli::new(url));
}

#[test]
fn boot_actions_on_postgres() {
    let db = fresh_database_blocking();
    boot_actions(&Cli::new(db.url.clone()));
}

/// Issue 11, item 2, from the shell: `task get --layers --subtask-errors --build-data` on a
/// tree of a root, two children and a grandchild that reported an error, with build data on
/// the root and the grandchild. (An id listed but not stored cannot be made with the CLI,
/// which only lists a subtask it creates; the store's kit covers that case.)
fn task_views(cli: &Cli) {
    cli.json(&["migrate"], 0);
    let create = |action: &str, parent: Option<&str>| {
        let mut args = vec!["task", "create", "--action", action];
        if let Some(parent) = parent {
            args.extend(["--parent", parent]);
        }
        id_of(&cli.json(&args, 0))
    };
    let root = create("deploy_nodes", None);
    let child = create("prepare_nodes", Some(&root));
    let sibling = create("deploy_node", Some(&root));
    let grand = create("deploy_node", Some(&child));
    cli.json(
        &[
            "message",
            "add",
            &grand,
            "--message",
            "IPMI timeout",
            "--error",
            "--context-type",
            "node",
            "--context",
            "n1",
        ],
        0,
    );
    cli.json(&["message", "add", &child, "--message", "all fine"], 0);
    for (node, task, data) in [("n1", &grand, "<lshw n1/>"), ("n0", &root, "<lshw n0/>")] {
        cli.json(
            &[
                "build-data",
                "add",
                "--node",
                node,
                "--task",
                task,
                "--generator",
                "lshw",
                "--format",
                "text/xml",
                "--data",
                data,
            ],
            0,
        );
    }
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |mut k: Vec<String>| {
        k.sort();
        k
    };

    // The whole tree, errors and build data.
    let view = cli.json(
        &[
            "task",
            "get",
            &root,
            "--layers",
            "-1",
            "--subtask-errors",
            "--build-data",
        ],
        0,
    );
    assert_eq!(
        keys(&view),
        sorted(vec![
            "init_task_id".into(),
            "subtask_errors".into(),
            root.clone(),
            child.clone(),
            sibling.clone(),
            grand.clone(),
        ]),
        "{view}"
    );
    assert_eq!(view["init_task_id"], root.as_str());
    for id in [&root, &child, &sibling, &grand] {
        let task = &view[id.as_str()];
        assert_eq!(task["task_id"], id.as_str());
        assert_eq!(task["kind"], "Task");
        assert_eq!(task["result"]["kind"], "Status");
        assert!(task.get("request_context").is_none(), "{task}");
        assert!(task["build_data"].is_array(), "{task}");
    }
    assert_eq!(
        view[&root]["subtask_id_list"],
        serde_json::json!([child, sibling])
    );
    assert_eq!(view[&root]["build_data"].as_array().unwrap().len(), 1);
    assert_eq!(view[&root]["build_data"][0]["node_name"], "n0");
    assert_eq!(view[&grand]["build_data"][0]["node_name"], "n1");
    assert_eq!(view[&grand]["build_data"][0]["data_element"], "<lshw n1/>");
    assert_eq!(view[&child]["build_data"], serde_json::json!([]));
    let errors = &view["subtask_errors"];
    assert_eq!(
        keys(errors),
        vec![grand.clone()],
        "only the grandchild erred"
    );
    let error = &errors[&grand];
    assert_eq!(error["task_id"], grand.as_str());
    assert_eq!(error["kind"], "Status");
    assert_eq!(error["details"]["errorCount"], 1);
    assert_eq!(
        error["details"]["messageList"][0]["message"],
        "IPMI timeout"
    );

    // Two layers: the root and its children; errors are still looked for at every depth.
    let two = cli.json(
        &["task", "get", &root, "--layers", "2", "--subtask-errors"],
        0,
    );
    assert_eq!(
        keys(&two),
        sorted(vec![
            "init_task_id".into(),
            "subtask_errors".into(),
            root.clone(),
            child.clone(),
            sibling.clone(),
        ]),
        "{two}"
    );
    assert!(two[&root].get("build_data").is_none(), "not asked for");
    assert_eq!(keys(&two["subtask_errors"]), vec![grand.clone()]);
    // One layer: the root alone, as a map.
    let one = cli.json(&["task", "get", &root, "--layers", "1"], 0);
    assert_eq!(
        keys(&one),
        sorted(vec!["init_task_id".into(), root.clone()])
    );
    // Layers 0 (the default): the task itself, with what was asked for added.
    let flat = cli.json(
        &["task", "get", &root, "--build-data", "--subtask-errors"],
        0,
    );
    assert_eq!(flat["task_id"], root.as_str());
    assert!(flat.get("init_task_id").is_none(), "{flat}");
    assert_eq!(flat["build_data"].as_array().unwrap().len(), 1);
    assert_eq!(keys(&flat["subtask_errors"]), vec![grand.clone()]);
    let mut plain = flat.clone();
    let extra = plain.as_object_mut().unwrap();
    extra.remove("build_data");
    extra.remove("subtask_errors");
    assert_eq!(
        cli.json(&["task", "get", &root], 0),
        plain,
        "without a flag, the task as before"
    );

    // Text: the tree indented by layer, each task's build data under it, then the errors.
    let tree = text(
        cli,
        &[
            "task",
            "get",
            &root,
            "--layers",
            "-1",
            "--subtask-errors",
            "--build-data",
        ],
        0,
    );
    let line = |id: &str| {
        tree.lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {tree}"))
            .to_string()
    };
    assert!(
        tree.starts_with(&format!("task tree of {root} (all layers)")),
        "{tree}"
    );
    assert!(line(&root).starts_with(&format!("  {root}")), "{tree}");
    assert!(line(&child).starts_with(&format!("    {child}")), "{tree}");
    assert!(
        line(&sibling).starts_with(&format!("    {sibling}")),
        "{tree}"
    );
    assert!(
        line(&grand).starts_with(&format!("      {grand}")),
        "{tree}"
    );
    assert!(line(&grand).contains("(1 error)"), "{tree}");
    assert!(tree.contains("build data: n1  lshw  text/xml"), "{tree}");
    assert!(tree.contains("subtask errors: 1"), "{tree}");
    assert!(tree.contains("ERROR [node:n1] IPMI timeout"), "{tree}");
    let detail = text(cli, &["task", "get", &root], 0);
    assert!(
        detail.starts_with(&format!("task:       {root}")),
        "without a flag, the text as before: {detail}"
    );
    let detail = text(cli, &["task", "get", &root, "--build-data"], 0);
    assert!(
        detail.starts_with(&format!("task:       {root}")) && detail.contains("build data: 1"),
        "{detail}"
    );

    // An unknown task, and layers below -1.
    refused(
        cli,
        &[
            "task",
            "get",
            "0190e5a1-0000-7000-8000-000000000000",
            "--layers",
            "-1",
        ],
        &["not found"],
    );
    assert_status(
        &cli.run(&["task", "get", &root, "--layers", "-2"]),
        2,
        &["layers -2"],
    );
}

#[test]
fn task_views_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    task_views(&Cli::new(url));
}

#[test]
fn task_views_on_postgres() {
    let db = fresh_database_blocking();
    task_views(&Cli::new(db.url.clone()));
}

/// Issue 11, item 4: `health` prints the backend and its clock, which is near ours.
fn health(cli: &Cli, backend: &str) {
    let h = cli.json(&["health"], 0);
    assert_eq!(h["backend"], backend);
    assert_eq!(h["healthy"], true);
    let clock = chrono::DateTime::parse_from_rfc3339(h["clock"].as_str().unwrap())
        .expect("the clock is RFC 3339");
    let skew = (chrono::Utc::now() - clock.with_timezone(&chrono::Utc)).num_seconds();
    assert!(skew.abs() < 300, "the store's clock is {skew}s off ours");
    let said = text(cli, &["health"], 0);
    assert!(said.contains(backend) && said.contains("clock"), "{said}");
}

#[test]
fn health_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    health(&Cli::new(url), "sqlite");
}

#[test]
fn health_on_postgres() {
    let db = fresh_database_blocking();
    health(&Cli::new(db.url.clone()), "postgres");
}

#[test]
fn health_of_an_unreachable_postgres_is_exit_1() {
    for mode in ["text", "json"] {
        let out = Command::new(BIN)
            .args([
                "--output",
                mode,
                "--database-url",
                "postgres://drydock:hunter2@127.0.0.1:1/x",
                "health",
            ])
            .env_remove("DRYDOCK_DATABASE__URL")
            .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "2s")
            .output()
            .unwrap();
        assert_status(&out, 1, &["health", mode]);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("drydock-state: error:"), "{err}");
        assert!(err.contains("unavailable"), "{err}");
        assert!(
            !err.contains("hunter2") && !stdout(&out).contains("hunter2"),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "nothing on stdout");
    }
}

/// `config` hides secrets by their type: the Deckhand driver declares its settings, so its
/// token and Keystone password print as `***` while its other settings show; a section no
/// linked driver declares (a third party's `api_key`, say) is hidden whole.
#[test]
fn config_hides_driver_secrets_by_type() {
    let out = Command::new(BIN)
        .args(["config", "--output", "json"])
        .env(
            "DRYDOCK_DESIGN__DRIVERS__DECKHAND__KEYSTONE__AUTH_URL",
            "https://ks:5000/v3",
        )
        .env(
            "DRYDOCK_DESIGN__DRIVERS__DECKHAND__KEYSTONE__USERNAME",
            "drydock-user",
        )
        .env(
            "DRYDOCK_DESIGN__DRIVERS__DECKHAND__KEYSTONE__PASSWORD",
            "pw-hunter2",
        )
        .env(
            "DRYDOCK_DESIGN__DRIVERS__DECKHAND__KEYSTONE__PROJECT_NAME",
            "service",
        )
        .env("DRYDOCK_DESIGN__DRIVERS__ACME__API_KEY", "key-hunter2")
        .env("DRYDOCK_DESIGN__DRIVERS__ACME__REGION", "north")
        .output()
        .unwrap();
    assert_status(&out, 0, &["config"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = shown.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    let keystone = &shown["design"]["drivers"]["deckhand"]["keystone"];
    assert_eq!(keystone["password"], "***", "{text}");
    assert_eq!(keystone["username"], "drydock-user", "{text}");
    assert_eq!(shown["design"]["drivers"]["acme"], "***", "{text}");
}
