//! Shared by the facade's cross-backend tests: opening each backend on fresh storage (a
//! PostgreSQL database of the test's own, a SQLite file in a temporary directory, memory),
//! snapshots of a store's observable state, and error kinds.
//!
//! PostgreSQL comes from the shared harness, `drydock_state_testsupport::postgres`.

#![allow(dead_code)] // each test file uses a different part of the helpers

use std::sync::Arc;
use std::time::Duration;

use drydock_state::*;
#[allow(unused_imports)] // re-exported for the test files that use them
pub use drydock_state_testsupport::http::{Reply, Request, TestPki, TestServer};
#[allow(unused_imports)]
pub use drydock_state_testsupport::postgres::{
    fresh_database, server_url as pg_server_url, TestDatabase,
};

/// The backends every cross-backend test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

pub const ALL_BACKENDS: [Backend; 3] = [Backend::Memory, Backend::Sqlite, Backend::Postgres];

/// What keeps a backend's storage alive; dropped after the store.
pub enum Storage {
    None,
    Dir(tempfile::TempDir),
    Pg(TestDatabase),
}

/// An open store on fresh storage. Fields drop in order: the store (its pool), then the storage.
pub struct Opened {
    pub backend: Backend,
    pub store: Arc<dyn StateStore>,
    pub url: String,
    pub storage: Storage,
}

/// A configuration for deterministic tests: a lease that never lapses during a test, a small pool.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.leader.grace_period = Duration::from_secs(3600);
    config.database.pool_size = 2;
    config.database.pool_overflow = 1;
    config.database.pool_timeout = Duration::from_secs(30);
    config
}

/// Opens `backend` on fresh storage through the facade's `open`, which migrates.
pub async fn open_fresh(backend: Backend, config: &Config) -> Opened {
    let (url, storage) = match backend {
        Backend::Memory => ("memory://".to_string(), Storage::None),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let url = format!("sqlite://{}", dir.path().join("state.db").display());
            (url, Storage::Dir(dir))
        }
        Backend::Postgres => {
            let db = fresh_database().await;
            (db.url.clone(), Storage::Pg(db))
        }
    };
    let store = drydock_state::open(&url, config)
        .await
        .unwrap_or_else(|e| panic!("open {backend:?} at {}: {e}", redact_uri(&url)));
    Opened {
        backend,
        store,
        url,
        storage,
    }
}

/// Everything a caller can observe of a store: every task (messages assembled), all build
/// data (full), and the live lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub tasks: Vec<Task>,
    pub build_data: Vec<BuildData>,
    pub lease: Option<Lease>,
}

pub async fn snapshot(store: &dyn StateStore) -> Snapshot {
    Snapshot {
        tasks: store
            .list_tasks(&TaskFilter::default())
            .await
            .expect("list every task"),
        build_data: store
            .build_data(&BuildDataQuery::default())
            .await
            .expect("read all build data"),
        lease: store.current_lease().await.expect("read the lease"),
    }
}

/// The kind of an error, for comparing backends whose texts legitimately differ.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::AlreadyExists { .. } => "already_exists",
        Error::Conflict { .. } => "conflict",
        Error::InvalidInput { .. } => "invalid_input",
        Error::Config { .. } => "config",
        Error::UnknownScheme { .. } => "unknown_scheme",
        Error::FeatureDisabled { .. } => "feature_disabled",
        Error::DuplicateScheme { .. } => "duplicate_scheme",
        Error::DesignFetch { .. } => "design_fetch",
        Error::Unavailable { .. } => "unavailable",
        Error::LeaseLost(_) => "lease_lost",
        Error::Backend { .. } => "backend",
        _ => "other",
    }
}

/// The error's Display, Debug and every `source()` below it, one per line.
pub fn error_texts(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{e}\n{e:?}\n");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

/// An HTTP/1.1 server on 127.0.0.1 (the shared test server) answering every request with
/// `reply(request text)` = (status, body), the text being rebuilt from the parsed request: its
/// method and path, its headers (`name: value`), a blank line and its body; with an acceptor,
/// it speaks TLS. Stops when dropped.
pub async fn text_server(
    tls: Option<tokio_rustls::TlsAcceptor>,
    reply: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> TestServer {
    let handler = move |request: &Request, _: usize| {
        let mut text = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
        for (name, value) in &request.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&String::from_utf8_lossy(&request.body));
        let (status, body) = reply(&text);
        Reply::status(status)
            .header("Content-Type", "text/plain")
            .body(body)
    };
    match tls {
        None => TestServer::start(handler).await,
        Some(acceptor) => TestServer::start_tls(acceptor, handler).await,
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
