//! The stored forms of the model's values (microsecond timestamps, UUID text, JSON text) and
//! the bind values of the task writes, with SQLite's limit on a value's length. Reading rows
//! back is [`crate::rows`]'s.

use chrono::{DateTime, Utc};
use drydock_state_core::{
    Error, NewTask, Result, ResultStatus, Task, TaskId, TaskStatus, TaskUpdate,
};

use crate::error::corrupt;

/// Microseconds since the Unix epoch, the stored form of every timestamp.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(column: &str, micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(column, "timestamp out of range"))
}

pub(crate) fn from_micros_opt(column: &str, micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
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

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| corrupt(column, "not the JSON expected"))
}

pub(crate) fn from_json_opt<T: serde::de::DeserializeOwned>(
    column: &str,
    text: Option<&str>,
) -> Result<Option<T>> {
    text.map(|t| from_json(column, t)).transpose()
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

/// The bind values of a whole task row as imported, every column as given, in the order
/// [`crate::queries::IMPORT_TASK`] uses them (the task column list's). `result.details` is
/// not a column: messages are imported as rows of their own.
pub(crate) struct TaskRowParams {
    pub task_id: String,
    pub parent_task_id: Option<String>,
    pub action: String,
    pub design_ref: Option<String>,
    pub status: &'static str,
    pub result_status: &'static str,
    pub result_message: Option<String>,
    pub result_reason: Option<String>,
    pub result_successes: String,
    pub result_failures: String,
    pub result_links: String,
    pub node_filter: Option<String>,
    pub subtask_id_list: String,
    pub created: i64,
    pub created_by: Option<String>,
    pub updated: Option<i64>,
    pub retry: i64,
    pub terminated: Option<i64>,
    pub terminated_by: Option<String>,
    pub terminate: bool,
    pub request_context: Option<String>,
    pub claimed_by: Option<String>,
    pub claim_term: Option<i64>,
    pub claimed_at: Option<i64>,
    pub attempt: i64,
    pub claim_id: Option<String>,
}

impl TaskRowParams {
    /// Prepares `task`'s bind values, JSON written as [`NewTaskParams`] and [`UpdateParams`]
    /// write it, after checking every value fits.
    pub(crate) fn of(task: &Task) -> Result<Self> {
        let json_opt = |field: &str, v: Option<&serde_json::Value>| -> Result<Option<String>> {
            v.map(|v| to_json(field, v)).transpose()
        };
        let node_filter = json_opt("task.node_filter", task.node_filter.as_ref())?;
        let request_context = json_opt("task.request_context", task.request_context.as_ref())?;
        let result_successes = to_json("task.result.successes", &task.result.successes)?;
        let result_failures = to_json("task.result.failures", &task.result.failures)?;
        let result_links = to_json("task.result.links", &task.result.links)?;
        let subtask_id_list = id_array(&task.subtask_id_list);
        for (field, text) in [
            ("task.action", Some(task.action.as_str())),
            ("task.design_ref", task.design_ref.as_deref()),
            ("task.result.message", task.result.message.as_deref()),
            ("task.result.reason", task.result.reason.as_deref()),
            ("task.result.successes", Some(result_successes.as_str())),
            ("task.result.failures", Some(result_failures.as_str())),
            ("task.result.links", Some(result_links.as_str())),
            ("task.node_filter", node_filter.as_deref()),
            ("task.subtask_id_list", Some(subtask_id_list.as_str())),
            ("task.created_by", task.created_by.as_deref()),
            ("task.terminated_by", task.terminated_by.as_deref()),
            ("task.request_context", request_context.as_deref()),
            ("task.claimed_by", task.claimed_by.as_deref()),
        ] {
            fits(field, text.unwrap_or_default())?;
        }
        Ok(TaskRowParams {
            task_id: id_text(task.task_id),
            parent_task_id: task.parent_task_id.map(id_text),
            action: task.action.clone(),
            design_ref: task.design_ref.clone(),
            status: task.status.as_str(),
            result_status: task.result.status.as_str(),
            result_message: task.result.message.clone(),
            result_reason: task.result.reason.clone(),
            result_successes,
            result_failures,
            result_links,
            node_filter,
            subtask_id_list,
            created: to_micros(task.created),
            created_by: task.created_by.clone(),
            updated: task.updated.map(to_micros),
            retry: i64::from(task.retry),
            terminated: task.terminated.map(to_micros),
            terminated_by: task.terminated_by.clone(),
            terminate: task.terminate,
            request_context,
            claimed_by: task.claimed_by.clone(),
            claim_term: task.claim_term,
            claimed_at: task.claimed_at.map(to_micros),
            attempt: task.attempt,
            claim_id: task.claim_id.map(uuid_text),
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
