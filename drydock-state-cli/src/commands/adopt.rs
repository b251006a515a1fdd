//! `adopt --from URL [--dry-run] [--time-zone ZONE]`: a Drydock database imported into the
//! configured store, and the per-table report.

use drydock_state::adopt::{plan, AdoptReport};
use drydock_state::{redact_uri, Config, ImportMode, Result, StateStore};

use super::database_url;
use crate::output::{text, to_json, Outcome};

/// Reads the Drydock database at `from` in one read-only snapshot, plans the import and writes
/// it into `store` in one transaction (rolled back with `dry_run`).
pub async fn run(
    store: &dyn StateStore,
    config: &Config,
    from: &str,
    dry_run: bool,
    time_zone: Option<&str>,
) -> Result<Outcome> {
    let source = drydock_state::postgres::adopt::read_drydock(from, time_zone).await?;
    let (batch, mut report) = plan(&source);
    let mode = if dry_run {
        ImportMode::DryRun
    } else {
        ImportMode::Write
    };
    let outcome = store.import(&batch, mode).await?;
    report.record(&outcome, mode);
    Ok(rendered(&report, &redact_uri(from), store, config))
}

fn rendered(report: &AdoptReport, from: &str, store: &dyn StateStore, config: &Config) -> Outcome {
    let into = format!("{} at {}", store.backend_name(), database_url(config));
    let mut json = to_json(report).unwrap_or_default();
    json["from"] = from.into();
    json["into"] = into.clone().into();
    Outcome::new(json, text::adopt_report(report, from, &into))
}
