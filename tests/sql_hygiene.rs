//! Fails the build if any SQL is assembled at run time: a `format!` or a string concatenation
//! whose text is SQL, or a query built from a non-constant string. Statements belong in each
//! backend's `queries` module (or `.sql` files) with bind parameters.
//!
//! A line may be allowed with a `sql-hygiene: allow (<reason>)` comment on it or on one of the
//! three lines above; the only legitimate case is DDL that takes no parameters, such as
//! `CREATE DATABASE <generated name>` in a test harness.

use std::path::{Path, PathBuf};

const SQL_MARKERS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "CREATE ",
    "DROP ",
    "ALTER ",
    " WHERE ",
    "TRUNCATE ",
    "COPY ",
];

/// The string literal starting at or after `from` in `text`, if any (plain or raw).
fn next_literal(text: &str, from: usize) -> Option<&str> {
    let rest = &text[from..];
    let start = rest.find('"')?;
    // Only a literal that is the first argument (nothing but `(`, spaces, `r`, `#` before it).
    if !rest[..start]
        .chars()
        .all(|c| c == '(' || c.is_whitespace() || c == 'r' || c == '#' || c == '&')
    {
        return None;
    }
    let hashes = rest[..start]
        .chars()
        .rev()
        .take_while(|c| *c == '#')
        .count();
    let body = &rest[start + 1..];
    let end = if hashes > 0 {
        body.find(&format!("\"{}", "#".repeat(hashes)))?
    } else {
        let bytes = body.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i)? {
                b'\\' => i += 2,
                b'"' => break i,
                _ => i += 1,
            }
        }
    };
    Some(&body[..end])
}

fn is_sql(literal: &str) -> bool {
    SQL_MARKERS.iter().any(|m| literal.contains(m))
}

/// Every offending place in `source` as (line number, what was found).
fn offences(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let allowed = |line: usize| {
        lines[line.saturating_sub(3)..=line]
            .iter()
            .any(|l| l.contains("sql-hygiene: allow"))
    };
    let line_of = |offset: usize| source[..offset].matches('\n').count();
    let mut found = Vec::new();
    for pattern in ["format!(", "push_str("] {
        for (offset, _) in source.match_indices(pattern) {
            if let Some(literal) = next_literal(source, offset + pattern.len() - 1) {
                let line = line_of(offset);
                if is_sql(literal) && !allowed(line) {
                    found.push((line + 1, format!("{pattern} with SQL text")));
                }
            }
        }
    }
    for (offset, _) in source.match_indices("+ \"") {
        if let Some(literal) = next_literal(source, offset + 1) {
            let line = line_of(offset);
            if is_sql(literal) && !allowed(line) {
                found.push((line + 1, "string concatenation with SQL text".into()));
            }
        }
    }
    for pattern in [
        "sqlx::query(&",
        "sqlx::query_as(&",
        "sqlx::query_scalar(&",
        "raw_sql(&",
    ] {
        for (offset, _) in source.match_indices(pattern) {
            let line = line_of(offset);
            if !allowed(line) {
                found.push((line + 1, format!("{pattern}…) on a runtime string")));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name() != Some("sql_hygiene.rs".as_ref())
        {
            out.push(path);
        }
    }
}

#[test]
fn no_sql_is_assembled_at_run_time() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files.len() > 20,
        "the scan found only {} files; is it looking in the right place?",
        files.len()
    );
    let mut report = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for (line, what) in offences(&source) {
            report.push(format!(
                "{}:{line}: {what}",
                file.strip_prefix(root).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "SQL assembled at run time:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_detector_catches_what_it_must() {
    let bad = [
        r#"let q = format!("SELECT * FROM tasks WHERE id = '{id}'");"#,
        r#"sql.push_str(" WHERE action = ");"#,
        r#"let q = "DELETE FROM tasks".to_string() + " WHERE x";"#,
        r#"sqlx::query(&q).execute(&pool)"#,
        "let q = format!(\n    r#\"UPDATE tasks SET status = {s}\"#\n);",
    ];
    for source in bad {
        assert!(!offences(source).is_empty(), "missed: {source}");
    }
    let fine = [
        r#"sqlx::query(queries::CLAIM_NEXT).bind(id)"#,
        r#"format!("task {id} is {status}, which is final")"#,
        r#"format!("cannot update the design: {e}")"#,
        "// sql-hygiene: allow (generated name, DDL takes no parameters)\nlet q = format!(\"CREATE DATABASE {name}\");",
    ];
    for source in fine {
        assert!(offences(source).is_empty(), "false alarm: {source}");
    }
}
