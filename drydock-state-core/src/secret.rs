//! Secrets in configuration: values that are never shown, whatever their name.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret setting: a password, a token, an API key. It is read from configuration like any
/// string, but its `Debug` and its serialized form are always `***`, so a configuration dump
/// or a log line cannot show it; only [`Secret::expose`] gives the value, to the code that
/// sends it. The memory holding it is zeroed when it is dropped (it is a
/// [`secrecy::SecretString`]).
///
/// A design driver declares its settings type with
/// [`DesignDriverRegistration::with_config`](crate::DesignDriverRegistration::with_config);
/// the fields of that type that are `Secret`s are what `drydock-state config` hides.
#[derive(Clone)]
pub struct Secret(SecretString);

/// How a [`Secret`] is shown everywhere.
pub const REDACTED: &str = "***";

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value itself: only for sending it where it is needed, never for logs or output.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// Compares the values (for configuration equality); the comparison is not constant-time.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_but_exposed_on_request() {
        let s: Secret = serde_json::from_value(serde_json::json!("hunter2")).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s, Secret::new("hunter2"));
    }
}
