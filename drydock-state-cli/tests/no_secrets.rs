//! The CLI never prints a database URL's password: for URLs that cannot connect or
//! authenticate (nobody listening, a role that does not exist, a wrong password on a server
//! that checks them, a malformed URL), given with `--database-url`, `DRYDOCK_DATABASE__URL` or
//! a configuration file, in both output modes (text and `--output json`) and with every log
//! event on stderr (`RUST_LOG=trace`), stdout and stderr are searched for the password and for
//! its base64 form as an `Authorization: Basic` header would carry it.

use std::process::{Command, Output};

use drydock_state_testsupport::postgres::{server_url, Cluster};
use drydock_state_testsupport::sql;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_drydock-state");

fn base64(input: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    while out.len() % 4 != 0 {
        out.push('=');
    }
    out
}

/// Fails if `secret` (or `user:secret` in base64) is in `text`, showing the line.
fn assert_absent(secret: &str, user: &str, text: &str, what: &str) {
    let encoded = base64(&format!("{user}:{secret}"));
    for needle in [secret, encoded.as_str()] {
        if let Some(at) = text.find(needle) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("{what} shows the secret {needle:?}:\n{}", &text[start..end]);
        }
    }
}

/// How a URL reaches the CLI.
#[derive(Clone, Copy, Debug)]
enum Given {
    Flag,
    Environment,
    ConfigFile,
}

/// Runs the CLI with `url` given as `given`, in the output mode `json` or text, logging
/// everything to stderr.
fn run(url: &str, given: Given, json: bool, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DRYDOCK_DATABASE__URL")
        .env("RUST_LOG", "trace")
        .env("DRYDOCK_STATE_HOME", home.path())
        .env("DRYDOCK_DATABASE__POOL_TIMEOUT", "1s");
    if json {
        cmd.args(["--output", "json"]);
    }
    match given {
        Given::Flag => {
            cmd.arg("--database-url").arg(url);
        }
        Given::Environment => {
            cmd.env("DRYDOCK_DATABASE__URL", url);
        }
        Given::ConfigFile => {
            let file = home.path().join("drydock.toml");
            let mut table = String::from("[database]\nurl = ");
            table.push_str(&serde_json::to_string(url).unwrap());
            table.push('\n');
            std::fs::write(&file, table).unwrap();
            cmd.arg("--config").arg(&file);
        }
    }
    cmd.args(args).output().expect("the binary runs")
}

/// A server of the test's own that checks passwords over TCP (the administrator excepted),
/// with the role `cli_role` whose password is `Pw-CliRole-4781`.
async fn password_server() -> Cluster {
    let cluster = Cluster::start().await.unwrap_or_else(|why| {
        panic!(
            "this test needs a PostgreSQL server of its own that checks passwords, started from \
             the machine's PostgreSQL binaries (initdb and pg_ctl under \
             /usr/lib/postgresql/*/bin): {why}"
        )
    });
    let options: PgConnectOptions = cluster.admin_url.parse().unwrap();
    let mut admin = PgConnection::connect_with(&options.disable_statement_logging())
        .await
        .unwrap();
    for statement in [
        "CREATE ROLE cli_role LOGIN PASSWORD 'Pw-CliRole-4781'",
        "DO $$ BEGIN EXECUTE format('COPY (VALUES (%L), (%L), (%L)) TO %L', \
         'local all all trust', 'host all postgres 127.0.0.1/32 trust', \
         'host all all 127.0.0.1/32 scram-sha-256', current_setting('hba_file')); END $$",
        "SELECT pg_reload_conf()",
    ] {
        sql::query(statement).execute(&mut admin).await.unwrap();
    }
    let _ = admin.close().await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_never_prints_a_database_password() {
    let server = url::Url::parse(&server_url().await).unwrap();
    let host = server.host_str().unwrap().to_string();
    let port = server.port().unwrap_or(5432);
    let cluster = password_server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (
            "nobody listening",
            "drydock",
            "Pw-CliDown-4782",
            format!("postgres://drydock:Pw-CliDown-4782@127.0.0.1:{closed}/x"),
        ),
        (
            "a role that does not exist",
            "no_such_role_cli",
            "Pw-CliNoRole-4783",
            format!("postgres://no_such_role_cli:Pw-CliNoRole-4783@{host}:{port}/postgres"),
        ),
        (
            "a wrong password",
            "cli_role",
            "Pw-CliWrong-4784",
            format!(
                "postgres://cli_role:Pw-CliWrong-4784@127.0.0.1:{}/postgres",
                cluster.port
            ),
        ),
        (
            "a malformed port",
            "drydock",
            "Pw-CliPort-4785",
            "postgres://drydock:Pw-CliPort-4785@db:notaport/x".to_string(),
        ),
    ];
    let mut checked = 0;
    for (what, user, secret, url) in &cases {
        for given in [Given::Flag, Given::Environment, Given::ConfigFile] {
            for json in [false, true] {
                let commands: &[&[&str]] = match given {
                    Given::Flag => &[&["task", "list"], &["migrate"], &["lease", "show"]],
                    _ => &[&["task", "list"]],
                };
                for args in commands.iter().copied() {
                    let out = run(url, given, json, args);
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let case = format!(
                        "{what}, {given:?}, {}, {args:?}",
                        if json { "--output json" } else { "text" }
                    );
                    assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
                    assert!(
                        stderr.contains("drydock-state: error:"),
                        "{case}: the error is on stderr: {stderr}"
                    );
                    assert_absent(secret, user, &stderr, &format!("stderr of {case}"));
                    assert_absent(secret, user, &stdout, &format!("stdout of {case}"));
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 2 * (3 + 1 + 1));
}
