//! Workload benchmarks, with the raw-database baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick]
//! ```
//!
//! The URL names a server or a place, not a database to fill: for PostgreSQL a scratch
//! database is created on that server (and dropped afterwards), for SQLite a scratch file is
//! created beside the named one, `memory://` uses a fresh in-memory store (no baseline). Every
//! figure is printed with its ratio to the matching raw-sqlx baseline, measured with the same
//! pool settings in the same run (before and after the workloads; the faster of the two
//! counts), and with the target issue 5 sets for it. `--quick` divides the counts by ten (a
//! smoke run; its figures are not the reported ones).
//!
//! The JSON (`--json FILE`) holds `workloads` (exactly the names issue 5 lists), `baselines`,
//! and `run` (backend, server version and settings, load average before and after).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state::{
    BackendRegistry, BuildData, BuildDataQuery, ClaimRequest, Config, DesignConfig, DesignResolver,
    NewMessage, NewTask, StateStore, TaskFilter, TaskId, TaskStatus, Verbosity,
};
use drydock_state_testsupport::sql::{self, DatabaseDdl};
use serde_json::{json, Value};
use sqlx::{Connection, PgPool, SqlitePool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Statement counting: sqlx reports every statement as a tracing event with target `sqlx::query`.

static COUNTING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct StatementCounter;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCounter {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        COUNTING.load(Ordering::Relaxed) && metadata.target() == "sqlx::query"
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn count_statements<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    STATEMENTS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f.await;
    COUNTING.store(false, Ordering::SeqCst);
    (out, STATEMENTS.load(Ordering::SeqCst))
}

// ---------------------------------------------------------------------------------------------

const USAGE: &str =
    "usage: cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick]";

struct Args {
    database_url: String,
    json: Option<PathBuf>,
    scale: usize,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let (mut database_url, mut json, mut scale) = (None, None, 1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => database_url = args.next(),
            "--json" => json = args.next().map(PathBuf::from),
            "--quick" => scale = 10,
            "--bench" => {}
            other => {
                eprintln!("workloads: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let database_url = database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| {
            eprintln!("workloads: give --database-url URL (postgres://..., sqlite://..., memory://)\n{USAGE}");
            std::process::exit(2);
        });
    Args {
        database_url,
        json,
        scale,
    }
}

/// The raw connection the baselines use: same database, same pool settings as the store.
enum Raw {
    Pg(PgPool),
    Sqlite(SqlitePool),
    None,
}

/// A scratch database for one run, removed by [`Scratch::remove`] (best effort).
struct Scratch {
    store_url: String,
    /// The same database as another instance would see it, in another session time zone
    /// (PostgreSQL), for the failover measurement.
    other_instance_url: String,
    raw: Raw,
    cleanup: Option<(String, String)>,
    file: Option<PathBuf>,
}

/// The pool options the store itself derives from `config.database` (see `PgStore::connect`
/// and the SQLite backend's `config.rs`): the baseline must pay what the store pays, no more.
fn pool_options<DB: sqlx::Database>(config: &Config) -> sqlx::pool::PoolOptions<DB> {
    let db = &config.database;
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(db.max_connections().max(1))
        .acquire_timeout(db.pool_timeout)
        .test_before_acquire(db.pool_pre_ping)
        .max_lifetime(Some(db.pool_recycle).filter(|d| !d.is_zero()))
}

async fn prepare(url: &str, config: &Config) -> Result<Scratch, Box<dyn std::error::Error>> {
    let scheme = drydock_state::backend::url_scheme(url)?;
    match scheme.as_str() {
        "postgres" | "postgresql" => {
            let admin = PgPool::connect(url).await?;
            let name = format!("drydock_bench_{}", std::process::id());
            let mut conn = admin.acquire().await?;
            sql::database_ddl(&mut conn, DatabaseDdl::DropIfExists, &name).await?;
            sql::database_ddl(&mut conn, DatabaseDdl::Create, &name).await?;
            drop(conn);
            admin.close().await;
            let mut parsed = url::Url::parse(url)?;
            parsed.set_path(&name);
            let raw = pool_options::<sqlx::Postgres>(config)
                .connect(parsed.as_str())
                .await?;
            sql::query("CREATE TABLE raw_bench (id bigint PRIMARY KEY, v text NOT NULL)")
                .execute(&raw)
                .await?;
            let mut other = parsed.clone();
            // Fourteen hours east of UTC: the lease is judged by the database clock, so the
            // session's time zone must not matter.
            other
                .query_pairs_mut()
                .append_pair("options", "-c TimeZone=Pacific/Kiritimati");
            Ok(Scratch {
                store_url: parsed.to_string(),
                other_instance_url: other.to_string(),
                raw: Raw::Pg(raw),
                cleanup: Some((url.to_string(), name)),
                file: None,
            })
        }
        "sqlite" => {
            let given = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let dir = std::path::Path::new(given)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&dir)?;
            let file = dir.join(format!("drydock-bench-{}.db", std::process::id()));
            let store_url = format!("sqlite://{}", file.display());
            // The same pragmas as the store's connections (drydock-state-sqlite config.rs).
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(config.database.pool_timeout);
            let raw = pool_options::<sqlx::Sqlite>(config)
                .connect_with(options)
                .await?;
            sql::query("CREATE TABLE raw_bench (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .execute(&raw)
                .await?;
            Ok(Scratch {
                other_instance_url: store_url.clone(),
                store_url,
                raw: Raw::Sqlite(raw),
                cleanup: None,
                file: Some(file),
            })
        }
        _ => Ok(Scratch {
            store_url: url.to_string(),
            other_instance_url: url.to_string(),
            raw: Raw::None,
            cleanup: None,
            file: None,
        }),
    }
}

impl Scratch {
    async fn remove(self) {
        match self.raw {
            Raw::Pg(pool) => pool.close().await,
            Raw::Sqlite(pool) => pool.close().await,
            Raw::None => {}
        }
        if let Some((admin_url, name)) = self.cleanup {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sql::database_ddl(&mut admin, DatabaseDdl::DropIfExistsForce, &name).await;
                let _ = admin.close().await;
            }
        }
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }

    /// The server's version and the settings that bear on write speed (PostgreSQL only).
    async fn server(&self) -> Value {
        let Raw::Pg(pool) = &self.raw else {
            return match &self.raw {
                Raw::Sqlite(pool) => {
                    let version: Option<String> = sql::query_scalar("SELECT sqlite_version()")
                        .fetch_one(pool)
                        .await
                        .ok();
                    json!({ "sqlite_version": version, "journal_mode": "wal", "synchronous": "normal" })
                }
                _ => Value::Null,
            };
        };
        let mut out = serde_json::Map::new();
        for name in [
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "wal_level",
            "max_connections",
            "wal_sync_method",
            "commit_delay",
            "full_page_writes",
        ] {
            let value: Option<String> =
                sql::query_scalar("SELECT current_setting(name) FROM pg_settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
                    .ok()
                    .flatten();
            out.insert(name.into(), json!(value));
        }
        Value::Object(out)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Baselines: what the database does with single statements issued directly through sqlx.

#[derive(Default, Clone, Copy)]
struct Baselines {
    insert_c1: Option<f64>,
    insert_c8: Option<f64>,
    update_c1: Option<f64>,
    update_c8: Option<f64>,
    select_c1: Option<f64>,
    copy: Option<f64>,
}

impl Baselines {
    /// The faster of two measurements of each: the ratios are then the harder ones to meet.
    fn best(self, other: Baselines) -> Baselines {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Baselines {
            insert_c1: max(self.insert_c1, other.insert_c1),
            insert_c8: max(self.insert_c8, other.insert_c8),
            update_c1: max(self.update_c1, other.update_c1),
            update_c8: max(self.update_c8, other.update_c8),
            select_c1: max(self.select_c1, other.select_c1),
            copy: max(self.copy, other.copy),
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Insert,
    Update,
    Select,
}

async fn raw_statement(raw: &Raw, op: Op, id: i64) {
    match raw {
        Raw::Pg(pool) => match op {
            Op::Insert => sql::query("INSERT INTO raw_bench (id, v) VALUES ($1, $2)")
                .bind(id)
                .bind("payload")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Update => sql::query("UPDATE raw_bench SET v = $2 WHERE id = $1")
                .bind(id)
                .bind("updated")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Select => sql::query("SELECT v FROM raw_bench WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map(|_| ()),
        },
        Raw::Sqlite(pool) => match op {
            Op::Insert => sql::query("INSERT INTO raw_bench (id, v) VALUES (?1, ?2)")
                .bind(id)
                .bind("payload")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Update => sql::query("UPDATE raw_bench SET v = ?2 WHERE id = ?1")
                .bind(id)
                .bind("updated")
                .execute(pool)
                .await
                .map(|_| ()),
            Op::Select => sql::query("SELECT v FROM raw_bench WHERE id = ?1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map(|_| ()),
        },
        Raw::None => Ok(()),
    }
    .expect("raw statement");
}

/// Rows per second of `op` over `ids`, issued by `concurrency` workers sharing the pool.
async fn raw_ops(raw: &Arc<Raw>, op: Op, ids: Vec<i64>, concurrency: usize) -> Option<f64> {
    if matches!(**raw, Raw::None) {
        return None;
    }
    let total = ids.len();
    let chunks: Vec<Vec<i64>> = ids
        .chunks(total.div_ceil(concurrency))
        .map(<[i64]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut handles = Vec::new();
    for chunk in chunks {
        let raw = raw.clone();
        handles.push(tokio::spawn(async move {
            for id in chunk {
                raw_statement(&raw, op, id).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("raw worker");
    }
    Some(total as f64 / started.elapsed().as_secs_f64())
}

async fn raw_copy(raw: &Raw, first: i64, n: i64) -> Option<f64> {
    let started = Instant::now();
    match raw {
        Raw::Pg(pool) => {
            let mut conn = pool.acquire().await.ok()?;
            let mut copy = sql::copy_in_raw(&mut conn, "COPY raw_bench (id, v) FROM STDIN")
                .await
                .ok()?;
            let mut buf = String::new();
            for id in first..first + n {
                buf.push_str(&id.to_string());
                buf.push_str("\tpayload\n");
            }
            copy.send(buf.into_bytes()).await.ok()?;
            copy.finish().await.ok()?;
        }
        Raw::Sqlite(pool) => {
            // SQLite has no COPY: the bulk baseline is one transaction of prepared inserts.
            let mut tx = pool.begin().await.ok()?;
            for id in first..first + n {
                sql::query("INSERT INTO raw_bench (id, v) VALUES (?1, 'payload')")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .ok()?;
            }
            tx.commit().await.ok()?;
        }
        Raw::None => return None,
    }
    Some(n as f64 / started.elapsed().as_secs_f64())
}

/// One round of baselines over `n` rows, in a key range of its own (`round`).
async fn baselines(raw: &Arc<Raw>, n: usize, round: i64) -> Baselines {
    let base = round * 100_000_000;
    let ids = |from: i64| (base + from..base + from + n as i64).collect::<Vec<_>>();
    let mut b = Baselines {
        insert_c1: raw_ops(raw, Op::Insert, ids(0), 1).await,
        insert_c8: raw_ops(raw, Op::Insert, ids(1_000_000), 8).await,
        ..Default::default()
    };
    b.update_c1 = raw_ops(raw, Op::Update, ids(0), 1).await;
    b.update_c8 = raw_ops(raw, Op::Update, ids(1_000_000), 8).await;
    b.select_c1 = raw_ops(raw, Op::Select, ids(0), 1).await;
    b.copy = raw_copy(raw, base + 10_000_000, 20_000).await;
    b
}

// ---------------------------------------------------------------------------------------------
// Figures

struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    baseline_name: &'static str,
    baseline: Option<f64>,
    /// Whether a larger value is better (rates) or a smaller one (seconds).
    higher_is_better: bool,
    /// Issue 5's target, in words, and whether this run meets it.
    target: Option<(&'static str, bool)>,
    extra: serde_json::Map<String, Value>,
}

impl Figure {
    fn rate(
        name: &'static str,
        value: f64,
        unit: &'static str,
        baseline_name: &'static str,
        baseline: Option<f64>,
    ) -> Self {
        Figure {
            name,
            value,
            unit,
            baseline_name,
            baseline,
            higher_is_better: true,
            target: None,
            extra: Default::default(),
        }
    }

    fn seconds(name: &'static str, value: f64, baseline_name: &'static str, baseline: f64) -> Self {
        Figure {
            higher_is_better: false,
            ..Figure::rate(name, value, "s", baseline_name, Some(baseline))
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// Records the target; `met` sees the figure (its ratio) to judge it.
    fn target(mut self, text: &'static str, met: impl FnOnce(&Figure) -> bool) -> Self {
        let met = met(&self);
        self.target = Some((text, met));
        self
    }

    /// Value over baseline for rates, baseline over value for times: above 1 is better.
    fn ratio(&self) -> Option<f64> {
        let b = self.baseline?;
        Some(if self.higher_is_better {
            self.value / b
        } else {
            b / self.value
        })
    }

    fn at_least(&self, ratio: f64) -> bool {
        self.ratio().is_some_and(|r| r >= ratio)
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio(),
            "target": self.target.map(|(t, _)| t),
            "target_met": self.target.map(|(_, m)| m),
        });
        for (k, x) in &self.extra {
            v[k] = x.clone();
        }
        v
    }
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn create_many(
    store: &Arc<dyn StateStore>,
    n: usize,
    action: &str,
    status: TaskStatus,
) -> Vec<TaskId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let t = NewTask::new(action).with_status(status);
        let stored = store.create_task(&t).await.expect("create");
        ids.push(stored.task_id);
    }
    ids
}

/// What one drain measured.
struct Drained {
    claims_per_s: f64,
    duplicates: usize,
    unclaimed: usize,
    /// Mean latency of one `claim_next` call that claimed a task, and of one completion.
    claim_ms: f64,
    complete_ms: f64,
}

/// Drains the `n` queued tasks of `action` with `claimers` concurrent claimers, each claiming
/// then marking complete under its claim (the guarded write a worker makes).
async fn drain(
    store: Arc<dyn StateStore>,
    n: usize,
    action: &'static str,
    claimers: usize,
) -> Drained {
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let request = ClaimRequest::new(format!("bench-{w}")).actions([action]);
            let mut mine = Vec::new();
            let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
            loop {
                let at = Instant::now();
                let Some(t) = store.claim_next(&request).await.expect("claim") else {
                    break;
                };
                let claimed = Instant::now();
                let guard = t.claim().expect("a claimed task carries its claim");
                store
                    .set_status(t.task_id, TaskStatus::Complete, Some(&guard))
                    .await
                    .expect("complete");
                claiming += claimed - at;
                completing += claimed.elapsed();
                mine.push(t.task_id);
            }
            (mine, claiming, completing)
        }));
    }
    let mut all = Vec::new();
    let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
    for h in handles {
        let (mine, c, d) = h.await.expect("claimer");
        all.extend(mine);
        claiming += c;
        completing += d;
    }
    let elapsed = started.elapsed();
    let unique: HashSet<_> = all.iter().collect();
    let per_call = |d: Duration| d.as_secs_f64() * 1e3 / all.len().max(1) as f64;
    Drained {
        claims_per_s: rate(all.len(), elapsed),
        duplicates: all.len() - unique.len(),
        unclaimed: n - unique.len(),
        claim_ms: per_call(claiming),
        complete_ms: per_call(completing),
    }
}

/// Serves `body` to every request on 127.0.0.1 until the runtime ends.
async fn serve(body: Arc<Vec<u8>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/x-yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    addr
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// A site design of `size` bytes: many small YAML documents, as a real site has.
fn design_of(size: usize) -> Vec<u8> {
    let mut doc = Vec::with_capacity(size + 256);
    let mut i = 0;
    while doc.len() < size {
        let _ = write!(
            doc,
            "---\napiVersion: 'drydock/v1'\nkind: BaremetalNode\nmetadata:\n  name: node{i:07}\n  region: bench\nspec:\n  host_profile: compute\n  addressing:\n    - network: oob\n      address: 10.0.{}.{}\n",
            (i / 250) % 250,
            i % 250
        );
        i += 1;
    }
    doc.truncate(size);
    doc
}

/// A 64 KiB build-data element that looks like what `lshw` reports: structured text with
/// varying serials and sizes, so it compresses about as well as the real thing (a run of one
/// repeated letter would make PostgreSQL's TOAST compression, and so the read, unrealistically
/// cheap).
fn build_element(seed: u64) -> String {
    const SIZE: usize = 64 * 1024;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::with_capacity(SIZE + 256);
    let mut i = 0;
    while out.len() < SIZE {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "<node id=\"disk:{i}\" claimed=\"true\" class=\"disk\"><product>MZ7L{:04X}</product><serial>{:016x}</serial><size units=\"bytes\">{}</size></node>",
            next() % 0xFFFF,
            next(),
            next() % 4_000_000_000_000
        );
        i += 1;
    }
    out.truncate(SIZE);
    out
}

// ---------------------------------------------------------------------------------------------
// W8 runs its fetches in a child process of this program, so that the peak resident memory
// it reports is the fetch's alone (not the server's, nor memory freed earlier in the run and
// reused by the allocator without growing the resident set).

const W8_CHILD: &str = "--w8-child";
const W8_REPEAT: usize = 5;

/// In the child: `--w8-child raw|driver URI SIZE`. Prints `best_secs peak_bytes`.
fn w8_child(mut args: impl Iterator<Item = String>) -> ! {
    let (Some(mode), Some(uri), Some(size)) = (args.next(), args.next(), args.next()) else {
        eprintln!("workloads {W8_CHILD}: give raw|driver URI SIZE");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("size");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (best, peak, peak_all) = runtime.block_on(async move {
        let design_config = DesignConfig {
            cache_ttl: Duration::ZERO,
            ..Default::default()
        };
        let mut resolver = DesignResolver::new(&design_config);
        resolver
            .register(&drydock_design_file::REGISTRATION)
            .expect("file driver");
        resolver
            .register(&drydock_design_http::REGISTRATION)
            .expect("http driver");
        let client = reqwest::Client::new();
        let path = uri.strip_prefix("file://").map(PathBuf::from);
        let fetch = || async {
            match (mode.as_str(), &path) {
                ("raw", Some(path)) => tokio::fs::read(path).await.expect("read").len(),
                ("raw", None) => client
                    .get(&uri)
                    .send()
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body")
                    .len(),
                _ => resolver.fetch_uri(&uri).await.expect("fetch").bytes.len(),
            }
        };
        // The peak is the first fetch's, in a process that has fetched nothing yet: later
        // fetches may land in memory the allocator kept from earlier ones (glibc keeps a
        // freed 20 MiB block in the arena of whichever blocking thread read it), which says
        // nothing about the fetch itself. Writing 5 to clear_refs resets the peak (VmHWM)
        // to the current resident set.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = proc_status("VmRSS:");
        let started = Instant::now();
        let len = fetch().await;
        let mut best = started.elapsed().as_secs_f64();
        let peak = proc_status("VmHWM:").saturating_sub(before);
        assert_eq!(len, size, "the whole document");
        for _ in 1..W8_REPEAT {
            let started = Instant::now();
            let len = fetch().await;
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(len, size, "the whole document");
        }
        // Reported beside the first fetch's: what a process that keeps fetching holds.
        let peak_all = proc_status("VmHWM:").saturating_sub(before);
        (best, peak, peak_all)
    });
    println!("{best} {peak} {peak_all}");
    std::process::exit(0);
}

/// Runs one W8 child and returns (MB/s of the best of [`W8_REPEAT`] fetches, the first
/// fetch's peak resident bytes above the process before it, the peak over all fetches).
async fn w8_measure(mode: &str, uri: &str, size: usize) -> Result<(f64, u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(exe)
        .args([W8_CHILD, mode, uri, &size.to_string()])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "W8 {mode} child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let secs: f64 = fields.next().and_then(|s| s.parse().ok()).ok_or("secs")?;
    let peak: u64 = fields.next().and_then(|s| s.parse().ok()).ok_or("peak")?;
    let peak_all: u64 = fields
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("peak_all")?;
    Ok((size as f64 / 1e6 / secs, peak, peak_all))
}

// ---------------------------------------------------------------------------------------------

struct Report {
    figures: Vec<Figure>,
    baselines: Baselines,
    run: Value,
}

async fn run(args: Args) -> Result<Report, Box<dyn std::error::Error>> {
    let s = args.scale;
    let mut config = Config::default();
    config.leader.grace_period = Duration::from_secs(2);
    config.leader.claim_interval = Duration::from_millis(100);
    config.leader.poll_interval = Duration::from_secs(1);
    config.database.pool_size = 8;
    config.database.pool_overflow = 8;
    let load_before = load_average();

    let scratch = prepare(&args.database_url, &config).await?;
    let mut registry = BackendRegistry::default();
    registry.register(&drydock_state::memory::REGISTRATION)?;
    registry.register(&drydock_state_postgres::REGISTRATION)?;
    registry.register(&drydock_state_sqlite::REGISTRATION)?;
    let store = registry.open(&scratch.store_url, &config).await?;
    eprintln!(
        "backend {} at {}",
        store.backend_name(),
        drydock_state::redact_uri(&scratch.store_url)
    );
    // The baselines' pool: a clone shares the scratch's connections.
    let raw = Arc::new(match &scratch.raw {
        Raw::Pg(p) => Raw::Pg(p.clone()),
        Raw::Sqlite(p) => Raw::Sqlite(p.clone()),
        Raw::None => Raw::None,
    });

    eprintln!("baselines (first round)...");
    let first_baselines = baselines(&raw, 2000 / s, 1).await;
    let base = first_baselines;
    let mut figures = Vec::new();

    eprintln!("W1 create...");
    let n = 2000 / s;
    let started = Instant::now();
    create_many(&store, n, "bench_w1", TaskStatus::Requested).await;
    let w1 = rate(n, started.elapsed());

    eprintln!("W2 append...");
    let tasks = create_many(&store, 200 / s.min(2), "bench_w2", TaskStatus::Requested).await;
    let n = 20_000 / s;
    let per = n / tasks.len();
    let started = Instant::now();
    for t in &tasks {
        for j in 0..per {
            store
                .append_message(*t, &NewMessage::info(format!("message {j}")), None)
                .await?;
        }
    }
    let w2 = rate(per * tasks.len(), started.elapsed());
    let batch: Vec<NewMessage> = (0..per)
        .map(|j| NewMessage::info(format!("batched {j}")))
        .collect();
    let started = Instant::now();
    for t in &tasks {
        store.append_messages(*t, &batch, None).await?;
    }
    let w2_batch = rate(per * tasks.len(), started.elapsed());
    let w2_calls = tasks.len();

    eprintln!("W3 get...");
    let tasks = create_many(&store, 200 / s.min(2), "bench_w3", TaskStatus::Requested).await;
    let fifty: Vec<NewMessage> = (0..50).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &fifty, None).await?;
    }
    let started = Instant::now();
    for t in &tasks {
        let got = store.get_task(*t).await?.expect("task");
        assert_eq!(got.result.details.message_list.len(), 50);
    }
    let w3 = rate(tasks.len(), started.elapsed());

    eprintln!("W4 list...");
    let n = 2000 / s;
    let tasks = create_many(&store, n, "bench_w4", TaskStatus::Complete).await;
    let ten: Vec<NewMessage> = (0..10).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &ten, None).await?;
    }
    let filter = TaskFilter {
        action: Some("bench_w4".into()),
        ..Default::default()
    };
    // Timed and counted in separate calls: while statements are counted, sqlx formats every
    // statement's text for its log event, which costs more than some statements do.
    // One call lists the whole 2,000; the best of three, like the baselines' best of two,
    // so that one scheduling hiccup on a shared machine does not stand for the call.
    let mut w4 = f64::MAX;
    let mut listed = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        listed = store.list_tasks(&filter).await?;
        w4 = w4.min(started.elapsed().as_secs_f64());
    }
    let (recount, statements) = count_statements(store.list_tasks(&filter)).await;
    assert_eq!(recount?.len(), listed.len());
    assert_eq!(listed.len(), n);
    assert!(listed
        .iter()
        .all(|t| t.result.details.message_list.len() == 10));

    eprintln!("W5 claim...");
    let n = 2000 / s;
    create_many(&store, n, "bench_w5a", TaskStatus::Queued).await;
    let w5_1 = drain(store.clone(), n, "bench_w5a", 1).await;
    // The statements of a claim and a completion, counted on a drain of their own (untimed).
    let counted = 100 / s.min(10);
    create_many(&store, counted, "bench_w5c", TaskStatus::Queued).await;
    let (_, w5_1_statements) =
        count_statements(drain(store.clone(), counted, "bench_w5c", 1)).await;
    create_many(&store, n, "bench_w5b", TaskStatus::Queued).await;
    let w5_8 = drain(store.clone(), n, "bench_w5b", 8).await;

    eprintln!("W6 lease...");
    let n = 2000 / s;
    let started = Instant::now();
    for _ in 0..n {
        assert!(store.claim_lease("bench-leader").await?.held().is_some());
        assert!(store.renew_lease("bench-leader").await?.held().is_some());
    }
    let w6 = rate(2 * n, started.elapsed());
    store.release_lease("bench-leader").await?;
    // Failover between two instances with pools of their own (on PostgreSQL, in sessions 14
    // hours apart): from the holder's last renewal to the other's first successful claim.
    let holder = registry.open(&scratch.store_url, &config).await?;
    let other = registry.open(&scratch.other_instance_url, &config).await?;
    assert!(holder.claim_lease("bench-holder").await?.held().is_some());
    assert!(holder.renew_lease("bench-holder").await?.held().is_some());
    let last_renewal = Instant::now();
    drop(holder);
    let failover = loop {
        if other.claim_lease("bench-other").await?.held().is_some() {
            break last_renewal.elapsed();
        }
        tokio::time::sleep(config.leader.claim_interval).await;
    };
    drop(other);
    let failover_bound = (config.leader.grace_period + config.leader.claim_interval).as_secs_f64();

    eprintln!("W7 build data...");
    let (nodes, generators) = (100 / s.min(10), 10);
    let elements: Vec<String> = (0..nodes * generators)
        .map(|i| build_element(i as u64))
        .collect();
    let task = TaskId::new();
    let started = Instant::now();
    for (i, element) in elements.iter().enumerate() {
        let data = BuildData {
            node_name: format!("node{:03}", i % nodes),
            task_id: task,
            collected_date: None,
            generator: format!("gen{}", i / nodes),
            data_format: "text/plain".into(),
            data_element: Some(element.clone()),
        };
        store.record_build_data(&data, None).await?;
    }
    let w7_record = rate(nodes * generators, started.elapsed());
    let started = Instant::now();
    for node in 0..nodes {
        let rows = store
            .build_data(&BuildDataQuery {
                node_name: Some(format!("node{node:03}")),
                latest: true,
                ..Default::default()
            })
            .await?;
        assert_eq!(rows.len(), generators);
        assert!(rows
            .iter()
            .all(|r| r.data_element.as_ref().map(String::len) == Some(64 * 1024)));
    }
    let w7_latest = rate(nodes, started.elapsed());
    // The same lookups without the elements: what the index costs, apart from reading (and
    // decompressing) 640 KiB of TOASTed text per call.
    let started = Instant::now();
    for node in 0..nodes {
        let rows = store
            .build_data(&BuildDataQuery {
                node_name: Some(format!("node{node:03}")),
                latest: true,
                verbosity: Verbosity::Brief,
                ..Default::default()
            })
            .await?;
        assert_eq!(rows.len(), generators);
    }
    let w7_latest_brief = rate(nodes, started.elapsed());

    eprintln!("W8 design...");
    let size = 20 * 1024 * 1024 / s;
    let body = Arc::new(design_of(size));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("site.yaml");
    std::fs::write(&path, &*body)?;
    let file_uri = format!("file://{}", path.display());
    let addr = serve(body.clone()).await;
    let http_uri = format!("http://{addr}/site.yaml");
    let (file_raw, ..) = w8_measure("raw", &file_uri, size).await?;
    let (file_rate, file_peak, file_peak_all) = w8_measure("driver", &file_uri, size).await?;
    let (http_raw, ..) = w8_measure("raw", &http_uri, size).await?;
    let (http_rate, http_peak, http_peak_all) = w8_measure("driver", &http_uri, size).await?;

    eprintln!("enqueue-to-claim latency...");
    let rounds = 200 / s.min(4);
    // The PostgreSQL store starts its LISTEN connection on the first wait; a claimer that has
    // run for a while has it, so start it before measuring.
    store.wait_for_queued(Duration::from_millis(1)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let claimer = {
        let store = store.clone();
        let poll = config.leader.poll_interval;
        tokio::spawn(async move {
            let request = ClaimRequest::new("bench-latency").actions(["bench_latency"]);
            let mut claimed = 0;
            while claimed < rounds {
                match store.claim_next(&request).await.expect("claim") {
                    Some(t) => {
                        claimed += 1;
                        let _ = tx.send((t.task_id, Instant::now()));
                    }
                    None => store.wait_for_queued(poll).await.expect("wait"),
                }
            }
        })
    };
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        // Enqueue only once the claimer is waiting, as an idle orchestrator is.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = NewTask::new("bench_latency").with_status(TaskStatus::Queued);
        let enqueued = Instant::now();
        store.create_task(&t).await?;
        let (id, at) = rx.recv().await.expect("claimed");
        assert_eq!(id, t.task_id);
        latencies.push(at.duration_since(enqueued).as_secs_f64());
    }
    claimer.await?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];

    eprintln!("baselines (second round)...");
    let base = base.best(baselines(&raw, 2000 / s, 2).await);

    // Drydock's Python state manager, from issue 5, for the targets stated against it.
    const DRYDOCK_W4_SECS: f64 = 3.3;
    const DRYDOCK_W7_LATEST: f64 = 216.0;
    figures.push(
        Figure::rate("W1_create", w1, "tasks/s", "insert_c1", base.insert_c1)
            .target(">= 0.8 x insert_c1", |f| f.at_least(0.8)),
    );
    figures.push(
        Figure::rate("W2_append", w2, "msgs/s", "insert_c1", base.insert_c1)
            .target(">= 0.8 x insert_c1", |f| f.at_least(0.8)),
    );
    figures.push(
        Figure::rate("W2_append_batch", w2_batch, "msgs/s", "copy", base.copy)
            .with("calls", json!(w2_calls))
            .with("msgs_per_call", json!(per))
            // Each call is one transaction: if it cost no more than one raw single-row
            // INSERT's commit, this is as fast as it could go.
            .with(
                "one_commit_per_call_bound",
                json!(base.insert_c1.map(|r| (r * per as f64).round())),
            )
            .target(">= 100,000 msgs/s", |f| f.value >= 100_000.0),
    );
    figures.push(
        Figure::rate("W3_get", w3, "tasks/s", "select_c1", base.select_c1)
            .target(">= 0.5 x select_c1", |f| f.at_least(0.5)),
    );
    figures.push(
        Figure::seconds("W4_list", w4, "drydock_3.3s", DRYDOCK_W4_SECS)
            .with("statements", json!(statements))
            .target("<= 3 statements, <= 3.3 s / 50", |f| {
                statements <= 3 && f.value <= DRYDOCK_W4_SECS / 50.0
            }),
    );
    figures.push(
        Figure::rate(
            "W5_claim_1",
            w5_1.claims_per_s,
            "claims/s",
            "update_c1",
            base.update_c1,
        )
        .with("duplicates", json!(w5_1.duplicates))
        .with("unclaimed", json!(w5_1.unclaimed))
        .with(
            "statements_per_claim",
            json!(w5_1_statements as f64 / counted as f64),
        )
        .with("claim_ms", json!(round3(w5_1.claim_ms)))
        .with("complete_ms", json!(round3(w5_1.complete_ms)))
        .target("0 duplicates", |_| {
            w5_1.duplicates == 0 && w5_1.unclaimed == 0
        }),
    );
    figures.push(
        Figure::rate(
            "W5_claim_8",
            w5_8.claims_per_s,
            "claims/s",
            "update_c8",
            base.update_c8,
        )
        .with("duplicates", json!(w5_8.duplicates))
        .with("unclaimed", json!(w5_8.unclaimed))
        .with("claim_ms", json!(round3(w5_8.claim_ms)))
        .with("complete_ms", json!(round3(w5_8.complete_ms)))
        .target(">= 0.5 x update_c8, 0 duplicates", |f| {
            f.at_least(0.5) && w5_8.duplicates == 0 && w5_8.unclaimed == 0
        }),
    );
    figures.push(
        Figure::rate("W6_lease", w6, "calls/s", "update_c1", base.update_c1)
            .target(">= 0.8 x update_c1", |f| f.at_least(0.8)),
    );
    figures.push(
        Figure::seconds(
            "W6_failover",
            failover.as_secs_f64(),
            "grace+claim_interval",
            failover_bound,
        )
        .with(
            "grace_period_s",
            json!(config.leader.grace_period.as_secs_f64()),
        )
        .target("<= grace + claim interval", |f| f.value <= failover_bound),
    );
    figures.push(Figure::rate(
        "W7_record",
        w7_record,
        "elements/s",
        "insert_c1",
        base.insert_c1,
    ));
    figures.push(
        Figure::rate(
            "W7_latest",
            w7_latest,
            "calls/s",
            "select_c1",
            base.select_c1,
        )
        .with("rows_per_call", json!(generators))
        .with("brief_calls_per_s", json!(w7_latest_brief.round()))
        .target(">= 5 x 216 calls/s", |f| f.value >= 5.0 * DRYDOCK_W7_LATEST),
    );
    let within = |peak: u64| peak as f64 <= 1.2 * size as f64;
    figures.push(
        Figure::rate("W8_file", file_rate, "MB/s", "file_read", Some(file_raw))
            .with("peak_rss_bytes", json!(file_peak))
            .with("peak_rss_bytes_all_fetches", json!(file_peak_all))
            .with("document_bytes", json!(size))
            .target("peak <= 1.2 x document", |_| within(file_peak)),
    );
    figures.push(
        Figure::rate("W8_http", http_rate, "MB/s", "http_get", Some(http_raw))
            .with("peak_rss_bytes", json!(http_peak))
            .with("peak_rss_bytes_all_fetches", json!(http_peak_all))
            .with("document_bytes", json!(size))
            .target(">= 1,000 MB/s, peak <= 1.2 x document", |f| {
                f.value >= 1000.0 && within(http_peak)
            }),
    );
    figures.push(
        Figure::seconds(
            "latency_enqueue_claim_p50",
            pct(0.5),
            "drydock_poll_10s",
            10.0,
        )
        .with("samples", json!(latencies.len()))
        .target("<= 5 ms", |f| f.value <= 0.005),
    );
    figures.push(
        Figure::seconds(
            "latency_enqueue_claim_p99",
            pct(0.99),
            "drydock_poll_10s",
            10.0,
        )
        .with("samples", json!(latencies.len())),
    );

    let run = json!({
        "backend": store.backend_name(),
        "full_counts": s == 1,
        "server": scratch.server().await,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    drop(store);
    scratch.remove().await;
    Ok(Report {
        figures,
        baselines: base,
        run,
    })
}

fn main() {
    use tracing_subscriber::layer::SubscriberExt;
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some(W8_CHILD) {
        argv.next();
        w8_child(argv);
    }
    let args = parse_args();
    let subscriber = tracing_subscriber::registry().with(StatementCounter);
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let json_path = args.json.clone();
    let url = drydock_state::redact_uri(&args.database_url);
    let quick = args.scale != 1;
    let report = match runtime.block_on(run(args)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("workloads: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "\nworkloads against {url}{}  (load average {} -> {})\n",
        if quick { " (--quick: counts / 10)" } else { "" },
        report.run["load_average_before"].as_str().unwrap_or(""),
        report.run["load_average_after"].as_str().unwrap_or(""),
    );
    println!(
        "{:<26} {:>11} {:<10} {:>11} {:<21} {:>7}  {:<5} {:<38} extra",
        "workload", "value", "unit", "baseline", "baseline name", "ratio", "met", "target"
    );
    for f in &report.figures {
        let extra = f
            .extra
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (target, met) = match f.target {
            Some((t, true)) => (t, "yes"),
            Some((t, false)) => (t, "NO"),
            None => ("-", "-"),
        };
        println!(
            "{:<26} {:>11} {:<10} {:>11} {:<21} {:>7}  {:<5} {:<38} {extra}",
            f.name,
            figure(f.value),
            f.unit,
            f.baseline.map_or("-".into(), figure),
            f.baseline_name,
            f.ratio().map_or("-".into(), |r| format!("{r:.2}")),
            met,
            target,
        );
    }
    let b = report.baselines;
    let baselines = [
        ("insert_c1", b.insert_c1),
        ("insert_c8", b.insert_c8),
        ("update_c1", b.update_c1),
        ("update_c8", b.update_c8),
        ("select_c1", b.select_c1),
        ("copy", b.copy),
    ];
    println!("\nbaselines (raw sqlx, rows/s, the faster of two rounds):");
    for (name, v) in baselines {
        println!("  {name:<10} {}", v.map_or("-".into(), figure));
    }
    if let Some(path) = json_path {
        let doc = json!({
            "database": url,
            "run": report.run,
            "workloads": report.figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "baselines": baselines
                .iter()
                .map(|(name, v)| json!({ "name": name, "value": v, "unit": "rows/s" }))
                .collect::<Vec<_>>(),
        });
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
        ) {
            eprintln!("workloads: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

/// `v` to three decimals, for the JSON.
fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// A figure with as many decimals as it needs: 4 significant digits for small ones.
fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
