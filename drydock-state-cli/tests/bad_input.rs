//! The CLI's bad-input catalogue: the `drydock-state` binary run as a process with bad
//! arguments (malformed URLs, invalid UTF-8, NUL bytes in files, negative and zero
//! retentions, unknown statuses, illegal status changes, bad configuration). Each row names
//! the exit status and what stderr must say (the field or key at fault); after each row the
//! store, read back through the CLI, must be exactly as it was. Rows run on a SQLite file and
//! on a fresh PostgreSQL database.
//!
//! Also: text with SQL metacharacters and a 10 MB message file go in and come out verbatim,
//! and no password reaches stdout or stderr even with `RUST_LOG=trace`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drydock_state_testsupport::postgres::{fresh_database_blocking, TestDatabase};
use serde_json::Value;

/// Message text that would be an injection if it were ever spliced into SQL.
const INJECTION: &str = "'); DELETE FROM tasks; -- ";

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");

/// Where a catalogue runs: a database URL and a home for the default database, which must
/// never be used.
struct Target {
    url: String,
    home: tempfile::TempDir,
    files: tempfile::TempDir,
}

impl Target {
    fn command(&self, url: Option<&OsString>) -> Command {
        let mut cmd = Command::new(BIN);
        match url {
            Some(url) => cmd.arg("--database-url").arg(url),
            None => cmd.arg("--database-url").arg(&self.url),
        };
        cmd.env_remove("DRYDOCK_DATABASE__URL")
            .env_remove("RUST_LOG")
            .env("DRYDOCK_STATE_HOME", self.home.path())
            .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "3s");
        cmd
    }

    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        self.command(None)
            .args(args)
            .output()
            .expect("the binary runs")
    }

    /// Runs with `--output json`, expecting success, and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(&[&["--output", "json"], args].concat());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Everything observable: all tasks with their messages, all build data, the lease, the
    /// seeded node's boot-action context and boot actions.
    fn snapshot(&self) -> Value {
        serde_json::json!({
            "tasks": self.json(&["task", "list"]),
            "build_data": self.json(&["build-data", "list"]),
            "lease": self.json(&["lease", "show"]),
            "boot_action_context": self.json(&["boot-action", "context", "get", "--node", "n1"]),
            "boot_actions": self.json(&["boot-action", "list", "--node", "n1"]),
        })
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn sqlite_target() -> Target {
    let files = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", files.path().join("state.db").display());
    Target {
        url,
        home: tempfile::tempdir().unwrap(),
        files,
    }
}

/// A target on a fresh PostgreSQL database of the shared test harness (dropped with the
/// returned guard); fails, saying how to provide a server, when none can be had.
fn postgres_target() -> (Target, TestDatabase) {
    let db = fresh_database_blocking();
    let target = Target {
        url: db.url.clone(),
        home: tempfile::tempdir().unwrap(),
        files: tempfile::tempdir().unwrap(),
    };
    (target, db)
}

/// The claim id seeded on `claimed`.
const CLAIM_ID: &str = "0190e5a1-2222-4000-8000-00000000c1a1";

/// The identity key seeded for node `n1`.
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The ids seeded into a target, for rows to refer to.
struct Seeded {
    root: String,
    done: String,
    /// Running, claimed by `orch-a` without a term (attempt 1) under [`CLAIM_ID`].
    claimed: String,
    /// A boot action of `n1` whose status is final (`success`).
    reported: String,
}

fn seed(t: &Target) -> Seeded {
    t.json(&["migrate"]);
    let root = t.json(&[
        "task",
        "create",
        "--action",
        "deploy_nodes",
        "--status",
        "queued",
    ]);
    let root = root["task_id"].as_str().unwrap().to_string();
    t.json(&[
        "task",
        "create",
        "--action",
        "deploy_node",
        "--parent",
        &root,
    ]);
    let done = t.json(&["task", "create", "--action", "prepare_site"]);
    let done = done["task_id"].as_str().unwrap().to_string();
    t.json(&["task", "set-status", &done, "complete"]);
    t.json(&["message", "add", &root, "--message", "started"]);
    t.json(&[
        "build-data",
        "add",
        "--node",
        "n1",
        "--task",
        &root,
        "--generator",
        "lshw",
        "--format",
        "text/plain",
        "--data",
        "<xml/>",
    ]);
    let out = t.run(&["lease", "claim", "--instance", "orch-a"]);
    assert_eq!(out.status.code(), Some(0));
    let claimed = t.json(&[
        "task",
        "create",
        "--action",
        "inspect_node",
        "--status",
        "queued",
    ]);
    let claimed = claimed["task_id"].as_str().unwrap().to_string();
    let got = t.json(&[
        "task",
        "claim",
        "--action",
        "inspect_node",
        "--instance",
        "orch-a",
        "--claim-id",
        CLAIM_ID,
    ]);
    assert_eq!(got["task_id"], claimed.as_str());
    assert_eq!(got["attempt"], 1);
    t.json(&[
        "boot-action",
        "context",
        "set",
        "--node",
        "n1",
        "--task",
        &root,
        "--key",
        KEY,
    ]);
    let add = |name: &str| {
        let action = t.json(&[
            "boot-action",
            "add",
            "--node",
            "n1",
            "--task",
            &root,
            "--key",
            KEY,
            "--name",
            name,
        ]);
        action["action_id"].as_str().unwrap().to_string()
    };
    add("pending");
    let reported = add("reported");
    t.json(&["boot-action", "set-status", &reported, "success"]);
    Seeded {
        root,
        done,
        claimed,
        reported,
    }
}

/// One bad invocation.
struct Row {
    name: &'static str,
    /// Replaces the target's database URL.
    url: Option<OsString>,
    args: Vec<OsString>,
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Each must appear in stderr.
    says: Vec<&'static str>,
    /// None may appear in stdout or stderr.
    never: Vec<&'static str>,
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(os).collect()
}

fn invalid_utf8(prefix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'x', 0xc3]);
    OsString::from_vec(bytes)
}

fn rows(t: &Target, s: &Seeded) -> Vec<Row> {
    let bad_utf8 = t.file("bad-utf8.txt", b"caf\xe9 \xff\xfe broken");
    let nul = t.file("nul.txt", b"before\0after");
    let bad_type = t.file("bad-type.toml", b"[database]\npool_size = \"zzVALzz\"\n");
    let unknown_key = t.file("unknown-key.toml", b"[database]\npool_sizee = 3\n");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |path: &Path| path.display().to_string();
    let r = |name, argv: Vec<OsString>, code, says: &[&'static str]| Row {
        name,
        url: None,
        args: argv,
        env: Vec::new(),
        code,
        says: says.to_vec(),
        never: Vec::new(),
    };
    let with_url = |name, url: OsString, code, says: &[&'static str]| Row {
        url: Some(url),
        ..r(name, args(&["task", "list"]), code, says)
    };
    let with_env = |name, var: &'static str, value: &str, says: &[&'static str]| Row {
        env: vec![(var, value.to_string())],
        never: vec!["zzVALzz"],
        ..r(name, args(&["task", "list"]), 1, says)
    };
    let build = |node: &str, task: &str, extra: &[&str]| {
        let mut a = args(&[
            "build-data",
            "add",
            "--node",
            node,
            "--task",
            task,
            "--generator",
            "lshw",
            "--format",
            "text/plain",
        ]);
        a.extend(args(extra));
        a
    };
    let (root, done, claimed) = (s.root.as_str(), s.done.as_str(), s.claimed.as_str());
    let update = |id: &str, extra: &[&str]| {
        let mut a = args(&["task", "update", id]);
        a.extend(args(extra));
        a
    };
    let unknown = "0190e5a1-0000-7000-8000-000000000000";
    let reported = s.reported.as_str();
    let unknown_action = "01HWX9R000ZZQDVK5VNACRGXV6";
    let bad_hex = "zz".repeat(32);
    let short_key = "ab".repeat(31);
    let long_key = "ab".repeat(33);
    let context = |node: &str, task: &str, key: Option<&str>| {
        let mut a = args(&[
            "boot-action",
            "context",
            "set",
            "--node",
            node,
            "--task",
            task,
        ]);
        if let Some(key) = key {
            a.extend(args(&["--key", key]));
        }
        a
    };
    let action = |node: &str, task: &str, key: &str, name: &str, extra: &[&str]| {
        let mut a = args(&[
            "boot-action",
            "add",
            "--node",
            node,
            "--task",
            task,
            "--key",
            key,
            "--name",
            name,
        ]);
        a.extend(args(extra));
        a
    };
    vec![
        r(
            "boot-action context with a key not hex",
            context("n1", root, Some(&bad_hex)),
            1,
            &["boot_action.identity_key", "hex"],
        ),
        r(
            "boot-action context with a short key",
            context("n1", root, Some(&short_key)),
            1,
            &["boot_action.identity_key", "32 bytes"],
        ),
        r(
            "boot-action context with a long key",
            context("n1", root, Some(&long_key)),
            1,
            &["boot_action.identity_key"],
        ),
        r(
            "boot-action context for an empty node name",
            context("", root, None),
            1,
            &["boot_action.node_name"],
        ),
        r(
            "boot-action context for a node name of 300 characters",
            context(&"n".repeat(300), root, None),
            1,
            &["boot_action.node_name"],
        ),
        r(
            "boot-action context for an unknown task",
            context("n1", unknown, None),
            1,
            &["not found"],
        ),
        r(
            "boot-action context for a bad task id",
            context("n1", "42", None),
            2,
            &["--task"],
        ),
        r(
            "boot-action context of an empty node name",
            args(&["boot-action", "context", "get", "--node", ""]),
            1,
            &["boot_action.node_name"],
        ),
        r(
            "boot-action context of a node without one",
            args(&["boot-action", "context", "get", "--node", "n9"]),
            1,
            &["not found", "n9"],
        ),
        r(
            "boot action with a key not hex",
            action("n1", root, &bad_hex, "x", &[]),
            1,
            &["boot_action.identity_key"],
        ),
        r(
            "boot action with a short key",
            action("n1", root, &short_key, "x", &[]),
            1,
            &["boot_action.identity_key"],
        ),
        r(
            "boot action without a key",
            args(&[
                "boot-action",
                "add",
                "--node",
                "n1",
                "--task",
                root,
                "--name",
                "x",
            ]),
            2,
            &["--key"],
        ),
        r(
            "boot action for an empty node name",
            action("", root, KEY, "x", &[]),
            1,
            &["boot_action.node_name"],
        ),
        r(
            "boot action with an empty name",
            action("n1", root, KEY, "", &[]),
            1,
            &["boot_action.action_name"],
        ),
        r(
            "boot action with a name of 65 characters",
            action("n1", root, KEY, &"a".repeat(65), &[]),
            1,
            &["boot_action.action_name"],
        ),
        r(
            "boot action with an unknown status",
            action("n1", root, KEY, "x", &["--status", "done"]),
            2,
            &["--status", "boot_action.action_status"],
        ),
        r(
            "boot action for an unknown task",
            action("n1", unknown, KEY, "x", &[]),
            1,
            &["not found"],
        ),
        r(
            "boot action status with a bad ULID",
            args(&["boot-action", "set-status", "not-a-ulid", "success"]),
            1,
            &["boot_action.action_id"],
        ),
        r(
            "boot action status with an out-of-range ULID",
            args(&[
                "boot-action",
                "set-status",
                "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
                "success",
            ]),
            1,
            &["boot_action.action_id"],
        ),
        r(
            "boot action status with a ULID in Crockford aliases",
            args(&[
                "boot-action",
                "set-status",
                "01HWX9R000ZZQDVK5VNACRGXVO",
                "success",
            ]),
            1,
            &["boot_action.action_id"],
        ),
        r(
            "boot action status with SQL for an id",
            args(&["boot-action", "set-status", "' OR 1=1 --", "success"]),
            1,
            &["boot_action.action_id"],
        ),
        r(
            "boot action status unknown",
            args(&["boot-action", "set-status", reported, "succeeded"]),
            2,
            &["boot_action.action_status"],
        ),
        r(
            "boot action status in upper case",
            args(&["boot-action", "set-status", reported, "SUCCESS"]),
            2,
            &["boot_action.action_status"],
        ),
        r(
            "boot action status of an unknown id",
            args(&["boot-action", "set-status", unknown_action, "success"]),
            1,
            &["not found", unknown_action],
        ),
        r(
            "boot action status after a final one",
            args(&["boot-action", "set-status", reported, "failure"]),
            1,
            &["conflict", "final"],
        ),
        r(
            "boot action with a bad ULID",
            args(&["boot-action", "get", "0123"]),
            1,
            &["boot_action.action_id"],
        ),
        r(
            "boot action of an unknown id",
            args(&["boot-action", "get", unknown_action]),
            1,
            &["not found"],
        ),
        r(
            "boot actions of an empty node name",
            args(&["boot-action", "list", "--node", ""]),
            1,
            &["boot_action.node_name"],
        ),
        r(
            "task view with layers below -1",
            args(&["task", "get", root, "--layers", "-2"]),
            2,
            &["--layers"],
        ),
        r(
            "task view with layers not a number",
            args(&["task", "get", root, "--layers", "all"]),
            2,
            &["--layers"],
        ),
        r(
            "task view of an unknown task",
            args(&["task", "get", unknown, "--subtask-errors"]),
            1,
            &["not found"],
        ),
        with_url(
            "unknown scheme",
            os("ftp://host/x"),
            1,
            &["unknown scheme `ftp`"],
        ),
        with_url(
            "upper-case unknown scheme",
            os("Oracle://h/d"),
            1,
            &["unknown scheme `oracle`"],
        ),
        with_url(
            "relative database path",
            os("relative/state.db"),
            1,
            &["database.url"],
        ),
        with_url("empty database url", os(""), 1, &["database.url"]),
        with_url(
            "sqlite url naming no file",
            os("sqlite://"),
            1,
            &["database.url"],
        ),
        with_url(
            "malformed postgres port",
            os("postgres://u:Pw-Port-1@db:port/x"),
            1,
            &["database.url"],
        ),
        Row {
            never: vec!["Pw-Cli-Unreach"],
            ..with_url(
                "unreachable postgres with a password",
                os(format!("postgres://u:Pw-Cli-Unreach@127.0.0.1:{closed}/x")),
                1,
                &["backend unavailable", "postgres://u:***@127.0.0.1"],
            )
        },
        with_url(
            "database url not UTF-8",
            invalid_utf8("sqlite:///tmp/"),
            2,
            &["UTF-8"],
        ),
        r(
            "action with a space",
            args(&["task", "create", "--action", "deploy nodes"]),
            1,
            &["task.action"],
        ),
        r(
            "empty action",
            args(&["task", "create", "--action", ""]),
            1,
            &["task.action"],
        ),
        r(
            "action with a bell",
            args(&["task", "create", "--action", "x\u{7}y"]),
            1,
            &["task.action"],
        ),
        r(
            "action of 200 characters",
            args(&["task", "create", "--action", &"a".repeat(200)]),
            1,
            &["task.action"],
        ),
        r(
            "action not UTF-8",
            vec![
                os("task"),
                os("create"),
                os("--action"),
                invalid_utf8("deploy"),
            ],
            2,
            &["UTF-8"],
        ),
        r(
            "relative design ref",
            args(&[
                "task",
                "create",
                "--action",
                "x",
                "--design-ref",
                "site.yaml",
            ]),
            1,
            &["design_ref"],
        ),
        r(
            "malformed design ref",
            args(&[
                "task",
                "create",
                "--action",
                "x",
                "--design-ref",
                "ht!tp://h/x",
            ]),
            1,
            &["design_ref"],
        ),
        r(
            "node filter not JSON",
            args(&["task", "create", "--action", "x", "--node-filter", "{bad"]),
            2,
            &["--node-filter"],
        ),
        r(
            "parent not a UUID",
            args(&["task", "create", "--action", "x", "--parent", "42"]),
            2,
            &["--parent", "task_id"],
        ),
        r(
            "unknown parent",
            args(&["task", "create", "--action", "x", "--parent", unknown]),
            1,
            &["not found"],
        ),
        r(
            "initial status running",
            args(&["task", "create", "--action", "x", "--status", "running"]),
            2,
            &["--status"],
        ),
        r(
            "unknown status",
            args(&["task", "set-status", root, "runnin"]),
            2,
            &["task.status"],
        ),
        r(
            "upper-case status",
            args(&["task", "set-status", root, "QUEUED"]),
            2,
            &["task.status"],
        ),
        r(
            "status with SQL",
            args(&["task", "set-status", root, "queued';--"]),
            2,
            &["task.status"],
        ),
        r(
            "complete -> running",
            args(&["task", "set-status", done, "running"]),
            1,
            &["conflict", "complete"],
        ),
        r(
            "set-status of an unknown task",
            args(&["task", "set-status", unknown, "queued"]),
            1,
            &["not found"],
        ),
        r(
            "get with a bad id",
            args(&["task", "get", "' OR 1=1 --"]),
            2,
            &["task_id"],
        ),
        r(
            "list by an unknown status",
            args(&["task", "list", "--status", "RUNNING"]),
            2,
            &["task.status"],
        ),
        r(
            "negative limit",
            args(&["task", "list", "--limit=-1"]),
            2,
            &["--limit"],
        ),
        r(
            "limit beyond u32",
            args(&["task", "list", "--limit", "99999999999"]),
            2,
            &["--limit"],
        ),
        r(
            "term not a number",
            args(&["task", "claim", "--term", "abc"]),
            2,
            &["--term"],
        ),
        r(
            "claim with a stale term",
            args(&["task", "claim", "--instance", "orch-b", "--term", "1"]),
            1,
            &["lease lost"],
        ),
        r(
            "claim id not a UUID",
            args(&["task", "claim", "--claim-id", "42"]),
            2,
            &["--claim-id", "UUID"],
        ),
        r(
            "claim id of another instance's claim",
            args(&[
                "task",
                "claim",
                "--instance",
                "orch-b",
                "--claim-id",
                CLAIM_ID,
            ]),
            1,
            &["conflict", CLAIM_ID],
        ),
        r(
            "creation date not RFC 3339",
            args(&["task", "create", "--action", "x", "--created", "2020-01-01"]),
            2,
            &["--created", "RFC 3339"],
        ),
        r(
            "creation date without a zone",
            args(&[
                "task",
                "create",
                "--action",
                "x",
                "--created",
                "2020-01-01T00:00:00",
            ]),
            2,
            &["--created"],
        ),
        r(
            "subtask of a finished parent",
            args(&["task", "create", "--action", "x", "--parent", done]),
            1,
            &["conflict", "complete"],
        ),
        r("update with no field", update(root, &[]), 2, &["--status"]),
        r(
            "update to an unknown result status",
            update(root, &["--result-status", "great"]),
            2,
            &["--result-status", "task.result.status"],
        ),
        r(
            "update to an unknown status",
            update(root, &["--status", "queued';--"]),
            2,
            &["--status", "task.status"],
        ),
        r(
            "update with a negative retry",
            update(root, &["--retry=-1"]),
            2,
            &["--retry"],
        ),
        r(
            "update with a retry beyond i32",
            update(root, &["--retry", "4294967296"]),
            2,
            &["--retry"],
        ),
        r(
            "update with a link without =",
            update(root, &["--link", "detail_logs"]),
            2,
            &["--link", "REL=HREF"],
        ),
        r(
            "update with a link without rel",
            update(root, &["--link", "=https://logs/1"]),
            2,
            &["--link", "REL=HREF"],
        ),
        r(
            "update to running",
            update(root, &["--status", "running"]),
            1,
            &["conflict", "claimed"],
        ),
        r(
            "update of a finished task",
            update(done, &["--retry", "1"]),
            1,
            &["conflict", "complete"],
        ),
        r(
            "update of an unknown task",
            update(unknown, &["--retry", "1"]),
            1,
            &["not found"],
        ),
        r(
            "guard instance without attempt",
            update(claimed, &["--retry", "1", "--instance", "orch-a"]),
            2,
            &["--attempt"],
        ),
        r(
            "guard attempt without instance",
            args(&["task", "set-status", claimed, "complete", "--attempt", "1"]),
            2,
            &["--instance"],
        ),
        r(
            "guard term without instance",
            update(claimed, &["--retry", "1", "--term", "1"]),
            2,
            &["--instance"],
        ),
        r(
            "guard attempt zero",
            update(
                claimed,
                &["--retry", "1", "--instance", "orch-a", "--attempt", "0"],
            ),
            2,
            &["--attempt"],
        ),
        r(
            "guard attempt not a number",
            update(
                claimed,
                &["--retry", "1", "--instance", "orch-a", "--attempt", "one"],
            ),
            2,
            &["--attempt"],
        ),
        r(
            "guard term negative",
            update(
                claimed,
                &[
                    "--retry",
                    "1",
                    "--instance",
                    "orch-a",
                    "--term=-1",
                    "--attempt",
                    "1",
                ],
            ),
            2,
            &["--term"],
        ),
        r(
            "guard of a stale attempt",
            args(&[
                "task",
                "set-status",
                claimed,
                "complete",
                "--instance",
                "orch-a",
                "--attempt",
                "2",
            ]),
            1,
            &["lease lost", "claimed by orch-a without a term (attempt 1)"],
        ),
        r(
            "guard of another instance",
            update(
                claimed,
                &[
                    "--status",
                    "complete",
                    "--instance",
                    "orch-b",
                    "--attempt",
                    "1",
                ],
            ),
            1,
            &["lease lost", "claimed by orch-a", "not by orch-b"],
        ),
        r(
            "guard with a term the claim lacks",
            update(
                claimed,
                &[
                    "--result-status",
                    "success",
                    "--instance",
                    "orch-a",
                    "--term",
                    "1",
                    "--attempt",
                    "1",
                ],
            ),
            1,
            &["lease lost", "claimed by orch-a without a term"],
        ),
        r(
            "guarded write to an unclaimed task",
            args(&[
                "task",
                "set-status",
                root,
                "complete",
                "--instance",
                "orch-a",
                "--term",
                "1",
                "--attempt",
                "1",
            ]),
            1,
            &["lease lost", "carries no claim"],
        ),
        r(
            "subtasks with --active and --complete",
            args(&["task", "subtasks", root, "--active", "--complete"]),
            2,
            &["--active", "--complete"],
        ),
        r(
            "subtasks of a bad id",
            args(&["task", "subtasks", "42"]),
            2,
            &["task_id"],
        ),
        r(
            "subtasks of an unknown task",
            args(&["task", "subtasks", unknown]),
            1,
            &["not found"],
        ),
        r(
            "recover-orphans without a policy",
            args(&["recover-orphans", "--term", "2"]),
            2,
            &["--policy"],
        ),
        r(
            "recover-orphans with an unknown policy",
            args(&["recover-orphans", "--term", "2", "--policy", "retry"]),
            2,
            &["--policy", "requeue", "fail"],
        ),
        r(
            "recover-orphans with term zero",
            args(&["recover-orphans", "--term", "0", "--policy", "fail"]),
            2,
            &["--term"],
        ),
        r(
            "recover-orphans with a term not a number",
            args(&["recover-orphans", "--term", "two", "--policy", "fail"]),
            2,
            &["--term"],
        ),
        r(
            "recover-orphans without a term",
            args(&["recover-orphans", "--policy", "fail"]),
            2,
            &["--term"],
        ),
        r(
            "zero retention",
            args(&["purge", "--older-than", "0"]),
            2,
            &["--older-than", "greater than zero"],
        ),
        r(
            "zero retention with a unit",
            args(&["purge", "--older-than", "0s"]),
            2,
            &["--older-than"],
        ),
        r(
            "negative retention",
            args(&["purge", "--older-than=-1d"]),
            2,
            &["--older-than", "negative"],
        ),
        r(
            "negative retention as a separate word",
            args(&["purge", "--older-than", "-1d"]),
            2,
            &["-1"],
        ),
        r(
            "retention in words",
            args(&["purge", "--older-than", "soon"]),
            2,
            &["--older-than"],
        ),
        r(
            "message file not UTF-8",
            vec![
                os("message"),
                os("add"),
                os(root),
                os("--message-file"),
                os(p(&bad_utf8)),
            ],
            1,
            &["message-file", "UTF-8"],
        ),
        r(
            "message file with a NUL",
            vec![
                os("message"),
                os("add"),
                os(root),
                os("--message-file"),
                os(p(&nul)),
            ],
            1,
            &["message.message", "NUL"],
        ),
        r(
            "missing message file",
            args(&["message", "add", root, "--message-file", "/no/such/file"]),
            1,
            &["message-file"],
        ),
        r(
            "message not UTF-8",
            vec![
                os("message"),
                os("add"),
                os(root),
                os("--message"),
                invalid_utf8("m"),
            ],
            2,
            &["UTF-8"],
        ),
        r(
            "message to an unknown task",
            args(&["message", "add", unknown, "--message", "x"]),
            1,
            &["not found"],
        ),
        r(
            "message with no text",
            args(&["message", "add", root]),
            2,
            &["--message"],
        ),
        r(
            "build data for an empty node",
            build("", root, &["--data", "x"]),
            1,
            &["build_data.node_name"],
        ),
        r(
            "build data file not UTF-8",
            build("n1", root, &["--file", &p(&bad_utf8)]),
            1,
            &["file", "UTF-8"],
        ),
        r(
            "build data file with a NUL",
            build("n1", root, &["--file", &p(&nul)]),
            1,
            &["build_data.data_element"],
        ),
        r(
            "build data for a bad task id",
            build("n1", "x", &["--data", "x"]),
            2,
            &["--task"],
        ),
        r(
            "lease claim without instance",
            args(&["lease", "claim"]),
            2,
            &["--instance"],
        ),
        r(
            "relative design fetch",
            args(&["design", "fetch", "site.yaml"]),
            1,
            &["design_ref"],
        ),
        r(
            "unknown design scheme",
            args(&["design", "fetch", "gopher://h/x"]),
            1,
            &["unknown scheme `gopher`"],
        ),
        Row {
            never: vec!["Pw-Cli-Design"],
            ..r(
                "design fetch from a closed port with a password",
                args(&[
                    "design",
                    "fetch",
                    &format!("http://u:Pw-Cli-Design@127.0.0.1:{closed}/x"),
                ]),
                1,
                &["design fetch", "u:***@127.0.0.1"],
            )
        },
        with_env(
            "pool size not a number",
            "DRYDOCK_DATABASE__POOL_SIZE",
            "zzVALzz",
            &["database.pool_size", "DRYDOCK_DATABASE__POOL_SIZE"],
        ),
        with_env(
            "negative grace period",
            "DRYDOCK_LEADER__GRACE_PERIOD",
            "-5",
            &["leader.grace_period", "DRYDOCK_LEADER__GRACE_PERIOD"],
        ),
        with_env(
            "certificate check not a boolean",
            "DRYDOCK_DESIGN__DANGER_ACCEPT_INVALID_CERTS",
            "zzVALzz",
            &["design.danger_accept_invalid_certs"],
        ),
        Row {
            never: vec!["zzVALzz"],
            ..r(
                "config file value of the wrong type",
                vec![os("--config"), os(p(&bad_type)), os("task"), os("list")],
                1,
                &["database.pool_size", "bad-type.toml"],
            )
        },
        r(
            "config file key unknown",
            vec![os("--config"), os(p(&unknown_key)), os("task"), os("list")],
            1,
            &["database.pool_sizee"],
        ),
        r(
            "config file missing",
            args(&["--config", "/no/such/drydock.toml", "task", "list"]),
            1,
            &["/no/such/drydock.toml"],
        ),
        r("no command", Vec::new(), 2, &["Usage"]),
        r("unknown command", args(&["frobnicate"]), 2, &["frobnicate"]),
    ]
}

fn catalogue(t: &Target) {
    let seeded = seed(t);
    let rows = rows(t, &seeded);
    assert!(rows.len() >= 85, "{} rows", rows.len());
    let mut before = t.snapshot();
    let mut failures = Vec::new();
    for row in &rows {
        let mut cmd = t.command(row.url.as_ref());
        cmd.args(&row.args);
        for (var, value) in &row.env {
            cmd.env(var, value);
        }
        let out = cmd.output().expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(row.code) {
            failures.push(format!(
                "{}: exit {:?}, expected {}; stderr: {stderr}",
                row.name,
                out.status.code(),
                row.code
            ));
        }
        for says in &row.says {
            if !stderr.contains(says) {
                failures.push(format!(
                    "{}: stderr does not say {says:?}: {stderr}",
                    row.name
                ));
            }
        }
        for never in &row.never {
            if stderr.contains(never) || stdout.contains(never) {
                failures.push(format!(
                    "{}: the output shows {never:?}: {stderr}",
                    row.name
                ));
            }
        }
        if stderr.contains("panicked") {
            failures.push(format!("{}: panicked: {stderr}", row.name));
        }
        let after = t.snapshot();
        if after != before {
            failures.push(format!(
                "{}: the store changed\nbefore: {before}\nafter:  {after}",
                row.name
            ));
            before = after;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(
        !t.home.path().join("state.db").exists(),
        "no row fell back to the default database"
    );
}

#[test]
fn bad_input_catalogue_on_sqlite() {
    catalogue(&sqlite_target());
}

#[test]
fn bad_input_catalogue_on_postgres() {
    let (target, _db) = postgres_target();
    catalogue(&target);
}

/// SQL metacharacters as an action, a message and a node name: stored and matched verbatim.
/// A 10 MB message file: stored whole.
fn verbatim(t: &Target) {
    t.json(&["migrate"]);
    let odd = ["x';DROP_TABLE_tasks;--", "%", "_", "déploy_🚀", "$1"];
    let mut ids = Vec::new();
    for action in odd {
        let task = t.json(&["task", "create", "--action", action, "--status", "queued"]);
        let id = task["task_id"].as_str().unwrap().to_string();
        let text = format!("{INJECTION}{action}");
        t.json(&[
            "message",
            "add",
            &id,
            "--message",
            &text,
            "--context",
            action,
        ]);
        let got = t.json(&["task", "get", &id]);
        assert_eq!(got["action"], action);
        assert_eq!(got["result"]["details"]["messageList"][0]["message"], text);
        ids.push(id);
    }
    for (action, id) in odd.iter().zip(&ids) {
        let listed = t.json(&["task", "list", "--action", action]);
        let listed: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, vec![id.as_str()], "list --action {action:?}");
    }
    let claimed = t.json(&["task", "claim", "--action", "%", "--instance", "orch-a"]);
    assert_eq!(claimed["action"], "%");

    let mut big = "é🚀'%_\\".repeat(10 * 1024 * 1024 / 10);
    big.push_str("<the end>");
    let file = t.file("big.txt", big.as_bytes());
    let file = file.display().to_string();
    t.json(&["message", "add", &ids[0], "--message-file", &file]);
    let got = t.json(&["task", "get", &ids[0]]);
    let stored = got["result"]["details"]["messageList"][1]["message"]
        .as_str()
        .unwrap();
    assert!(
        stored == big,
        "a 10 MB message came back as {} bytes, not {}",
        stored.len(),
        big.len()
    );
}

#[test]
fn verbatim_on_sqlite() {
    verbatim(&sqlite_target());
}

#[test]
fn verbatim_on_postgres() {
    let (target, _db) = postgres_target();
    verbatim(&target);
}

/// With a password in `DRYDOCK_DATABASE__URL` and `RUST_LOG=trace`, neither a working run nor
/// a failing one shows it, on stdout or stderr (every log line goes to stderr).
#[test]
fn trace_logs_never_show_the_database_password() {
    let (target, _db) = postgres_target();
    let mut url = url::Url::parse(&target.url).unwrap();
    // The test server trusts local connections: the password is sent, and accepted.
    url.set_password(Some("Pw-Cli-Trace-1")).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://drydock:Pw-Cli-Trace-2@127.0.0.1:{closed}/x");
    let runs: [(&str, &[&str], i32); 6] = [
        (url.as_str(), &["migrate"], 0),
        (
            url.as_str(),
            &[
                "task",
                "create",
                "--action",
                "deploy_nodes",
                "--design-ref",
                "https://d:Pw-Cli-Trace-3@design.example/site.yaml",
            ],
            0,
        ),
        (url.as_str(), &["task", "list"], 0),
        (
            url.as_str(),
            &["task", "set-status", "not-a-uuid", "queued"],
            2,
        ),
        (url.as_str(), &["config"], 0),
        (unreachable.as_str(), &["task", "list"], 1),
    ];
    for (database, argv, code) in runs {
        let out = Command::new(BIN)
            .args(argv)
            .env("DRYDOCK_DATABASE__URL", database)
            .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "3s")
            .env("RUST_LOG", "trace")
            .env("DRYDOCK_STATE_HOME", target.home.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: {stderr}");
        if code == 0 && argv[0] != "config" {
            assert!(
                stderr.lines().count() > 1,
                "{argv:?}: trace logging is on, so stderr has lines"
            );
        }
        for secret in ["Pw-Cli-Trace-1", "Pw-Cli-Trace-2"] {
            assert!(
                !stderr.contains(secret) && !stdout.contains(secret),
                "{argv:?} shows {secret}:\n{}",
                stderr
                    .lines()
                    .chain(stdout.lines())
                    .filter(|l| l.contains(secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        // The design reference is data the task carries: stdout shows the task with the
        // reference's password redacted, and no log line may show it.
        assert!(
            !stderr.contains("Pw-Cli-Trace-3"),
            "{argv:?}: a log line shows the design reference's password"
        );
        assert!(
            !stdout.contains("Pw-Cli-Trace-3"),
            "{argv:?}: stdout shows the design reference's password"
        );
    }
}
