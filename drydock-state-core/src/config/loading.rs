//! Loading: the configuration structs and their defaults, the figment that reads them
//! (defaults, a TOML file, `DRYDOCK_` environment variables), the checks applied after
//! extraction, and errors that name the key and where its value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use super::duration::{self, MAX_DURATION};
use crate::error::{redact_uri, Error, Result};

/// The prefix of every environment variable read.
pub const ENV_PREFIX: &str = "DRYDOCK_";

/// Everything drydock-state can be configured with.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The state database.
    pub database: DatabaseConfig,
    /// Leader election and the work loop.
    pub leader: LeaderConfig,
    /// Design resolution.
    pub design: DesignConfig,
}

/// The state database and its connection pool (Drydock's `[database]` section).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database URL (`postgres://…`, `sqlite://…`, `memory://`). `None` means the embedded
    /// SQLite default.
    pub url: Option<String>,
    /// Connections kept in the pool.
    pub pool_size: u32,
    /// How long to wait for a connection before failing with a retryable error.
    #[serde(with = "duration")]
    pub pool_timeout: Duration,
    /// Connections allowed beyond `pool_size` under load.
    pub pool_overflow: u32,
    /// Test each connection with a statement when it is checked out. Off by default: a broken
    /// connection surfaces as a retryable error on first use instead, saving a round trip on
    /// every operation.
    pub pool_pre_ping: bool,
    /// Close connections older than this.
    #[serde(with = "duration")]
    pub pool_recycle: Duration,
    /// The schema that holds drydock-state's tables and migration history in a PostgreSQL
    /// database (other backends ignore it). Default `drydock_state`: a plain lowercase SQL
    /// identifier (`[a-z_][a-z0-9_]*`, at most 63 characters, not starting with `pg_`). It
    /// should not be the name of a database role: PostgreSQL's default `search_path`
    /// (`"$user", public`) would make that role's unqualified table names resolve to our
    /// tables (Airship Drydock's role is `drydock`), so migrate refuses to create a schema
    /// named like a role.
    pub schema: String,
}

/// The default of [`DatabaseConfig::schema`].
pub const DEFAULT_SCHEMA: &str = "drydock_state";

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 15,
            pool_timeout: Duration::from_secs(30),
            pool_overflow: 10,
            pool_pre_ping: false,
            pool_recycle: Duration::from_secs(3600),
            schema: DEFAULT_SCHEMA.into(),
        }
    }
}

impl DatabaseConfig {
    /// The most connections a pool may open: `pool_size + pool_overflow`.
    pub fn max_connections(&self) -> u32 {
        self.pool_size.saturating_add(self.pool_overflow)
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redact_uri))
            .field("pool_size", &self.pool_size)
            .field("pool_timeout", &self.pool_timeout)
            .field("pool_overflow", &self.pool_overflow)
            .field("pool_pre_ping", &self.pool_pre_ping)
            .field("pool_recycle", &self.pool_recycle)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Leader election and the orchestrator's work loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderConfig {
    /// How long a lease lasts without renewal before another instance may take it.
    #[serde(with = "duration")]
    pub grace_period: Duration,
    /// How often an instance claims or renews the lease.
    #[serde(with = "duration")]
    pub claim_interval: Duration,
    /// How often a waiting claimer looks for queued work when it is not woken sooner.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            grace_period: Duration::from_secs(300),
            claim_interval: Duration::from_secs(30),
            poll_interval: Duration::from_secs(10),
        }
    }
}

/// Design resolution: timeouts, retries, cache and limits shared by the design drivers.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesignConfig {
    /// Time allowed to open a connection.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Time allowed for a whole fetch, retries included.
    #[serde(with = "duration")]
    pub total_timeout: Duration,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// The first backoff delay; it doubles with every attempt, with jitter.
    #[serde(with = "duration")]
    pub retry_backoff: Duration,
    /// How long a fetched document is reused; zero disables the cache.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
    /// The largest document accepted, in bytes.
    pub max_document_size: u64,
    /// A PEM bundle of extra CA certificates to trust, besides the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Turns TLS certificate verification off. Never do this outside a lab.
    pub danger_accept_invalid_certs: bool,
    /// Per-driver settings, keyed by driver name (e.g. `[design.drivers.deckhand]`). Each
    /// driver reads its own section with [`DesignConfig::driver_section`].
    pub drivers: BTreeMap<String, serde_json::Value>,
}

impl Default for DesignConfig {
    fn default() -> Self {
        DesignConfig {
            connect_timeout: Duration::from_secs(16),
            read_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(600),
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(180),
            max_document_size: 64 * 1024 * 1024,
            ca_bundle: None,
            danger_accept_invalid_certs: false,
            drivers: BTreeMap::new(),
        }
    }
}

impl DesignConfig {
    /// Deserializes the section `[design.drivers.<name>]` into a driver's own config type; a
    /// missing section gives the type's default. Errors name the key, never the value.
    pub fn driver_section<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T> {
        match self.drivers.get(name) {
            None => Ok(T::default()),
            Some(value) => T::deserialize(value).map_err(|e| Error::Config {
                key: format!("design.drivers.{name}"),
                origin: "configuration".into(),
                reason: scrub_serde_message(&e.to_string()),
            }),
        }
    }
}

impl fmt::Debug for DesignConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesignConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_document_size", &self.max_document_size)
            .field("ca_bundle", &self.ca_bundle)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .field("drivers", &self.drivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database", &self.database)
            .field("leader", &self.leader)
            .field("design", &self.design)
            .finish()
    }
}

impl Config {
    /// The figment this crate reads: defaults, then `file` (if given), then the environment.
    /// Extend it with providers of your own, then call [`Config::from_figment`].
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            let section = key
                .as_str()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            matches!(section.as_str(), "database" | "leader" | "design")
        }))
    }

    /// Loads defaults, then `file` (which must exist if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        if let Some(file) = file {
            if !file.is_file() {
                return Err(Error::Config {
                    key: "(file)".into(),
                    origin: file.display().to_string(),
                    reason: "no such file".into(),
                });
            }
        }
        Self::from_figment(&Self::figment(file))
    }

    /// Extracts and checks a configuration from any figment.
    pub fn from_figment(figment: &Figment) -> Result<Config> {
        let config: Config = figment.extract().map_err(|e| config_error(figment, e))?;
        config.check(figment)?;
        Ok(config)
    }

    fn check(&self, figment: &Figment) -> Result<()> {
        let refuse = |key: &str, reason: &str| -> Result<()> {
            Err(Error::Config {
                key: key.into(),
                origin: origin_of(figment, key),
                reason: reason.into(),
            })
        };
        if self.database.pool_size == 0 {
            return refuse("database.pool_size", "must be at least 1");
        }
        // Every duration is bounded (stores and drivers add them to the current time: a lease's
        // expiry, a cache entry's, a deadline); those that time something out or pace a loop
        // must also be greater than zero (`pool_recycle`, `retry_backoff` and `cache_ttl` may
        // be zero: never recycle, retry at once, no cache).
        for (key, value, zero_allowed) in [
            ("database.pool_timeout", self.database.pool_timeout, false),
            ("database.pool_recycle", self.database.pool_recycle, true),
            ("leader.grace_period", self.leader.grace_period, false),
            ("leader.claim_interval", self.leader.claim_interval, false),
            ("leader.poll_interval", self.leader.poll_interval, false),
            ("design.connect_timeout", self.design.connect_timeout, false),
            ("design.read_timeout", self.design.read_timeout, false),
            ("design.total_timeout", self.design.total_timeout, false),
            ("design.retry_backoff", self.design.retry_backoff, true),
            ("design.cache_ttl", self.design.cache_ttl, true),
        ] {
            if value.is_zero() && !zero_allowed {
                return refuse(key, "must be greater than zero");
            }
            if value > MAX_DURATION {
                return refuse(key, "must be at most 36500d (100 years)");
            }
        }
        if self.design.max_document_size == 0 {
            return refuse("design.max_document_size", "must be greater than zero");
        }
        if let Some(url) = &self.database.url {
            if url::Url::parse(url).is_err() {
                return refuse("database.url", "is not a URL");
            }
        }
        if let Err(reason) = check_schema_name(&self.database.schema) {
            return refuse("database.schema", reason);
        }
        Ok(())
    }
}

/// Whether `name` may be [`DatabaseConfig::schema`]: a plain lowercase SQL identifier
/// (`^[a-z_][a-z0-9_]{0,62}$`) that does not start with `pg_` (reserved for system schemas).
/// The reason it may not, otherwise (it never echoes the value).
pub fn check_schema_name(name: &str) -> std::result::Result<(), &'static str> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("must not be empty");
    };
    if bytes.len() > 63 {
        return Err("must be at most 63 characters");
    }
    let plain = (first.is_ascii_lowercase() || *first == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !plain {
        return Err(
            "must be a plain lowercase SQL identifier: a-z, 0-9 and _, not starting with a digit",
        );
    }
    if name.starts_with("pg_") {
        return Err("must not start with pg_ (reserved for PostgreSQL's system schemas)");
    }
    Ok(())
}

fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => describe_metadata(md, key),
        None => "defaults".into(),
    }
}

fn describe_metadata(md: &figment::Metadata, key: &str) -> String {
    if md.name.contains("environment") {
        return format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
    }
    match &md.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if md.name.contains("Serialized") => "defaults".into(),
        _ => md.name.to_string(),
    }
}

fn config_error(figment: &Figment, e: figment::Error) -> Error {
    let key = if e.path.is_empty() {
        "(root)".to_string()
    } else {
        e.path.join(".")
    };
    let origin = match &e.metadata {
        Some(md) => describe_metadata(md, &key),
        None => origin_of(figment, &key),
    };
    let reason = match &e.kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", actual_kind(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!(
                "invalid value ({}), expected {expected}",
                actual_kind(actual)
            )
        }
        Kind::InvalidLength(len, expected) => format!("invalid length {len}, expected {expected}"),
        Kind::UnknownVariant(_, expected) => {
            format!("unknown variant, expected one of {expected:?}")
        }
        Kind::UnknownField(field, _) => {
            return Error::Config {
                key: if e.path.is_empty() {
                    field.clone()
                } else {
                    format!("{key}.{field}")
                },
                origin,
                reason: "unknown key".into(),
            }
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::DuplicateField(field) => format!("duplicate key `{field}`"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Unsupported(actual) => format!("unsupported {}", actual_kind(actual)),
        Kind::UnsupportedKey(actual, _) => format!("unsupported key {}", actual_kind(actual)),
        Kind::Message(message) => scrub_serde_message(message),
    };
    Error::Config {
        key,
        origin,
        reason,
    }
}

/// Keeps the first line of a parser message and drops anything quoted, which may be a value.
fn scrub_serde_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut quoted = false;
    for c in first.chars() {
        match c {
            '"' | '`' => {
                if !quoted {
                    out.push_str("<value>");
                }
                quoted = !quoted;
            }
            _ if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

fn actual_kind(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another type",
    }
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; that is figment's API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_match_drydock() {
        Jail::expect_with(|_| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.database.pool_size, 15);
            assert_eq!(c.design.connect_timeout, Duration::from_secs(16));
            assert_eq!(c.design.read_timeout, Duration::from_secs(300));
            assert_eq!(c.design.cache_ttl, Duration::from_secs(180));
            Ok(())
        });
    }

    #[test]
    fn file_then_env_with_nesting() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "d.toml",
                "[database]\npool_size = 3\n[leader]\ngrace_period = \"2m\"\n",
            )?;
            jail.set_env("DRYDOCK_DATABASE__POOL_SIZE", "7");
            jail.set_env("DRYDOCK_LEADER__POLL_INTERVAL", "250ms");
            let c = Config::load(Some(Path::new("d.toml"))).unwrap();
            assert_eq!(c.database.pool_size, 7);
            assert_eq!(c.leader.grace_period, Duration::from_secs(120));
            assert_eq!(c.leader.poll_interval, Duration::from_millis(250));
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_key_and_env_var_without_echoing() {
        Jail::expect_with(|jail| {
            jail.set_env("DRYDOCK_DATABASE__POOL_SIZE", "hunter2");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("database.pool_size"), "{e}");
            assert!(e.contains("DRYDOCK_DATABASE__POOL_SIZE"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn bad_value_in_file_names_file() {
        Jail::expect_with(|jail| {
            jail.create_file("d.toml", "[leader]\ngrace_period = \"soon-ish s3cret\"\n")?;
            let e = Config::load(Some(Path::new("d.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("leader.grace_period"), "{e}");
            assert!(e.contains("d.toml"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("DRYDOCK_DATABASE__POOLSIZE", "3");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("database.poolsize"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn schema_defaults_and_reads_from_env() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().database.schema, "drydock_state");
            jail.set_env("DRYDOCK_DATABASE__SCHEMA", "site_state");
            let c = Config::load(None).unwrap();
            assert_eq!(c.database.schema, "site_state");
            assert!(format!("{c:?}").contains("site_state"));
            Ok(())
        });
    }

    #[test]
    fn bad_schema_names_are_refused() {
        let long = "a".repeat(64);
        let just_fits = "a".repeat(63);
        for bad in [
            "Drydock",
            "a;b",
            "",
            long.as_str(),
            "1abc",
            "pg_state",
            "drydock state",
            "dry-dock",
            "\"x\"",
            "état",
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad:?} accepted");
            let mut config = Config::default();
            config.database.schema = bad.to_string();
            let figment = Figment::from(Serialized::defaults(&config));
            match Config::from_figment(&figment) {
                Err(Error::Config { key, .. }) => assert_eq!(key, "database.schema", "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for good in [
            "drydock_state",
            "_x",
            "drydock",
            "s1",
            just_fits.as_str(),
            "pgx",
        ] {
            assert_eq!(check_schema_name(good), Ok(()), "{good:?}");
        }
        Jail::expect_with(|jail| {
            jail.set_env("DRYDOCK_DATABASE__SCHEMA", "Drydock");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("database.schema") && e.contains("DRYDOCK_DATABASE__SCHEMA"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn zero_grace_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("DRYDOCK_LEADER__GRACE_PERIOD", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("leader.grace_period") && e.contains("DRYDOCK_LEADER__GRACE_PERIOD"),
                "{e}"
            );
            Ok(())
        });
    }
}
