//! Result messages: what is appended to a task, and what is read back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{drydock_json, json_no_nul, no_nul, TaskId};
use crate::error::Result;

/// A result message to append to a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The text, stored whole whatever its length.
    pub message: String,
    /// Whether it reports an error (counted in `errorCount`).
    #[serde(default)]
    pub error: bool,
    /// What the message is about (`node`, `task`, ...).
    #[serde(default = "default_context_type")]
    pub context_type: String,
    /// Which one (a node name, a task id).
    #[serde(default)]
    pub context: String,
    /// Free-form structured detail.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

fn default_context_type() -> String {
    "task".into()
}

impl NewMessage {
    /// An informational message about the task itself.
    pub fn info(message: impl Into<String>) -> Self {
        NewMessage {
            message: message.into(),
            error: false,
            context_type: default_context_type(),
            context: String::new(),
            extra: None,
        }
    }

    /// An error message about the task itself.
    pub fn error(message: impl Into<String>) -> Self {
        NewMessage {
            error: true,
            ..NewMessage::info(message)
        }
    }

    /// Sets what the message is about (builder style).
    pub fn with_context(
        mut self,
        context_type: impl Into<String>,
        context: impl Into<String>,
    ) -> Self {
        self.context_type = context_type.into();
        self.context = context.into();
        self
    }

    /// Checks what every backend requires: no NUL byte in any text.
    pub fn validate(&self) -> Result<()> {
        no_nul("message.message", &self.message)?;
        no_nul("message.context_type", &self.context_type)?;
        no_nul("message.context", &self.context)?;
        if let Some(extra) = &self.extra {
            json_no_nul("message.extra", extra)?;
        }
        Ok(())
    }
}

/// A stored result message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// Its place in the store's order; increases with every append. Drydock's JSON has
    /// none: such messages read as 0, in the order given.
    #[serde(default)]
    pub sequence: i64,
    /// The task it belongs to (filled in from the task when Drydock's JSON leaves it out).
    #[serde(default = "TaskId::nil")]
    pub task_id: TaskId,
    /// The text.
    pub message: String,
    /// Whether it reports an error.
    pub error: bool,
    /// What the message is about.
    pub context_type: String,
    /// Which one.
    pub context: String,
    /// When it was stored (the database's clock).
    #[serde(deserialize_with = "drydock_json::time")]
    pub ts: DateTime<Utc>,
    /// Free-form structured detail.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}
