//! Value parsers for flags: a value they refuse is a usage error (exit 2) with clap's message.

use chrono::{DateTime, SubsecRound, Utc};
use drydock_state::{BootActionStatus, Error, Link, ResultStatus, TaskStatus};
use serde_json::Value;
use uuid::Uuid;

pub fn boot_action_status(s: &str) -> Result<BootActionStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub fn status(s: &str) -> Result<TaskStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub fn result_status(s: &str) -> Result<ResultStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub fn uuid(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|e| format!("not a UUID: {e}"))
}

pub fn rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|e| format!("not an RFC 3339 date and time (e.g. 2024-05-01T12:00:00Z): {e}"))
}

pub fn link(s: &str) -> Result<Link, String> {
    match s.split_once('=') {
        Some((rel, href)) if !rel.is_empty() && !href.is_empty() => Ok(Link {
            rel: rel.to_string(),
            href: href.to_string(),
        }),
        _ => Err("expected REL=HREF, both non-empty (e.g. detail_logs=https://logs/1)".into()),
    }
}

pub fn json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not valid JSON: {e}"))
}

pub fn retention(s: &str) -> Result<std::time::Duration, String> {
    match drydock_state::config::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The default claiming instance of `task claim`: `cli@` and the host name.
pub fn default_instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("cli@{host}")
}
