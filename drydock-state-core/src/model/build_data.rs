//! Build data: what generators reported about a node during a task, and how it is queried.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{no_nul, TaskId};
use crate::error::{Error, Result};

/// A piece of a node's build history: what a generator (`lshw`, `lldp`, the provisioner)
/// reported about a node during a task.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildData {
    /// The node.
    pub node_name: String,
    /// The task that collected it.
    pub task_id: TaskId,
    /// When it was collected; when recorded as `None` the store uses its own clock.
    pub collected_date: Option<DateTime<Utc>>,
    /// What produced it.
    pub generator: String,
    /// Its MIME type.
    pub data_format: String,
    /// The data. `None` when read with [`Verbosity::Brief`]; required when recording.
    pub data_element: Option<String>,
}

impl BuildData {
    /// Checks what every backend requires: names present, no NUL byte, an element to store.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("build_data.node_name", &self.node_name),
            ("build_data.generator", &self.generator),
            ("build_data.data_format", &self.data_format),
        ] {
            if value.is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
            no_nul(field, value)?;
        }
        match &self.data_element {
            None => Err(Error::invalid(
                "build_data.data_element",
                "is required when recording",
            )),
            Some(element) => no_nul("build_data.data_element", element),
        }
    }
}

/// How much of each build-data row a query returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Everything but `data_element` (which is not read at all).
    Brief,
    /// Everything.
    #[default]
    Full,
}

/// Which build data [`crate::BuildStore::build_data`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildDataQuery {
    /// Only this node's.
    pub node_name: Option<String>,
    /// Only this task's.
    pub task_id: Option<TaskId>,
    /// Only the newest row per generator (per node, when no node is given).
    pub latest: bool,
    /// How much of each row.
    pub verbosity: Verbosity,
}

impl BuildDataQuery {
    /// Refuses a query no backend can match: a NUL byte in the node name.
    pub fn validate(&self) -> Result<()> {
        match &self.node_name {
            Some(node) => no_nul("build_data.node_name", node),
            None => Ok(()),
        }
    }
}
