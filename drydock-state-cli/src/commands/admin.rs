//! The small commands: `config`, `migrate`, `health`, `purge` and `recover-orphans`.

use std::time::Duration;

use drydock_state::{Config, OrphanPolicy, Result, StateStore, TaskId};
use serde_json::json;

use super::database_url;
use crate::output::{to_json, Outcome};

/// `config`: the effective configuration, secrets redacted, with the database URL the store
/// would open.
pub fn config(config: &Config) -> Outcome {
    let mut effective = config.clone();
    effective
        .database
        .url
        .get_or_insert_with(drydock_state::default_database_url);
    let json = effective.to_redacted_json();
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    Outcome::new(json, text)
}

/// `migrate`: the store is open, so its schema is up to date.
pub fn migrate(store: &dyn StateStore, config: &Config) -> Outcome {
    let url = database_url(config);
    Outcome::new(
        json!({"migrated": true, "backend": store.backend_name(), "database": url}),
        format!("schema is up to date ({} at {url})", store.backend_name()),
    )
}

/// `health`: the backend, where it is, and its clock.
pub async fn health(store: &dyn StateStore, config: &Config) -> Result<Outcome> {
    let clock = store.ping().await?;
    let url = database_url(config);
    let backend = store.backend_name();
    Ok(Outcome::new(
        json!({"healthy": true, "backend": backend, "database": url, "clock": clock}),
        format!(
            "{backend} at {url} answers; its clock reads {}",
            clock.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    ))
}

/// `purge --older-than`: what was deleted.
pub async fn purge(store: &dyn StateStore, older_than: Duration) -> Result<Outcome> {
    let report = store.purge(older_than).await?;
    let text = format!(
        "purged {} tasks and {} messages",
        report.tasks, report.messages
    );
    Ok(Outcome::new(to_json(&report)?, text))
}

/// `recover-orphans`: the ids recovered, one a line, oldest first.
pub async fn recover_orphans(
    store: &dyn StateStore,
    term: i64,
    policy: OrphanPolicy,
) -> Result<Outcome> {
    let recovered = store.recover_orphans(term, policy).await?;
    let text = recovered
        .iter()
        .map(TaskId::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Outcome::new(to_json(&recovered)?, text))
}
