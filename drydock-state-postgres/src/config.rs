//! Owns the reading of a `postgres://` URL and [`Config`] into connect and pool options, and
//! keeps the URL's password out of every error made from them.

use std::str::FromStr;

use drydock_state_core::{redact_uri, Config, Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Where a store connects, and how. Not `Debug`: the connect options hold the password.
pub(crate) struct Target {
    /// Options every connection is opened with (they hold the password: never print them).
    pub connect: PgConnectOptions,
    /// The pool's size and timeouts.
    pub pool: PgPoolOptions,
    /// The schema of our tables, `config.database.schema`, checked.
    pub schema: String,
}

impl Target {
    /// Reads `url` (`postgres://` or `postgresql://`) and the pool settings of `config`: at
    /// most `pool_size + pool_overflow` connections, waiting at most `pool_timeout` for one,
    /// testing each on checkout if `pool_pre_ping`, and closing those older than
    /// `pool_recycle`. Every connection's `search_path` is `database.schema` alone, so the
    /// store's unqualified statements reach our tables and nothing else.
    pub(crate) fn from_url(url: &str, config: &Config) -> Result<Self> {
        let schema = checked_schema(config)?;
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            scrubbed(
                url,
                Error::invalid(
                    "database.url",
                    format!("not a PostgreSQL URL ({})", scrub(url, &e.to_string())),
                ),
            )
        })?;
        let connect = with_search_path(connect, &schema);
        let db = &config.database;
        let pool = PgPoolOptions::new()
            .max_connections(db.max_connections().max(1))
            .acquire_timeout(db.pool_timeout)
            .test_before_acquire(db.pool_pre_ping)
            .max_lifetime(Some(db.pool_recycle).filter(|d| !d.is_zero()));
        Ok(Target {
            connect,
            pool,
            schema,
        })
    }
}

/// `config.database.schema`, checked again here (a [`Config`] built in code has not been
/// through loading's checks): it is written into the connection's startup options, which a
/// plain lowercase identifier cannot break out of.
pub(crate) fn checked_schema(config: &Config) -> Result<String> {
    let schema = &config.database.schema;
    drydock_state_core::config::check_schema_name(schema).map_err(|reason| Error::Config {
        key: "database.schema".into(),
        origin: "configuration".into(),
        reason: reason.into(),
    })?;
    Ok(schema.clone())
}

/// `connect` with the session's `search_path` set to `schema` alone (a startup option, so it
/// holds from the connection's first statement). `schema` is checked ([`checked_schema`]).
pub(crate) fn with_search_path(connect: PgConnectOptions, schema: &str) -> PgConnectOptions {
    connect.options([("search_path", schema)])
}

/// A failure to connect to `url`, prefixed with where (password redacted) and scrubbed of the
/// password wherever it shows.
pub(crate) fn connect_error(url: &str, e: Error) -> Error {
    scrubbed(url, with_context(e, &redact_uri(url)))
}

/// The lease's grace period, `config.leader.grace_period`, in microseconds.
pub(crate) fn grace_micros(config: &Config) -> Result<i64> {
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
    fn a_bad_schema_is_refused_before_connecting() {
        let mut config = Config::default();
        config.database.schema = "a -c log_statement=all".into();
        match Target::from_url("postgres://u@h/db", &config) {
            Err(Error::Config { key, .. }) => assert_eq!(key, "database.schema"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        }
        config.database.schema = "site_state".into();
        let target = Target::from_url("postgres://u@h/db", &config).unwrap();
        assert_eq!(target.schema, "site_state");
        assert_eq!(
            target.connect.get_options(),
            Some("-c search_path=site_state")
        );
    }

    #[test]
    fn zero_grace_is_refused() {
        let mut config = Config::default();
        config.leader.grace_period = std::time::Duration::ZERO;
        assert!(matches!(grace_micros(&config), Err(Error::Config { .. })));
    }
}
