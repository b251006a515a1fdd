//! The driver's own configuration: the `[design.drivers.deckhand]` section.

use std::fmt;

use drydock_state_core::{DesignConfig, Error, Result, Secret};
use serde::{Deserialize, Serialize};

/// The name of this driver's section under `[design.drivers]`.
pub const CONFIG_SECTION: &str = "deckhand";

/// How the driver authenticates to Deckhand. The token and the password are [`Secret`]s: its
/// `Debug` and its serialized form (what `drydock-state config` prints) show them as `***`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeckhandConfig {
    /// A fixed token, sent as `X-Auth-Token`.
    pub token: Option<Secret>,
    /// Keystone v3 password authentication, instead of a fixed token.
    pub keystone: Option<KeystoneConfig>,
}

/// Keystone v3 password authentication scoped to a project, with the settings of Drydock's
/// `[keystone_authtoken]`.
///
/// Domains and the project may each be given by id or by name; **an id takes precedence over
/// a name** (only the id is sent). With neither, a domain is the stock default domain by id
/// (`default`), which every Keystone has; Keystone looks names up case-sensitively (that
/// domain is *named* `Default`). A project given by `project_id` needs no domain.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoneConfig {
    /// The identity endpoint, e.g. `https://keystone:5000/v3` (or without the `/v3`).
    pub auth_url: String,
    /// The user name.
    pub username: String,
    /// The user's password.
    pub password: Secret,
    /// The project the token is scoped to, by name (looked up in the project's domain).
    #[serde(default)]
    pub project_name: Option<String>,
    /// The project the token is scoped to, by id; takes precedence over `project_name`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The project's domain by name (case-sensitive), for `project_name`.
    #[serde(default)]
    pub project_domain_name: Option<String>,
    /// The project's domain by id; takes precedence over `project_domain_name`. When neither
    /// is set: `default`.
    #[serde(default)]
    pub project_domain_id: Option<String>,
    /// The user's domain by name (case-sensitive).
    #[serde(default)]
    pub user_domain_name: Option<String>,
    /// The user's domain by id; takes precedence over `user_domain_name`. When neither is
    /// set: `default`.
    #[serde(default)]
    pub user_domain_id: Option<String>,
}

/// The id of the domain every Keystone creates at bootstrap (its name is `Default`).
pub const DEFAULT_DOMAIN_ID: &str = "default";

/// A domain or project as Keystone's token request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeystoneRef<'a> {
    /// By id: `{"id": ...}`.
    Id(&'a str),
    /// By name: `{"name": ...}` (case-sensitive).
    Name(&'a str),
}

impl KeystoneRef<'_> {
    fn pick<'a>(id: &'a Option<String>, name: &'a Option<String>) -> Option<KeystoneRef<'a>> {
        match (id, name) {
            (Some(id), _) => Some(KeystoneRef::Id(id)),
            (None, Some(name)) => Some(KeystoneRef::Name(name)),
            (None, None) => None,
        }
    }

    /// `{"id": ...}` or `{"name": ...}`.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            KeystoneRef::Id(id) => serde_json::json!({ "id": id }),
            KeystoneRef::Name(name) => serde_json::json!({ "name": name }),
        }
    }
}

impl std::fmt::Display for KeystoneRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeystoneRef::Id(id) => write!(f, "id {id:?}"),
            KeystoneRef::Name(name) => write!(f, "name {name:?}"),
        }
    }
}

impl KeystoneConfig {
    /// The user's domain: `user_domain_id`, else `user_domain_name`, else id `default`.
    pub fn user_domain(&self) -> KeystoneRef<'_> {
        KeystoneRef::pick(&self.user_domain_id, &self.user_domain_name)
            .unwrap_or(KeystoneRef::Id(DEFAULT_DOMAIN_ID))
    }

    /// The project: `project_id`, else `project_name` (validation makes sure one is set).
    pub fn project(&self) -> KeystoneRef<'_> {
        KeystoneRef::pick(&self.project_id, &self.project_name).unwrap_or(KeystoneRef::Name(""))
    }

    /// The project's domain, needed only for a project given by name:
    /// `project_domain_id`, else `project_domain_name`, else id `default`.
    pub fn project_domain(&self) -> Option<KeystoneRef<'_>> {
        match self.project() {
            KeystoneRef::Id(_) => None,
            KeystoneRef::Name(_) => Some(
                KeystoneRef::pick(&self.project_domain_id, &self.project_domain_name)
                    .unwrap_or(KeystoneRef::Id(DEFAULT_DOMAIN_ID)),
            ),
        }
    }
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
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(config_error(key("token"), "is empty"));
        }
        if let Some(keystone) = &self.keystone {
            for (field, value) in [
                ("auth_url", Some(keystone.auth_url.as_str())),
                ("username", Some(keystone.username.as_str())),
                ("password", Some(keystone.password.expose())),
                ("project_name", keystone.project_name.as_deref()),
                ("project_id", keystone.project_id.as_deref()),
                (
                    "project_domain_name",
                    keystone.project_domain_name.as_deref(),
                ),
                ("project_domain_id", keystone.project_domain_id.as_deref()),
                ("user_domain_name", keystone.user_domain_name.as_deref()),
                ("user_domain_id", keystone.user_domain_id.as_deref()),
            ] {
                if value.is_some_and(|v| v.is_empty()) {
                    return Err(config_error(key(&format!("keystone.{field}")), "is empty"));
                }
            }
            if keystone.project_name.is_none() && keystone.project_id.is_none() {
                return Err(config_error(
                    key("keystone.project_name"),
                    "is missing: set `project_name` or `project_id`",
                ));
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

impl fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &drydock_state_core::redact_uri(&self.auth_url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("project_name", &self.project_name)
            .field("project_id", &self.project_id)
            .field("project_domain_name", &self.project_domain_name)
            .field("project_domain_id", &self.project_domain_id)
            .field("user_domain_name", &self.user_domain_name)
            .field("user_domain_id", &self.user_domain_id)
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
        assert_eq!(keystone.user_domain(), KeystoneRef::Id("default"));
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

    fn keystone(extra: serde_json::Value) -> Result<KeystoneConfig> {
        let mut section = serde_json::json!({
            "auth_url": "http://keystone:5000/v3",
            "username": "drydock",
            "password": "pw",
        });
        section
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        DeckhandConfig::from_design_config(&design(serde_json::json!({ "keystone": section })))
            .map(|c| c.keystone.unwrap())
    }

    #[test]
    fn ids_take_precedence_over_names_and_default_to_the_default_domain_id() {
        let k = keystone(serde_json::json!({"project_name": "service"})).unwrap();
        assert_eq!(k.user_domain(), KeystoneRef::Id("default"));
        assert_eq!(k.project(), KeystoneRef::Name("service"));
        assert_eq!(k.project_domain(), Some(KeystoneRef::Id("default")));

        let k = keystone(serde_json::json!({
            "project_name": "service", "project_id": "p-1",
            "project_domain_name": "Default", "project_domain_id": "pd-1",
            "user_domain_name": "Default", "user_domain_id": "ud-1",
        }))
        .unwrap();
        assert_eq!(k.user_domain(), KeystoneRef::Id("ud-1"));
        assert_eq!(k.project(), KeystoneRef::Id("p-1"));
        assert_eq!(k.project_domain(), None, "a project by id needs no domain");

        let k = keystone(serde_json::json!({
            "project_name": "service", "project_domain_name": "Ops", "user_domain_name": "Ops",
        }))
        .unwrap();
        assert_eq!(k.user_domain(), KeystoneRef::Name("Ops"));
        assert_eq!(k.project_domain(), Some(KeystoneRef::Name("Ops")));

        let e = keystone(serde_json::json!({})).unwrap_err().to_string();
        assert!(
            e.contains("keystone.project_name") && e.contains("project_id"),
            "{e}"
        );
        let e = keystone(serde_json::json!({"project_id": ""}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keystone.project_id"), "{e}");
    }

    #[test]
    fn missing_section_means_no_auth() {
        let config = DeckhandConfig::from_design_config(&DesignConfig::default()).unwrap();
        assert_eq!(config, DeckhandConfig::default());
    }
}
