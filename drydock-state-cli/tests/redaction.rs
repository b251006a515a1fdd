//! Issue 10, item 8: no output of the CLI shows a password. A task whose design reference is
//! `https://user:hunter2@host/site.yaml` is created, read (also as a task view), listed, claimed, changed and
//! terminated, with a message quoting a URL with the same password, in both output modes, on
//! a SQLite file and on PostgreSQL: neither stdout nor stderr ever shows `hunter2`, and the
//! rest of the URI is shown (`https://user:***@host/site.yaml`).

use std::process::{Command, Output};

use drydock_state_testsupport::postgres::fresh_database_blocking;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");
const SECRET: &str = "hunter2";
const DESIGN: &str = "https://user:hunter2@host/site.yaml";
const SHOWN: &str = "https://user:***@host/site.yaml";

struct Target {
    url: String,
    home: tempfile::TempDir,
}

impl Target {
    fn new(url: String) -> Self {
        Target {
            url,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `args` in `mode`, expecting exit status `code`; fails if stdout or stderr shows
    /// the password. Returns stdout.
    fn run(&self, mode: &str, args: &[&str], code: i32) -> String {
        let out: Output = Command::new(BIN)
            .arg("--database-url")
            .arg(&self.url)
            .args(["--output", mode])
            .args(args)
            .env_remove("DRYDOCK_DATABASE__URL")
            .env_remove("RUST_LOG")
            .env("DRYDOCK_STATE_HOME", self.home.path())
            .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "3s")
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{mode} {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            !stdout.contains(SECRET),
            "--output {mode} {args:?} shows the password on stdout:\n{stdout}"
        );
        assert!(
            !stderr.contains(SECRET),
            "--output {mode} {args:?} shows the password on stderr:\n{stderr}"
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.run("json", args, 0);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stdout}"))
    }
}

/// Every task in a JSON output (a task, a list of tasks, a task view's map of tasks, or null).
fn tasks(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        Value::Object(view) if view.contains_key("init_task_id") => view
            .iter()
            .filter(|(k, v)| {
                !matches!(k.as_str(), "init_task_id" | "subtask_errors") && !v.is_null()
            })
            .map(|(_, v)| v)
            .collect(),
        task => vec![task],
    }
}

/// The design reference of every task in `value` with one is shown redacted; returns how many.
fn assert_redacted(value: &Value, what: &str) -> usize {
    let mut seen = 0;
    for task in tasks(value) {
        if let Some(design) = task.get("design_ref").filter(|d| !d.is_null()) {
            assert_eq!(design, SHOWN, "{what}");
            seen += 1;
        }
    }
    seen
}

fn create(t: &Target, mode: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "task",
        "create",
        "--action",
        "deploy_nodes",
        "--design-ref",
        DESIGN,
    ];
    args.extend_from_slice(extra);
    match mode {
        "json" => {
            let task = t.json(&args);
            assert_redacted(&task, "task create");
            task["task_id"].as_str().unwrap().to_string()
        }
        _ => t.run(mode, &args, 0).trim().to_string(),
    }
}

fn every_command(t: &Target) {
    t.run("text", &["migrate"], 0);
    for mode in ["json", "text"] {
        let queued = create(t, mode, &["--status", "queued"]);
        let requested = create(t, mode, &[]);
        let child = create(t, mode, &["--parent", &requested]);
        let message = format!("fetched {DESIGN} (see {DESIGN}?log)");
        let shown = format!("fetched {SHOWN} (see {SHOWN}?log)");
        t.run(mode, &["message", "add", &queued, "--message", &message], 0);

        let reads: [&[&str]; 8] = [
            &["task", "get", &queued],
            &["task", "get", &child],
            &["task", "get", &queued, "--build-data", "--subtask-errors"],
            &[
                "task",
                "get",
                &requested,
                "--layers",
                "-1",
                "--subtask-errors",
                "--build-data",
            ],
            &["task", "list"],
            &["task", "list", "--status", "queued"],
            &["task", "list", "--parent", &requested],
            &["task", "list", "--action", "deploy_nodes", "--limit", "2"],
        ];
        for args in reads {
            let stdout = t.run(mode, args, 0);
            if mode == "json" {
                let value: Value = serde_json::from_str(&stdout).unwrap();
                assert!(
                    assert_redacted(&value, &format!("{args:?}")) > 0,
                    "{args:?}"
                );
            }
        }
        let got = t.run(mode, &["task", "get", &queued], 0);
        assert!(
            got.contains(SHOWN),
            "{mode} task get shows the rest of the URI: {got}"
        );
        assert!(
            got.contains(&shown),
            "{mode} task get shows the message: {got}"
        );

        let claim = [
            "task",
            "claim",
            "--action",
            "deploy_nodes",
            "--instance",
            "orch",
        ];
        let claimed = match mode {
            "json" => {
                let task = t.json(&claim);
                assert_eq!(assert_redacted(&task, "task claim"), 1);
                task["task_id"].as_str().unwrap().to_string()
            }
            _ => t.run(mode, &claim, 0).trim().to_string(),
        };
        let changed = t.run(mode, &["task", "set-status", &claimed, "complete"], 0);
        let terminated = t.run(mode, &["task", "terminate", &child], 0);
        if mode == "json" {
            for (what, stdout) in [("set-status", changed), ("terminate", terminated)] {
                let value: Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(assert_redacted(&value, what), 1, "{what}");
            }
        }
        // A design fetch that fails names the URI, redacted.
        t.run(
            mode,
            &[
                "design",
                "fetch",
                "https://user:hunter2@127.0.0.1:1/site.yaml",
            ],
            1,
        );
        t.run(mode, &["config"], 0);
    }
}

#[test]
fn no_output_shows_a_password_on_sqlite() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", home.path().join("state.db").display());
    every_command(&Target::new(url));
}

#[test]
fn no_output_shows_a_password_on_postgres() {
    let db = fresh_database_blocking();
    every_command(&Target::new(db.url.clone()));
}
