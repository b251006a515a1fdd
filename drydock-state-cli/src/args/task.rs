//! `task`: create, read, list, claim, update and terminate tasks.

use chrono::{DateTime, Utc};
use clap::{value_parser, Args, Subcommand, ValueEnum};
use drydock_state::{Link, ResultStatus, TaskId, TaskStatus, TaskUpdate};
use serde_json::Value;
use uuid::Uuid;

use super::{parse, GuardArgs};

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Create a task.
    Create {
        /// The action, e.g. deploy_nodes.
        #[arg(long)]
        action: String,
        /// The site design URI.
        #[arg(long, value_name = "URI")]
        design_ref: Option<String>,
        /// The parent task; the new task is appended to its subtasks.
        #[arg(long, value_name = "ID")]
        parent: Option<TaskId>,
        /// The node filter, as JSON.
        #[arg(long, value_name = "JSON", value_parser = parse::json)]
        node_filter: Option<Value>,
        /// The initial status.
        #[arg(long, value_enum, default_value_t = InitialStatus::Requested)]
        status: InitialStatus,
        /// Back-date the creation (RFC 3339, kept to the microsecond), for imports and
        /// retention tests. Default: now.
        #[arg(long, value_name = "RFC3339", value_parser = parse::rfc3339)]
        created: Option<DateTime<Utc>>,
        /// Who creates the task.
        #[arg(long, value_name = "NAME", default_value = "drydock-state-cli")]
        created_by: String,
    },
    /// Show a task with its messages; with --layers, --subtask-errors or --build-data, the
    /// task view Drydock's API returned (`GET /api/v1.0/tasks/{id}`).
    Get {
        /// The task id.
        id: TaskId,
        /// Show the task tree down this many layers (the task is layer 1; -1 for all), as a
        /// map of task id to task (null for an id listed but not stored) with `init_task_id`.
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = value_parser!(i32).range(-1..))]
        layers: Option<i32>,
        /// Add `subtask_errors`: the result of every subtask, at any depth, that reported
        /// errors.
        #[arg(long)]
        subtask_errors: bool,
        /// Add each shown task's `build_data`.
        #[arg(long)]
        build_data: bool,
    },
    /// List tasks, oldest first.
    List {
        /// Only tasks in this status.
        #[arg(long, value_parser = parse::status)]
        status: Option<TaskStatus>,
        /// Only tasks with this action.
        #[arg(long)]
        action: Option<String>,
        /// Only subtasks of this task.
        #[arg(long, value_name = "ID")]
        parent: Option<TaskId>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Claim the oldest queued task (prints it, or null when nothing is queued).
    Claim {
        /// Only tasks with this action (repeatable).
        #[arg(long = "action", value_name = "A")]
        actions: Vec<String>,
        /// The claiming instance.
        #[arg(long, value_name = "ID", default_value_t = parse::default_instance())]
        instance: String,
        /// Fence the claim with this lease term.
        #[arg(long, value_name = "N")]
        term: Option<i64>,
        /// Name the claim with a UUID of your choosing: re-sending the same claim (after an
        /// error that left you unsure whether it was made) returns the task already claimed
        /// under it instead of claiming another.
        #[arg(long, value_name = "UUID", value_parser = parse::uuid)]
        claim_id: Option<Uuid>,
    },
    /// Change the fields of a task: status, result, links, retry count.
    Update(TaskUpdateArgs),
    /// Change a task's status.
    SetStatus {
        /// The task id.
        id: TaskId,
        /// The new status.
        #[arg(value_parser = parse::status)]
        status: TaskStatus,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// List a task's subtasks, in the order they were added.
    Subtasks {
        /// The parent task id.
        id: TaskId,
        /// Only those not finished.
        #[arg(long, conflicts_with = "complete")]
        active: bool,
        /// Only those finished (complete or terminated).
        #[arg(long)]
        complete: bool,
    },
    /// Terminate a task.
    Terminate {
        /// The task id.
        id: TaskId,
        /// Who terminates it.
        #[arg(long, value_name = "NAME", default_value = "drydock-state-cli")]
        by: String,
    },
}

#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("fields")
        .required(true)
        .multiple(true)
        .args(["status", "result_status", "result_message", "result_reason", "successes", "failures", "links", "retry"])
))]
pub struct TaskUpdateArgs {
    /// The task id.
    pub id: TaskId,
    /// The new status.
    #[arg(long, value_name = "S", value_parser = parse::status)]
    pub status: Option<TaskStatus>,
    /// How the work went.
    #[arg(long, value_name = "R", value_parser = parse::result_status)]
    pub result_status: Option<ResultStatus>,
    /// The result's one-line summary.
    #[arg(long, value_name = "M")]
    pub result_message: Option<String>,
    /// Why the work did not succeed.
    #[arg(long, value_name = "M")]
    pub result_reason: Option<String>,
    /// A target that succeeded (repeatable; replaces the stored list).
    #[arg(long = "success", value_name = "NODE")]
    pub successes: Vec<String>,
    /// A target that failed (repeatable; replaces the stored list).
    #[arg(long = "failure", value_name = "NODE")]
    pub failures: Vec<String>,
    /// A result link (repeatable; replaces the stored list).
    #[arg(long = "link", value_name = "REL=HREF", value_parser = parse::link)]
    pub links: Vec<Link>,
    /// The retry count.
    #[arg(long, value_name = "N", value_parser = value_parser!(i32).range(0..))]
    pub retry: Option<i32>,
    #[command(flatten)]
    pub guard: GuardArgs,
}

impl TaskUpdateArgs {
    /// The update the flags describe.
    pub fn update(&self) -> TaskUpdate {
        let mut update = TaskUpdate::new();
        if let Some(status) = self.status {
            update = update.status(status);
        }
        if let Some(status) = self.result_status {
            update = update.result_status(status);
        }
        if let Some(message) = &self.result_message {
            update = update.result_message(Some(message.as_str()));
        }
        if let Some(reason) = &self.result_reason {
            update = update.result_reason(Some(reason.as_str()));
        }
        if !self.successes.is_empty() {
            update = update.successes(self.successes.iter().map(String::as_str));
        }
        if !self.failures.is_empty() {
            update = update.failures(self.failures.iter().map(String::as_str));
        }
        if !self.links.is_empty() {
            update = update.links(self.links.iter().cloned());
        }
        if let Some(retry) = self.retry {
            update = update.retry(retry);
        }
        update
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitialStatus {
    Requested,
    Queued,
}
