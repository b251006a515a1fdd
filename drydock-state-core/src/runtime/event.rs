//! What a runtime reports as it runs: one [`Event`] per change of leadership and per task.

use serde::Serialize;

use crate::model::{ResultStatus, TaskId, TaskStatus};

/// One thing that happened in a [`super::Runtime`]. Read them with
/// [`super::RuntimeHandle::subscribe`]; the `drydock-state worker` command prints one line (or
/// one JSON object, tagged by `event`) for each.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The instance took the lease with a new term and recovered what older terms left
    /// running; it claims from now on.
    Elected {
        /// This instance.
        instance: String,
        /// The new term.
        term: i64,
        /// The tasks of older terms it recovered (requeued, terminated or failed by the
        /// recovery policy), oldest first.
        recovered: Vec<TaskId>,
    },
    /// Another instance holds the lease (or nobody does and this one could not take it).
    /// Reported once per change of holder.
    Follower {
        /// This instance.
        instance: String,
        /// The holder, when one was reported.
        holder: Option<String>,
        /// The holder's term.
        term: Option<i64>,
    },
    /// The instance stopped acting as leader: its handlers were cancelled and none of its
    /// writes is made any more under `term`.
    SteppedDown {
        /// This instance.
        instance: String,
        /// The term it held.
        term: i64,
        /// Why: a renewal denied, or none confirmed before the local deadline.
        reason: String,
    },
    /// The instance gave the lease up (graceful shutdown), so another can take it at once.
    Released {
        /// This instance.
        instance: String,
        /// The term it held.
        term: i64,
    },
    /// A claimed task's handler started.
    Started {
        /// This instance.
        instance: String,
        /// The task.
        task_id: TaskId,
        /// Its action.
        action: String,
        /// Its attempt (the claim's number).
        attempt: i64,
        /// The term it was claimed under.
        term: i64,
    },
    /// A task was finished by the runtime: completed, failed, terminated or requeued, by a
    /// write guarded by its claim.
    Finished {
        /// This instance.
        instance: String,
        /// The task.
        task_id: TaskId,
        /// Its action.
        action: String,
        /// Its attempt.
        attempt: i64,
        /// Its status after the write.
        status: TaskStatus,
        /// Its result status after the write.
        result: ResultStatus,
        /// How long the handler ran, in seconds.
        seconds: f64,
    },
    /// A claimed task was left for the next leader: the lease was lost, the shutdown
    /// deadline passed, or the store refused the finishing write.
    Abandoned {
        /// This instance.
        instance: String,
        /// The task.
        task_id: TaskId,
        /// Its action.
        action: String,
        /// Its attempt.
        attempt: i64,
        /// Why.
        reason: String,
    },
    /// A store call of the runtime's own failed (it is retried).
    StoreError {
        /// This instance.
        instance: String,
        /// What was being done.
        during: &'static str,
        /// The error (never a credential).
        message: String,
    },
    /// The runtime has stopped: nothing runs and the lease is released.
    Stopped {
        /// This instance.
        instance: String,
    },
}
