//! The driver's own configuration: the `[design.drivers.deckhand]` section.

use std::fmt;

use drydock_state_core::{DesignConfig, Error, Result};
use serde::Deserialize;

/// The name of this driver's section under `[design.drivers]`.
pub const CONFIG_SECTION: &str = "deckhand";

/// How the driver authenticates to Deckhand. Its `Debug` hides the token and the password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeckhandConfig {
    /// A fixed token, sent as `X-Auth-Token`.
    pub token: Option<String>,
    /// Keystone v3 password authentication, instead of a fixed token.
    pub keystone: Option<KeystoneConfig>,
}

/// Keystone v3 password authentication scoped to a project.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoneConfig {
    /// The identity endpoint, e.g. `https://keystone:5000/v3` (or without the `/v3`).
    pub auth_url: String,
    /// The user name.
    pub username: String,
    /// The user's password.
    pub password: String,
    /// The project the token is scoped to.
    pub project_name: String,
    /// The project's domain.
    #[serde(default = "default_domain")]
    pub project_domain_name: String,
    /// The user's domain.
    #[serde(default = "default_domain")]
    pub user_domain_name: String,
}

fn default_domain() -> String {
    "default".into()
}

impl DeckhandConfig {
    /// Reads `[design.drivers.deckhand]`; a missing section means no authentication.
    pub fn from_design_config(config: &DesignConfig) -> Result<Self> {
        let section: DeckhandConfig = config.driver_section(CONFIG_SECTION)?;
        section.validate()?;
        Ok(section)
    }

    fn validate(&self) -> Result<()> {
        let key = |field: &str| format!("design.drivers.{CONFIG_SECTION}.{field}");
        if self.token.is_some() && self.keystone.is_some() {
            return Err(config_error(
                key("token"),
                "set either `token` or `keystone`, not both",
            ));
        }
        if self.token.as_deref() == Some("") {
            return Err(config_error(key("token"), "is empty"));
        }
        if let Some(keystone) = &self.keystone {
            for (field, value) in [
                ("auth_url", &keystone.auth_url),
                ("username", &keystone.username),
                ("password", &keystone.password),
                ("project_name", &keystone.project_name),
            ] {
                if value.is_empty() {
                    return Err(config_error(key(&format!("keystone.{field}")), "is empty"));
                }
            }
            let url = url::Url::parse(&keystone.auth_url).map_err(|_| {
                config_error(key("keystone.auth_url"), "is not an absolute http(s) URL")
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(config_error(
                    key("keystone.auth_url"),
                    "is not an absolute http(s) URL",
                ));
            }
        }
        Ok(())
    }
}

fn config_error(key: String, reason: &str) -> Error {
    Error::Config {
        key,
        origin: "configuration".into(),
        reason: reason.into(),
    }
}

impl fmt::Debug for DeckhandConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeckhandConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("keystone", &self.keystone)
            .finish()
    }
}

impl fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &drydock_state_core::redact_uri(&self.auth_url))
            .field("username", &self.username)
            .field("password", &"***")
            .field("project_name", &self.project_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("user_domain_name", &self.user_domain_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(section: serde_json::Value) -> DesignConfig {
        let mut config = DesignConfig::default();
        config.drivers.insert(CONFIG_SECTION.into(), section);
        config
    }

    #[test]
    fn debug_hides_token_and_password() {
        let config = DeckhandConfig::from_design_config(&design(serde_json::json!({
            "token": "tok-SECRET"
        })))
        .unwrap();
        let text = format!("{config:?}");
        assert!(
            !text.contains("tok-SECRET") && text.contains("***"),
            "{text}"
        );

        let config = DeckhandConfig::from_design_config(&design(serde_json::json!({
            "keystone": {
                "auth_url": "http://keystone:5000/v3",
                "username": "drydock",
                "password": "pw-SECRET",
                "project_name": "service"
            }
        })))
        .unwrap();
        let keystone = config.keystone.as_ref().unwrap();
        assert_eq!(keystone.user_domain_name, "default");
        let text = format!("{config:?}");
        assert!(
            !text.contains("pw-SECRET") && text.contains("drydock"),
            "{text}"
        );
    }

    #[test]
    fn bad_sections_name_the_key_without_the_value() {
        let e = DeckhandConfig::from_design_config(&design(serde_json::json!({
            "token": "tok-SECRET",
            "keystone": {"auth_url": "http://k/v3", "username": "u", "password": "p", "project_name": "s"}
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("design.drivers.deckhand.token"), "{e}");
        assert!(!e.contains("tok-SECRET"), "{e}");

        let e = DeckhandConfig::from_design_config(&design(serde_json::json!({
            "keystone": {"auth_url": "keystone", "username": "u", "password": "p", "project_name": "s"}
        })))
        .unwrap_err()
        .to_string();
        assert!(e.contains("keystone.auth_url"), "{e}");

        let e = DeckhandConfig::from_design_config(&design(serde_json::json!({"tokn": "x"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("design.drivers.deckhand"), "{e}");
    }

    #[test]
    fn missing_section_means_no_auth() {
        let config = DeckhandConfig::from_design_config(&DesignConfig::default()).unwrap();
        assert_eq!(config, DeckhandConfig::default());
    }
}
