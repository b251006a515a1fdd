//! The examples run to their end: `examples/orchestrator.rs` (the README's first command) to
//! its summary on the embedded default, with no server and from a directory that is not the
//! project's, and `examples/per_node.rs` to its check line (never two handlers on one node).
//!
//! `cargo test` builds the examples before it runs the tests, so the examples' binaries sit
//! beside this test's, in `target/<profile>/examples/`. Run alone (`--test examples`), cargo
//! does not rebuild the examples; the test then refuses a binary older than the example's
//! source rather than run a stale one.

use std::path::PathBuf;
use std::process::Command;

fn example_binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run this test through `cargo test`, which builds the examples",
        binary.display()
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
    assert!(
        modified(&binary) >= modified(&source),
        "{} is older than {}: rebuild it (`cargo test` or `cargo build --example {name}`)",
        binary.display(),
        source.display()
    );
    binary
}

#[test]
fn the_orchestrator_example_prints_its_summary_from_any_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(example_binary("orchestrator"))
        .current_dir(elsewhere.path())
        .env("DRYDOCK_STATE_HOME", home.path())
        .env_remove("DRYDOCK_DATABASE__URL")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let database = home.path().join("state.db");
    for expected in [
        format!("database: sqlite://{}", database.display()),
        "became leader with term 1".to_string(),
        "stalls: it stops renewing the lease".to_string(),
        "became leader with term 2".to_string(),
        "recovered 2 orphaned task(s) from an older term".to_string(),
        "completed deploy_nodes".to_string(),
        "summary".to_string(),
        "build data: 8 latest elements (lshw, lldp) over 4 nodes".to_string(),
        "outcome: every node deployed".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "the summary lacks {expected:?}:\n{stdout}"
        );
    }
    // One root and one subtask per node of the shipped design, all complete.
    let tree: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("deploy_node"))
        .filter(|l| l.contains("claimed by"))
        .collect();
    assert_eq!(tree.len(), 5, "root + 4 nodes:\n{stdout}");
    assert!(
        tree.iter().all(|l| l.contains(" complete ")),
        "every task complete:\n{stdout}"
    );
    assert!(database.is_file(), "the embedded database is where it says");
}

#[test]
fn the_per_node_example_checks_its_timeline() {
    let out = Command::new(example_binary("per_node"))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("check: ok (12 of 12 tasks complete; at most 1 at once on one node"),
        "{stdout}"
    );
    // The timeline: one row per node.
    let rows = stdout.lines().filter(|l| l.starts_with("  node-")).count();
    assert_eq!(rows, 3, "{stdout}");
}
