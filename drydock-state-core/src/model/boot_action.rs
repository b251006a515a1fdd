//! Boot actions: the work a node does on its first boot (Drydock's `boot_action` and
//! `boot_action_status` tables), and the context a node presents to fetch it.
//!
//! A node being deployed gets a boot-action context (the task that deploys it and a 32-byte
//! identity key it must present); each boot action has a ULID id, shown in Crockford base32
//! as nodes present it in URLs, and a status the node reports once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{no_nul, TaskId};
use crate::error::{Entity, Error, Result};

/// Longest node name accepted (Drydock's column is 280 characters).
pub const MAX_NODE_NAME_LEN: usize = 280;

/// Longest boot action name accepted (Drydock's column is 64 characters).
pub const MAX_ACTION_NAME_LEN: usize = 64;

/// A boot action's id: a ULID, 16 bytes, shown as 26 characters of Crockford base32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BootActionId(pub [u8; 16]);

impl BootActionId {
    /// A new id: the current time in milliseconds, then 80 random bits.
    pub fn new() -> Self {
        BootActionId(ulid::Ulid::new().to_bytes())
    }

    /// The 16 bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An id from stored bytes; `InvalidInput` unless there are exactly 16.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        <[u8; 16]>::try_from(bytes).map(BootActionId).map_err(|_| {
            Error::invalid(
                "boot_action.action_id",
                format!("a ULID is 16 bytes, not {}", bytes.len()),
            )
        })
    }
}

impl Default for BootActionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for BootActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&ulid::Ulid::from_bytes(self.0).to_string())
    }
}

impl fmt::Debug for BootActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootActionId({self})")
    }
}

impl FromStr for BootActionId {
    type Err = Error;
    /// Parses the 26-character Crockford base32 form (either case). A text that does not
    /// encode exactly 128 bits (a first character above `7`, which the `ulid` crate would
    /// silently wrap) or uses Crockford's aliases is refused: ids are compared byte for byte.
    fn from_str(s: &str) -> Result<Self> {
        let refuse = |why: String| {
            Error::invalid(
                "boot_action.action_id",
                format!("not a ULID in Crockford base32 (26 characters): {why}"),
            )
        };
        let id = ulid::Ulid::from_string(s).map_err(|e| refuse(e.to_string()))?;
        if !id.to_string().eq_ignore_ascii_case(s) {
            return Err(refuse("out of range or not in canonical form".into()));
        }
        Ok(BootActionId(id.to_bytes()))
    }
}

impl Serialize for BootActionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BootActionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The 32-byte key a node presents (`X-Bootaction-Key`, as hex) to fetch and report its boot
/// actions. It is a credential: `Debug` does not show it; `Display` and JSON show the hex
/// form, for the operator who hands it to the node.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey(pub [u8; 32]);

impl IdentityKey {
    /// A new random key.
    pub fn generate() -> Self {
        IdentityKey(rand::random())
    }

    /// The 32 bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from stored bytes; `InvalidInput` unless there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        <[u8; 32]>::try_from(bytes).map(IdentityKey).map_err(|_| {
            Error::invalid(
                "boot_action.identity_key",
                format!("an identity key is 32 bytes, not {}", bytes.len()),
            )
        })
    }

    /// The lowercase hex form (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(***)")
    }
}

impl FromStr for IdentityKey {
    type Err = Error;
    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(s, &mut key).map_err(|e| {
            Error::invalid(
                "boot_action.identity_key",
                format!("not 64 hex digits (32 bytes): {e}"),
            )
        })?;
        Ok(IdentityKey(key))
    }
}

impl Serialize for IdentityKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

string_enum!(
    /// What a node reported of a boot action (Drydock's `ActionResult` as boot actions use
    /// it). `success` and `failure` are final.
    BootActionStatus, "boot_action.action_status" {
        /// Not reported yet.
        Incomplete => "incomplete",
        /// The node reported success (final).
        Success => "success",
        /// The node reported failure (final).
        Failure => "failure",
        /// The action does not signal its outcome; nothing will be reported.
        Unreported => "unreported",
    }
);

impl BootActionStatus {
    /// `true` for `success` and `failure`: the status never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, BootActionStatus::Success | BootActionStatus::Failure)
    }
}

/// A node's boot-action context: the task deploying it and the key it must present.
/// One per node; setting it again replaces it. Serialized with Drydock's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootActionContext {
    /// The node.
    pub node_name: String,
    /// The task deploying it; boot-action status messages are attached to it.
    pub task_id: TaskId,
    /// The key the node presents.
    pub identity_key: IdentityKey,
}

impl BootActionContext {
    /// Checks what every backend requires: a node name present, of at most
    /// [`MAX_NODE_NAME_LEN`] characters, without NUL.
    pub fn validate(&self) -> Result<()> {
        validate_node_name("boot_action.node_name", &self.node_name)
    }
}

/// One boot action of a node. Serialized with Drydock's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootAction {
    /// Its id, as the node presents it.
    pub action_id: BootActionId,
    /// The node it runs on.
    pub node_name: String,
    /// Its name in the site design (`BootAction` document name).
    pub action_name: String,
    /// The task that deploys the node.
    pub task_id: TaskId,
    /// The key the node presents.
    pub identity_key: IdentityKey,
    /// What the node reported.
    pub action_status: BootActionStatus,
}

impl BootAction {
    /// A boot action with a new id, in status `incomplete` (or `unreported` when the action
    /// does not signal its outcome).
    pub fn new(
        node_name: impl Into<String>,
        action_name: impl Into<String>,
        task_id: TaskId,
        identity_key: IdentityKey,
        signalling: bool,
    ) -> Self {
        BootAction {
            action_id: BootActionId::new(),
            node_name: node_name.into(),
            action_name: action_name.into(),
            task_id,
            identity_key,
            action_status: if signalling {
                BootActionStatus::Incomplete
            } else {
                BootActionStatus::Unreported
            },
        }
    }

    /// Checks what every backend requires: node and action names present, within
    /// Drydock's lengths, without NUL.
    pub fn validate(&self) -> Result<()> {
        validate_node_name("boot_action.node_name", &self.node_name)?;
        let name = &self.action_name;
        if name.is_empty() {
            return Err(Error::invalid(
                "boot_action.action_name",
                "must not be empty",
            ));
        }
        if name.chars().count() > MAX_ACTION_NAME_LEN {
            return Err(Error::invalid(
                "boot_action.action_name",
                format!("longer than {MAX_ACTION_NAME_LEN} characters"),
            ));
        }
        no_nul("boot_action.action_name", name)
    }

    /// The [`Error::Conflict`] for a status update of an action whose status is final.
    pub fn finalized(&self, to: BootActionStatus) -> Error {
        Error::conflict(
            Entity::BootAction,
            self.action_id,
            format!(
                "({} on {}) is {}, which is final; it cannot become {to}",
                self.action_name, self.node_name, self.action_status
            ),
        )
    }

    /// The result message a status update attaches to the action's task.
    pub fn status_message(&self, to: BootActionStatus) -> super::NewMessage {
        super::NewMessage {
            message: format!(
                "boot action {} on {} reported {to}",
                self.action_name, self.node_name
            ),
            error: to == BootActionStatus::Failure,
            context_type: "bootaction".into(),
            context: self.action_id.to_string(),
            extra: None,
        }
    }
}

/// Refuses a node name every backend must refuse.
pub fn validate_node_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NODE_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_NODE_NAME_LEN} characters"),
        ));
    }
    no_nul(field, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_crockford_base32() {
        let id = BootActionId([
            0x01, 0x8f, 0x3a, 0x9c, 0x00, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
            0x77, 0x66,
        ]);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text, "01HWX9R000ZZQDVK5VNACRGXV6");
        assert_eq!(text.parse::<BootActionId>().unwrap(), id);
        assert_eq!(text.to_lowercase().parse::<BootActionId>().unwrap(), id);
        for bad in [
            "",
            "01HWX9R000ZZQDVK5TNAC8GXV",
            "01HWX9R000ZZQDVK5VNACRGXVU",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01HWX9R000ZZQDVK5VNACRGXVO",
        ] {
            match bad.parse::<BootActionId>() {
                Err(Error::InvalidInput { field, .. }) => {
                    assert_eq!(field, "boot_action.action_id")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn keys_are_hex_and_hidden_from_debug() {
        let key = IdentityKey([0xab; 32]);
        assert_eq!(key.to_string(), "ab".repeat(32));
        assert_eq!("AB".repeat(32).parse::<IdentityKey>().unwrap(), key);
        assert!(!format!("{key:?}").contains("ab"));
        assert!("ab".repeat(31).parse::<IdentityKey>().is_err());
        assert!("zz".repeat(32).parse::<IdentityKey>().is_err());
        assert_ne!(IdentityKey::generate(), IdentityKey::generate());
    }

    #[test]
    fn json_uses_drydocks_field_names() {
        let a = BootAction::new("n1", "hello", TaskId::new(), IdentityKey([1; 32]), true);
        let v = serde_json::to_value(&a).unwrap();
        for field in [
            "node_name",
            "action_id",
            "action_name",
            "task_id",
            "identity_key",
            "action_status",
        ] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        assert_eq!(v["identity_key"], "01".repeat(32));
        assert_eq!(v["action_status"], "incomplete");
        let back: BootAction = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
        let quiet = BootAction::new("n1", "quiet", TaskId::new(), IdentityKey([1; 32]), false);
        assert_eq!(quiet.action_status, BootActionStatus::Unreported);
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = BootActionId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = BootActionId::new();
        assert!(a < b);
    }
}
