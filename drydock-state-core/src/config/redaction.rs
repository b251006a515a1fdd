//! Redaction: the configuration as it may be shown, with every secret replaced by `***`.

use super::Config;
use crate::error::redact_uri;

impl Config {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
