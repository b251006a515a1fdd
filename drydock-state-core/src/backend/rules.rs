//! The rules every backend applies the same way: which tasks take new subtasks, what purge
//! keeps, what termination and orphan recovery do to a task, and the purge cutoff.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{now, retention_too_large};
use crate::error::{Entity, Error, Result};
use crate::model::{BuildData, OrphanPolicy, ResultStatus, Task, TaskStatus};
#[cfg(doc)]
use crate::store::TaskStore;

/// Refuses new work (a subtask) under `parent` when it is finished, being stopped or marked
/// for termination.
pub fn refuse_new_work_under(parent: &Task) -> Result<()> {
    if parent.status.is_terminal() || parent.status == TaskStatus::Terminating || parent.terminate {
        return Err(Error::conflict(
            Entity::Task,
            parent.task_id,
            format!(
                "is {}{}; it takes no new subtasks",
                parent.status,
                if parent.terminate && !parent.status.is_terminal() {
                    " and marked for termination"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// Whether a task in `status` keeps its whole tree from being purged, however old the root:
/// running and terminating tasks are live work a worker may still be writing. Requested and
/// queued leftovers are purged with their trees, as Drydock did.
pub fn purge_keeps(status: TaskStatus) -> bool {
    status.is_live()
}

/// The status [`TaskStore::terminate_task`] gives a task stored in `status`: a waiting task
/// is terminated at once, a running one is left to its worker to wind down, a finished one
/// stays as it is.
pub fn terminated_status(status: TaskStatus) -> TaskStatus {
    match status {
        TaskStatus::Requested | TaskStatus::Queued => TaskStatus::Terminated,
        TaskStatus::Running | TaskStatus::Terminating => TaskStatus::Terminating,
        done => done,
    }
}

/// The reason recorded on a task failed by [`OrphanPolicy::Fail`].
pub const ORPHAN_FAILURE_REASON: &str = "orphaned by a change of leader";

/// What [`TaskStore::recover_orphans`] does to one orphaned task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Back to the queue, claim ended.
    Requeue,
    /// Complete with result `failure`, claim ended.
    Fail,
    /// Terminated, claim ended: it was terminating, or marked for termination.
    Terminate,
}

impl Recovery {
    /// What happens to `task` (running or terminating, of an older term) under `policy`.
    pub fn of(task: &Task, policy: OrphanPolicy) -> Self {
        if task.status == TaskStatus::Terminating
            || (task.terminate && policy == OrphanPolicy::Requeue)
        {
            return Recovery::Terminate;
        }
        match policy {
            OrphanPolicy::Requeue => Recovery::Requeue,
            OrphanPolicy::Fail => Recovery::Fail,
        }
    }

    /// The status the task ends in.
    pub fn status(self) -> TaskStatus {
        match self {
            Recovery::Requeue => TaskStatus::Queued,
            Recovery::Fail => TaskStatus::Complete,
            Recovery::Terminate => TaskStatus::Terminated,
        }
    }

    /// The stored name of the status the task ends in.
    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    /// Applies the recovery to `task` as every backend does.
    pub fn apply(self, task: &mut Task, now: DateTime<Utc>) {
        task.status = self.status();
        if self == Recovery::Fail {
            task.result.status = ResultStatus::Failure;
            task.result.reason = Some(ORPHAN_FAILURE_REASON.into());
        }
        task.claimed_by = None;
        task.claim_term = None;
        task.claimed_at = None;
        task.claim_id = None;
        task.updated = Some(now);
    }
}

/// The result message [`TaskStore::recover_orphans`] leaves on each task it recovers: who
/// held it, under which term and attempt, and what was done.
pub fn orphan_message(task: &Task, current_term: i64, recovery: Recovery) -> String {
    let what = match recovery {
        Recovery::Requeue => "requeued",
        Recovery::Fail => "failed",
        Recovery::Terminate => "terminated",
    };
    format!(
        "orphaned: claimed by {} under lease term {} (attempt {}), but leadership passed to term {current_term}; {what}",
        task.claimed_by.as_deref().unwrap_or("an unknown instance"),
        task.claim_term.unwrap_or_default(),
        task.attempt,
    )
}

/// The instant before which a purge removes task trees, refusing a zero retention.
pub fn purge_cutoff(older_than: Duration) -> Result<DateTime<Utc>> {
    if older_than.is_zero() {
        return Err(Error::invalid(
            "purge.older_than",
            "must be greater than zero",
        ));
    }
    let age = chrono::Duration::from_std(older_than).map_err(|_| retention_too_large())?;
    now()
        .checked_sub_signed(age)
        .ok_or_else(retention_too_large)
}

/// The build data of an import by content, the rule of [`crate::ImportStore::import`] for rows
/// that have no key: each distinct content once (what a backend counts the stored copies of),
/// then which elements to write given those counts.
#[derive(Debug)]
pub struct BuildDataContents<'a> {
    distinct: Vec<&'a BuildData>,
    of: Vec<usize>,
}

impl<'a> BuildDataContents<'a> {
    /// The distinct contents of `batch`, in first-seen order.
    pub fn of(batch: &'a [BuildData]) -> Self {
        let mut index: HashMap<&BuildData, usize> = HashMap::new();
        let mut distinct = Vec::new();
        let of = batch
            .iter()
            .map(|data| {
                *index.entry(data).or_insert_with(|| {
                    distinct.push(data);
                    distinct.len() - 1
                })
            })
            .collect();
        BuildDataContents { distinct, of }
    }

    /// Each distinct content once, in first-seen order.
    pub fn distinct(&self) -> &[&'a BuildData] {
        &self.distinct
    }

    /// For each element of the batch, whether to write it, given `stored[i]`, the copies of
    /// `distinct()[i]` the store held before the import: the n-th copy in the batch is present
    /// when at least n are stored. A missing count is zero.
    pub fn to_write(&self, stored: &[u64]) -> Vec<bool> {
        let mut left: Vec<u64> = (0..self.distinct.len())
            .map(|i| stored.get(i).copied().unwrap_or(0))
            .collect();
        self.of
            .iter()
            .map(|&i| {
                if left[i] > 0 {
                    left[i] -= 1;
                    false
                } else {
                    true
                }
            })
            .collect()
    }
}

/// Whether `error` is a refusal of one write by the store's rules (`NotFound`, `LeaseLost`,
/// `Conflict`, `AlreadyExists`, `InvalidInput`), which [`crate::TaskStore::update_tasks`]
/// answers in that write's own slot, rather than a failure of the store itself, which ends
/// the whole call.
pub fn is_refusal(error: &crate::error::Error) -> bool {
    use crate::error::Error;
    matches!(
        error,
        Error::NotFound { .. }
            | Error::LeaseLost(_)
            | Error::Conflict { .. }
            | Error::AlreadyExists { .. }
            | Error::InvalidInput { .. }
    )
}
