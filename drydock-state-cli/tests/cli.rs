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
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
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
