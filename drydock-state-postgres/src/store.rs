//! The PostgreSQL store: its connection pool, opening it from a URL and the [`StateStore`]
//! glue. The traits themselves are implemented in `tasks.rs`, `messages.rs`,
//! `build_data.rs`, `lease.rs` and `boot_actions.rs`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{redact_uri, Config, Error, Result, StateStore, TaskId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::db_error;
use crate::queries;
use crate::wake::QueuedWake;

/// All five drydock-state stores in a PostgreSQL database, in the schema `drydock`.
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
    /// unreachable server is a retryable [`Error::Unavailable`] once `pool_timeout` has passed.
    /// No error carries the URL's password.
    #[tracing::instrument(skip_all, fields(max_connections = config.database.max_connections()))]
    pub async fn connect(url: &str, config: &Config) -> Result<PgStore> {
        let grace_micros = grace_micros(config)?;
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            scrubbed(
                url,
                Error::invalid(
                    "database.url",
                    format!("not a PostgreSQL URL ({})", scrub(url, &e.to_string())),
                ),
            )
        })?;
        let db = &config.database;
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections().max(1))
            .acquire_timeout(db.pool_timeout)
            .test_before_acquire(db.pool_pre_ping)
            .max_lifetime(Some(db.pool_recycle).filter(|d| !d.is_zero()))
            .connect_with(options)
            .await
            .map_err(|e| {
                let e = db_error("connect", "database.url")(e);
                scrubbed(url, with_context(e, &redact_uri(url)))
            })?;
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

    /// Brings the `drydock` schema up to date; see [`crate::migrate`].
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.pool).await
    }

    /// Whether a task exists.
    pub(crate) async fn task_exists(&self, id: TaskId) -> Result<bool> {
        queries::query_scalar(queries::TASK_EXISTS)
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("task_exists", "task_id"))
    }
}

#[async_trait]
impl StateStore for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// `SELECT now()`: the database's clock; an unreachable server is a retryable
    /// [`Error::Unavailable`], as for every call.
    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<DateTime<Utc>> {
        queries::query_scalar(queries::PING)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("ping", "database"))
    }
}

/// Opens, migrates and hands out a store, as [`crate::REGISTRATION`] does.
pub(crate) async fn open(url: String, config: Config) -> Result<Arc<dyn StateStore>> {
    let store = PgStore::connect(&url, &config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

fn grace_micros(config: &Config) -> Result<i64> {
    let grace = config.leader.grace_period;
    let refuse = |reason: &str| Error::Config {
        key: "leader.grace_period".into(),
        origin: "configuration".into(),
        reason: reason.into(),
    };
    if grace.is_zero() {
        return Err(refuse("must be greater than zero"));
    }
    i64::try_from(grace.as_micros()).map_err(|_| refuse("is too large"))
}

/// Prefixes an error's message with where it was connecting to (password redacted).
fn with_context(e: Error, target: &str) -> Error {
    match e {
        Error::Unavailable { message, source } => Error::Unavailable {
            message: format!("cannot connect to {target}: {message}"),
            source,
        },
        Error::Backend { message, source } => Error::Backend {
            message: format!("cannot connect to {target}: {message}"),
            source,
        },
        other => other,
    }
}

/// The URL's password, raw and percent-decoded, if it has one.
fn passwords(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        // Not a URL we can parse: guard the whole user-info part instead.
        return url
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(userinfo, _)| vec![userinfo.to_string()])
            .unwrap_or_default();
    };
    let Some(raw) = parsed.password() else {
        return Vec::new();
    };
    let mut out = vec![raw.to_string()];
    if let Ok(decoded) = percent_decode(raw) {
        out.push(decoded);
    }
    out.retain(|p| !p.is_empty());
    out
}

fn percent_decode(s: &str) -> std::result::Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// `text` with every occurrence of the URL's password replaced by `***`.
fn scrub(url: &str, text: &str) -> String {
    passwords(url)
        .iter()
        .fold(text.to_string(), |acc, p| acc.replace(p.as_str(), "***"))
}

/// Belt and braces: if the password shows anywhere in the error's chain (sqlx does not put it
/// there today), the chain is replaced by its scrubbed rendering.
fn scrubbed(url: &str, e: Error) -> Error {
    let secrets = passwords(url);
    let rendered = format!("{e} / {e:?}");
    if !secrets.iter().any(|p| rendered.contains(p.as_str())) {
        return e;
    }
    let message = scrub(url, &e.to_string());
    if e.is_retryable() {
        Error::Unavailable {
            message,
            source: None,
        }
    } else {
        Error::Backend {
            message,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_raw_and_decoded_password() {
        let url = "postgres://u:p%40ss@h/db";
        assert_eq!(scrub(url, "x p%40ss y p@ss z"), "x *** y *** z");
        assert!(passwords("postgres://u@h/db").is_empty());
    }

    #[test]
    fn scrubbed_replaces_a_leaky_chain() {
        let url = "postgres://u:hunter2@h/db";
        let leaky = Error::Backend {
            message: "oops hunter2".into(),
            source: None,
        };
        let clean = scrubbed(url, leaky);
        assert!(!format!("{clean} {clean:?}").contains("hunter2"));
    }

    #[test]
    fn zero_grace_is_refused() {
        let mut config = Config::default();
        config.leader.grace_period = std::time::Duration::ZERO;
        assert!(matches!(grace_micros(&config), Err(Error::Config { .. })));
    }
}
