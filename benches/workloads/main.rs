//! Workload benchmarks, with the raw-database baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick]
//! cargo bench --bench workloads -- --database-url URL --scale 10000,1000000 [--claims N] [--json FILE]
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
//!
//! With `--scale`, only the scale workloads S1–S6 run (`workload::scale`), once per history
//! size, each on a scratch database of its own; the W workloads and the baselines do not.
//!
//! The parts: `args` (the command line), `scratch` (the scratch database and the raw
//! connection), `baseline` (the raw-sqlx baselines), `measure` (rates, statement counts, tasks
//! in bulk), `workload` (one function per workload, by family) and `report` (figures, the table
//! and the JSON).

use std::sync::Arc;
use std::time::Duration;

use drydock_state::{BackendRegistry, Config};
use serde_json::json;

mod args;
mod baseline;
mod measure;
mod report;
mod scratch;
mod workload;

use baseline::baselines;
use report::Report;
use scratch::{load_average, Raw};
use workload::{build_data, claim, design, lease, tasks};

/// What a workload returns; any error ends the run (exit 1).
type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs every workload against `args.database_url`, between two rounds of baselines.
async fn run(args: args::Args) -> BenchResult<Report> {
    let s = args.scale;
    let mut config = Config::default();
    config.leader.grace_period = Duration::from_secs(2);
    config.leader.claim_interval = Duration::from_millis(100);
    config.leader.poll_interval = Duration::from_secs(1);
    config.database.pool_size = 8;
    config.database.pool_overflow = 8;
    let load_before = load_average();
    if !args.scales.is_empty() {
        return run_scales(&args, &config, load_before).await;
    }

    let scratch = scratch::prepare(&args.database_url, &config).await?;
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

    let w1 = tasks::w1_create(&store, s).await;
    let w2 = tasks::w2_append(&store, s).await?;
    let w3 = tasks::w3_get(&store, s).await?;
    let w4 = tasks::w4_list(&store, s).await?;
    let w5 = claim::w5_claim(&store, s).await;
    let w6 = lease::w6_lease(&store, s, &registry, &scratch, &config).await?;
    let w7 = build_data::w7_build_data(&store, s).await?;
    let w8 = design::w8_design(s).await?;
    let latency = claim::latency(&store, s, &config).await?;

    eprintln!("baselines (second round)...");
    let base = first_baselines.best(baselines(&raw, 2000 / s, 2).await);
    let figures = [
        w1.figures(&base),
        w2.figures(&base),
        w3.figures(&base),
        w4.figures(&base),
        w5.figures(&base),
        w6.figures(&base),
        w7.figures(&base),
        w8.figures(&base),
        latency.figures(&base),
    ]
    .into_iter()
    .flatten()
    .collect();

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

/// The scale workloads, for each size of `--scale`; no baselines.
async fn run_scales(
    args: &args::Args,
    config: &Config,
    load_before: String,
) -> BenchResult<Report> {
    let mut registry = BackendRegistry::default();
    registry.register(&drydock_state::memory::REGISTRATION)?;
    registry.register(&drydock_state_postgres::REGISTRATION)?;
    registry.register(&drydock_state_sqlite::REGISTRATION)?;
    let claims = args.claims.unwrap_or(200_000 / args.scale as u64);
    let (figures, scales) =
        workload::scale::run(&args.scales, claims, &args.database_url, config, &registry).await?;
    let run = json!({
        "backend": if args.database_url.starts_with("postgres") { "postgres" } else { "sqlite" },
        "scales": scales,
        "claims": claims,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    Ok(Report {
        figures,
        baselines: Default::default(),
        run,
    })
}

fn main() {
    use tracing_subscriber::layer::SubscriberExt;
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some(design::W8_CHILD) {
        argv.next();
        design::w8_child(argv);
    }
    let args = args::parse_args();
    let subscriber = tracing_subscriber::registry().with(measure::StatementCounter);
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
    report.print(&url, quick);
    if let Some(path) = json_path {
        let doc = report.json(&url);
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
        ) {
            eprintln!("workloads: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
