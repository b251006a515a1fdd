//! The scratch database of one run, and the raw connection the baselines use.

use std::path::PathBuf;

use drydock_state::Config;
use drydock_state_testsupport::sql::{self, DatabaseDdl};
use serde_json::{json, Value};
use sqlx::{Connection, PgPool, SqlitePool};

/// The raw connection the baselines use: same database, same pool settings as the store.
pub enum Raw {
    Pg(PgPool),
    Sqlite(SqlitePool),
    None,
}

/// A scratch database for one run, removed by [`Scratch::remove`] (best effort).
pub struct Scratch {
    pub store_url: String,
    /// The same database as another instance would see it, in another session time zone
    /// (PostgreSQL), for the failover measurement.
    pub other_instance_url: String,
    pub raw: Raw,
    cleanup: Option<(String, String)>,
    file: Option<PathBuf>,
}

/// The pool options the store itself derives from `config.database` (see `PgStore::connect`
/// and the SQLite backend's `config.rs`): the baseline must pay what the store pays, no more.
fn pool_options<DB: sqlx::Database>(config: &Config) -> sqlx::pool::PoolOptions<DB> {
    let db = &config.database;
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(db.max_connections().max(1))
        .acquire_timeout(db.pool_timeout)
        .test_before_acquire(db.pool_pre_ping)
        .max_lifetime(Some(db.pool_recycle).filter(|d| !d.is_zero()))
}

/// Creates the scratch database (or file) for `url` and its raw connection.
pub async fn prepare(url: &str, config: &Config) -> Result<Scratch, Box<dyn std::error::Error>> {
    let scheme = drydock_state::backend::url_scheme(url)?;
    match scheme.as_str() {
        "postgres" | "postgresql" => {
            let admin = PgPool::connect(url).await?;
            let name = format!("drydock_bench_{}", std::process::id());
            let mut conn = admin.acquire().await?;
            sql::database_ddl(&mut conn, DatabaseDdl::DropIfExists, &name).await?;
            sql::database_ddl(&mut conn, DatabaseDdl::Create, &name).await?;
            drop(conn);
            admin.close().await;
            let mut parsed = url::Url::parse(url)?;
            parsed.set_path(&name);
            let raw = pool_options::<sqlx::Postgres>(config)
                .connect(parsed.as_str())
                .await?;
            sql::query("CREATE TABLE raw_bench (id bigint PRIMARY KEY, v text NOT NULL)")
                .execute(&raw)
                .await?;
            let mut other = parsed.clone();
            // Fourteen hours east of UTC: the lease is judged by the database clock, so the
            // session's time zone must not matter.
            other
                .query_pairs_mut()
                .append_pair("options", "-c TimeZone=Pacific/Kiritimati");
            Ok(Scratch {
                store_url: parsed.to_string(),
                other_instance_url: other.to_string(),
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
            // The same pragmas as the store's connections (drydock-state-sqlite config.rs).
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(config.database.pool_timeout);
            let raw = pool_options::<sqlx::Sqlite>(config)
                .connect_with(options)
                .await?;
            sql::query("CREATE TABLE raw_bench (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .execute(&raw)
                .await?;
            Ok(Scratch {
                other_instance_url: store_url.clone(),
                store_url,
                raw: Raw::Sqlite(raw),
                cleanup: None,
                file: Some(file),
            })
        }
        _ => Ok(Scratch {
            store_url: url.to_string(),
            other_instance_url: url.to_string(),
            raw: Raw::None,
            cleanup: None,
            file: None,
        }),
    }
}

impl Scratch {
    pub async fn remove(self) {
        match self.raw {
            Raw::Pg(pool) => pool.close().await,
            Raw::Sqlite(pool) => pool.close().await,
            Raw::None => {}
        }
        if let Some((admin_url, name)) = self.cleanup {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sql::database_ddl(&mut admin, DatabaseDdl::DropIfExistsForce, &name).await;
                let _ = admin.close().await;
            }
        }
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }

    /// The server's version and the settings that bear on write speed (PostgreSQL only).
    pub async fn server(&self) -> Value {
        let Raw::Pg(pool) = &self.raw else {
            return match &self.raw {
                Raw::Sqlite(pool) => {
                    let version: Option<String> = sql::query_scalar("SELECT sqlite_version()")
                        .fetch_one(pool)
                        .await
                        .ok();
                    json!({ "sqlite_version": version, "journal_mode": "wal", "synchronous": "normal" })
                }
                _ => Value::Null,
            };
        };
        let mut out = serde_json::Map::new();
        for name in [
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "wal_level",
            "max_connections",
            "wal_sync_method",
            "commit_delay",
            "full_page_writes",
        ] {
            let value: Option<String> =
                sql::query_scalar("SELECT current_setting(name) FROM pg_settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
                    .ok()
                    .flatten();
            out.insert(name.into(), json!(value));
        }
        Value::Object(out)
    }
}

/// The load average over 1, 5 and 15 minutes, as /proc/loadavg shows it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
