//! Guarded writes: a [`Claim`] bound into the fenced statements of [`crate::queries`], and
//! the one follow-up read that explains a refusal.
//!
//! Every guarded statement checks the guard in the same statement as its write (the stored
//! claim, and the live lease share-locked when the guard has a term) and simply changes no
//! row when a check fails. Only then does the store read the task once more
//! ([`crate::queries::WRITE_REFUSED`]) to say why, in the memory store's order: no such task
//! (`NotFound`), another claim or the lease gone ([`Claim::check`]),
//! then the operation's own rule (`Conflict`). If that read finds nothing wrong, the task
//! changed between the two statements and the write is tried again.

use drydock_state_core::Entity;
use drydock_state_core::{Claim, Error, Result, Task, TaskId};

use crate::error::db_error;
use crate::store::PgStore;
use crate::{queries, rows};

/// How many times a guarded write is tried when its refusal cannot be explained (the task
/// changed between the write and the read that explains it).
pub(crate) const ATTEMPTS: usize = 3;

/// The guard's bind parameters: instance (NULL = unguarded), term and attempt.
pub(crate) fn binds(guard: Option<&Claim>) -> (Option<&str>, Option<i64>, Option<i64>) {
    match guard {
        Some(g) => (Some(g.instance_id.as_str()), g.term, Some(g.attempt)),
        None => (None, None, None),
    }
}

/// Refuses a guard no statement can match before anything is sent.
pub(crate) fn validate(guard: Option<&Claim>) -> Result<()> {
    guard.map_or(Ok(()), Claim::validate)
}

/// What the refusal read found.
pub(crate) struct Stored {
    /// The task as stored, without its messages.
    pub(crate) task: Task,
    /// Whether the guard's instance holds the live lease with the guard's term.
    pub(crate) lease_held: bool,
    /// Whether the subtask being added is already listed (false for other writes).
    pub(crate) listed: bool,
}

impl Stored {
    /// The guard's refusal, if it is refused: another claim first, then a lost lease.
    pub(crate) fn guard_error(&self, guard: Option<&Claim>) -> Option<Error> {
        let t = &self.task;
        guard?
            .check(
                t.task_id,
                t.claimed_by.as_deref(),
                t.claim_term,
                t.attempt,
                self.lease_held,
            )
            .err()
    }
}

/// The error when a guarded write was refused every time yet no reason could be found: the
/// task kept changing. Nothing was written; retryable.
pub(crate) fn kept_changing(op: &str, id: TaskId) -> Error {
    Error::Unavailable {
        message: format!(
            "{op}: task {id} changed while the write was checked; nothing was written, try again"
        ),
        source: None,
    }
}

impl PgStore {
    /// Reads why a guarded write of `op` to task `id` changed nothing; `NotFound` when the
    /// task does not exist. `child` is the subtask being added, if that is the write.
    pub(crate) async fn refused_write(
        &self,
        op: &'static str,
        id: TaskId,
        guard: Option<&Claim>,
        child: Option<TaskId>,
    ) -> Result<Stored> {
        let (by, term, _) = binds(guard);
        let row = queries::query(queries::WRITE_REFUSED)
            .bind(id.0)
            .bind(by)
            .bind(term)
            .bind(child.map(|c| c.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error(op, "task"))?;
        match row {
            Some(row) => rows::refusal(&row),
            None => Err(Error::not_found(Entity::Task, id)),
        }
    }
}
