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
use std::future::Future;

use drydock_state_core::{Claim, Error, Result, Task, TaskId};

use crate::error::OrStore;
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
    /// Runs the guarded write `write` of `op` to task `id` (a statement that checks `guard`
    /// itself and changes nothing when a check fails) until it is done or refused: when it
    /// changes nothing, reads the task once ([`queries::WRITE_REFUSED`]) and refuses in the
    /// memory store's order: no such task, then the guard ([`Stored::guard_error`]), then
    /// `explain`, the operation's own rule, which may also find the write done already
    /// (`Some`). If nothing explains the refusal the task changed in between, and the write is
    /// tried again, [`ATTEMPTS`] times in all.
    pub(crate) async fn guarded<T, W, F>(
        &self,
        op: &'static str,
        id: TaskId,
        guard: Option<&Claim>,
        mut write: W,
        explain: impl Fn(&Stored) -> Result<Option<T>>,
    ) -> Result<T>
    where
        W: FnMut() -> F,
        F: Future<Output = Result<Option<T>>>,
    {
        guard.map_or(Ok(()), Claim::validate)?;
        for _ in 0..ATTEMPTS {
            if let Some(done) = write().await? {
                return Ok(done);
            }
            let stored = self.refused_write(op, id, guard).await?;
            if let Some(refused) = stored.guard_error(guard) {
                return Err(refused);
            }
            if let Some(done) = explain(&stored)? {
                return Ok(done);
            }
        }
        Err(kept_changing(op, id))
    }

    /// Reads why a guarded write of `op` to task `id` changed nothing; `NotFound` when the
    /// task does not exist.
    pub(crate) async fn refused_write(
        &self,
        op: &'static str,
        id: TaskId,
        guard: Option<&Claim>,
    ) -> Result<Stored> {
        refused_in(&self.pool, op, id, guard).await
    }
}

/// [`PgStore::refused_write`] on `executor` (a transaction's connection, say).
pub(crate) async fn refused_in<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    op: &'static str,
    id: TaskId,
    guard: Option<&Claim>,
) -> Result<Stored> {
    let (by, term, _) = binds(guard);
    let row = queries::query(queries::WRITE_REFUSED)
        .bind(id.0)
        .bind(by)
        .bind(term)
        .fetch_optional(executor)
        .await
        .or_store(op)?;
    match row {
        Some(row) => rows::refusal(&row),
        None => Err(Error::not_found(Entity::Task, id)),
    }
}
