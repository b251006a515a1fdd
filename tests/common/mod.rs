//! Shared by the facade's cross-backend tests: opening each backend on fresh storage (a
//! PostgreSQL database of the test's own, a SQLite file in a temporary directory, memory),
//! snapshots of a store's observable state, and error kinds.
//!
//! PostgreSQL is `DATABASE_URL` when set, else `postgres://postgres@127.0.0.1:5432/postgres`;
//! if it cannot be reached the tests fail, saying how to provide one.

#![allow(dead_code)] // each test file uses a different part of the helpers

use std::sync::Arc;
use std::time::Duration;

use drydock_state::*;
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL of the PostgreSQL server the tests use; panics, saying how to provide one,
/// if it cannot be reached.
pub async fn pg_server_url() -> String {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            url
        }
        Ok(Err(e)) => panic!(
            "PostgreSQL at {} cannot be reached ({e}); set DATABASE_URL to a server where the \
             user may create databases",
            redact_uri(&url)
        ),
        Err(_) => panic!(
            "PostgreSQL at {} did not answer within 5 s; set DATABASE_URL to a server where \
             the user may create databases",
            redact_uri(&url)
        ),
    }
}

/// A database of the test's own, `drydock_t_<random>`, dropped (best effort) with this value.
pub struct PgDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let admin_url = pg_server_url().await;
        let name = format!("drydock_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test server");
        // sql-hygiene: allow (generated name; DDL takes no parameters)
        let create = format!("CREATE DATABASE \"{name}\"");
        admin
            .execute(create.as_str())
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("the server URL parses");
        url.set_path(&name);
        PgDb {
            name,
            url: url.to_string(),
            admin_url,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: the drop gets a thread and runtime of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    // sql-hygiene: allow (generated name; DDL takes no parameters)
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = admin.execute(drop.as_str()).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

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
    Pg(PgDb),
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
            let db = PgDb::create().await;
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
        Error::Conflict(_) => "conflict",
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

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 answering every request with
/// `reply(request text)` = (status, body); with an acceptor, it speaks TLS. Stops when dropped.
pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(
        tls: Option<tokio_rustls::TlsAcceptor>,
        reply: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(reply);
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, tls) = (reply.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer(stream, &*reply).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                answer(stream, &*reply).await
                            }
                        }
                    }
                });
            }
        });
        HttpServer { addr, accept_loop }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn answer<S>(mut stream: S, reply: &(dyn Fn(&str) -> (u16, String) + Send + Sync))
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then as much body as Content-Length says.
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let (status, body) = reply(&String::from_utf8_lossy(&request));
    let head = format!(
        "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
