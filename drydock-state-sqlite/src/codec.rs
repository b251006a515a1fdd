//! Conversion between the model and SQLite rows: microsecond timestamps, UUID text, JSON text.

use chrono::{DateTime, Utc};
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BuildData, Error, IdentityKey,
    Lease, Link, NewTask, Result, ResultMessage, ResultStatus, Task, TaskId, TaskResult,
    TaskStatus, TaskUpdate,
};

/// Microseconds since the Unix epoch, the stored form of every timestamp.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(column: &str, micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(column, "timestamp out of range"))
}

fn from_micros_opt(column: &str, micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(|m| from_micros(column, m)).transpose()
}

/// The stored form of an id: canonical lowercase hyphenated text.
pub(crate) fn id_text(id: TaskId) -> String {
    uuid_text(id.0)
}

/// The stored form of any UUID (a claim id): canonical lowercase hyphenated text, as ids.
pub(crate) fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_id(column: &str, text: &str) -> Result<TaskId> {
    uuid::Uuid::parse_str(text)
        .map(TaskId)
        .map_err(|_| corrupt(column, "not a UUID"))
}

/// A JSON array of ids, for the statements that take a list as one parameter.
pub(crate) fn id_array<'a>(ids: impl IntoIterator<Item = &'a TaskId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id_text(*id)).collect();
    serde_json::Value::from(ids).to_string()
}

pub(crate) fn to_json<T: serde::Serialize>(field: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid(field, format!("cannot be written as JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| corrupt(column, "not the JSON expected"))
}

fn from_json_opt<T: serde::de::DeserializeOwned>(
    column: &str,
    text: Option<&str>,
) -> Result<Option<T>> {
    text.map(|t| from_json(column, t)).transpose()
}

/// A stored value this backend cannot read back: the file was changed behind its back.
pub(crate) fn corrupt(column: &str, why: &str) -> Error {
    Error::Backend {
        message: format!("sqlite: stored {column} is unreadable: {why}"),
        source: None,
    }
}

/// One row of `drydock_tasks`, as the task column list selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    task_id: String,
    parent_task_id: Option<String>,
    action: String,
    design_ref: Option<String>,
    status: String,
    result_status: String,
    result_message: Option<String>,
    result_reason: Option<String>,
    result_successes: String,
    result_failures: String,
    result_links: String,
    node_filter: Option<String>,
    subtask_id_list: String,
    created: i64,
    created_by: Option<String>,
    updated: Option<i64>,
    retry: i64,
    terminated: Option<i64>,
    terminated_by: Option<String>,
    terminate: bool,
    request_context: Option<String>,
    claimed_by: Option<String>,
    claim_term: Option<i64>,
    claimed_at: Option<i64>,
    attempt: i64,
    claim_id: Option<String>,
}

impl TaskRow {
    /// The task, without its messages (see [`crate::store`] for assembly).
    pub(crate) fn into_task(self) -> Result<Task> {
        let subtask_ids: Vec<String> = from_json("tasks.subtask_id_list", &self.subtask_id_list)?;
        Ok(Task {
            kind: "Task".into(),
            api_version: "v1".into(),
            task_id: parse_id("tasks.task_id", &self.task_id)?,
            action: self.action,
            parent_task_id: self
                .parent_task_id
                .as_deref()
                .map(|p| parse_id("tasks.parent_task_id", p))
                .transpose()?,
            design_ref: self.design_ref,
            status: self
                .status
                .parse::<TaskStatus>()
                .map_err(|_| corrupt("tasks.status", "unknown status"))?,
            result: TaskResult {
                status: self
                    .result_status
                    .parse::<ResultStatus>()
                    .map_err(|_| corrupt("tasks.result_status", "unknown status"))?,
                message: self.result_message,
                reason: self.result_reason,
                successes: from_json("tasks.result_successes", &self.result_successes)?,
                failures: from_json("tasks.result_failures", &self.result_failures)?,
                links: from_json::<Vec<Link>>("tasks.result_links", &self.result_links)?,
                details: Default::default(),
            },
            node_filter: from_json_opt("tasks.node_filter", self.node_filter.as_deref())?,
            subtask_id_list: subtask_ids
                .iter()
                .map(|s| parse_id("tasks.subtask_id_list", s))
                .collect::<Result<_>>()?,
            created: from_micros("tasks.created", self.created)?,
            created_by: self.created_by,
            updated: from_micros_opt("tasks.updated", self.updated)?,
            retry: i32::try_from(self.retry).map_err(|_| corrupt("tasks.retry", "too large"))?,
            terminated: from_micros_opt("tasks.terminated", self.terminated)?,
            terminated_by: self.terminated_by,
            terminate: self.terminate,
            request_context: from_json_opt(
                "tasks.request_context",
                self.request_context.as_deref(),
            )?,
            claimed_by: self.claimed_by,
            claim_term: self.claim_term,
            claimed_at: from_micros_opt("tasks.claimed_at", self.claimed_at)?,
            attempt: self.attempt,
            claim_id: self
                .claim_id
                .as_deref()
                .map(|c| {
                    uuid::Uuid::parse_str(c).map_err(|_| corrupt("tasks.claim_id", "not a UUID"))
                })
                .transpose()?,
        })
    }
}

/// What a guarded write checks of the stored task, read in the write's own `BEGIN IMMEDIATE`
/// transaction: its status, termination mark and claim, and whether the guard's instance
/// holds the live lease with the guard's term (by the database's clock).
#[derive(sqlx::FromRow)]
pub(crate) struct FenceRow {
    pub status: String,
    pub terminate: bool,
    pub claimed_by: Option<String>,
    pub claim_term: Option<i64>,
    pub attempt: i64,
    pub lease_held: bool,
}

impl FenceRow {
    /// The stored status.
    pub(crate) fn status(&self) -> Result<TaskStatus> {
        self.status
            .parse::<TaskStatus>()
            .map_err(|_| corrupt("tasks.status", "unknown status"))
    }
}

/// The bind values of a new task, in the order [`crate::queries::CREATE_TASK`] uses them.
pub(crate) struct NewTaskParams {
    pub task_id: String,
    pub parent_task_id: Option<String>,
    pub action: String,
    pub design_ref: Option<String>,
    pub status: &'static str,
    pub node_filter: Option<String>,
    pub created: i64,
    pub created_by: Option<String>,
    pub retry: i64,
    pub request_context: Option<String>,
}

impl NewTaskParams {
    /// Validates `task` and prepares its bind values.
    pub(crate) fn of(task: &NewTask) -> Result<Self> {
        task.validate()?;
        let node_filter = task
            .node_filter
            .as_ref()
            .map(|v| to_json("task.node_filter", v))
            .transpose()?;
        let request_context = task
            .request_context
            .as_ref()
            .map(|v| to_json("task.request_context", v))
            .transpose()?;
        for (field, text) in [
            ("task.node_filter", node_filter.as_deref()),
            ("task.request_context", request_context.as_deref()),
            ("task.design_ref", task.design_ref.as_deref()),
            ("task.created_by", task.created_by.as_deref()),
        ] {
            fits(field, text.unwrap_or_default())?;
        }
        Ok(NewTaskParams {
            task_id: id_text(task.task_id),
            parent_task_id: task.parent_task_id.map(id_text),
            action: task.action.clone(),
            design_ref: task.design_ref.clone(),
            status: task.status.as_str(),
            node_filter,
            created: to_micros(task.created),
            created_by: task.created_by.clone(),
            retry: i64::from(task.retry),
            request_context,
        })
    }
}

/// The bind values of a [`TaskUpdate`], in the order [`crate::queries::UPDATE_TASK`] uses
/// them: `None` keeps the stored value; for the nullable fields a `set_` flag says whether
/// the value (which may be NULL) is written.
pub(crate) struct UpdateParams {
    pub status: Option<&'static str>,
    pub result_status: Option<&'static str>,
    pub set_result_message: bool,
    pub result_message: Option<String>,
    pub set_result_reason: bool,
    pub result_reason: Option<String>,
    pub result_successes: Option<String>,
    pub result_failures: Option<String>,
    pub result_links: Option<String>,
    pub retry: Option<i64>,
    pub set_node_filter: bool,
    pub node_filter: Option<String>,
    pub set_design_ref: bool,
    pub design_ref: Option<String>,
    pub set_parent: bool,
    pub parent_task_id: Option<String>,
    pub ends_claim: bool,
}

impl UpdateParams {
    /// Validates `update` of task `id` and prepares its bind values.
    pub(crate) fn of(id: TaskId, update: &TaskUpdate) -> Result<Self> {
        update.validate(id)?;
        let node_filter = match &update.node_filter {
            Some(Some(v)) => Some(to_json("task.node_filter", v)?),
            _ => None,
        };
        let json = |field: &str, v: Option<&Vec<_>>| -> Result<Option<String>> {
            v.map(|v| to_json(field, v)).transpose()
        };
        let result_successes = json("task.result.successes", update.successes.as_ref())?;
        let result_failures = json("task.result.failures", update.failures.as_ref())?;
        let result_links = update
            .links
            .as_ref()
            .map(|l| to_json("task.result.links", l))
            .transpose()?;
        let result_message = update.result_message.clone().flatten();
        let result_reason = update.result_reason.clone().flatten();
        let design_ref = update.design_ref.clone().flatten();
        for (field, text) in [
            ("task.node_filter", node_filter.as_deref()),
            ("task.result.message", result_message.as_deref()),
            ("task.result.reason", result_reason.as_deref()),
            ("task.design_ref", design_ref.as_deref()),
            ("task.result.successes", result_successes.as_deref()),
            ("task.result.failures", result_failures.as_deref()),
            ("task.result.links", result_links.as_deref()),
        ] {
            fits(field, text.unwrap_or_default())?;
        }
        Ok(UpdateParams {
            status: update.status.map(TaskStatus::as_str),
            result_status: update.result_status.map(ResultStatus::as_str),
            set_result_message: update.result_message.is_some(),
            result_message,
            set_result_reason: update.result_reason.is_some(),
            result_reason,
            result_successes,
            result_failures,
            result_links,
            retry: update.retry.map(i64::from),
            set_node_filter: update.node_filter.is_some(),
            node_filter,
            set_design_ref: update.design_ref.is_some(),
            design_ref,
            set_parent: update.parent_task_id.is_some(),
            parent_task_id: update.parent_task_id.flatten().map(id_text),
            ends_claim: update.ends_claim(),
        })
    }
}

/// The longest text or JSON value stored: SQLite's default `SQLITE_MAX_LENGTH`, one billion
/// bytes. Longer is refused up front, naming the field, rather than failing deep in SQLite.
pub const MAX_VALUE_BYTES: usize = 1_000_000_000;

/// Refuses a value SQLite cannot hold, naming the field.
pub(crate) fn fits(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes; SQLite holds at most {MAX_VALUE_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// One row of `drydock_result_messages`.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    sequence: i64,
    task_id: String,
    message: String,
    error: bool,
    context_type: String,
    context: String,
    ts: i64,
    extra: Option<String>,
}

impl MessageRow {
    pub(crate) fn into_message(self) -> Result<ResultMessage> {
        Ok(ResultMessage {
            sequence: self.sequence,
            task_id: parse_id("result_messages.task_id", &self.task_id)?,
            message: self.message,
            error: self.error,
            context_type: self.context_type,
            context: self.context,
            ts: from_micros("result_messages.ts", self.ts)?,
            extra: from_json_opt("result_messages.extra", self.extra.as_deref())?,
        })
    }
}

/// One row of `drydock_build_data`; `data_element` is NULL when read briefly.
#[derive(sqlx::FromRow)]
pub(crate) struct BuildDataRow {
    node_name: String,
    task_id: String,
    collected_date: i64,
    generator: String,
    data_format: String,
    data_element: Option<String>,
}

impl BuildDataRow {
    pub(crate) fn into_build_data(self) -> Result<BuildData> {
        Ok(BuildData {
            node_name: self.node_name,
            task_id: parse_id("build_data.task_id", &self.task_id)?,
            collected_date: Some(from_micros(
                "build_data.collected_date",
                self.collected_date,
            )?),
            generator: self.generator,
            data_format: self.data_format,
            data_element: self.data_element,
        })
    }
}

/// The row of `drydock_active_instance`.
#[derive(sqlx::FromRow)]
pub(crate) struct LeaseRow {
    instance_id: String,
    term: i64,
    acquired_at: i64,
    renewed_at: i64,
    expires_at: i64,
}

impl LeaseRow {
    pub(crate) fn into_lease(self) -> Result<Lease> {
        Ok(Lease {
            instance_id: self.instance_id,
            term: self.term,
            acquired_at: from_micros("active_instance.acquired_at", self.acquired_at)?,
            renewed_at: from_micros("active_instance.renewed_at", self.renewed_at)?,
            expires_at: from_micros("active_instance.expires_at", self.expires_at)?,
        })
    }
}

/// One row of `drydock_boot_action`: a node's boot-action context.
#[derive(sqlx::FromRow)]
pub(crate) struct BootActionContextRow {
    node_name: String,
    task_id: String,
    identity_key: Vec<u8>,
}

impl BootActionContextRow {
    pub(crate) fn into_context(self) -> Result<BootActionContext> {
        Ok(BootActionContext {
            node_name: self.node_name,
            task_id: parse_id("boot_action.task_id", &self.task_id)?,
            identity_key: identity_key("boot_action.identity_key", &self.identity_key)?,
        })
    }
}

/// One row of `drydock_boot_action_status`, as the boot action column list selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct BootActionRow {
    action_id: Vec<u8>,
    node_name: String,
    action_name: String,
    task_id: String,
    identity_key: Vec<u8>,
    action_status: String,
}

impl BootActionRow {
    pub(crate) fn into_boot_action(self) -> Result<BootAction> {
        Ok(BootAction {
            action_id: BootActionId::from_slice(&self.action_id)
                .map_err(|_| corrupt("boot_action_status.action_id", "not 16 bytes"))?,
            node_name: self.node_name,
            action_name: self.action_name,
            task_id: parse_id("boot_action_status.task_id", &self.task_id)?,
            identity_key: identity_key("boot_action_status.identity_key", &self.identity_key)?,
            action_status: self
                .action_status
                .parse::<BootActionStatus>()
                .map_err(|_| corrupt("boot_action_status.action_status", "unknown status"))?,
        })
    }
}

/// A boot action read for a status update, with whether its task still exists.
#[derive(sqlx::FromRow)]
pub(crate) struct BootActionForStatusRow {
    #[sqlx(flatten)]
    pub action: BootActionRow,
    pub task_exists: bool,
}

fn identity_key(column: &str, bytes: &[u8]) -> Result<IdentityKey> {
    IdentityKey::from_slice(bytes).map_err(|_| corrupt(column, "not 32 bytes"))
}
