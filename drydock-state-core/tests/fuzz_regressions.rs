//! The fuzzing oracles over the saved inputs: the seeds of each `cargo fuzz` target and every
//! input a fuzzer found failing, kept once the bug was fixed (`tests/fuzz-regressions/<target>/`).

mod fuzz_oracles;

use std::path::PathBuf;

/// Runs `oracle` over every file saved for `target`, naming the file that fails.
fn replay(target: &str, oracle: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved inputs in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(panic) = std::panic::catch_unwind(|| oracle(&data)) {
            eprintln!("fuzz regression failed on {}", file.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn design_ref_saved_inputs() {
    replay("design_ref", fuzz_oracles::design_ref);
}

#[test]
fn task_json_saved_inputs() {
    replay("task_json", fuzz_oracles::task_json);
}

#[test]
fn duration_config_saved_inputs() {
    replay("duration_config", fuzz_oracles::duration_config);
}
