//! Owns the reading of a `sqlite:` URL and [`Config`] into connection and pool options.
//!
//! URL forms: `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:relative.db` (relative to
//! the working directory) and `sqlite::memory:`. sqlx's query parameters (`?mode=ro`, ...) are
//! accepted. The pragmas every connection gets are set here, in one place.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use drydock_state_core::{Config, Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Where a store lives, and how to connect to it.
#[derive(Debug)]
pub(crate) struct Target {
    /// The database file, or `None` for an in-memory database.
    pub path: Option<PathBuf>,
    /// Options every connection is opened with.
    pub connect: SqliteConnectOptions,
    /// The pool's size and timeouts.
    pub pool: SqlitePoolOptions,
}

/// A lease or grace period longer than this is treated as this (a century), so that adding
/// it to a timestamp can never overflow SQLite's 64-bit integers.
const LONGEST_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Microseconds of `d`, capped at a century.
pub(crate) fn period_micros(d: Duration) -> i64 {
    i64::try_from(d.min(LONGEST_PERIOD).as_micros()).unwrap_or(i64::MAX)
}

impl Target {
    /// Reads `url` (scheme `sqlite`, any case) and the pool settings of `config`.
    pub(crate) fn from_url(url: &str, config: &Config) -> Result<Self> {
        let rest = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("sqlite:") => &url[7..],
            _ => {
                return Err(Error::invalid(
                    "database.url",
                    "is not a sqlite: URL (e.g. sqlite:///var/lib/drydock/state.db)",
                ))
            }
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (database, query) = match rest.split_once('?') {
            Some((d, q)) => (d, Some(q)),
            None => (rest, None),
        };
        let in_memory = database == ":memory:"
            || query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
        if database.is_empty() && !in_memory {
            return Err(Error::invalid(
                "database.url",
                "names no database file (write sqlite:///abs/path.db or sqlite::memory:)",
            ));
        }
        // sqlx parses the path's percent-encoding and its query parameters.
        let normalized = format!("sqlite:{rest}");
        let connect = SqliteConnectOptions::from_str(&normalized).map_err(|e| {
            Error::invalid(
                "database.url",
                format!("is not a usable sqlite URL: {}", scrub(&e.to_string())),
            )
        })?;
        let db = &config.database;
        let connect = connect
            .create_if_missing(true)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(db.pool_timeout);
        if in_memory {
            // One connection keeps a private in-memory database alive and whole; there is no
            // file for other connections to share, and no WAL without a file.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(db.pool_timeout)
                .idle_timeout(None)
                .max_lifetime(None);
            return Ok(Target {
                path: None,
                connect: connect.journal_mode(SqliteJournalMode::Memory),
                pool,
            });
        }
        let path = connect.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            .max_connections(db.max_connections().max(1))
            .min_connections(0)
            .acquire_timeout(db.pool_timeout)
            .test_before_acquire(db.pool_pre_ping)
            .max_lifetime((!db.pool_recycle.is_zero()).then_some(db.pool_recycle));
        Ok(Target {
            path: Some(path),
            connect: connect.journal_mode(SqliteJournalMode::Wal),
            pool,
        })
    }

    /// Creates the database file's directory if it is missing (SQLite creates the file).
    pub(crate) fn create_parent_dir(&self) -> Result<()> {
        let Some(parent) = self.path.as_deref().and_then(|p| p.parent()) else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || parent.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(parent).map_err(|e| Error::Unavailable {
            message: format!(
                "sqlite: cannot create the database directory {}: {e}",
                parent.display()
            ),
            source: Some(Box::new(e)),
        })
    }
}

/// sqlx's configuration errors quote the offending value; drop anything quoted.
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("<value>");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn path_of(url: &str) -> Option<PathBuf> {
        Target::from_url(url, &Config::default()).unwrap().path
    }

    #[test]
    fn url_forms() {
        assert_eq!(
            path_of("sqlite:///var/lib/drydock/state.db").as_deref(),
            Some(Path::new("/var/lib/drydock/state.db"))
        );
        assert_eq!(
            path_of("sqlite://state.db").as_deref(),
            Some(Path::new("state.db"))
        );
        assert_eq!(
            path_of("sqlite:data/state.db").as_deref(),
            Some(Path::new("data/state.db"))
        );
        assert_eq!(
            path_of("SQLite:///x/y.db").as_deref(),
            Some(Path::new("/x/y.db"))
        );
        assert_eq!(path_of("sqlite::memory:"), None);
        assert_eq!(path_of("sqlite://:memory:"), None);
    }

    #[test]
    fn bad_urls_name_the_field() {
        for url in [
            "postgres://h/db",
            "sqlite://",
            "sqlite:",
            "sqlite:///x.db?mode=bogus",
        ] {
            match Target::from_url(url, &Config::default()) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "database.url"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn pool_follows_config() {
        let mut config = Config::default();
        config.database.pool_size = 3;
        config.database.pool_overflow = 2;
        config.database.pool_timeout = Duration::from_millis(1500);
        let target = Target::from_url("sqlite:///tmp/x.db", &config).unwrap();
        assert_eq!(target.pool.get_max_connections(), 5);
        assert_eq!(
            target.pool.get_acquire_timeout(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn period_is_capped() {
        assert_eq!(period_micros(Duration::from_secs(2)), 2_000_000);
        assert_eq!(period_micros(Duration::MAX), period_micros(LONGEST_PERIOD));
    }
}
