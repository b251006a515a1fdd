//! Reading SQLite rows into the model: one `sqlx::FromRow` struct per row shape, each with
//! the conversion into the model's type (stored values decoded by [`crate::codec`]).

use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BuildData, IdentityKey, Lease,
    Link, Result, ResultMessage, ResultStatus, Task, TaskResult, TaskStatus,
};

use crate::codec::{from_json, from_json_opt, from_micros, from_micros_opt, parse_id};
use crate::error::corrupt;

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
    pub(crate) claimed_by: Option<String>,
    pub(crate) claim_term: Option<i64>,
    claimed_at: Option<i64>,
    pub(crate) attempt: i64,
    claim_id: Option<String>,
}

impl TaskRow {
    /// The task, without its messages (see [`crate::tasks`] for assembly).
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
/// transaction: the task row, and whether the guard's instance holds the live lease with the
/// guard's term (by the database's clock).
#[derive(sqlx::FromRow)]
pub(crate) struct FenceRow {
    #[sqlx(flatten)]
    pub task: TaskRow,
    pub lease_held: bool,
}

impl FenceRow {
    /// The stored status.
    pub(crate) fn status(&self) -> Result<TaskStatus> {
        self.task
            .status
            .parse::<TaskStatus>()
            .map_err(|_| corrupt("tasks.status", "unknown status"))
    }
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
