//! Checks and the clock every backend shares: text a database can store, instance ids, and
//! the current time at the precision every backend keeps.

use chrono::{DateTime, SubsecRound, Utc};

use crate::error::{Error, Result};

/// The current time, truncated to the microsecond precision every backend stores.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Refuses text with a NUL byte, which PostgreSQL cannot store in `text`.
pub fn no_nul(field: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

/// Refuses JSON with a NUL byte in any string or key, which PostgreSQL cannot store.
pub fn json_no_nul(field: &str, value: &serde_json::Value) -> Result<()> {
    match value {
        serde_json::Value::String(s) => no_nul(field, s),
        serde_json::Value::Array(a) => a.iter().try_for_each(|v| json_no_nul(field, v)),
        serde_json::Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            no_nul(field, k)?;
            json_no_nul(field, v)
        }),
        _ => Ok(()),
    }
}

/// Refuses an instance id every backend must refuse: one with a NUL byte.
pub fn validate_instance_id(field: &str, instance_id: &str) -> Result<()> {
    no_nul(field, instance_id)
}
