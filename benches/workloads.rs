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
//! pool settings in the same run. `--quick` divides every count by ten (a smoke run).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state::{
    BackendRegistry, BuildData, BuildDataQuery, ClaimRequest, Config, DesignConfig, DesignResolver,
    NewMessage, StateStore, Task, TaskFilter, TaskId, TaskStatus,
};
use serde_json::{json, Value};
use sqlx::{Executor, PgPool, SqlitePool};
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
                eprintln!("workloads: unknown argument {other}\nusage: cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick]");
                std::process::exit(2);
            }
        }
    }
    let database_url = database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| {
            eprintln!(
                "workloads: give --database-url URL (postgres://..., sqlite://..., memory://)"
            );
            std::process::exit(2);
        });
    Args {
        database_url,
        json,
        scale,
    }
}

/// The raw connection the baselines use: same database, same pool size.
enum Raw {
    Pg(PgPool),
    Sqlite(SqlitePool),
    None,
}

/// A scratch database for one run, removed on drop (best effort).
struct Scratch {
    store_url: String,
    raw: Raw,
    cleanup: Option<(String, String)>,
    file: Option<PathBuf>,
}

async fn prepare(url: &str, config: &Config) -> Result<Scratch, Box<dyn std::error::Error>> {
    let scheme = drydock_state::backend::url_scheme(url)?;
    let max = config.database.max_connections();
    match scheme.as_str() {
        "postgres" | "postgresql" => {
            let admin = PgPool::connect(url).await?;
            let name = format!("drydock_bench_{}", std::process::id());
            // sql-hygiene: allow (a generated name; CREATE DATABASE takes no parameters)
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                .await?;
            // sql-hygiene: allow (a generated name; CREATE DATABASE takes no parameters)
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
            let mut parsed = url::Url::parse(url)?;
            parsed.set_path(&name);
            let raw = sqlx::postgres::PgPoolOptions::new()
                .max_connections(max)
                .connect(parsed.as_str())
                .await?;
            raw.execute("CREATE TABLE raw_bench (id bigint PRIMARY KEY, v text NOT NULL)")
                .await?;
            Ok(Scratch {
                store_url: parsed.to_string(),
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
            let store = drydock_state::open(&store_url, config).await?;
            drop(store);
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30));
            let raw = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(max)
                .connect_with(options)
                .await?;
            raw.execute("CREATE TABLE raw_bench (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .await?;
            Ok(Scratch {
                store_url,
                raw: Raw::Sqlite(raw),
                cleanup: None,
                file: Some(file),
            })
        }
        _ => Ok(Scratch {
            store_url: url.to_string(),
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
            if let Ok(admin) = PgPool::connect(&admin_url).await {
                // sql-hygiene: allow (a generated name; DROP DATABASE takes no parameters)
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        }
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Baselines

#[derive(Default, Clone)]
struct Baselines {
    insert_c1: Option<f64>,
    insert_c8: Option<f64>,
    update_c1: Option<f64>,
    update_c8: Option<f64>,
    select_c1: Option<f64>,
    copy: Option<f64>,
    file_read: Option<f64>,
    http_get: Option<f64>,
}

async fn raw_ops(raw: &Raw, op: &'static str, ids: Vec<i64>, concurrency: usize) -> Option<f64> {
    let chunks: Vec<Vec<i64>> = ids
        .chunks(ids.len().div_ceil(concurrency))
        .map(<[i64]>::to_vec)
        .collect();
    let total = ids.len();
    let started = Instant::now();
    let mut handles = Vec::new();
    for chunk in chunks {
        let task = match raw {
            Raw::Pg(pool) => {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for id in chunk {
                        match op {
                            "insert" => {
                                sqlx::query("INSERT INTO raw_bench (id, v) VALUES ($1, $2)")
                                    .bind(id)
                                    .bind("payload")
                                    .execute(&pool)
                                    .await
                                    .map(|_| ())
                            }
                            "update" => sqlx::query("UPDATE raw_bench SET v = $2 WHERE id = $1")
                                .bind(id)
                                .bind("updated")
                                .execute(&pool)
                                .await
                                .map(|_| ()),
                            _ => sqlx::query("SELECT v FROM raw_bench WHERE id = $1")
                                .bind(id)
                                .fetch_optional(&pool)
                                .await
                                .map(|_| ()),
                        }
                        .expect("raw statement");
                    }
                })
            }
            Raw::Sqlite(pool) => {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for id in chunk {
                        match op {
                            "insert" => {
                                sqlx::query("INSERT INTO raw_bench (id, v) VALUES (?1, ?2)")
                                    .bind(id)
                                    .bind("payload")
                                    .execute(&pool)
                                    .await
                                    .map(|_| ())
                            }
                            "update" => sqlx::query("UPDATE raw_bench SET v = ?2 WHERE id = ?1")
                                .bind(id)
                                .bind("updated")
                                .execute(&pool)
                                .await
                                .map(|_| ()),
                            _ => sqlx::query("SELECT v FROM raw_bench WHERE id = ?1")
                                .bind(id)
                                .fetch_optional(&pool)
                                .await
                                .map(|_| ()),
                        }
                        .expect("raw statement");
                    }
                })
            }
            Raw::None => return None,
        };
        handles.push(task);
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
            let mut copy = conn
                .copy_in_raw("COPY raw_bench (id, v) FROM STDIN")
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
                sqlx::query("INSERT INTO raw_bench (id, v) VALUES (?1, 'payload')")
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

async fn baselines(raw: &Raw, n: usize) -> Baselines {
    let ids = |from: i64| (from..from + n as i64).collect::<Vec<_>>();
    let mut b = Baselines {
        insert_c1: raw_ops(raw, "insert", ids(0), 1).await,
        insert_c8: raw_ops(raw, "insert", ids(1_000_000), 8).await,
        ..Default::default()
    };
    b.update_c1 = raw_ops(raw, "update", ids(0), 1).await;
    b.update_c8 = raw_ops(raw, "update", ids(1_000_000), 8).await;
    b.select_c1 = raw_ops(raw, "select", ids(0), 1).await;
    b.copy = raw_copy(raw, 10_000_000, 20_000).await;
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
            extra: Default::default(),
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    fn ratio(&self) -> Option<f64> {
        let b = self.baseline?;
        Some(if self.higher_is_better {
            self.value / b
        } else {
            b / self.value
        })
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio(),
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
        let t = Task::new(action).with_status(status);
        store.create_task(&t).await.expect("create");
        ids.push(t.task_id);
    }
    ids
}

async fn drain(
    store: Arc<dyn StateStore>,
    n: usize,
    action: &'static str,
    claimers: usize,
) -> (f64, usize, usize) {
    create_many(&store, n, action, TaskStatus::Queued).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let request = ClaimRequest::new(format!("bench-{w}")).actions([action]);
            let mut mine = Vec::new();
            while let Some(t) = store.claim_next(&request).await.expect("claim") {
                store
                    .set_status(t.task_id, TaskStatus::Complete)
                    .await
                    .expect("complete");
                mine.push(t.task_id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("claimer"));
    }
    let elapsed = started.elapsed();
    let unique: HashSet<_> = all.iter().collect();
    (
        rate(all.len(), elapsed),
        all.len() - unique.len(),
        n - unique.len(),
    )
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

/// Runs `f` and returns its result with the peak resident memory it added, in bytes.
async fn with_peak_rss<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    // Writing 5 to clear_refs resets VmHWM (the peak) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = proc_status("VmRSS:");
    let out = f.await;
    (out, proc_status("VmHWM:").saturating_sub(before))
}

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

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Result<Vec<Figure>, Box<dyn std::error::Error>> {
    let s = args.scale;
    let mut config = Config::default();
    config.leader.grace_period = Duration::from_secs(2);
    config.leader.claim_interval = Duration::from_millis(100);
    config.leader.poll_interval = Duration::from_secs(1);
    config.database.pool_size = 8;
    config.database.pool_overflow = 8;

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

    eprintln!("baselines...");
    let mut base = baselines(&scratch.raw, 2000 / s).await;
    let mut figures = Vec::new();

    eprintln!("W1 create...");
    let n = 2000 / s;
    let started = Instant::now();
    create_many(&store, n, "bench_w1", TaskStatus::Requested).await;
    figures.push(Figure::rate(
        "W1_create",
        rate(n, started.elapsed()),
        "tasks/s",
        "insert_c1",
        base.insert_c1,
    ));

    eprintln!("W2 append...");
    let tasks = create_many(&store, 200 / s.min(2), "bench_w2", TaskStatus::Running).await;
    let n = 20_000 / s;
    let per = n / tasks.len();
    let started = Instant::now();
    for t in &tasks {
        for j in 0..per {
            store
                .append_message(*t, &NewMessage::info(format!("message {j}")))
                .await?;
        }
    }
    figures.push(Figure::rate(
        "W2_append",
        rate(per * tasks.len(), started.elapsed()),
        "msgs/s",
        "insert_c1",
        base.insert_c1,
    ));
    let batch: Vec<NewMessage> = (0..per)
        .map(|j| NewMessage::info(format!("batched {j}")))
        .collect();
    let started = Instant::now();
    for t in &tasks {
        store.append_messages(*t, &batch).await?;
    }
    figures.push(Figure::rate(
        "W2_append_batch",
        rate(per * tasks.len(), started.elapsed()),
        "msgs/s",
        "copy",
        base.copy,
    ));

    eprintln!("W3 get...");
    let tasks = create_many(&store, 200 / s.min(2), "bench_w3", TaskStatus::Running).await;
    let fifty: Vec<NewMessage> = (0..50).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &fifty).await?;
    }
    let started = Instant::now();
    for t in &tasks {
        let got = store.get_task(*t).await?.expect("task");
        assert_eq!(got.result.details.message_list.len(), 50);
    }
    figures.push(Figure::rate(
        "W3_get",
        rate(tasks.len(), started.elapsed()),
        "tasks/s",
        "select_c1",
        base.select_c1,
    ));

    eprintln!("W4 list...");
    let n = 2000 / s;
    let tasks = create_many(&store, n, "bench_w4", TaskStatus::Complete).await;
    let ten: Vec<NewMessage> = (0..10).map(|j| NewMessage::info(format!("m{j}"))).collect();
    for t in &tasks {
        store.append_messages(*t, &ten).await?;
    }
    let filter = TaskFilter {
        action: Some("bench_w4".into()),
        ..Default::default()
    };
    let started = Instant::now();
    let (listed, statements) = count_statements(store.list_tasks(&filter)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let listed = listed?;
    assert_eq!(listed.len(), n);
    assert!(listed
        .iter()
        .all(|t| t.result.details.message_list.len() == 10));
    figures.push(
        Figure {
            name: "W4_list",
            value: elapsed,
            unit: "s",
            baseline_name: "drydock_python_3.3s",
            baseline: Some(3.3),
            higher_is_better: false,
            extra: Default::default(),
        }
        .with("statements", json!(statements)),
    );

    eprintln!("W5 claim...");
    let (claims, dups, left) = drain(store.clone(), 2000 / s, "bench_w5a", 1).await;
    figures.push(
        Figure::rate(
            "W5_claim_1",
            claims,
            "claims/s",
            "update_c1",
            base.update_c1,
        )
        .with("duplicates", json!(dups))
        .with("left", json!(left)),
    );
    let (claims, dups, left) = drain(store.clone(), 2000 / s, "bench_w5b", 8).await;
    figures.push(
        Figure::rate(
            "W5_claim_8",
            claims,
            "claims/s",
            "update_c8",
            base.update_c8,
        )
        .with("duplicates", json!(dups))
        .with("left", json!(left)),
    );

    eprintln!("W6 lease...");
    let n = 2000 / s;
    let started = Instant::now();
    for _ in 0..n {
        store.claim_lease("bench-leader").await?;
        store.renew_lease("bench-leader").await?;
    }
    figures.push(Figure::rate(
        "W6_lease",
        rate(2 * n, started.elapsed()),
        "calls/s",
        "update_c1",
        base.update_c1,
    ));
    store.renew_lease("bench-leader").await?;
    let last_renewal = Instant::now();
    let failover = loop {
        if store.claim_lease("bench-follower").await?.held().is_some() {
            break last_renewal.elapsed();
        }
        tokio::time::sleep(config.leader.claim_interval).await;
    };
    let bound = (config.leader.grace_period + config.leader.claim_interval).as_secs_f64();
    figures.push(Figure {
        name: "W6_failover",
        value: failover.as_secs_f64(),
        unit: "s",
        baseline_name: "grace_plus_claim_interval",
        baseline: Some(bound),
        higher_is_better: false,
        extra: Default::default(),
    });

    eprintln!("W7 build data...");
    let element = "b".repeat(64 * 1024);
    let (nodes, generators) = (100 / s.min(10), 10);
    let task = TaskId::new();
    let started = Instant::now();
    for i in 0..nodes * generators {
        let data = BuildData {
            node_name: format!("node{:03}", i % nodes),
            task_id: task,
            collected_date: None,
            generator: format!("gen{}", i / nodes),
            data_format: "text/plain".into(),
            data_element: Some(element.clone()),
        };
        store.record_build_data(&data).await?;
    }
    figures.push(Figure::rate(
        "W7_record",
        rate(nodes * generators, started.elapsed()),
        "elements/s",
        "insert_c1",
        base.insert_c1,
    ));
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
    }
    figures.push(Figure::rate(
        "W7_latest",
        rate(nodes, started.elapsed()),
        "calls/s",
        "select_c1",
        base.select_c1,
    ));

    eprintln!("W8 design...");
    let size = 20 * 1024 * 1024 / s;
    let body = Arc::new(design_of(size));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("site.yaml");
    std::fs::write(&path, &*body)?;
    let design_config = DesignConfig {
        cache_ttl: Duration::ZERO,
        ..Default::default()
    };
    let mut resolver = DesignResolver::new(&design_config);
    resolver.register(&drydock_design_file::REGISTRATION, &design_config)?;
    resolver.register(&drydock_design_http::REGISTRATION, &design_config)?;
    let mb = size as f64 / 1e6;
    let started = Instant::now();
    let raw_file = tokio::fs::read(&path).await?;
    base.file_read = Some(mb / started.elapsed().as_secs_f64());
    drop(raw_file);
    let uri = format!("file://{}", path.display());
    let started = Instant::now();
    let (doc, peak) = with_peak_rss(resolver.fetch_uri(&uri)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(doc?.bytes.len(), size);
    figures.push(
        Figure::rate("W8_file", mb / secs, "MB/s", "file_read", base.file_read)
            .with("peak_rss_bytes", json!(peak))
            .with("document_bytes", json!(size)),
    );
    let addr = serve(body.clone()).await;
    let uri = format!("http://{addr}/site.yaml");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let raw_body = client.get(&uri).send().await?.bytes().await?;
    base.http_get = Some(mb / started.elapsed().as_secs_f64());
    drop(raw_body);
    let started = Instant::now();
    let (doc, peak) = with_peak_rss(resolver.fetch_uri(&uri)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(doc?.bytes.len(), size);
    figures.push(
        Figure::rate("W8_http", mb / secs, "MB/s", "http_get", base.http_get)
            .with("peak_rss_bytes", json!(peak))
            .with("document_bytes", json!(size)),
    );

    eprintln!("enqueue-to-claim latency...");
    let rounds = 200 / s.min(4);
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
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Task::new("bench_latency").with_status(TaskStatus::Queued);
        let enqueued = Instant::now();
        store.create_task(&t).await?;
        let (id, at) = rx.recv().await.expect("claimed");
        assert_eq!(id, t.task_id);
        latencies.push(at.duration_since(enqueued).as_secs_f64());
    }
    claimer.await?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    for (name, value) in [
        ("latency_enqueue_claim_p50", pct(0.5)),
        ("latency_enqueue_claim_p99", pct(0.99)),
    ] {
        figures.push(Figure {
            name,
            value,
            unit: "s",
            baseline_name: "drydock_poll_interval_10s",
            baseline: Some(10.0),
            higher_is_better: false,
            extra: Default::default(),
        });
    }

    let mut baseline_figures: Vec<Figure> = [
        ("baseline_insert_c1", base.insert_c1, "rows/s"),
        ("baseline_insert_c8", base.insert_c8, "rows/s"),
        ("baseline_update_c1", base.update_c1, "rows/s"),
        ("baseline_update_c8", base.update_c8, "rows/s"),
        ("baseline_select_c1", base.select_c1, "rows/s"),
        ("baseline_copy", base.copy, "rows/s"),
        ("baseline_file_read", base.file_read, "MB/s"),
        ("baseline_http_get", base.http_get, "MB/s"),
    ]
    .into_iter()
    .filter_map(|(name, v, unit)| v.map(|v| Figure::rate(name, v, unit, "", None)))
    .collect();
    figures.append(&mut baseline_figures);
    drop(store);
    scratch.remove().await;
    Ok(figures)
}

fn main() {
    use tracing_subscriber::layer::SubscriberExt;
    let args = parse_args();
    let subscriber = tracing_subscriber::registry().with(StatementCounter);
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let json_path = args.json.clone();
    let url = drydock_state::redact_uri(&args.database_url);
    let figures = match runtime.block_on(run(args)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("workloads: {e}");
            std::process::exit(1);
        }
    };
    println!("\nworkloads against {url}\n");
    println!(
        "{:<28} {:>14} {:<11} {:>14}  {:<26} {:>8}  extra",
        "workload", "value", "unit", "baseline", "baseline name", "ratio"
    );
    for f in &figures {
        let extra = f
            .extra
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<28} {:>14.4} {:<11} {:>14} {:<27} {:>8}  {extra}",
            f.name,
            f.value,
            f.unit,
            f.baseline.map_or("-".into(), |b| format!("{b:.4}")),
            f.baseline_name,
            f.ratio().map_or("-".into(), |r| format!("{r:.3}")),
        );
    }
    if let Some(path) = json_path {
        let doc = json!({ "database": url, "workloads": figures.iter().map(Figure::json).collect::<Vec<_>>() });
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
        ) {
            eprintln!("workloads: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
