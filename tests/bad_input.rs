//! The bad-input catalogue of the library, the rows that need no store: each is an input that
//! must be refused with a typed error of a given kind naming a given field (database URLs,
//! design references, statuses and ids, configuration). The store rows, with the 10 MB,
//! metacharacter and NUL-lookup checks, are in the conformance kit
//! (`drydock_state_core::testkit::bad_input`) and run on every backend from its
//! `conformance_tests!`. The CLI's rows are in `drydock-state-cli/tests/bad_input.rs`.

mod common;

use std::path::Path;

use common::*;
use drydock_state::*;

/// Database URLs that cannot be opened: (url, kind, named).
const BAD_DATABASE_URLS: &[(&str, &str, &str)] = &[
    ("", "invalid_input", "database.url"),
    ("relative/state.db", "invalid_input", "database.url"),
    ("/abs/state.db", "invalid_input", "database.url"),
    ("memory", "invalid_input", "database.url"),
    ("ftp://host/state", "unknown_scheme", "ftp"),
    ("Oracle://host/db", "unknown_scheme", "oracle"),
    ("sqlite://", "invalid_input", "database.url"),
    (
        "postgres://host:notaport/db",
        "invalid_input",
        "database.url",
    ),
    ("postgres://[::1/db", "invalid_input", "database.url"),
    ("po stgres://host/db", "invalid_input", "database.url"),
];

#[tokio::test]
async fn bad_database_urls_are_refused_naming_the_field() {
    let mut failures = Vec::new();
    for (url, want, named) in BAD_DATABASE_URLS {
        match drydock_state::open(url, &test_config()).await {
            Ok(store) => failures.push(format!("{url:?}: opened {}", store.backend_name())),
            Err(e) if kind(&e) != *want || !e.to_string().contains(named) => {
                failures.push(format!(
                    "{url:?}: expected {want} naming {named}, got {}: {e}",
                    kind(&e)
                ))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Design references that cannot be fetched: (uri, kind, named).
const BAD_DESIGN_REFS: &[(&str, &str, &str)] = &[
    ("site.yaml", "invalid_input", "design_ref"),
    ("./site.yaml", "invalid_input", "design_ref"),
    ("ht!tp://host/site.yaml", "invalid_input", "design_ref"),
    ("mailto:ops@site", "invalid_input", "design_ref"),
    ("gopher://host/site.yaml", "unknown_scheme", "gopher"),
    ("file://relative/site.yaml", "invalid_input", "design_ref"),
    ("file:///etc/site.yaml?rev=2", "invalid_input", "design_ref"),
    (
        "file:///no/such/dir/site.yaml",
        "design_fetch",
        "no such file",
    ),
    (
        "deckhand+https://deckhand:8443/",
        "invalid_input",
        "design_ref",
    ),
    (
        "deckhand+https://deckhand:8443/1/2",
        "invalid_input",
        "design_ref",
    ),
    (
        "deckhand+https://user:pw@deckhand:8443/1",
        "invalid_input",
        "design_ref",
    ),
    ("https://", "invalid_input", "design_ref"),
];

#[tokio::test]
async fn bad_design_refs_are_refused_naming_the_field() {
    let resolver = drydock_state::design_resolver(&DesignConfig::default()).unwrap();
    let mut failures = Vec::new();
    for (uri, want, named) in BAD_DESIGN_REFS {
        match drydock_state::fetch_design(&resolver, uri).await {
            Ok(d) => failures.push(format!("{uri:?}: fetched {} bytes", d.bytes.len())),
            Err(e) if kind(&e) != *want || !e.to_string().contains(named) => {
                failures.push(format!(
                    "{uri:?}: expected {want} naming {named}, got {}: {e}",
                    kind(&e)
                ))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Strings that are not a status, result status or task id: (text, parse, named).
#[test]
fn unknown_statuses_and_ids_name_the_field() {
    for s in [
        "runnin",
        "RUNNING",
        "running ",
        "",
        "queued;--",
        "complète",
        "\0",
    ] {
        let e = s.parse::<TaskStatus>().unwrap_err();
        assert_eq!(kind(&e), "invalid_input", "{s:?}");
        assert!(e.to_string().contains("task.status"), "{s:?}: {e}");
    }
    for s in ["ok", "Success", "partial-success"] {
        let e = s.parse::<ResultStatus>().unwrap_err();
        assert!(e.to_string().contains("task.result.status"), "{s:?}: {e}");
    }
    for s in ["", "not-a-uuid", "' OR 1=1 --", "0000"] {
        let e = s.parse::<TaskId>().unwrap_err();
        assert!(e.to_string().contains("task_id"), "{s:?}: {e}");
    }
}

/// Configuration values of the wrong type or out of range, from a file and from the
/// environment: (file text or env, key, origin). The value is never echoed.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment's own error
fn bad_configuration_names_key_and_origin_never_the_value() {
    const SECRET: &str = "zz-VALUE-zz";
    let file_rows: &[(&str, &str)] = &[
        (
            "[database]\npool_size = \"zz-VALUE-zz\"\n",
            "database.pool_size",
        ),
        ("[database]\npool_size = -3\n", "database.pool_size"),
        ("[database]\npool_size = 0\n", "database.pool_size"),
        ("[database]\npool_size = 2.5\n", "database.pool_size"),
        ("[database]\nurl = \"zz-VALUE-zz\"\n", "database.url"),
        ("[database]\nurl = 5\n", "database.url"),
        (
            "[database]\npool_pre_ping = \"zz-VALUE-zz\"\n",
            "database.pool_pre_ping",
        ),
        (
            "[leader]\ngrace_period = \"zz-VALUE-zz\"\n",
            "leader.grace_period",
        ),
        ("[leader]\ngrace_period = -5\n", "leader.grace_period"),
        ("[leader]\ngrace_period = 0\n", "leader.grace_period"),
        (
            "[design]\nmax_document_size = -1\n",
            "design.max_document_size",
        ),
        ("[design]\nretries = [1, 2]\n", "design.retries"),
        (
            "[design]\ndanger_accept_invalid_certs = \"zz-VALUE-zz\"\n",
            "design.danger_accept_invalid_certs",
        ),
        ("[database]\npool_sizee = 3\n", "database.pool_sizee"),
        ("database = \"zz-VALUE-zz\"\n", "database"),
    ];
    let env_rows: &[(&str, &str, &str)] = &[
        (
            "DRYDOCK_DATABASE__POOL_SIZE",
            "zz-VALUE-zz",
            "database.pool_size",
        ),
        ("DRYDOCK_DATABASE__POOL_SIZE", "-1", "database.pool_size"),
        (
            "DRYDOCK_LEADER__GRACE_PERIOD",
            "zz-VALUE-zz",
            "leader.grace_period",
        ),
        (
            "DRYDOCK_LEADER__POLL_INTERVAL",
            "-1d",
            "leader.poll_interval",
        ),
        (
            "DRYDOCK_DESIGN__DANGER_ACCEPT_INVALID_CERTS",
            "zz-VALUE-zz",
            "design.danger_accept_invalid_certs",
        ),
        ("DRYDOCK_DATABASE__URL", "zz-VALUE-zz", "database.url"),
        ("DRYDOCK_DESIGN__RETRIES", "3.5", "design.retries"),
    ];
    figment::Jail::expect_with(|jail| {
        let mut failures = Vec::new();
        for (i, (text, key)) in file_rows.iter().enumerate() {
            let name = format!("drydock-{i}.toml");
            jail.create_file(&name, text)?;
            match Config::load(Some(Path::new(&name))) {
                Ok(_) => failures.push(format!("{text:?}: accepted")),
                Err(e) => {
                    let shown = format!("{e}\n{e:?}");
                    if kind(&e) != "config" || !shown.contains(key) || !shown.contains(&name) {
                        failures.push(format!(
                            "{text:?}: expected a config error naming {key} and {name}: {e}"
                        ));
                    }
                    if shown.contains(SECRET) {
                        failures.push(format!("{text:?}: the value is echoed: {e}"));
                    }
                }
            }
        }
        for (var, value, key) in env_rows {
            jail.clear_env();
            jail.set_env(var, value);
            match Config::load(None) {
                Ok(_) => failures.push(format!("{var}={value:?}: accepted")),
                Err(e) => {
                    let shown = format!("{e}\n{e:?}");
                    if kind(&e) != "config" || !shown.contains(key) || !shown.contains(var) {
                        failures.push(format!(
                            "{var}={value:?}: expected a config error naming {key} and {var}: {e}"
                        ));
                    }
                    if shown.contains(SECRET) {
                        failures.push(format!("{var}: the value is echoed: {e}"));
                    }
                }
            }
        }
        jail.clear_env();
        match Config::load(Some(Path::new("no-such-file.toml"))) {
            Ok(_) => failures.push("a missing file: accepted".into()),
            Err(e) if !e.to_string().contains("no-such-file.toml") => {
                failures.push(format!("a missing file is not named: {e}"))
            }
            Err(_) => {}
        }
        jail.create_file("broken.toml", "[database\npool_size = 3\n")?;
        match Config::load(Some(Path::new("broken.toml"))) {
            Ok(_) => failures.push("broken TOML: accepted".into()),
            Err(e) if kind(&e) != "config" || !e.to_string().contains("broken.toml") => failures
                .push(format!(
                    "broken TOML: not a config error naming the file: {e}"
                )),
            Err(_) => {}
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        Ok(())
    });
}
