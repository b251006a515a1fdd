//! # drydock-state
//!
//! Persisted state for a bare-metal provisioning orchestrator, after Airship Drydock's
//! `statemgmt`: tasks and their result messages, node build data, the leader lease, and
//! design references resolved by drivers chosen by URI scheme.
//!
//! This is the facade: it re-exports [`drydock_state_core`] and switches backends and design
//! drivers on through Cargo features.
//!
//! | feature | provides | URL / URI schemes |
//! |---|---|---|
//! | `sqlite` (default) | embedded SQLite backend | `sqlite://` |
//! | `memory` (default) | in-memory backend | `memory://` |
//! | `postgres` | PostgreSQL backend | `postgres://`, `postgresql://` |
//! | `design-file` (default) | `file://` design driver | `file://` |
//! | `design-http` | `http://`, `https://` design driver | `http://`, `https://` |
//! | `design-deckhand` | Deckhand and Promenade design driver (one Keystone auth) | `deckhand+http://`, `deckhand+https://`, `promenade+http://`, `promenade+https://` |
//!
//! ```no_run
//! # async fn run() -> drydock_state::Result<()> {
//! use drydock_state::{ClaimRequest, Config, NewTask, ResultStatus, TaskStatus, TaskUpdate};
//! let config = Config::load(None)?;
//! let store = drydock_state::open_configured(&config).await?;
//! let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
//! store.create_task(&task).await?;
//!
//! // A worker claims it and writes under its claim: once the claim has ended (the task was
//! // recovered or claimed again), the write is refused with `Error::LeaseLost`.
//! if let Some(running) = store.claim_next(&ClaimRequest::new("worker-1")).await? {
//!     let guard = running.claim();
//!     let done = TaskUpdate::new()
//!         .status(TaskStatus::Complete)
//!         .result_status(ResultStatus::Success);
//!     store.update_task(running.task_id, &done, guard.as_ref()).await?;
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use tracing::Instrument;

pub use drydock_state_core::*;

#[cfg(feature = "design-deckhand")]
pub use drydock_design_deckhand as design_deckhand;
#[cfg(feature = "design-file")]
pub use drydock_design_file as design_file;
#[cfg(feature = "design-http")]
pub use drydock_design_http as design_http;
#[cfg(feature = "postgres")]
pub use drydock_state_postgres as postgres;
#[cfg(feature = "sqlite")]
pub use drydock_state_sqlite as sqlite;

/// Every backend scheme drydock-state ships, with the feature that provides it.
pub const BACKEND_FEATURES: &[(&str, &str)] = &[
    ("memory", "memory"),
    ("postgres", "postgres"),
    ("postgresql", "postgres"),
    ("sqlite", "sqlite"),
];

/// Every design scheme drydock-state ships, with the feature that provides it.
pub const DESIGN_FEATURES: &[(&str, &str)] = &[
    ("deckhand+http", "design-deckhand"),
    ("deckhand+https", "design-deckhand"),
    ("file", "design-file"),
    ("http", "design-http"),
    ("https", "design-http"),
    ("promenade+http", "design-deckhand"),
    ("promenade+https", "design-deckhand"),
];

/// The backends compiled into this program: those of the enabled features, named explicitly
/// so they are linked, plus any a third-party crate submitted through `inventory`.
pub fn backends() -> Result<BackendRegistry> {
    let mut registry = BackendRegistry::from_inventory()?;
    #[cfg(feature = "memory")]
    registry.register(&drydock_state_core::memory::REGISTRATION)?;
    #[cfg(feature = "postgres")]
    registry.register(&drydock_state_postgres::REGISTRATION)?;
    #[cfg(feature = "sqlite")]
    registry.register(&drydock_state_sqlite::REGISTRATION)?;
    Ok(registry)
}

/// A design resolver with the drivers of the enabled features, named explicitly so they are
/// linked, plus any a third-party crate submitted through `inventory`.
pub fn design_resolver(config: &DesignConfig) -> Result<DesignResolver> {
    #[allow(unused_mut)]
    let mut resolver = DesignResolver::from_registry(config)?;
    #[cfg(feature = "design-file")]
    resolver.register(&drydock_design_file::REGISTRATION)?;
    #[cfg(feature = "design-http")]
    resolver.register(&drydock_design_http::REGISTRATION)?;
    #[cfg(feature = "design-deckhand")]
    resolver.register(&drydock_design_deckhand::REGISTRATION)?;
    Ok(resolver)
}

/// Opens the store `url` names, picking the backend by scheme; migrations run on open.
///
/// A scheme drydock-state ships whose feature is off is [`Error::FeatureDisabled`] naming the
/// feature; a scheme nobody serves is [`Error::UnknownScheme`] listing those that are served.
pub async fn open(url: &str, config: &Config) -> Result<Arc<dyn StateStore>> {
    let scheme = backend::url_scheme(url)?;
    let registry = backends()?;
    let span = tracing::info_span!("open", scheme = %scheme);
    match (
        registry.open(url, config).instrument(span).await,
        feature_for(BACKEND_FEATURES, &scheme),
    ) {
        (Err(Error::UnknownScheme { .. }), Some(feature)) => {
            Err(Error::FeatureDisabled { scheme, feature })
        }
        (other, _) => other,
    }
}

/// Opens the store of `config.database.url`, or the embedded default
/// ([`default_database_url`]) when none is configured.
pub async fn open_configured(config: &Config) -> Result<Arc<dyn StateStore>> {
    let url = config
        .database
        .url
        .clone()
        .unwrap_or_else(default_database_url);
    open(&url, config).await
}

/// Fetches a design, mapping a shipped-but-disabled scheme to [`Error::FeatureDisabled`].
pub async fn fetch_design(resolver: &DesignResolver, uri: &str) -> Result<DesignDocument> {
    let design_ref = DesignRef::parse(uri)?;
    let feature = feature_for(DESIGN_FEATURES, design_ref.scheme());
    match (resolver.fetch(&design_ref).await, feature) {
        (Err(Error::UnknownScheme { scheme, .. }), Some(feature)) => {
            Err(Error::FeatureDisabled { scheme, feature })
        }
        (other, _) => other,
    }
}

fn feature_for(table: &[(&str, &'static str)], scheme: &str) -> Option<&'static str> {
    table.iter().find(|(s, _)| *s == scheme).map(|(_, f)| *f)
}

/// Where the embedded default database lives: `$DRYDOCK_STATE_HOME/state.db` if that variable
/// is set, else `$XDG_DATA_HOME/drydock-state/state.db`, else
/// `$HOME/.local/share/drydock-state/state.db`, else `./drydock-state.db`.
pub fn default_database_path() -> PathBuf {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = env("DRYDOCK_STATE_HOME") {
        return home.join("state.db");
    }
    if let Some(data) = env("XDG_DATA_HOME") {
        return data.join("drydock-state").join("state.db");
    }
    if let Some(home) = env("HOME") {
        return home.join(".local/share/drydock-state/state.db");
    }
    PathBuf::from("drydock-state.db")
}

/// The embedded default database as a URL: `sqlite://` + [`default_database_path`].
pub fn default_database_url() -> String {
    let path = default_database_path();
    let path = if path.is_absolute() {
        path
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    format!("sqlite://{}", path.display())
}
