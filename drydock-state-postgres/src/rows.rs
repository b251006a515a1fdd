//! Reading rows into the model, and assembling tasks with their messages.

use chrono::{DateTime, Utc};
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BuildData, IdentityKey, Lease,
    Link, Result, ResultDetails, ResultMessage, Task, TaskId, TaskResult, TreeNode,
};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| crate::error::decode_error(name, &e))
}

/// A `tasks` row as a task, without its messages.
pub(crate) fn task(row: &PgRow) -> Result<Task> {
    let status: String = col(row, "status")?;
    let result_status: String = col(row, "result_status")?;
    let links: serde_json::Value = col(row, "result_links")?;
    let links: Vec<Link> =
        serde_json::from_value(links).map_err(|e| crate::error::corrupt("result_links", e))?;
    let subtasks: Vec<Uuid> = col(row, "subtask_id_list")?;
    Ok(Task {
        kind: "Task".into(),
        api_version: "v1".into(),
        task_id: TaskId(col(row, "task_id")?),
        action: col(row, "action")?,
        parent_task_id: col::<Option<Uuid>>(row, "parent_task_id")?.map(TaskId),
        design_ref: col(row, "design_ref")?,
        status: status
            .parse()
            .map_err(|e| crate::error::corrupt("task status", e))?,
        result: TaskResult {
            status: result_status
                .parse()
                .map_err(|e| crate::error::corrupt("result status", e))?,
            message: col(row, "result_message")?,
            reason: col(row, "result_reason")?,
            successes: col(row, "result_successes")?,
            failures: col(row, "result_failures")?,
            links,
            details: ResultDetails::default(),
        },
        node_filter: col(row, "node_filter")?,
        subtask_id_list: subtasks.into_iter().map(TaskId).collect(),
        created: col(row, "created")?,
        created_by: col(row, "created_by")?,
        updated: col(row, "updated")?,
        retry: col(row, "retry")?,
        terminated: col(row, "terminated")?,
        terminated_by: col(row, "terminated_by")?,
        terminate: col(row, "terminate")?,
        request_context: col(row, "request_context")?,
        claimed_by: col(row, "claimed_by")?,
        claim_term: col(row, "claim_term")?,
        claimed_at: col(row, "claimed_at")?,
        attempt: col(row, "attempt")?,
        claim_id: col(row, "claim_id")?,
    })
}

/// A row of [`crate::queries::WRITE_REFUSED`]: the task as stored and whether the guard's
/// lease is live.
pub(crate) fn refusal(row: &PgRow) -> Result<crate::guard::Stored> {
    Ok(crate::guard::Stored {
        task: task(row)?,
        lease_held: col(row, "lease_held")?,
    })
}

/// Rows of `tasks` as tasks, without their messages.
pub(crate) fn tasks(rows: &[PgRow]) -> Result<Vec<Task>> {
    rows.iter().map(task).collect()
}

/// A `drydock.result_message` row.
pub(crate) fn message(row: &PgRow) -> Result<ResultMessage> {
    Ok(ResultMessage {
        sequence: col(row, "sequence")?,
        task_id: TaskId(col(row, "task_id")?),
        message: col(row, "message")?,
        error: col(row, "error")?,
        context_type: col(row, "context_type")?,
        context: col(row, "context")?,
        ts: col(row, "ts")?,
        extra: col(row, "extra")?,
    })
}

/// A `drydock.build_data` row (`data_element` is NULL when read briefly).
pub(crate) fn build_data(row: &PgRow) -> Result<BuildData> {
    Ok(BuildData {
        node_name: col(row, "node_name")?,
        task_id: TaskId(col(row, "task_id")?),
        collected_date: Some(col::<DateTime<Utc>>(row, "collected_date")?),
        generator: col(row, "generator")?,
        data_format: col(row, "data_format")?,
        data_element: col(row, "data_element")?,
    })
}

/// A `drydock.boot_action` row: a node's boot-action context.
pub(crate) fn boot_action_context(row: &PgRow) -> Result<BootActionContext> {
    Ok(BootActionContext {
        node_name: col(row, "node_name")?,
        task_id: TaskId(col(row, "task_id")?),
        identity_key: identity_key(row)?,
    })
}

/// A `drydock.boot_action_status` row: a boot action, id and key byte for byte.
pub(crate) fn boot_action(row: &PgRow) -> Result<BootAction> {
    let id: Vec<u8> = col(row, "action_id")?;
    let status: String = col(row, "action_status")?;
    Ok(BootAction {
        action_id: BootActionId::from_slice(&id)
            .map_err(|e| crate::error::corrupt("boot_action_status.action_id", e))?,
        node_name: col(row, "node_name")?,
        action_name: col(row, "action_name")?,
        task_id: TaskId(col(row, "task_id")?),
        identity_key: identity_key(row)?,
        action_status: status
            .parse()
            .map_err(|e| crate::error::corrupt("boot action status", e))?,
    })
}

/// The `previous_status` of a row of [`crate::queries::SET_BOOT_ACTION_STATUS`].
pub(crate) fn previous_status(row: &PgRow) -> Result<BootActionStatus> {
    let status: String = col(row, "previous_status")?;
    status
        .parse()
        .map_err(|e| crate::error::corrupt("boot action status", e))
}

fn identity_key(row: &PgRow) -> Result<IdentityKey> {
    let key: Vec<u8> = col(row, "identity_key")?;
    IdentityKey::from_slice(&key).map_err(|e| crate::error::corrupt("identity_key", e))
}

/// A row of [`crate::queries::TASK_TREE`]: the id as listed, its depth, and its task with
/// messages (`None` when the task columns are NULL: listed but not stored).
pub(crate) fn tree_node(row: &PgRow) -> Result<TreeNode> {
    let depth: i32 = col(row, "tree_depth")?;
    let found: Option<Uuid> = col(row, "task_id")?;
    Ok(TreeNode {
        depth: u32::try_from(depth).map_err(|e| crate::error::corrupt("tree depth", e))?,
        task_id: TaskId(col(row, "tree_id")?),
        task: found.map(|_| assembled(row)).transpose()?,
    })
}

/// A `drydock.active_instance` row.
pub(crate) fn lease(row: &PgRow) -> Result<Lease> {
    Ok(Lease {
        instance_id: col(row, "instance_id")?,
        term: col(row, "term")?,
        acquired_at: col(row, "acquired_at")?,
        renewed_at: col(row, "renewed_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

/// A task row of a statement that joins its messages as parallel arrays (the `msg_*`
/// columns of `with_messages!` in [`crate::queries`]): the task with its messages attached,
/// in sequence order, and its error count.
pub(crate) fn assembled(row: &PgRow) -> Result<Task> {
    let mut task = task(row)?;
    // No messages: every array is NULL.
    let Some(sequences) = col::<Option<Vec<i64>>>(row, "msg_sequence")? else {
        return Ok(task);
    };
    let texts: Vec<String> = col(row, "msg_message")?;
    let errors: Vec<bool> = col(row, "msg_error")?;
    let context_types: Vec<String> = col(row, "msg_context_type")?;
    let contexts: Vec<String> = col(row, "msg_context")?;
    let stamps: Vec<DateTime<Utc>> = col(row, "msg_ts")?;
    // Aggregated as text (see `with_messages!`), parsed here in the order written.
    let extras: Vec<Option<String>> = col(row, "msg_extra")?;
    let extras = extras
        .into_iter()
        .map(|text| {
            text.map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| crate::error::corrupt("result_message.extra", e))
        })
        .collect::<Result<Vec<Option<serde_json::Value>>>>()?;
    let n = sequences.len();
    if [
        texts.len(),
        errors.len(),
        context_types.len(),
        contexts.len(),
        stamps.len(),
        extras.len(),
    ]
    .iter()
    .any(|&len| len != n)
    {
        return Err(crate::error::corrupt(
            "result messages",
            "aggregated columns of unequal length",
        ));
    }
    let mut list: Vec<ResultMessage> = sequences
        .into_iter()
        .zip(texts)
        .zip(errors)
        .zip(context_types)
        .zip(contexts)
        .zip(stamps)
        .zip(extras)
        .map(
            |((((((sequence, message), error), context_type), context), ts), extra)| {
                ResultMessage {
                    sequence,
                    task_id: task.task_id,
                    message,
                    error,
                    context_type,
                    context,
                    ts,
                    extra,
                }
            },
        )
        .collect();
    // The statement aggregates in index order; an aggregate's input order is not a promise
    // PostgreSQL makes, so check it (a linear pass when it holds, as it does).
    if !list.is_sorted_by_key(|m| m.sequence) {
        list.sort_by_key(|m| m.sequence);
    }
    task.result.details = ResultDetails {
        error_count: list.iter().filter(|m| m.error).count() as u64,
        message_list: list,
    };
    Ok(task)
}
