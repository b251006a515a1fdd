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
