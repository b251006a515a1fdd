//! The PostgreSQL store: its connection pool, opening it from a URL, migrating it, and the
//! [`StateStore`] glue. The store traits are implemented in `tasks.rs`, `messages.rs`,
//! `build_data.rs`, `lease.rs`, `boot_actions.rs` and `import.rs`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{redact_uri, Config, Result, StateStore};
use sqlx::postgres::PgPool;

use crate::config::{checked_schema, connect_error, grace_micros, with_search_path, Target};
use crate::error::OrStore;
use crate::queries;
use crate::wake::QueuedWake;

/// All six drydock-state stores in a PostgreSQL database, in the schema `database.schema`
/// (default `drydock_state`).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The lease's grace period in microseconds, bound into the lease statements.
    pub(crate) grace_micros: i64,
    /// The schema of our tables: every pooled connection's `search_path`.
    pub(crate) schema: String,
    /// Wakes claimers waiting in `wait_for_queued`.
    pub(crate) wake: Arc<QueuedWake>,
}

impl fmt::Debug for PgStore {
    // The pool's connect options hold the password; print only what is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.pool.size())
            .field("grace_micros", &self.grace_micros)
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) with a pool shaped
    /// by `config.database`: at most `pool_size + pool_overflow` connections, waiting at most
    /// `pool_timeout` for one, testing each on checkout if `pool_pre_ping`, and closing those
    /// older than `pool_recycle`. The lease lasts `config.leader.grace_period`. Every
    /// connection's `search_path` is `config.database.schema` alone.
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
            schema: target.schema,
            wake: Arc::default(),
        })
    }

    /// A store over a pool shaped like `pool`: the same connect options, size, timeouts and
    /// connection callbacks, but whose connections' `search_path` is `config.database.schema`
    /// alone (the store's statements name no schema). `pool` itself is left as it is: its
    /// connections keep their `search_path`, and the store's connections are its own (opened
    /// on first use). The lease lasts `config.leader.grace_period`. Does not migrate.
    pub fn from_pool(pool: PgPool, config: &Config) -> Result<PgStore> {
        let grace_micros = grace_micros(config)?;
        let schema = checked_schema(config)?;
        let connect = with_search_path((*pool.connect_options()).clone(), &schema);
        let pool = pool.options().clone().connect_lazy_with(connect);
        Ok(PgStore {
            pool,
            grace_micros,
            schema,
            wake: Arc::default(),
        })
    }

    /// The store's connection pool, for an application that shares it: its connections'
    /// `search_path` is the store's schema.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Brings the schema `database.schema` up to date; returns how many migrations were
    /// applied (zero when it already was). Creating the schema is refused with an
    /// [`drydock_state_core::Error::Config`] on `database.schema` when a role has its name; a
    /// database migrated under the old schema name `drydock` is upgraded. Safe to run from
    /// several instances at once; see [`crate::migrate`].
    #[tracing::instrument(level = "debug", skip_all, fields(schema = %self.schema))]
    pub async fn migrate(&self) -> Result<usize> {
        crate::migrate::run(&self.pool, &self.schema).await
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
