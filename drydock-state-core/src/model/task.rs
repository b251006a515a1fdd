//! Tasks: their ids, statuses, results and the task itself, and what the task store reads
//! them with (filters, trees) and reports (purges, orphan recovery).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{drydock_json, no_nul, validate_instance_id, Claim, ResultMessage};
use crate::error::{Error, Result};

/// A task's identifier: a UUID, time-ordered (v7) for new tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        TaskId(Uuid::now_v7())
    }

    /// The all-zero id: what a message read from Drydock's JSON without a `task_id` carries
    /// until the task it is read with fills it in.
    pub const fn nil() -> Self {
        TaskId(Uuid::nil())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(TaskId)
            .map_err(|e| Error::invalid("task_id", format!("not a UUID: {e}")))
    }
}

impl From<Uuid> for TaskId {
    fn from(u: Uuid) -> Self {
        TaskId(u)
    }
}

string_enum!(
    /// Where a task is in its life. `Complete` and `Terminated` are terminal.
    TaskStatus, "task.status" {
        /// Created, not yet eligible to be claimed.
        Requested => "requested",
        /// Waiting for an orchestrator to claim it.
        Queued => "queued",
        /// Claimed and being worked.
        Running => "running",
        /// Asked to stop; the worker is winding down.
        Terminating => "terminating",
        /// Stopped before completion (terminal).
        Terminated => "terminated",
        /// Finished (terminal); see the result status for how it went.
        Complete => "complete",
    }
);

impl TaskStatus {
    /// `true` for `complete` and `terminated`: no further change of status is allowed.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Complete | TaskStatus::Terminated)
    }

    /// `true` for `running` and `terminating`: a claimant is working the task.
    pub fn is_live(self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::Terminating)
    }

    /// `true` for `requested` and `queued`: nobody works the task and it carries no claim.
    pub fn is_waiting(self) -> bool {
        matches!(self, TaskStatus::Requested | TaskStatus::Queued)
    }
}

string_enum!(
    /// How a task's work went.
    ResultStatus, "task.result.status" {
        /// Not finished.
        Incomplete => "incomplete",
        /// Everything succeeded.
        Success => "success",
        /// Some targets succeeded, some failed.
        PartialSuccess => "partial_success",
        /// Nothing succeeded.
        Failure => "failure",
        /// The worker never reported.
        Unreported => "unreported",
    }
);

/// One task of a tree read by [`crate::TaskStore::task_tree`].
#[derive(Clone, Debug, PartialEq)]
pub struct TreeNode {
    /// Levels below the root (the root is 0).
    pub depth: u32,
    /// The id as listed by its parent.
    pub task_id: TaskId,
    /// The task, or `None` when the id is listed but no such task is stored.
    pub task: Option<Task>,
}

/// Which subtasks [`crate::TaskStore::subtasks`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SubtaskFilter {
    /// All of them.
    #[default]
    All,
    /// Those whose status is not terminal.
    Active,
    /// Those whose status is terminal (`complete` or `terminated`).
    Complete,
}

/// A link attached to a task result (`rel` and `href`, as Drydock's API shows them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The relation, e.g. `detail_logs`.
    pub rel: String,
    /// The target.
    pub href: String,
}

/// The `details` block of a task result: the messages, in sequence order, and how many are errors.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ResultDetails {
    /// How many of `message_list` are errors.
    #[serde(rename = "errorCount", default)]
    pub error_count: u64,
    /// The task's result messages, in sequence order.
    #[serde(
        rename = "messageList",
        default,
        deserialize_with = "drydock_json::null_as_empty"
    )]
    pub message_list: Vec<ResultMessage>,
}

/// The outcome of a task: its status, a summary and the per-target successes and failures.
///
/// Serialized as Drydock's API shows it, a `kind: Status` document (`apiVersion: v1.0`,
/// `metadata: {}`); read leniently (`null` lists, links as `{rel: [href]}`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TaskResult {
    /// How it went.
    pub status: ResultStatus,
    /// A one-line summary.
    pub message: Option<String>,
    /// Why, when it did not succeed.
    pub reason: Option<String>,
    /// Targets (usually node names) that succeeded.
    #[serde(default, deserialize_with = "drydock_json::null_as_empty")]
    pub successes: Vec<String>,
    /// Targets that failed.
    #[serde(default, deserialize_with = "drydock_json::null_as_empty")]
    pub failures: Vec<String>,
    /// Related links.
    #[serde(default, deserialize_with = "drydock_json::links")]
    pub links: Vec<Link>,
    /// Messages and error count; assembled from the message store when a task is read,
    /// ignored when a task is written.
    #[serde(default)]
    pub details: ResultDetails,
}

impl Serialize for TaskResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        /// The document Drydock's `TaskStatus.to_dict` produced.
        #[derive(Serialize)]
        struct Status<'a> {
            kind: &'static str,
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            metadata: serde_json::Map<String, serde_json::Value>,
            message: &'a Option<String>,
            reason: &'a Option<String>,
            status: ResultStatus,
            successes: &'a [String],
            failures: &'a [String],
            links: &'a [Link],
            details: &'a ResultDetails,
        }
        Status {
            kind: "Status",
            api_version: "v1.0",
            metadata: serde_json::Map::new(),
            message: &self.message,
            reason: &self.reason,
            status: self.status,
            successes: &self.successes,
            failures: &self.failures,
            links: &self.links,
            details: &self.details,
        }
        .serialize(s)
    }
}

impl Default for TaskResult {
    fn default() -> Self {
        TaskResult {
            status: ResultStatus::Incomplete,
            message: None,
            reason: None,
            successes: Vec::new(),
            failures: Vec::new(),
            links: Vec::new(),
            details: ResultDetails::default(),
        }
    }
}

/// A node filter as Drydock's API sends it: a set of filters combined by `filter_set_type`.
/// Stored as JSON and returned exactly as given.
pub type NodeFilter = serde_json::Value;

/// A task, as stored and as Drydock's API clients read it. Its `Debug` shows the design
/// reference with the password removed; its JSON leaves out the request context (see
/// [`Task::to_json`]) and reads Drydock's own JSON (zoneless dates, `null` lists, links as a
/// map, messages without a sequence).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "TaskJson")]
pub struct Task {
    /// Always `Task`.
    #[serde(default = "kind_task")]
    pub kind: String,
    /// Always `v1`.
    #[serde(rename = "apiVersion", default = "api_v1")]
    pub api_version: String,
    /// The task's id.
    pub task_id: TaskId,
    /// What to do: a Drydock action (`deploy_nodes`, `prepare_site`, ...) or a third-party one.
    pub action: String,
    /// The parent task, for a subtask.
    #[serde(default)]
    pub parent_task_id: Option<TaskId>,
    /// The site design, as a URI; stored verbatim (passwords included, as the orchestrator
    /// needs them) but never logged.
    #[serde(default)]
    pub design_ref: Option<String>,
    /// Where the task is in its life.
    pub status: TaskStatus,
    /// How it went.
    #[serde(default)]
    pub result: TaskResult,
    /// Which nodes the task acts on.
    #[serde(default)]
    pub node_filter: Option<NodeFilter>,
    /// Subtask ids, in the order they were added.
    #[serde(default)]
    pub subtask_id_list: Vec<TaskId>,
    /// When the task was created.
    pub created: DateTime<Utc>,
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// When it was last changed.
    #[serde(default)]
    pub updated: Option<DateTime<Utc>>,
    /// How many times it has been retried.
    #[serde(default)]
    pub retry: i32,
    /// When it was terminated.
    #[serde(default)]
    pub terminated: Option<DateTime<Utc>>,
    /// Who terminated it.
    #[serde(default)]
    pub terminated_by: Option<String>,
    /// Whether termination was requested.
    #[serde(default)]
    pub terminate: bool,
    /// The API request context the task was created in (user, roles, project): stored, but
    /// not in the JSON a client is shown unless asked for ([`Task::to_json`]).
    #[serde(default, skip_serializing)]
    pub request_context: Option<serde_json::Value>,
    /// The orchestrator instance whose claim the task carries, if it was claimed with
    /// [`crate::TaskStore::claim_next`] and the claim has not ended (recovery and a return to
    /// the queue end it; completion keeps it as the record of who ran the task).
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// The lease term under which it was claimed, if the claim was fenced.
    #[serde(default)]
    pub claim_term: Option<i64>,
    /// When it was claimed.
    #[serde(default)]
    pub claimed_at: Option<DateTime<Utc>>,
    /// How many times the task has been claimed: one more on every claim, never lowered. With
    /// the instance and the term it makes the task's [`Claim`], so a write from an earlier run
    /// of the same instance under the same term is told apart from the current run's.
    #[serde(default)]
    pub attempt: i64,
    /// The caller-chosen id of the claim the task carries
    /// ([`ClaimRequest::claim_id`](super::ClaimRequest::claim_id)), if any: re-sending that
    /// claim returns this task instead of claiming another.
    #[serde(default)]
    pub claim_id: Option<Uuid>,
}

/// How a task is read from JSON: [`Task`]'s fields, with Drydock's looser forms accepted.
#[derive(Deserialize)]
struct TaskJson {
    #[serde(default = "kind_task")]
    kind: String,
    #[serde(rename = "apiVersion", default = "api_v1")]
    api_version: String,
    task_id: TaskId,
    action: String,
    #[serde(default)]
    parent_task_id: Option<TaskId>,
    #[serde(default)]
    design_ref: Option<String>,
    status: TaskStatus,
    #[serde(default)]
    result: TaskResult,
    #[serde(default)]
    node_filter: Option<NodeFilter>,
    #[serde(default, deserialize_with = "drydock_json::null_as_empty")]
    subtask_id_list: Vec<TaskId>,
    #[serde(deserialize_with = "drydock_json::time")]
    created: DateTime<Utc>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default, deserialize_with = "drydock_json::opt_time")]
    updated: Option<DateTime<Utc>>,
    #[serde(default)]
    retry: i32,
    #[serde(default, deserialize_with = "drydock_json::opt_time")]
    terminated: Option<DateTime<Utc>>,
    #[serde(default)]
    terminated_by: Option<String>,
    #[serde(default, deserialize_with = "null_as_false")]
    terminate: bool,
    #[serde(default)]
    request_context: Option<serde_json::Value>,
    #[serde(default)]
    claimed_by: Option<String>,
    #[serde(default)]
    claim_term: Option<i64>,
    #[serde(default, deserialize_with = "drydock_json::opt_time")]
    claimed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    attempt: i64,
    #[serde(default)]
    claim_id: Option<Uuid>,
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or_default())
}

impl From<TaskJson> for Task {
    fn from(t: TaskJson) -> Self {
        let mut result = t.result;
        for m in &mut result.details.message_list {
            if m.task_id == TaskId::nil() {
                m.task_id = t.task_id;
            }
        }
        Task {
            result,
            kind: t.kind,
            api_version: t.api_version,
            task_id: t.task_id,
            action: t.action,
            parent_task_id: t.parent_task_id,
            design_ref: t.design_ref,
            status: t.status,
            node_filter: t.node_filter,
            subtask_id_list: t.subtask_id_list,
            created: t.created,
            created_by: t.created_by,
            updated: t.updated,
            retry: t.retry,
            terminated: t.terminated,
            terminated_by: t.terminated_by,
            terminate: t.terminate,
            request_context: t.request_context,
            claimed_by: t.claimed_by,
            claim_term: t.claim_term,
            claimed_at: t.claimed_at,
            attempt: t.attempt,
            claim_id: t.claim_id,
        }
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("task_id", &self.task_id)
            .field("action", &self.action)
            .field("parent_task_id", &self.parent_task_id)
            .field(
                "design_ref",
                &self.design_ref.as_deref().map(crate::error::redact_uri),
            )
            .field("status", &self.status)
            .field("result", &self.result)
            .field("node_filter", &self.node_filter)
            .field("subtask_id_list", &self.subtask_id_list)
            .field("created", &self.created)
            .field("created_by", &self.created_by)
            .field("updated", &self.updated)
            .field("retry", &self.retry)
            .field("terminated", &self.terminated)
            .field("terminated_by", &self.terminated_by)
            .field("terminate", &self.terminate)
            .field("request_context", &self.request_context)
            .field("claimed_by", &self.claimed_by)
            .field("claim_term", &self.claim_term)
            .field("claimed_at", &self.claimed_at)
            .field("attempt", &self.attempt)
            .field("claim_id", &self.claim_id)
            .finish_non_exhaustive()
    }
}

pub(super) fn kind_task() -> String {
    "Task".into()
}

pub(super) fn api_v1() -> String {
    "v1".into()
}

/// Longest action name accepted.
pub const MAX_ACTION_LEN: usize = 128;

impl Task {
    /// The task's JSON as Drydock's API shows it, with the request context when asked for.
    pub fn to_json(&self, include_request_context: bool) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if include_request_context {
            if let serde_json::Value::Object(map) = &mut value {
                map.insert(
                    "request_context".into(),
                    self.request_context.clone().unwrap_or_default(),
                );
            }
        }
        value
    }

    /// The claim the task carries, if any: what a claimant passes as the guard of its writes.
    pub fn claim(&self) -> Option<Claim> {
        self.claimed_by.as_ref().map(|instance_id| Claim {
            instance_id: instance_id.clone(),
            term: self.claim_term,
            attempt: self.attempt,
        })
    }

    /// Whether the task is being worked under a claim: `running` or `terminating`.
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }
}

/// What [`crate::TaskStore::recover_orphans`] does with a running task claimed under an older term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanPolicy {
    /// Put it back in the queue (status `queued`, claim cleared).
    #[default]
    Requeue,
    /// Finish it as failed (status `complete`, result `failure`).
    Fail,
}

/// Which tasks [`crate::TaskStore::list_tasks`] returns and [`crate::TaskStore::count_tasks`]
/// counts. All conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks with this action.
    pub action: Option<String>,
    /// Only subtasks of this task.
    pub parent: Option<TaskId>,
    /// Only tasks created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tasks created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Keyset pagination: only tasks after this one in `(created, task_id)` order. Pass the
    /// last task of the previous page.
    pub after: Option<(DateTime<Utc>, TaskId)>,
    /// Only tasks whose claim is this instance's.
    pub claimed_by: Option<String>,
    /// Only tasks claimed under this lease term. With [`TaskFilter::claimed_by`] and status
    /// `running`, the tasks an instance holds under its term: what it reconciles after a
    /// restart or a lost reply.
    pub claim_term: Option<i64>,
    /// At most this many tasks; `None` means all.
    pub limit: Option<u32>,
}

impl TaskFilter {
    /// Refuses a filter no backend can match: a NUL byte in the action or the instance.
    pub fn validate(&self) -> Result<()> {
        if let Some(action) = &self.action {
            no_nul("filter.action", action)?;
        }
        if let Some(instance) = &self.claimed_by {
            validate_instance_id("filter.claimed_by", instance)?;
        }
        Ok(())
    }

    /// Whether `task` meets every condition of the filter but [`TaskFilter::limit`] (the
    /// keyset [`TaskFilter::after`] included): the rule of [`crate::TaskStore::list_tasks`]
    /// and [`crate::TaskStore::count_tasks`].
    pub fn matches(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| task.status == s)
            && self.action.as_ref().is_none_or(|a| &task.action == a)
            && self.parent.is_none_or(|p| task.parent_task_id == Some(p))
            && self.created_after.is_none_or(|c| task.created >= c)
            && self.created_before.is_none_or(|c| task.created < c)
            && self
                .after
                .is_none_or(|key| (task.created, task.task_id) > key)
            && self
                .claimed_by
                .as_ref()
                .is_none_or(|c| task.claimed_by.as_ref() == Some(c))
            && self.claim_term.is_none_or(|c| task.claim_term == Some(c))
    }
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Tasks removed, subtasks included.
    pub tasks: u64,
    /// Result messages removed with them.
    pub messages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewTask;

    #[test]
    fn task_json_has_drydock_shape() {
        let mut t = NewTask::new("deploy_nodes")
            .with_design_ref("file:///site.yaml")
            .to_task();
        t.result.details.error_count = 1;
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["kind"], "Task");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["action"], "deploy_nodes");
        assert_eq!(v["status"], "requested");
        assert_eq!(v["result"]["status"], "incomplete");
        assert_eq!(v["result"]["details"]["errorCount"], 1);
        assert!(v["result"]["details"]["messageList"].is_array());
        assert!(v["subtask_id_list"].is_array());
        assert_eq!(v["task_id"], t.task_id.to_string());
        assert_eq!(v["attempt"], 0);
        let back: Task = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn result_is_a_drydock_status_document_and_request_context_is_hidden() {
        let mut t = NewTask::new("deploy_nodes").to_task();
        t.request_context = Some(serde_json::json!({"user": "shipyard"}));
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["result"]["kind"], "Status");
        assert_eq!(v["result"]["apiVersion"], "v1.0");
        assert_eq!(v["result"]["metadata"], serde_json::json!({}));
        assert!(v.get("request_context").is_none(), "{v}");
        let asked = t.to_json(true);
        assert_eq!(asked["request_context"]["user"], "shipyard");
        let back: Task = serde_json::from_value(asked).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn json_written_by_drydock_reads_back() {
        // The shape of Drydock's Task.to_dict(), as its API returned it.
        let text = r#"{
            "kind": "Task", "apiVersion": "v1",
            "task_id": "11111111-1111-1111-1111-111111111113",
            "action": "deploy_nodes", "parent_task_id": null,
            "design_ref": "deckhand+http://deckhand-int.ucp:9000/api/v1.0/revisions/1/rendered-documents",
            "status": "complete",
            "result": {
                "kind": "Status", "apiVersion": "v1.0", "metadata": {},
                "message": null, "reason": null, "status": "partial_success",
                "successes": null, "failures": ["n2"],
                "links": {"detail_logs": ["http://logs/1", "http://logs/2"]},
                "details": {"errorCount": 1, "messageList": [
                    {"message": "boom", "error": true, "context_type": "node",
                     "context": "n2", "ts": "2017-11-09 14:03:37.000001", "extra": {}}
                ]}
            },
            "node_filter": null, "subtask_id_list": ["11111111-1111-1111-1111-111111111114"],
            "created": "2017-11-09 14:03:36.951263", "created_by": "shipyard",
            "updated": "2017-11-09 14:10:00+00:00", "terminated": null,
            "terminated_by": null, "terminate": null, "retry": 0
        }"#;
        let t: Task = serde_json::from_str(text).unwrap();
        assert_eq!(t.status, TaskStatus::Complete);
        assert_eq!(
            t.created,
            DateTime::parse_from_rfc3339("2017-11-09T14:03:36.951263Z").unwrap()
        );
        assert!(t.updated.is_some());
        assert!(t.result.successes.is_empty());
        assert_eq!(t.result.links.len(), 2);
        assert_eq!(t.result.links[1].href, "http://logs/2");
        assert_eq!(t.result.links[0].rel, "detail_logs");
        assert!(!t.terminate);
        let m = &t.result.details.message_list[0];
        assert_eq!((m.sequence, m.task_id), (0, t.task_id));
        assert_eq!(t.subtask_id_list.len(), 1);
    }

    #[test]
    fn debug_hides_the_design_password() {
        let new = NewTask::new("x").with_design_ref("https://u:hunter2@designs/site.yaml");
        for shown in [format!("{new:?}"), format!("{:?}", new.to_task())] {
            assert!(
                !shown.contains("hunter2") && shown.contains("designs/site.yaml"),
                "{shown}"
            );
        }
    }

    #[test]
    fn live_and_waiting_statuses() {
        assert!(TaskStatus::Running.is_live() && TaskStatus::Terminating.is_live());
        assert!(!TaskStatus::Queued.is_live() && !TaskStatus::Complete.is_live());
        assert!(TaskStatus::Queued.is_waiting() && TaskStatus::Requested.is_waiting());
        assert!(!TaskStatus::Running.is_waiting());
    }

    #[test]
    fn unknown_status_names_field() {
        let e = "runnin".parse::<TaskStatus>().unwrap_err();
        assert!(e.to_string().contains("task.status"), "{e}");
    }
}
