//! The PostgreSQL store: its connection pool, opening it from a URL, migrating it, and the
//! [`StateStore`] glue. The store traits are implemented in `tasks.rs`, `messages.rs`,
//! `build_data.rs`, `lease.rs`, `boot_actions.rs` and `import.rs`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{redact_uri, Config, Result, StateStore};
use sqlx::postgres::PgPool;

use crate::config::{connect_error, grace_micros, Target};
use crate::error::OrStore;
use crate::queries;
use crate::wake::QueuedWake;

/// All six drydock-state stores in a PostgreSQL database, in the schema `drydock`.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The lease's grace period in microseconds, bound into the lease statements.
    pub(crate) grace_micros: i64,
    /// Wakes claimers waiting in `wait_for_queued`.
    pub(crate) wake: Arc<QueuedWake>,
}

impl fmt::Debug for PgStore {
    // The pool's connect options hold the password; print only what is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.pool.size())
            .field("grace_micros", &self.grace_micros)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) with a pool shaped
    /// by `config.database`: at most `pool_size + pool_overflow` connections, waiting at most
    /// `pool_timeout` for one, testing each on checkout if `pool_pre_ping`, and closing those
    /// older than `pool_recycle`. The lease lasts `config.leader.grace_period`.
    ///
    /// Does not migrate; call [`PgStore::migrate`] (the registered backend does both). An
    /// unreachable server is a retryable [`drydock_state_core::Error::Unavailable`] once
    /// `pool_timeout` has passed. No error carries the URL's password.
    #[tracing::instrument(level = "debug", skip_all, fields(max_connections = config.database.max_connections()))]
    pub async fn connect(url: &str, config: &Config) -> Result<PgStore> {
        let grace_micros = grace_micros(config)?;
        let target = Target::from_url(url, config)?;
        let pool = target
            .pool
            .connect_with(target.connect)
            .await
            .or_store("connect")
            .map_err(|e| connect_error(url, e))?;
        tracing::debug!(url = %redact_uri(url), "connected");
        Ok(PgStore {
            pool,
            grace_micros,
            wake: Arc::default(),
        })
    }

    /// A store over an existing pool (its connect options and size are the caller's). The
    /// lease lasts `config.leader.grace_period`. Does not migrate.
    pub fn from_pool(pool: PgPool, config: &Config) -> Result<PgStore> {
        Ok(PgStore {
            pool,
            grace_micros: grace_micros(config)?,
            wake: Arc::default(),
        })
    }

    /// The connection pool, for an application that shares it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Brings the `drydock` schema up to date; returns how many migrations were applied (zero
    /// when it already was). Safe to run from several instances at once; see
    /// [`crate::migrate`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn migrate(&self) -> Result<usize> {
        crate::migrate::run(&self.pool).await
    }
}

#[async_trait]
impl StateStore for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// `SELECT now()`: the database's clock; an unreachable server is a retryable
    /// [`drydock_state_core::Error::Unavailable`], as for every call.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<DateTime<Utc>> {
        queries::query_scalar(queries::PING)
            .fetch_one(&self.pool)
            .await
            .or_store("ping")
    }
}

/// Opens, migrates and hands out a store, as [`crate::REGISTRATION`] does.
pub(crate) async fn open(url: String, config: Config) -> Result<Arc<dyn StateStore>> {
    let store = PgStore::connect(&url, &config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}
