//! Redaction: the configuration as it may be shown, with every secret replaced by `***`.

use super::Config;
use crate::design::redact_driver_sections;
use crate::error::redact_uri;

impl Config {
    /// The configuration as JSON with every secret replaced by `***`, by type, not by name:
    /// the database URL's password, and in each `[design.drivers]` section the settings its
    /// driver declares as [`crate::Secret`]s (see
    /// [`DesignDriverRegistration::with_config`](crate::DesignDriverRegistration::with_config)).
    /// A section that no driver linked into the program declares, or that does not read as its
    /// driver's settings, is shown as `***` whole: without a type nothing says what is secret.
    /// Any URI left in a shown section has its password hidden too.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(url) = self.database.url.as_deref() {
            value["database"]["url"] = serde_json::Value::String(redact_uri(url));
        }
        if let Some(drivers) = value.pointer_mut("/design/drivers") {
            redact_driver_sections(drivers);
            redact_uris(drivers);
        }
        value
    }
}

/// Hides the password of every URI in `value`'s strings.
fn redact_uris(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_uris),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_uris),
        serde_json::Value::String(s) if s.contains('@') && s.contains("://") => {
            *s = redact_uri(s);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No driver in core declares a `deckhand` section, so it is hidden whole; a section a
    /// linked driver declares is redacted by its settings' types (see the design module's
    /// tests and `drydock-state-cli`'s `config` tests).
    #[test]
    fn redacted_json_hides_password() {
        let mut c = Config::default();
        c.database.url = Some("postgres://u:pw-xyz@h/db".into());
        c.design.drivers.insert(
            "deckhand".into(),
            serde_json::json!({"token": "tok-abc", "keystone": {"password": "kpw"}}),
        );
        let json = c.to_redacted_json();
        let s = json.to_string();
        assert!(
            !s.contains("pw-xyz") && !s.contains("tok-abc") && !s.contains("kpw"),
            "{s}"
        );
        assert_eq!(json["design"]["drivers"]["deckhand"], "***");
        assert_eq!(json["database"]["url"], "postgres://u:***@h/db");
        assert!(!format!("{c:?}").contains("pw-xyz"));
    }
}
