//! `examples/per_node.rs` runs to its check line: the runtime's per-node limit held (never two
//! handlers on one node) while tasks of different nodes overlapped.
//!
//! As for `orchestrator_example.rs`: `cargo test` builds the examples first; run alone, the
//! test refuses a binary older than the example's source (`cargo build --example per_node`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_per_node_example_checks_its_timeline() {
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/per_node
    let profile_dir = test
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join("per_node");
    assert!(
        binary.is_file(),
        "{} is missing: run this test through `cargo test`",
        binary.display()
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/per_node.rs");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
    assert!(
        modified(&binary) >= modified(&source),
        "{} is older than its source: `cargo build --example per_node`",
        binary.display()
    );
    let out = Command::new(&binary).output().expect("run the example");
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
