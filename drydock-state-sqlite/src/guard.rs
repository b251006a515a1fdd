//! The fence of a guarded write: the first statement of its `BEGIN IMMEDIATE` transaction.
//!
//! Every guarded write (and every write with a status rule) is one `BEGIN IMMEDIATE`
//! transaction whose first statement, [`queries::FENCE`], reads the task and whether the
//! guard's lease is live; the checks are made here, in the memory store's order, and only
//! then is the write made. SQLite has one writer at a time, holding the write lock from
//! `BEGIN IMMEDIATE` to commit, so no change of leader, recovery or second claim can commit
//! between the check and the write.

use drydock_state_core::Entity;
use drydock_state_core::{Claim, Error, Result, TaskId};
use sqlx::sqlite::SqliteConnection;

use crate::codec::id_text;
use crate::error::OrStore;
use crate::queries;
use crate::rows::FenceRow;

/// Refuses a guard no stored claim can match, before anything is read.
pub(crate) fn validate(guard: Option<&Claim>) -> Result<()> {
    guard.map_or(Ok(()), Claim::validate)
}

/// The first statement of a guarded write's `BEGIN IMMEDIATE` transaction: reads task
/// `id`'s status and claim and checks `guard` against them, as the memory store does:
/// `NotFound` for an unknown task, then a refusal naming the stored claim unless
/// it is exactly the guard's, then [`drydock_state_core::lease_not_held`] unless, for a guard with a term, its
/// instance holds the live lease with that term by the database's clock. Without a guard
/// it only checks that the task exists. Returns what it read, for the operation's own
/// rules.
pub(crate) async fn fence(
    conn: &mut SqliteConnection,
    id: TaskId,
    guard: Option<&Claim>,
    op: &'static str,
) -> Result<FenceRow> {
    let stored: FenceRow = queries::query_as(queries::FENCE)
        .bind(id_text(id))
        .bind(guard.map(|g| g.instance_id.as_str()))
        .bind(guard.and_then(|g| g.term))
        .fetch_optional(&mut *conn)
        .await
        .or_store(op)?
        .ok_or_else(|| Error::not_found(Entity::Task, id))?;
    let Some(guard) = guard else {
        return Ok(stored);
    };
    guard.check(
        id,
        stored.task.claimed_by.as_deref(),
        stored.task.claim_term,
        stored.task.attempt,
        stored.lease_held,
    )?;
    Ok(stored)
}
