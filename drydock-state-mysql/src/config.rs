//! From a URL and drydock-state's [`Config`] to sqlx connect options and a pool.
//!
//! The pool is shaped by `config.database` as for every SQL backend: at most
//! `pool_size + pool_overflow` connections, waiting at most `pool_timeout` for one, testing
//! each on checkout if `pool_pre_ping`, closing those older than `pool_recycle`. Every
//! connection is set up the same way when it is opened ([`SESSION_SETUP`]): UTC time zone,
//! READ COMMITTED isolation, strict SQL mode, utf8mb4.

use std::str::FromStr;

use drydock_state_core::{redact_uri, Config, Error, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::error::classify;
use crate::queries;

/// Parses a `mysql://` or `mariadb://` URL; `InvalidInput` naming `database.url` otherwise,
/// never echoing the password.
pub(crate) fn connect_options(url: &str) -> Result<MySqlConnectOptions> {
    let parsed = url::Url::parse(url).map_err(|e| {
        Error::invalid(
            "database.url",
            format!("not a MySQL URL ({})", scrub(url, &e.to_string())),
        )
    })?;
    if !crate::URL_SCHEMES.contains(&parsed.scheme()) {
        return Err(Error::invalid(
            "database.url",
            "not a MySQL URL (the scheme must be mysql:// or mariadb://)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(
            "database.url",
            "not a MySQL URL (no host: mysql://user@host:3306/database)",
        ));
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(Error::invalid(
            "database.url",
            "names no database (mysql://user@host:3306/database)",
        ));
    }
    let options = MySqlConnectOptions::from_str(url).map_err(|e| {
        Error::invalid(
            "database.url",
            format!("not a MySQL URL ({})", scrub(url, &e.to_string())),
        )
    })?;
    // The session's collation does not matter: every stored text column has its own
    // (utf8mb4_nopad_bin), which wins over a bound value's in a comparison.
    Ok(options
        .charset("utf8mb4")
        .timezone(Some("+00:00".to_string())))
}

/// A pool of connections to `url`, shaped by `config.database`, each set up by
/// [`SESSION_SETUP`] when opened. An unreachable server is a retryable
/// [`Error::Unavailable`] once `pool_timeout` has passed; no error carries the password.
pub(crate) async fn pool(url: &str, config: &Config) -> Result<MySqlPool> {
    let options = connect_options(url)?;
    let db = &config.database;
    MySqlPoolOptions::new()
        .max_connections(db.max_connections().max(1))
        .acquire_timeout(db.pool_timeout)
        .test_before_acquire(db.pool_pre_ping)
        .max_lifetime(Some(db.pool_recycle).filter(|d| !d.is_zero()))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                queries::query(queries::SESSION_SETUP)
                    .execute(&mut *conn)
                    .await?;
                queries::query(queries::SESSION_ISOLATION)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| {
            let e = classify("connect", "database.url", &e);
            scrubbed(url, with_context(e, &redact_uri(url)))
        })
}

/// The lease's grace period in microseconds; `Config` error for zero or too long.
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

/// The URL's password, raw and percent-decoded, if it has one (the whole user info of a URL
/// that does not parse).
fn passwords(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
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
    let decoded: Vec<u8> = percent_decode(raw.as_bytes());
    if let Ok(decoded) = String::from_utf8(decoded) {
        out.push(decoded);
    }
    out.retain(|p| !p.is_empty());
    out
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
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
    out
}

/// `text` with every occurrence of the URL's password replaced by `***`.
fn scrub(url: &str, text: &str) -> String {
    passwords(url)
        .iter()
        .fold(text.to_string(), |acc, p| acc.replace(p.as_str(), "***"))
}

/// If the password shows anywhere in the error's chain, the chain is replaced by its
/// scrubbed rendering.
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
        let url = "mysql://u:p%40ss@h/db";
        assert_eq!(scrub(url, "x p%40ss y p@ss z"), "x *** y *** z");
        assert!(passwords("mysql://u@h/db").is_empty());
    }

    #[test]
    fn both_schemes_parse_and_others_do_not() {
        assert!(connect_options("mysql://root@127.0.0.1:3306/x").is_ok());
        assert!(connect_options("mariadb://root@127.0.0.1/x").is_ok());
        for bad in ["postgres://h/x", "mysql://h", "mysql:///x", "nonsense"] {
            match connect_options(bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "database.url"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn zero_grace_is_refused() {
        let mut config = Config::default();
        config.leader.grace_period = std::time::Duration::ZERO;
        assert!(matches!(grace_micros(&config), Err(Error::Config { .. })));
    }
}
