//! No password in any log line or error: every event of every level and target (sqlx's
//! included, and `log` records through the bridge), with the fields of every span it happens
//! in and every span's opening and closing, is captured while operations fail (and succeed)
//! against URIs and configurations that carry passwords, then the capture and each error's
//! Display, Debug and whole `source()` chain are searched for them, and for their base64 form
//! as an `Authorization: Basic` header would carry it.
//!
//! Failures covered: connecting (nobody listening, unknown role or database, malformed URLs),
//! query-time errors whose database message quotes the failing row (a design reference with
//! its password), a pool and a `LISTEN` connection reconnecting after the role's password
//! changed (on a server of the test's own with password authentication), design fetches, and
//! Deckhand/Keystone. Background logs (the listener's reconnect warnings) are waited for by
//! polling the capture for the expected event, never by sleeping a fixed time. The CLI's
//! stderr in both output modes is checked in `drydock-state-cli/tests/no_secrets.rs`.
//!
//! The fake servers are hostile: their error pages echo the request they got, headers and
//! body, so a driver that quotes a response body in an error would leak what it sent.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use drydock_state::*;
use drydock_state_testsupport::postgres::Cluster;
use drydock_state_testsupport::sql;
use serde_json::json;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a subscriber recording everything, span fields included (each event is
/// prefixed with its spans and their fields, and each span's opening and closing is an event
/// of its own), and returns its buffer.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = Capture(buffer.clone());
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_target(true)
                .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("the only subscriber of this test binary");
            buffer
        })
        .clone()
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured().lock().unwrap()).into_owned()
}

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

/// Fails if `secret` (or `user:secret` in base64) is in `text`.
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

fn assert_error_clean(e: &Error, secret: &str, user: &str, what: &str) {
    assert_absent(
        secret,
        user,
        &error_texts(e),
        &format!("the error of {what}"),
    );
}

/// How long a test waits for an event it expects in the capture: generous, for a loaded
/// machine; a passing test waits only as long as the event takes.
const LOG_DEADLINE: Duration = Duration::from_secs(60);

/// Polls the capture until `found` holds for it (the expected event was logged), and returns
/// it; fails, showing the capture's tail, after [`LOG_DEADLINE`].
async fn wait_for_log(what: &str, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + LOG_DEADLINE;
    loop {
        let log = log_text();
        if found(&log) {
            return log;
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "waited {LOG_DEADLINE:?} for {what} in the log; it ends with:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `operation` in a span of its own, named after the case, and returns its output with the
/// capture once that span has closed: everything that ran in it (tasks it spawned into it
/// included) is done and logged.
async fn in_case<T>(what: &str, operation: impl std::future::Future<Output = T>) -> (T, String) {
    let span = tracing::info_span!("no_secrets_case", case = %what);
    let out = tracing::Instrument::instrument(operation, span.clone()).await;
    drop(span);
    let log = wait_for_log(&format!("the end of the case {what:?}"), |log| {
        a_line_with(log, &["no_secrets_case", &format!("case={what}"), "close"])
    })
    .await;
    (out, log)
}

/// Whether one line of `log` contains every one of `parts`.
fn a_line_with(log: &str, parts: &[&str]) -> bool {
    log.lines()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}

fn quick_config() -> Config {
    let mut config = test_config();
    config.database.pool_timeout = Duration::from_secs(3);
    config.design.retries = 1;
    config.design.retry_backoff = Duration::from_millis(10);
    config.design.connect_timeout = Duration::from_secs(2);
    config.design.total_timeout = Duration::from_secs(10);
    config.design.cache_ttl = Duration::ZERO;
    config
}

#[tokio::test]
async fn postgres_failures_never_show_the_password() {
    captured();
    let config = quick_config();
    let server = url::Url::parse(&pg_server_url().await).unwrap();
    let host = server.host_str().unwrap().to_string();
    let port = server.port().unwrap_or(5432);
    let cases = [
        (
            "nobody listening",
            "drydock",
            "Pw-Unreach-4711",
            format!(
                "postgres://drydock:Pw-Unreach-4711@127.0.0.1:{}/x",
                closed_port()
            ),
        ),
        (
            "a role that does not exist",
            "no_such_role_x",
            "Pw-NoRole-4712",
            format!("postgres://no_such_role_x:Pw-NoRole-4712@{host}:{port}/postgres"),
        ),
        (
            "a database that does not exist",
            "postgres",
            "Pw-NoDb-4713",
            format!("postgresql://postgres:Pw-NoDb-4713@{host}:{port}/no_such_db_x"),
        ),
        (
            "a malformed port",
            "drydock",
            "Pw-BadPort-4714",
            "postgres://drydock:Pw-BadPort-4714@db:notaport/x".to_string(),
        ),
        (
            "an unknown option",
            "drydock",
            "Pw-BadOpt-4715",
            format!("postgres://drydock:Pw-BadOpt-4715@{host}:{port}/x?sslmode=sometimes"),
        ),
    ];
    for (what, user, secret, url) in &cases {
        let (opened, log) = in_case(what, drydock_state::open(url, &config)).await;
        let e = opened.err().unwrap_or_else(|| panic!("{what}: opened"));
        assert_error_clean(&e, secret, user, what);
        assert_absent(secret, user, &log, &format!("the log of {what}"));
    }
}

/// Success is logged too, at trace level: the password of a working URL stays out of it, and
/// so does a design reference's, stored with a task as the orchestrator needs it.
#[tokio::test]
async fn a_working_store_logs_no_password() {
    captured();
    let db = fresh_database().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let user = url.username().to_string();
    // The test server trusts local connections, so any password is accepted, and sent.
    url.set_password(Some("Pw-Works-4721")).unwrap();
    let config = quick_config();
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("s.db").display());
    for store_url in [url.as_str(), sqlite_url.as_str(), "memory://"] {
        let store = drydock_state::open(store_url, &config)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", redact_uri(store_url)));
        let task = NewTask::new("deploy_nodes")
            .with_status(TaskStatus::Queued)
            .with_design_ref("https://designer:Pw-Design-4722@design.example/site.yaml");
        store.create_task(&task).await.unwrap();
        store.get_task(task.task_id).await.unwrap();
        store.list_tasks(&TaskFilter::default()).await.unwrap();
        let claimed = store
            .claim_next(&ClaimRequest::new("orch-a"))
            .await
            .unwrap()
            .expect("the queued task is claimed");
        let guard = claimed.claim();
        let update = TaskUpdate::new().design_ref(Some(
            "https://designer:Pw-Design-4722@design.example/v2.yaml",
        ));
        store
            .update_task(task.task_id, &update, guard.as_ref())
            .await
            .unwrap();
        let e = store.create_task(&task).await.unwrap_err();
        assert_error_clean(&e, "Pw-Works-4721", &user, "a duplicate create");
        assert_error_clean(&e, "Pw-Design-4722", "designer", "a duplicate create");
        let stale = Claim::new("orch-b", None, 1);
        let e = store
            .update_task(task.task_id, &update, Some(&stale))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::LeaseLost(_)), "{e}");
        assert_error_clean(&e, "Pw-Works-4721", &user, "a refused guarded write");
        assert_error_clean(&e, "Pw-Design-4722", "designer", "a refused guarded write");
    }
    let log = log_text();
    assert!(
        log.contains("TRACE") && log.contains("sqlx::"),
        "the capture records every level and sqlx's events"
    );
    assert_absent("Pw-Works-4721", &user, &log, "the log of a working store");
    assert_absent(
        "Pw-Design-4722",
        "designer",
        &log,
        "the log of a working store",
    );
}

/// Query-time errors: the store is open (its URL carries a password the trusting test server
/// accepts) and a statement fails with a database message that quotes the failing row, whose
/// design reference carries a password of its own (`DETAIL: Failing row contains (…)`).
#[tokio::test]
async fn query_errors_never_show_the_password() {
    captured();
    let db = fresh_database().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let user = url.username().to_string();
    url.set_password(Some("Pw-Query-4761")).unwrap();
    let store = drydock_state::open(url.as_str(), &quick_config())
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    // A check the model does not know, so the database refuses the row and quotes it.
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    sql::query(
        "ALTER TABLE drydock_state.tasks ADD CONSTRAINT no_secrets_refused \
         CHECK (action <> 'refused_by_the_database' AND retry <> 7)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let design = "https://designer:Pw-Row-4762@design.example/site.yaml";

    let refused = NewTask::new("refused_by_the_database").with_design_ref(design);
    let (created, log) = in_case("a refused insert", store.create_task(&refused)).await;
    let e = created.expect_err("the check refuses the insert");
    assert_error_clean(&e, "Pw-Row-4762", "designer", "a refused insert");
    assert_error_clean(&e, "Pw-Query-4761", &user, "a refused insert");
    assert_absent(
        "Pw-Row-4762",
        "designer",
        &log,
        "the log of a refused insert",
    );

    let task = NewTask::new("deploy_nodes").with_design_ref(design);
    store.create_task(&task).await.unwrap();
    let retry = TaskUpdate::new().retry(7);
    let (updated, log) = in_case(
        "a refused update",
        store.update_task(task.task_id, &retry, None),
    )
    .await;
    let e = updated.expect_err("the check refuses the update");
    assert_error_clean(&e, "Pw-Row-4762", "designer", "a refused update");
    assert_error_clean(&e, "Pw-Query-4761", &user, "a refused update");
    assert_absent(
        "Pw-Row-4762",
        "designer",
        &log,
        "the log of a refused update",
    );
    assert_absent("Pw-Query-4761", &user, &log, "the log of a refused update");
}

/// Reconnecting with credentials that stopped working: on a server of the test's own with
/// password authentication, the store opens with the role's password, its `LISTEN` connection
/// starts, then the password changes and every session of the role is ended. The listener's
/// reconnect warnings (waited for in the capture) and the pool's reconnect errors quote the
/// authentication failure, never the old password or the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_a_changed_password_never_show_it() {
    captured();
    let cluster = Cluster::start().await.unwrap_or_else(|why| {
        panic!(
            "this test changes the authentication of a PostgreSQL server of its own and needs \
             the machine's PostgreSQL binaries (initdb and pg_ctl under \
             /usr/lib/postgresql/*/bin): {why}"
        )
    });
    // The administrator's statements carry the passwords; sqlx would log them, so its
    // session does not log statements (the store's sessions do, and are checked).
    let options: sqlx::postgres::PgConnectOptions = cluster.admin_url.parse().unwrap();
    let mut admin = PgConnection::connect_with(&options.disable_statement_logging())
        .await
        .unwrap();
    for statement in [
        "CREATE ROLE no_secrets_role LOGIN SUPERUSER PASSWORD 'Pw-Role-4751'",
        // Password authentication over TCP for everyone but the administrator.
        "DO $$ BEGIN EXECUTE format('COPY (VALUES (%L), (%L), (%L)) TO %L', \
         'local all all trust', 'host all postgres 127.0.0.1/32 trust', \
         'host all all 127.0.0.1/32 scram-sha-256', current_setting('hba_file')); END $$",
        "SELECT pg_reload_conf()",
    ] {
        sql::query(statement).execute(&mut admin).await.unwrap();
    }
    let wrong = format!(
        "postgres://no_secrets_role:Pw-Wrong-4753@127.0.0.1:{}/postgres",
        cluster.port
    );
    let refused = drydock_state::open(&wrong, &quick_config()).await;
    let e = refused
        .err()
        .expect("a wrong password is refused once the server checks them");
    assert_error_clean(&e, "Pw-Wrong-4753", "no_secrets_role", "a wrong password");

    let url = format!(
        "postgres://no_secrets_role:Pw-Role-4751@127.0.0.1:{}/postgres",
        cluster.port
    );
    let store = drydock_state::open(&url, &quick_config())
        .await
        .unwrap_or_else(|e| panic!("open with the role's password: {e}"));
    let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    store.create_task(&task).await.unwrap();
    // Starts the listener (its first connection is waited for within this).
    store
        .wait_for_queued(Duration::from_millis(300))
        .await
        .unwrap();

    for statement in [
        "ALTER ROLE no_secrets_role PASSWORD 'Pw-Changed-4752'",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = 'no_secrets_role'",
    ] {
        sql::query(statement).execute(&mut admin).await.unwrap();
    }

    // The pool reconnects on the next calls: the first may find its connection gone, then
    // authentication fails.
    let deadline = Instant::now() + LOG_DEADLINE;
    let mut errors = Vec::new();
    loop {
        match store.get_task(task.task_id).await {
            Ok(_) => {}
            Err(e) => {
                let texts = error_texts(&e);
                errors.push(e);
                if texts.contains("password authentication failed") {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the store never failed to authenticate; errors: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for e in &errors {
        for secret in ["Pw-Role-4751", "Pw-Changed-4752"] {
            assert_error_clean(
                e,
                secret,
                "no_secrets_role",
                "a reconnect with a changed password",
            );
        }
    }
    // The listener lost its connection and cannot get one back: its warning says why.
    let log = wait_for_log("the listener's warning that it cannot reconnect", |log| {
        a_line_with(
            log,
            &[
                "WARN",
                "cannot listen for queued tasks",
                "password authentication failed",
            ],
        )
    })
    .await;
    for secret in ["Pw-Role-4751", "Pw-Changed-4752", "Pw-Wrong-4753"] {
        assert_absent(secret, "no_secrets_role", &log, "the log of the reconnects");
    }
    drop(store);
}

/// An error page that quotes the whole request back, headers and body.
fn echo(status: u16) -> impl Fn(&str) -> (u16, String) + Send + Sync + 'static {
    move |request: &str| (status, format!("you sent:\n{request}"))
}

#[tokio::test]
async fn design_fetch_failures_never_show_the_password() {
    captured();
    let config = quick_config();
    let resolver = drydock_state::design_resolver(&config.design).unwrap();
    for scheme in ["http", "https", "deckhand+http", "file"] {
        assert!(
            resolver.schemes().contains(&scheme),
            "run with --all-features: {scheme} is not served"
        );
    }
    let failing = text_server(None, echo(500)).await;
    let refusing = text_server(None, echo(401)).await;
    let cases = [
        (
            "a closed port",
            format!(
                "http://designer:Pw-Closed-4731@127.0.0.1:{}/site.yaml",
                closed_port()
            ),
            "Pw-Closed-4731",
        ),
        (
            "a 500 that echoes the request",
            format!("http://designer:Pw-500-4732@{}/site.yaml", failing.addr),
            "Pw-500-4732",
        ),
        (
            "a 401 that echoes the request",
            format!("http://designer:Pw-401-4733@{}/site.yaml", refusing.addr),
            "Pw-401-4733",
        ),
        (
            "https to a plain-text server",
            format!("https://designer:Pw-Tls-4734@{}/site.yaml", failing.addr),
            "Pw-Tls-4734",
        ),
        (
            "an unknown scheme",
            "gopher://designer:Pw-Gopher-4735@127.0.0.1/site.yaml".to_string(),
            "Pw-Gopher-4735",
        ),
        (
            "a file URI with a password",
            "file://designer:Pw-File-4736@localhost/no/such/site.yaml".to_string(),
            "Pw-File-4736",
        ),
        (
            "a malformed URI",
            "http://designer:Pw-Bad-4737@[::1/site.yaml".to_string(),
            "Pw-Bad-4737",
        ),
    ];
    for (what, uri, secret) in &cases {
        let (fetched, log) = in_case(what, drydock_state::fetch_design(&resolver, uri)).await;
        let e = fetched.err().unwrap_or_else(|| panic!("{what}: fetched"));
        assert_error_clean(&e, secret, "designer", what);
        assert_absent(secret, "designer", &log, &format!("the log of {what}"));
    }
}

#[tokio::test]
async fn deckhand_and_keystone_failures_never_show_secrets() {
    captured();
    // Keystone and Deckhand fakes whose error pages quote the request (password in the body,
    // token in the headers).
    let keystone_401 = text_server(None, echo(401)).await;
    let keystone_500 = text_server(None, echo(500)).await;
    let deckhand_403 = text_server(None, echo(403)).await;
    let deckhand_500 = text_server(None, echo(500)).await;
    let keystone = |addr: std::net::SocketAddr, password: &str| {
        json!({"keystone": {
            "auth_url": format!("http://{addr}/v3"),
            "username": "drydock",
            "password": password,
            "project_name": "service",
        }})
    };
    let cases = [
        (
            "keystone refuses",
            keystone(keystone_401.addr, "Pw-Ks401-4741"),
            deckhand_500.addr,
            "Pw-Ks401-4741",
        ),
        (
            "keystone fails",
            keystone(keystone_500.addr, "Pw-Ks500-4742"),
            deckhand_500.addr,
            "Pw-Ks500-4742",
        ),
        (
            "keystone unreachable",
            keystone(
                format!("127.0.0.1:{}", closed_port()).parse().unwrap(),
                "Pw-KsDown-4743",
            ),
            deckhand_500.addr,
            "Pw-KsDown-4743",
        ),
        (
            "deckhand refuses a token",
            json!({"token": "Tok-Refused-4744"}),
            deckhand_403.addr,
            "Tok-Refused-4744",
        ),
        (
            "deckhand fails with a token",
            json!({"token": "Tok-500-4745"}),
            deckhand_500.addr,
            "Tok-500-4745",
        ),
    ];
    for (what, section, deckhand, secret) in &cases {
        let mut config = quick_config();
        config
            .design
            .drivers
            .insert("deckhand".into(), section.clone());
        assert_absent(
            secret,
            "drydock",
            &format!("{config:?}"),
            "the config's Debug",
        );
        assert_absent(
            secret,
            "drydock",
            &config.to_redacted_json().to_string(),
            "the redacted config",
        );
        let resolver = drydock_state::design_resolver(&config.design).unwrap();
        assert_absent(
            secret,
            "drydock",
            &format!("{resolver:?}"),
            "the resolver's Debug",
        );
        let uri = format!("deckhand+http://{deckhand}/42");
        let (fetched, log) = in_case(what, drydock_state::fetch_design(&resolver, &uri)).await;
        let e = fetched.err().unwrap_or_else(|| panic!("{what}: fetched"));
        assert_error_clean(&e, secret, "drydock", what);
        assert_eq!(kind(&e), "design_fetch", "{what}: {e}");
        assert_absent(secret, "drydock", &log, &format!("the log of {what}"));
    }
}

#[test]
fn base64_matches_the_basic_auth_encoding() {
    assert_eq!(
        base64("Aladdin:open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(base64("a:b"), "YTpi");
    assert_eq!(base64("ab:c"), "YWI6Yw==");
}

/// The check can fail: a secret that is logged is found, in an event's fields or message and
/// in the fields of a span it happens in, or of a span in which nothing is logged at all.
#[test]
fn the_capture_sees_what_is_logged() {
    captured();
    tracing::trace!(target: "sqlx::canary", "connecting with Pw-Canary-4799");
    assert!(log_text().contains("Pw-Canary-4799"));
    tracing::info_span!("canary", url = "postgres://u:Pw-SpanCanary-4798@db/x").in_scope(|| {
        tracing::debug!("an event in the span");
    });
    assert!(a_line_with(
        &log_text(),
        &["Pw-SpanCanary-4798", "an event in the span"]
    ));
    drop(tracing::debug_span!(
        "quiet",
        password = "Pw-QuietSpan-4797"
    ));
    assert!(
        log_text().contains("Pw-QuietSpan-4797"),
        "a span's fields are logged when it opens"
    );
    let caught = std::panic::catch_unwind(|| {
        assert_absent("Pw-Canary-4799", "u", &log_text(), "the canary");
    });
    assert!(caught.is_err(), "assert_absent finds a logged secret");
}
