//! The fence of guarded writes: a [`Claim`] checked against the task row and the lease row
//! read, locked, in the transaction of the write.
//!
//! The task row is locked by the write's own read (`FOR UPDATE` for a write to the task,
//! `LOCK IN SHARE MODE` for an insert under it), so no claim, recovery or requeue of the task
//! commits between the check and the write. When the guard has a term, the lease row is
//! share-locked too, so no change of holder commits in between either: a takeover waits for
//! the write to commit, or the write waits for the takeover and then finds the lease gone.
//! The rule itself is core's, [`Claim::check`], so refusals read the same on every backend.

use drydock_state_core::{Claim, Result, Task};
use sqlx::MySqlConnection;

use crate::error::db_error;
use crate::{queries, rows};

/// Checks `guard` against `task` (read and locked in this transaction on `conn`); when the
/// guard has a term, share-locks the lease row and checks that its instance holds it with
/// that term. `LeaseLost` when refused; `Ok` without a guard.
pub(crate) async fn check(
    conn: &mut MySqlConnection,
    op: &'static str,
    task: &Task,
    guard: Option<&Claim>,
) -> Result<()> {
    let Some(guard) = guard else { return Ok(()) };
    let lease_held = match guard.term {
        Some(term) => lease_held(conn, op, &guard.instance_id, term).await?,
        None => false,
    };
    guard.check(
        task.task_id,
        task.claimed_by.as_deref(),
        task.claim_term,
        task.attempt,
        lease_held,
    )
}

/// Whether `instance_id` holds the live lease with `term`, the lease row share-locked until
/// the transaction on `conn` ends.
pub(crate) async fn lease_held(
    conn: &mut MySqlConnection,
    op: &'static str,
    instance_id: &str,
    term: i64,
) -> Result<bool> {
    let row = queries::query(queries::LEASE_FOR_SHARE)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error(op, "guard"))?;
    match row {
        Some(row) => Ok(rows::lease(&row)?.held_by(instance_id, term)),
        None => Ok(false),
    }
}
