//! Rows written into a store as they are, keys and times included: what
//! [`crate::ImportStore::import`] takes (a site adopted from Drydock, see [`crate::adopt`]) and
//! what it reports.

use std::collections::HashSet;

use serde::Serialize;

use super::{BootAction, BootActionContext, BuildData, ResultMessage, Task, TaskId};
use crate::backend::{json_no_nul, no_nul};
use crate::error::{Error, Result};

/// Rows to import, each kept exactly as given: ids, statuses, claims, attempts, message
/// sequence numbers and every timestamp.
///
/// Order matters and is checked ([`ImportBatch::validate`]): a task's parent comes before it
/// (or is already stored), messages come in ascending sequence order, build data in the order
/// it was collected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportBatch {
    /// Tasks, parents first. `result.details` is ignored: messages come in
    /// [`ImportBatch::messages`].
    pub tasks: Vec<Task>,
    /// Result messages in ascending `sequence` order; each one's task is in
    /// [`ImportBatch::tasks`] or already stored.
    pub messages: Vec<ResultMessage>,
    /// Build data in collection order, every `collected_date` set. Its task need not exist
    /// (build history outlives purged tasks).
    pub build_data: Vec<BuildData>,
    /// Boot-action contexts, at most one per node. Their task need not exist.
    pub boot_contexts: Vec<BootActionContext>,
    /// Boot actions, each id once. Their task need not exist.
    pub boot_actions: Vec<BootAction>,
}

/// Whether an import writes or only says what it would write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Write, and commit.
    Write,
    /// Do everything a write does in one transaction, then roll it back: the counts are those
    /// a write would report, and nothing changes.
    DryRun,
}

/// Of one kind of row: how many an import wrote, and how many it found already stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportCount {
    /// Rows written (or, in a dry run, that would be).
    pub written: u64,
    /// Rows already stored, not written again.
    pub present: u64,
}

/// What [`crate::ImportStore::import`] wrote, kind by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    /// Tasks, by id.
    pub tasks: ImportCount,
    /// Result messages, by sequence number.
    pub messages: ImportCount,
    /// Build data, by content (see [`crate::ImportStore::import`]).
    pub build_data: ImportCount,
    /// Boot-action contexts, by node.
    pub boot_contexts: ImportCount,
    /// Boot actions, by id.
    pub boot_actions: ImportCount,
}

impl ImportBatch {
    /// True when the batch holds no row at all.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.messages.is_empty()
            && self.build_data.is_empty()
            && self.boot_contexts.is_empty()
            && self.boot_actions.is_empty()
    }

    /// Checks what every backend requires, before anything is written: text a database can
    /// store (no NUL), a task action present, each task id once with its parent earlier in
    /// the batch or outside it (then the store checks it exists), messages in strictly
    /// ascending positive sequence order, every build-data date set, each node's context and
    /// each boot-action id once, and each boot action and context valid as its own write
    /// requires.
    pub fn validate(&self) -> Result<()> {
        let mut seen: HashSet<TaskId> = HashSet::with_capacity(self.tasks.len());
        let ids: HashSet<TaskId> = self.tasks.iter().map(|t| t.task_id).collect();
        for task in &self.tasks {
            validate_task(task)?;
            if let Some(parent) = task.parent_task_id {
                if parent == task.task_id {
                    return Err(Error::invalid(
                        "import.tasks",
                        format!("task {} is its own parent", task.task_id),
                    ));
                }
                if ids.contains(&parent) && !seen.contains(&parent) {
                    return Err(Error::invalid(
                        "import.tasks",
                        format!("task {} comes before its parent {parent}", task.task_id),
                    ));
                }
            }
            if !seen.insert(task.task_id) {
                return Err(Error::invalid(
                    "import.tasks",
                    format!("task {} is given twice", task.task_id),
                ));
            }
        }
        let mut last = 0i64;
        for message in &self.messages {
            if message.sequence <= last {
                return Err(Error::invalid(
                    "import.messages",
                    format!(
                        "sequence {} does not follow {last}: messages come in ascending \
                         positive sequence order",
                        message.sequence
                    ),
                ));
            }
            last = message.sequence;
            no_nul("message.text", &message.message)?;
            no_nul("message.context_type", &message.context_type)?;
            no_nul("message.context", &message.context)?;
            if let Some(extra) = &message.extra {
                json_no_nul("message.extra", extra)?;
            }
        }
        for data in &self.build_data {
            if data.collected_date.is_none() {
                return Err(Error::invalid(
                    "import.build_data",
                    "every imported element needs its collected date",
                ));
            }
            data.validate()?;
        }
        let mut nodes = HashSet::new();
        for context in &self.boot_contexts {
            context.validate()?;
            if !nodes.insert(context.node_name.as_str()) {
                return Err(Error::invalid(
                    "import.boot_contexts",
                    format!("node {:?} is given twice", context.node_name),
                ));
            }
        }
        let mut actions = HashSet::new();
        for action in &self.boot_actions {
            action.validate()?;
            if !actions.insert(action.action_id) {
                return Err(Error::invalid(
                    "import.boot_actions",
                    format!("boot action {} is given twice", action.action_id),
                ));
            }
        }
        Ok(())
    }
}

fn validate_task(task: &Task) -> Result<()> {
    if task.action.is_empty() {
        return Err(Error::invalid("task.action", "must not be empty"));
    }
    no_nul("task.action", &task.action)?;
    let texts = [
        ("task.design_ref", &task.design_ref),
        ("task.created_by", &task.created_by),
        ("task.terminated_by", &task.terminated_by),
        ("task.result.message", &task.result.message),
        ("task.result.reason", &task.result.reason),
        ("task.claimed_by", &task.claimed_by),
    ];
    for (field, text) in texts {
        if let Some(text) = text {
            no_nul(field, text)?;
        }
    }
    for entity in task.result.successes.iter().chain(&task.result.failures) {
        no_nul("task.result.entities", entity)?;
    }
    for link in &task.result.links {
        no_nul("task.result.links", &link.rel)?;
        no_nul("task.result.links", &link.href)?;
    }
    for (field, json) in [
        ("task.node_filter", &task.node_filter),
        ("task.request_context", &task.request_context),
    ] {
        if let Some(json) = json {
            json_no_nul(field, json)?;
        }
    }
    if task.claimed_by.is_none() && (task.claim_term.is_some() || task.claim_id.is_some()) {
        return Err(Error::invalid(
            "task.claimed_by",
            format!(
                "task {} has a claim term or id but no claimant",
                task.task_id
            ),
        ));
    }
    if task.attempt < 0 {
        return Err(Error::invalid("task.attempt", "must not be negative"));
    }
    Ok(())
}
