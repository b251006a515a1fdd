//! Configuration: defaults, then a TOML file, then `DRYDOCK_`-prefixed environment variables
//! (`__` separates levels: `DRYDOCK_DATABASE__POOL_SIZE=20`).
//!
//! Durations are written as a number of seconds or a human string (`30s`, `5m`, `1h 30m`),
//! and none may exceed [`MAX_DURATION`] (`36500d`, 100 years).
//! A bad value is an [`Error::Config`] naming the key and where it came from; the value is never
//! echoed, so a misplaced password cannot leak through an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::{redact_uri, Error, Result};

/// The prefix of every environment variable read.
pub const ENV_PREFIX: &str = "DRYDOCK_";

/// The longest duration any setting accepts: 36,500 days (100 years). Stores and drivers add
/// durations to the current time (a lease's expiry, a cache entry's, a fetch deadline), and
/// now plus this is still a time that chrono, PostgreSQL (`timestamptz`, `interval`, a
/// microsecond count in a `bigint`), SQLite (microseconds in an `INTEGER`) and
/// `std::time::Instant` all represent, so no accepted value can overflow them.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

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
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 15,
            pool_timeout: Duration::from_secs(30),
            pool_overflow: 10,
            pool_pre_ping: false,
            pool_recycle: Duration::from_secs(3600),
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
        Ok(())
    }

    /// The configuration as JSON with every secret replaced by `***`: the database URL's
    /// password, and any driver setting whose name mentions a password, token or secret.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(url) = self.database.url.as_deref() {
            value["database"]["url"] = serde_json::Value::String(redact_uri(url));
        }
        if let Some(drivers) = value.pointer_mut("/design/drivers") {
            redact_secrets(drivers);
        }
        value
    }
}

fn redact_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                if ["password", "token", "secret"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    *v = serde_json::Value::String("***".into());
                } else {
                    redact_secrets(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        serde_json::Value::String(s) if s.contains('@') && s.contains("://") => {
            *s = redact_uri(s);
        }
        _ => {}
    }
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

/// Parses a duration: a whole number of seconds, or a human string such as `30s`, `5m`,
/// `1h 30m`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid("duration", "is empty"));
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if text.starts_with('-') {
        return Err(Error::invalid("duration", "must not be negative"));
    }
    // humantime is given one term at a time and the sum is ours: its own running sum panics
    // (`Duration::new` overflow) when the nanoseconds carry into a total of u64::MAX seconds,
    // e.g. `18446744073709551615s 1000000000ns` (found while writing the fuzz oracle).
    let mut total = Duration::ZERO;
    for term in duration_terms(text)? {
        let term = humantime::parse_duration(term).map_err(|e| {
            Error::invalid("duration", format!("{e}; write e.g. 30s, 5m, 12h or 30d"))
        })?;
        total = total
            .checked_add(term)
            .ok_or_else(|| Error::invalid("duration", "too large"))?;
    }
    Ok(total)
}

/// Splits `5m30s` or `1h 30m` into its terms (`5m`, `30s`): digits, an optional fraction, optional
/// whitespace and a unit made of the letters humantime reads.
fn duration_terms(text: &str) -> Result<Vec<&str>> {
    let is_unit = |c: char| c.is_ascii_alphabetic() || c == 'µ';
    let mut terms = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::invalid(
                "duration",
                format!(
                    "expected a number at byte {}; write e.g. 30s, 5m, 12h or 30d",
                    text.len() - rest.len()
                ),
            ));
        }
        let mut end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Some(fraction) = rest[end..].strip_prefix('.') {
            end += 1 + fraction
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
        }
        end = rest.len() - rest[end..].trim_start().len();
        end += rest[end..]
            .find(|c| !is_unit(c))
            .unwrap_or(rest.len() - end);
        terms.push(rest[..end].trim_end());
        rest = rest[end..].trim_start();
    }
    Ok(terms)
}

/// Serde for [`Duration`] fields: seconds (integer or float) or a human string in, a human
/// string out.
pub mod duration {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes the duration as a human string (`1m 30s`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads seconds or a human string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 30s or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration must not be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(|_| {
                    E::custom("a duration must be a finite, non-negative number of seconds")
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                super::parse_duration(v).map_err(|_| {
                    E::custom("expected a duration such as 30s, 5m or a number of seconds")
                })
            }
        }
        d.deserialize_any(V)
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
    fn redacted_json_hides_password() {
        let mut c = Config::default();
        c.database.url = Some("postgres://u:pw-xyz@h/db".into());
        c.design.drivers.insert(
            "deckhand".into(),
            serde_json::json!({"token": "tok-abc", "keystone": {"password": "kpw"}}),
        );
        let s = c.to_redacted_json().to_string();
        assert!(
            !s.contains("pw-xyz") && !s.contains("tok-abc") && !s.contains("kpw"),
            "{s}"
        );
        assert!(!format!("{c:?}").contains("pw-xyz"));
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

    /// Every duration key of the configuration, as dotted keys: the string leaves of the
    /// serialized defaults (durations serialize as human strings, nothing else does), so a
    /// duration added later is covered without editing this list.
    fn duration_keys() -> Vec<String> {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for (section, fields) in defaults.as_object().unwrap() {
            for (field, value) in fields.as_object().unwrap() {
                if let Some(text) = value.as_str() {
                    assert!(parse_duration(text).is_ok(), "{section}.{field} = {text:?}");
                    keys.push(format!("{section}.{field}"));
                }
            }
        }
        keys
    }

    #[test]
    fn duration_keys_are_all_found() {
        assert_eq!(duration_keys().len(), 10, "{:?}", duration_keys());
    }

    /// Issue 10, item 6: a duration no store can add to the current time (the memory store
    /// panicked on `leader.grace_period = "1000000000d"`) is refused, naming the key and the
    /// file, for every duration key; the bound itself is accepted.
    #[test]
    fn too_large_duration_in_file_is_refused_naming_the_key() {
        for key in duration_keys() {
            let (section, field) = key.split_once('.').unwrap();
            for value in ["1000000000d", "36501d", "18446744073709551615"] {
                Jail::expect_with(|jail| {
                    jail.create_file("d.toml", &format!("[{section}]\n{field} = \"{value}\"\n"))?;
                    let e = Config::load(Some(Path::new("d.toml")))
                        .expect_err(&format!("{key} = {value} is refused"));
                    let text = e.to_string();
                    assert!(
                        matches!(&e, Error::Config { key: k, .. } if *k == key),
                        "{key} = {value}: {text}"
                    );
                    assert!(text.contains("d.toml"), "{text}");
                    assert!(text.contains("at most"), "{text}");
                    assert!(!text.contains(value), "echoes the value: {text}");
                    Ok(())
                });
            }
            Jail::expect_with(|jail| {
                jail.create_file("d.toml", &format!("[{section}]\n{field} = \"36500d\"\n"))?;
                let c = Config::load(Some(Path::new("d.toml"))).unwrap();
                assert_eq!(c, {
                    let mut v = serde_json::to_value(Config::default()).unwrap();
                    v[section][field] = "36500d".into();
                    serde_json::from_value::<Config>(v).unwrap()
                });
                Ok(())
            });
        }
    }

    /// The same bound through `DRYDOCK_` environment variables, whose error names the variable.
    #[test]
    fn too_large_duration_in_env_is_refused_naming_the_key() {
        for key in duration_keys() {
            let var = format!("DRYDOCK_{}", key.replace('.', "__").to_ascii_uppercase());
            for value in ["1000000000d", "36501d", "3153686400"] {
                Jail::expect_with(|jail| {
                    jail.set_env(&var, value);
                    let e = Config::load(None).expect_err(&format!("{var}={value} is refused"));
                    let text = e.to_string();
                    assert!(
                        matches!(&e, Error::Config { key: k, .. } if *k == key),
                        "{var}={value}: {text}"
                    );
                    assert!(text.contains(&var), "{text}");
                    assert!(!text.contains(value), "echoes the value: {text}");
                    Ok(())
                });
            }
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("1h30m 5 s 1.5ms").unwrap(),
            Duration::new(5405, 1_500_000)
        );
        assert!(parse_duration("5s x").is_err());
        // humantime alone panics on this one (its nanosecond carry overflows Duration::new).
        let e = parse_duration("18446744073709551615s 1000000000ns").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }
}
