//! `drydock-state adopt`, end to end: a Drydock database built here the way Drydock's alembic
//! migrations and `statemgmt` write it (defects included, times in a New York session; see
//! `drydock_state_testsupport::drydock`), adopted by the binary into PostgreSQL (the same
//! database, beside Drydock's tables) and into SQLite, then read back through the binary.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use drydock_state::{BuildData, Task};
use drydock_state_testsupport::drydock::{self, DrydockDb, Expected};
use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");

fn run(into: &str, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--database-url")
        .arg(into)
        .args(args)
        .env_remove("DRYDOCK_DATABASE__URL")
        .env("DRYDOCK_STATE_HOME", home)
        .output()
        .expect("the binary runs")
}

fn json(into: &str, home: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = run(into, home, &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The report's counts for `table`: (read, written, present).
fn counts(report: &Value, table: &str) -> (u64, u64, u64) {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {report}"));
    let n = |k: &str| t[k].as_u64().unwrap();
    (n("read"), n("written"), n("present"))
}

fn reasons(report: &Value, table: &str, kind: &str) -> BTreeMap<String, u64> {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap();
    serde_json::from_value(t[kind].clone()).unwrap()
}

fn task(into: &str, home: &std::path::Path, id: Uuid) -> Task {
    serde_json::from_value(json(into, home, &["task", "get", &id.to_string()]))
        .expect("a task's JSON reads back")
}

/// Every Drydock row that should have arrived, read back through the binary.
fn check_adopted(into: &str, home: &std::path::Path, x: &Expected) {
    // The root: its subtasks mended (duplicate kept once, missing child appended, the id of
    // no task dropped), links, messages with their times and error count.
    let root = task(into, home, x.root);
    let ids: Vec<Uuid> = root.subtask_id_list.iter().map(|t| t.0).collect();
    assert_eq!(ids, x.children, "the root's subtasks");
    assert_eq!(
        root.created, x.times[&x.root].created,
        "times converted from New York"
    );
    assert_eq!(root.updated, x.times[&x.root].updated);
    let links: Vec<(String, String)> = root
        .result
        .links
        .iter()
        .map(|l| (l.rel.clone(), l.href.clone()))
        .collect();
    let mut want_links = Vec::new();
    for (rel, hrefs) in x.result_links.as_object().unwrap() {
        for href in hrefs.as_array().unwrap() {
            want_links.push((rel.clone(), href.as_str().unwrap().to_string()));
        }
    }
    assert_eq!(links, want_links);
    for id in &x.task_ids {
        if *id == x.orphan || !x.times.contains_key(id) {
            continue;
        }
        let t = task(into, home, *id);
        let mine: Vec<_> = x.messages.iter().filter(|m| m.task_id == *id).collect();
        assert_eq!(
            t.result.details.message_list.len(),
            mine.len(),
            "messages of {id}"
        );
        for (got, want) in t.result.details.message_list.iter().zip(&mine) {
            assert_eq!(got.sequence, i64::from(want.sequence));
            assert_eq!(got.message, want.text, "kept as stored");
            assert_eq!(got.ts, want.ts, "message time converted");
        }
        assert_eq!(
            t.result.details.error_count,
            t.result
                .details
                .message_list
                .iter()
                .filter(|m| m.error)
                .count() as u64
        );
        assert_eq!(t.created, x.times[id].created, "created of {id}");
    }
    let child = task(into, home, x.listed_once);
    assert_eq!(child.node_filter.as_ref(), Some(&x.node_filter));
    assert_eq!(child.parent_task_id.map(|p| p.0), Some(x.root));
    let orphan = task(into, home, x.orphan);
    assert_eq!(
        orphan.parent_task_id, None,
        "a subtask whose parent is gone is a root"
    );
    assert_eq!(
        task(into, home, x.queued_terminate).status.as_str(),
        "terminated"
    );
    let running = task(into, home, x.running);
    assert_eq!(running.status.as_str(), "running");
    assert_eq!(running.claim_term, Some(0), "a legacy claim");
    assert!(!task(into, home, x.terminate_null).terminate);
    assert_eq!(task(into, home, x.node_filter_json_null).node_filter, None);

    // Build data by node, and the latest per generator.
    for node in &x.build_data_nodes {
        let all: Vec<BuildData> =
            serde_json::from_value(json(into, home, &["build-data", "list", "--node", node]))
                .unwrap();
        let want = x.build_data.iter().filter(|b| &b.node_name == node).count();
        assert_eq!(
            all.len(),
            want,
            "every build element of {node}, duplicates too"
        );
        let latest: Vec<BuildData> = serde_json::from_value(json(
            into,
            home,
            &["build-data", "list", "--node", node, "--latest"],
        ))
        .unwrap();
        let newest = x
            .build_data
            .iter()
            .filter(|b| &b.node_name == node)
            .map(|b| b.collected_date)
            .max()
            .unwrap();
        assert!(latest.iter().any(|b| b.collected_date == Some(newest)));
    }
    // Boot actions by id, byte for byte; the node's context.
    for action in &x.boot_actions {
        let id = drydock_state::BootActionId(action.action_id).to_string();
        let got = json(into, home, &["boot-action", "get", &id]);
        assert_eq!(got["action_name"], action.action_name.as_str());
        assert_eq!(got["action_status"], action.action_status.as_str());
        assert_eq!(got["identity_key"], hex(&action.identity_key));
    }
    let ctx = json(
        into,
        home,
        &["boot-action", "context", "get", "--node", &x.boot_node],
    );
    assert_eq!(ctx["identity_key"], hex(&x.identity_key));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn source() -> (DrydockDb, BTreeMap<&'static str, String>) {
    let db = drydock::create().await;
    let before = drydock::fingerprint(&db.url).await.unwrap();
    (db, before)
}

fn print_report(title: &str, into: &str, home: &std::path::Path, from: &str, dry: bool) {
    let mut args = vec!["adopt", "--from", from];
    if dry {
        args.push("--dry-run");
    }
    let out = run(into, home, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- {title}\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Into PostgreSQL, in Drydock's own database: a dry run writes nothing, the real run brings
/// every row, a second run brings none, Drydock's tables are unchanged and still resolve
/// through the default search path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_into_postgres_beside_drydock() {
    let (db, before) = source().await;
    let home = tempfile::tempdir().unwrap();
    let into = db.url.clone();
    let x = &db.expected;

    print_report("dry run (text)", &into, home.path(), &db.url, true);
    let dry = json(
        &into,
        home.path(),
        &["adopt", "--from", &db.url, "--dry-run"],
    );
    assert_eq!(dry["dry_run"], true);
    let (read, written, present) = counts(&dry, "tasks");
    assert_eq!(read as usize, x.task_ids.len());
    assert_eq!(
        (written, present),
        (read, 0),
        "a dry run counts what it would write"
    );
    let listed = json(&into, home.path(), &["task", "list"]);
    assert_eq!(listed, Value::Array(vec![]), "a dry run writes nothing");

    print_report("real run (text)", &into, home.path(), &db.url, false);
    print_report("second run (text)", &into, home.path(), &db.url, false);
    let again = json(&into, home.path(), &["adopt", "--from", &db.url]);
    for table in [
        "tasks",
        "result_message",
        "build_data",
        "boot_action",
        "boot_action_status",
    ] {
        let (read, written, present) = counts(&again, table);
        let skipped: u64 = reasons(&again, table, "skipped").values().sum();
        assert_eq!(written, 0, "{table}: nothing imported twice");
        assert_eq!(
            present + skipped,
            read,
            "{table}: every row present or skipped"
        );
    }
    let (_, _, present) = counts(&dry, "result_message");
    assert_eq!(present, 0);
    assert_eq!(
        reasons(&dry, "result_message", "skipped")
            ["its task is not in the source (or was skipped)"],
        1,
        "the message of a task that is gone"
    );
    check_adopted(&into, home.path(), x);

    assert_eq!(
        drydock::fingerprint(&db.url).await.unwrap(),
        before,
        "the source is unchanged"
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let path: (String, i64) = drydock_state_testsupport::sql::query_as(
        "SELECT (SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = to_regclass('tasks')), (SELECT count(*) FROM tasks)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        path.0, "public",
        "Drydock's `tasks` still resolves to its own table"
    );
    assert_eq!(path.1 as usize, x.task_ids.len());
    conn.close().await.unwrap();
}

/// Into SQLite: every row arrives and reads back; a second run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_into_sqlite() {
    let (db, before) = source().await;
    let home = tempfile::tempdir().unwrap();
    let into = format!("sqlite://{}", home.path().join("adopted.db").display());
    let first = json(&into, home.path(), &["adopt", "--from", &db.url]);
    let (read, written, _) = counts(&first, "tasks");
    assert_eq!(read, written);
    check_adopted(&into, home.path(), &db.expected);
    let second = json(&into, home.path(), &["adopt", "--from", &db.url]);
    for table in [
        "tasks",
        "result_message",
        "build_data",
        "boot_action",
        "boot_action_status",
    ] {
        assert_eq!(
            counts(&second, table).1,
            0,
            "{table}: nothing imported twice"
        );
        assert_eq!(counts(&second, table).2, counts(&first, table).1);
    }
    assert_eq!(drydock::fingerprint(&db.url).await.unwrap(), before);
}

/// A database that is not Drydock's is refused, naming what is missing, and nothing is
/// written; the source's password never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_refuses_what_is_not_drydock() {
    let empty = drydock_state_testsupport::postgres::fresh_database().await;
    let home = tempfile::tempdir().unwrap();
    let into = format!("sqlite://{}", home.path().join("adopted.db").display());
    let out = run(&into, home.path(), &["adopt", "--from", &empty.url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public.tasks"), "names what is missing: {err}");
    assert!(err.contains("4713e7ebca9"), "{err}");
    assert_eq!(
        json(&into, home.path(), &["task", "list"]),
        Value::Array(vec![])
    );

    let secret = "postgres://drydock:s3cr3t-pw@127.0.0.1:1/drydock";
    let out = run(&into, home.path(), &["adopt", "--from", secret]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("s3cr3t-pw"), "{all}");
}
