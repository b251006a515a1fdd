//! What a caller writes to a task: [`NewTask`] to create one, [`TaskUpdate`] to change one.
//!
//! [`Task`] is what every read returns; these are the only shapes a write accepts, so no field
//! is silently ignored: a new task has no claim, subtasks or messages to give, and an update
//! names only the fields a caller may change.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::task::{api_v1, kind_task};
use super::{
    json_no_nul, no_nul, now, Link, NodeFilter, ResultDetails, ResultStatus, Task, TaskId,
    TaskResult, TaskStatus, MAX_ACTION_LEN,
};
use crate::error::{Entity, Error, Result};

/// A task to create with [`crate::TaskStore::create_task`].
///
/// Its `Debug` shows the design reference with the password removed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The task's id; a new time-ordered one by default.
    pub task_id: TaskId,
    /// What to do: a Drydock action (`deploy_nodes`, `prepare_site`, ...) or a third-party one.
    pub action: String,
    /// The parent task, for a subtask. It must exist.
    #[serde(default)]
    pub parent_task_id: Option<TaskId>,
    /// The site design, as a URI; stored verbatim (passwords included) but never logged.
    #[serde(default)]
    pub design_ref: Option<String>,
    /// The first status: `requested` (the default), `queued`, or, for imported history,
    /// `complete` or `terminated`. A task is `running` or `terminating` only through a claim.
    pub status: TaskStatus,
    /// Which nodes the task acts on, returned exactly as given.
    #[serde(default)]
    pub node_filter: Option<NodeFilter>,
    /// When the task was created: now by default, earlier for imports and retention tests.
    pub created: DateTime<Utc>,
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// How many times it has been retried.
    #[serde(default)]
    pub retry: i32,
    /// The API request context the task was created in (user, roles, project).
    #[serde(default)]
    pub request_context: Option<serde_json::Value>,
}

impl fmt::Debug for NewTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTask")
            .field("task_id", &self.task_id)
            .field("action", &self.action)
            .field("parent_task_id", &self.parent_task_id)
            .field(
                "design_ref",
                &self.design_ref.as_deref().map(crate::error::redact_uri),
            )
            .field("status", &self.status)
            .field("node_filter", &self.node_filter)
            .field("created", &self.created)
            .field("created_by", &self.created_by)
            .field("retry", &self.retry)
            .field("request_context", &self.request_context)
            .finish()
    }
}

impl NewTask {
    /// A new task in status `requested`, created now, with a new time-ordered id.
    pub fn new(action: impl Into<String>) -> Self {
        NewTask {
            task_id: TaskId::new(),
            action: action.into(),
            parent_task_id: None,
            design_ref: None,
            status: TaskStatus::Requested,
            node_filter: None,
            created: now(),
            created_by: None,
            retry: 0,
            request_context: None,
        }
    }

    /// Sets the first status (builder style).
    pub fn with_status(mut self, status: TaskStatus) -> Self {
        self.status = status;
        self
    }

    /// Sets the design reference (builder style).
    pub fn with_design_ref(mut self, design_ref: impl Into<String>) -> Self {
        self.design_ref = Some(design_ref.into());
        self
    }

    /// Sets the parent (builder style).
    pub fn with_parent(mut self, parent: TaskId) -> Self {
        self.parent_task_id = Some(parent);
        self
    }

    /// Sets the node filter (builder style).
    pub fn with_node_filter(mut self, filter: NodeFilter) -> Self {
        self.node_filter = Some(filter);
        self
    }

    /// Sets the creation time (builder style).
    pub fn with_created(mut self, created: DateTime<Utc>) -> Self {
        self.created = created;
        self
    }

    /// Sets who created the task (builder style).
    pub fn with_created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    /// The task exactly as a store holds it right after [`crate::TaskStore::create_task`]:
    /// no claim, no subtasks, no messages, never updated.
    pub fn to_task(&self) -> Task {
        Task {
            kind: kind_task(),
            api_version: api_v1(),
            task_id: self.task_id,
            action: self.action.clone(),
            parent_task_id: self.parent_task_id,
            design_ref: self.design_ref.clone(),
            status: self.status,
            result: TaskResult::default(),
            node_filter: self.node_filter.clone(),
            subtask_id_list: Vec::new(),
            created: self.created,
            created_by: self.created_by.clone(),
            updated: None,
            retry: self.retry,
            terminated: None,
            terminated_by: None,
            terminate: false,
            request_context: self.request_context.clone(),
            claimed_by: None,
            claim_term: None,
            claimed_at: None,
            attempt: 0,
            claim_id: None,
        }
    }

    /// Checks what every backend requires of a new task: a non-empty action of at most
    /// [`MAX_ACTION_LEN`] visible characters, a first status that needs no claim, no NUL byte
    /// in any text, a parent other than itself and a design reference that is a URI.
    pub fn validate(&self) -> Result<()> {
        validate_action(&self.action)?;
        if self.status.is_live() {
            return Err(Error::invalid(
                "task.status",
                format!(
                    "a task cannot be created {}: a task runs only once claimed",
                    self.status
                ),
            ));
        }
        if self.parent_task_id == Some(self.task_id) {
            return Err(Error::invalid(
                "task.parent_task_id",
                "a task cannot be its own parent",
            ));
        }
        if let Some(design_ref) = &self.design_ref {
            no_nul("task.design_ref", design_ref)?;
            crate::design::DesignRef::parse(design_ref)?;
        }
        if let Some(created_by) = &self.created_by {
            no_nul("task.created_by", created_by)?;
        }
        if self.retry < 0 {
            return Err(Error::invalid("task.retry", "must not be negative"));
        }
        for (field, json) in [
            ("task.node_filter", &self.node_filter),
            ("task.request_context", &self.request_context),
        ] {
            if let Some(json) = json {
                json_no_nul(field, json)?;
            }
        }
        Ok(())
    }

    /// The task as [`crate::TaskStore::create_subtask`] stores it under `parent`: with
    /// `parent_task_id` set to `parent`. `InvalidInput` (field `task.parent_task_id`) when the
    /// task already names another parent; unset or `parent` itself is fine. It does not
    /// [`NewTask::validate`] the task.
    pub fn subtask_of(&self, parent: TaskId) -> Result<NewTask> {
        match self.parent_task_id {
            Some(named) if named != parent => Err(Error::invalid(
                "task.parent_task_id",
                format!("names {named}, not the parent {parent} it is created under"),
            )),
            _ => Ok(NewTask {
                parent_task_id: Some(parent),
                ..self.clone()
            }),
        }
    }
}

fn validate_action(action: &str) -> Result<()> {
    if action.is_empty() {
        return Err(Error::invalid("task.action", "must not be empty"));
    }
    if action.chars().count() > MAX_ACTION_LEN {
        return Err(Error::invalid(
            "task.action",
            format!("longer than {MAX_ACTION_LEN} characters"),
        ));
    }
    if action.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "task.action",
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// A change to a stored task, for [`crate::TaskStore::update_task`]: each field set is
/// written, each left `None` keeps the stored value. For the fields a task may lack, the
/// inner `Option` is the value: `Some(None)` clears it.
///
/// Build one with the methods: `TaskUpdate::new().status(TaskStatus::Complete)
/// .result_status(ResultStatus::Success)`. The claim fields, subtask list, messages,
/// creation and termination are not here: claims are made by
/// [`crate::TaskStore::claim_next`], subtasks by [`crate::TaskStore::add_subtask`], messages
/// by [`crate::MessageStore`] and termination by [`crate::TaskStore::terminate_task`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskUpdate {
    /// The new status. A task becomes `running` only by a claim and `terminating` only by
    /// [`crate::TaskStore::terminate_task`]; back to `requested` or `queued` ends its claim.
    pub status: Option<TaskStatus>,
    /// How the work went.
    pub result_status: Option<ResultStatus>,
    /// The one-line summary.
    pub result_message: Option<Option<String>>,
    /// Why it did not succeed.
    pub result_reason: Option<Option<String>>,
    /// The targets that succeeded (replacing the stored list).
    pub successes: Option<Vec<String>>,
    /// The targets that failed (replacing the stored list).
    pub failures: Option<Vec<String>>,
    /// The result's links (replacing the stored list).
    pub links: Option<Vec<Link>>,
    /// The retry count.
    pub retry: Option<i32>,
    /// The node filter.
    pub node_filter: Option<Option<NodeFilter>>,
    /// The design reference.
    pub design_ref: Option<Option<String>>,
    /// The parent task, which must exist.
    pub parent_task_id: Option<Option<TaskId>>,
}

impl TaskUpdate {
    /// An update that changes nothing (only `updated`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the status.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the result status.
    pub fn result_status(mut self, status: ResultStatus) -> Self {
        self.result_status = Some(status);
        self
    }

    /// Sets (`Some`) or clears (`None`) the result summary.
    pub fn result_message(mut self, message: Option<impl Into<String>>) -> Self {
        self.result_message = Some(message.map(Into::into));
        self
    }

    /// Sets (`Some`) or clears (`None`) the result reason.
    pub fn result_reason(mut self, reason: Option<impl Into<String>>) -> Self {
        self.result_reason = Some(reason.map(Into::into));
        self
    }

    /// Replaces the successes.
    pub fn successes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, targets: I) -> Self {
        self.successes = Some(targets.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the failures.
    pub fn failures<I: IntoIterator<Item = S>, S: Into<String>>(mut self, targets: I) -> Self {
        self.failures = Some(targets.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the links.
    pub fn links(mut self, links: impl IntoIterator<Item = Link>) -> Self {
        self.links = Some(links.into_iter().collect());
        self
    }

    /// Sets the retry count.
    pub fn retry(mut self, retry: i32) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets (`Some`) or clears (`None`) the node filter.
    pub fn node_filter(mut self, filter: Option<NodeFilter>) -> Self {
        self.node_filter = Some(filter);
        self
    }

    /// Sets (`Some`) or clears (`None`) the design reference.
    pub fn design_ref(mut self, design_ref: Option<impl Into<String>>) -> Self {
        self.design_ref = Some(design_ref.map(Into::into));
        self
    }

    /// Sets (`Some`) or clears (`None`) the parent.
    pub fn parent(mut self, parent: Option<TaskId>) -> Self {
        self.parent_task_id = Some(parent);
        self
    }

    /// Checks what every backend requires of an update of task `id`, before looking at the
    /// stored task: no NUL byte, a non-negative retry count, a parent other than the task
    /// itself, a design reference that is a URI, and no move into a status only a claim or a
    /// termination gives.
    pub fn validate(&self, id: TaskId) -> Result<()> {
        for (field, text) in [
            ("task.result.message", &self.result_message),
            ("task.result.reason", &self.result_reason),
            ("task.design_ref", &self.design_ref),
        ] {
            if let Some(Some(text)) = text {
                no_nul(field, text)?;
            }
        }
        if let Some(Some(design_ref)) = &self.design_ref {
            crate::design::DesignRef::parse(design_ref)?;
        }
        for s in self.successes.iter().flatten() {
            no_nul("task.result.successes", s)?;
        }
        for s in self.failures.iter().flatten() {
            no_nul("task.result.failures", s)?;
        }
        for l in self.links.iter().flatten() {
            no_nul("task.result.links", &l.rel)?;
            no_nul("task.result.links", &l.href)?;
        }
        if let Some(Some(filter)) = &self.node_filter {
            json_no_nul("task.node_filter", filter)?;
        }
        if matches!(self.retry, Some(r) if r < 0) {
            return Err(Error::invalid("task.retry", "must not be negative"));
        }
        if self.parent_task_id == Some(Some(id)) {
            return Err(Error::invalid(
                "task.parent_task_id",
                "a task cannot be its own parent",
            ));
        }
        Ok(())
    }

    /// Whether a task stored in status `from` may take this update: a terminal task takes no
    /// write at all, and a task enters `running` only by a claim and `terminating` only by a
    /// termination (staying in either is allowed). `Conflict` otherwise.
    pub fn check_transition(&self, id: TaskId, from: TaskStatus) -> Result<()> {
        if from.is_terminal() {
            return Err(Error::conflict(
                Entity::Task,
                id,
                format!("is {from}, which is final; it takes no further writes"),
            ));
        }
        match self.status {
            Some(to) if to.is_live() && to != from => Err(Error::conflict(
                Entity::Task,
                id,
                format!(
                    "is {from}; it becomes {to} only {}",
                    if to == TaskStatus::Running {
                        "when claimed"
                    } else {
                        "when terminated"
                    }
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the update ends the task's claim: a move back to `requested` or `queued`.
    pub fn ends_claim(&self) -> bool {
        self.status.is_some_and(TaskStatus::is_waiting)
    }

    /// Applies the update to `task` as every backend does, setting `updated` to `at`. The
    /// caller has checked the guard, [`TaskUpdate::check_transition`] and the parent.
    pub fn apply(&self, task: &mut Task, at: DateTime<Utc>) {
        if let Some(status) = self.status {
            task.status = status;
        }
        if self.ends_claim() {
            task.claimed_by = None;
            task.claim_term = None;
            task.claimed_at = None;
            task.claim_id = None;
        }
        if let Some(s) = self.result_status {
            task.result.status = s;
        }
        if let Some(m) = &self.result_message {
            task.result.message = m.clone();
        }
        if let Some(r) = &self.result_reason {
            task.result.reason = r.clone();
        }
        if let Some(s) = &self.successes {
            task.result.successes = s.clone();
        }
        if let Some(f) = &self.failures {
            task.result.failures = f.clone();
        }
        if let Some(l) = &self.links {
            task.result.links = l.clone();
        }
        if let Some(r) = self.retry {
            task.retry = r;
        }
        if let Some(n) = &self.node_filter {
            task.node_filter = n.clone();
        }
        if let Some(d) = &self.design_ref {
            task.design_ref = d.clone();
        }
        if let Some(p) = self.parent_task_id {
            task.parent_task_id = p;
        }
        task.result.details = ResultDetails::default();
        task.updated = Some(at);
    }
}

/// The most subtasks one [`crate::TaskStore::create_task_tree`] may create: more is
/// `InvalidInput`, so one transaction stays bounded.
pub const MAX_TREE_SUBTASKS: usize = 1000;

/// Checks a tree for [`crate::TaskStore::create_task_tree`] before looking at the store, and
/// returns the subtasks as they are stored (each with `parent` as its parent): every task
/// passes [`NewTask::validate`], at most [`MAX_TREE_SUBTASKS`] subtasks, no id twice in the
/// tree, and no subtask naming a parent other than `parent` (`InvalidInput` otherwise).
pub fn tree_subtasks(parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<NewTask>> {
    parent.validate()?;
    if subtasks.len() > MAX_TREE_SUBTASKS {
        return Err(Error::invalid(
            "tree.subtasks",
            format!("at most {MAX_TREE_SUBTASKS} subtasks"),
        ));
    }
    let mut ids = std::collections::HashSet::from([parent.task_id]);
    subtasks
        .iter()
        .map(|t| {
            t.validate()?;
            if t.parent_task_id.is_some_and(|p| p != parent.task_id) {
                return Err(Error::invalid(
                    "task.parent_task_id",
                    "a subtask of a tree has the tree's parent as its parent",
                ));
            }
            if !ids.insert(t.task_id) {
                return Err(Error::invalid(
                    "task.task_id",
                    format!("{} comes twice in the tree", t.task_id),
                ));
            }
            Ok(t.clone().with_parent(parent.task_id))
        })
        .collect()
}

/// One write of [`crate::TaskStore::update_tasks`]: what [`crate::TaskStore::update_task`]
/// takes, as one value.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardedUpdate {
    /// The task to write.
    pub task_id: TaskId,
    /// What to write.
    pub update: TaskUpdate,
    /// The claim the write must match, as `update_task`'s `guard`.
    pub guard: Option<super::Claim>,
}

impl GuardedUpdate {
    /// A write of `update` to `task_id` under `guard`.
    pub fn new(task_id: TaskId, update: TaskUpdate, guard: Option<super::Claim>) -> Self {
        GuardedUpdate {
            task_id,
            update,
            guard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_task_refuses_bad_input() {
        assert!(NewTask::new("").validate().is_err());
        assert!(NewTask::new("deploy nodes").validate().is_err());
        let e = NewTask::new("x")
            .with_created_by("a\0b")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("task.created_by"), "{e}");
        assert!(NewTask::new("x")
            .with_design_ref("relative/path")
            .validate()
            .is_err());
        let e = NewTask::new("x")
            .with_status(TaskStatus::Running)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("task.status"), "{e}");
        let mut own = NewTask::new("x");
        own.parent_task_id = Some(own.task_id);
        assert!(own.validate().is_err());
    }

    #[test]
    fn a_terminal_task_takes_no_write() {
        let id = TaskId::new();
        let same = TaskUpdate::new().status(TaskStatus::Complete);
        assert!(same.check_transition(id, TaskStatus::Complete).is_err());
        assert!(TaskUpdate::new()
            .retry(2)
            .check_transition(id, TaskStatus::Terminated)
            .is_err());
        assert!(same.check_transition(id, TaskStatus::Running).is_ok());
    }

    #[test]
    fn running_only_by_a_claim() {
        let id = TaskId::new();
        let run = TaskUpdate::new().status(TaskStatus::Running);
        assert!(run.check_transition(id, TaskStatus::Queued).is_err());
        assert!(run.check_transition(id, TaskStatus::Running).is_ok());
        let stop = TaskUpdate::new().status(TaskStatus::Terminating);
        assert!(stop.check_transition(id, TaskStatus::Running).is_err());
    }

    #[test]
    fn requeue_ends_the_claim_and_apply_keeps_what_is_not_set() {
        let mut t = NewTask::new("x").to_task();
        t.status = TaskStatus::Running;
        t.claimed_by = Some("a".into());
        t.claim_term = Some(1);
        t.attempt = 1;
        t.result.message = Some("kept".into());
        TaskUpdate::new()
            .status(TaskStatus::Queued)
            .apply(&mut t, now());
        assert_eq!(t.claimed_by, None);
        assert_eq!(t.claim_term, None);
        assert_eq!(t.attempt, 1, "the attempt count never goes down");
        assert_eq!(t.result.message.as_deref(), Some("kept"));
        TaskUpdate::new()
            .result_message(None::<String>)
            .apply(&mut t, now());
        assert_eq!(t.result.message, None);
    }
}
