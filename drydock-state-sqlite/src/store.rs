//! The SQLite store: its pool over one database file (or an in-memory database), opening it
//! from a URL, migrating it, and the [`StateStore`] glue. The store traits are implemented in
//! `tasks.rs`, `messages.rs`, `build_data.rs`, `lease.rs`, `boot_actions.rs` and `import.rs`.
//!
//! Writes that need more than one statement run in `BEGIN IMMEDIATE` transactions, which take
//! SQLite's write lock up front (waiting up to the busy timeout) instead of upgrading a read
//! snapshot later, which SQLite refuses with `SQLITE_BUSY` without waiting. Reads of a task
//! with its messages run in one deferred transaction, so both queries see the same snapshot.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{Config, Result, StateStore, TaskStatus};
use sqlx::{Sqlite, SqlitePool};

use crate::config::{period_micros, Target};
use crate::error::{is_busy, OrStore};
use crate::queries;

/// The SQLite backend: all six stores over one database file (or an in-memory database).
///
/// Open it with [`SqliteStore::open`], then [`SqliteStore::migrate`] (the registry's `open`
/// does both). Cloning is not offered: share it as `Arc<dyn StateStore>`.
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    path: Option<PathBuf>,
    pub(crate) grace_micros: i64,
    /// Wakes this process's waiting claimers when this store queues a task.
    pub(crate) queued: tokio::sync::Notify,
    // Held only to be dropped with the store.
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("grace_micros", &self.grace_micros)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing, with its directory) the database `url` names:
    /// `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:relative.db` or
    /// `sqlite::memory:`. The pool holds up to `pool_size + pool_overflow` connections, waits
    /// `pool_timeout` for one, and each connection waits as long for SQLite's write lock. The
    /// lease lasts `config.leader.grace_period`. Does not migrate; see [`SqliteStore::migrate`].
    pub async fn open(url: &str, config: &Config) -> Result<Self> {
        let target = Target::from_url(url, config)?;
        target.create_parent_dir()?;
        let pool = Self::first_connection(&target, config.database.pool_timeout).await?;
        tracing::debug!(path = ?target.path, "opened sqlite store");
        Ok(SqliteStore {
            pool,
            path: target.path,
            grace_micros: period_micros(config.leader.grace_period),
            queued: tokio::sync::Notify::new(),
            _guard: None,
        })
    }

    /// Opens the pool with its first connection. On a new file the first connections of
    /// several instances race to switch it to WAL, and SQLite refuses all but one with
    /// `SQLITE_BUSY` at once (deadlock avoidance: the busy timeout does not apply), so a busy
    /// refusal is tried again, with a short growing pause; no new attempt starts once
    /// `patience` has passed (an attempt itself may wait up to the pool and busy timeouts).
    /// Any other failure is returned at once. Once the file is in WAL mode the race is over
    /// for good.
    async fn first_connection(target: &Target, patience: Duration) -> Result<SqlitePool> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match target
                .pool
                .clone()
                .connect_with(target.connect.clone())
                .await
            {
                Err(e) if is_busy(&e) && started.elapsed() + pause < patience => {
                    tracing::debug!(?pause, "sqlite file busy while opening; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                connected => return connected.or_store("open"),
            }
        }
    }

    /// Brings the schema up to date; returns how many migrations were applied (zero when it
    /// already was). Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<usize> {
        crate::migrate::run(&self.pool).await
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The connection pool, for inspection and maintenance (the schema is this crate's).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Keeps `guard` alive as long as the store: e.g. the `tempfile::TempDir` holding a
    /// throwaway database, so the directory goes when the store does.
    pub fn keep_alive<T: Send + Sync + 'static>(mut self, guard: T) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Starts a write transaction: SQLite's write lock taken now, waiting up to the busy
    /// timeout for it.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, Sqlite>> {
        queries::begin_immediate(&self.pool).await.or_store(op)
    }

    /// Wakes this process's waiting claimers if a write left a task queued.
    pub(crate) fn wake_if_queued(&self, status: TaskStatus) {
        if status == TaskStatus::Queued {
            self.queued.notify_waiters();
        }
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    /// One statement: `PING`, SQLite's clock as every statement stamps times.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<DateTime<Utc>> {
        let now: i64 = queries::query_scalar(queries::PING)
            .fetch_one(&self.pool)
            .await
            .or_store("ping")?;
        crate::codec::from_micros("ping", now)
    }
}

/// Opens, migrates and hands out a store, as [`crate::REGISTRATION`] does.
pub(crate) async fn open(url: String, config: Config) -> Result<Arc<dyn StateStore>> {
    let store = SqliteStore::open(&url, &config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}
