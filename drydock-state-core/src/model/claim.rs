//! Claims: how a task is handed to one worker, and the guard every write of that worker carries.
//!
//! A claim is named by the claiming instance, the lease term it claimed under (if fenced) and
//! the task's attempt number, which rises by one on every claim. A write made with a guard is
//! refused with [`Error::LeaseLost`], and nothing is written, unless the stored task carries
//! exactly that claim and, when the guard has a term, the instance still holds the live lease
//! with that term. Backends check both in the same statement or transaction as the write.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{no_nul, validate_instance_id, TaskId};
use crate::error::{Entity, Error, Result};

/// The claim a task carries, and the guard of a claimant's writes.
///
/// Take it from the claimed task ([`super::Task::claim`]) and pass it to every write you make
/// while working the task; a write from a claim that has ended (the task was recovered,
/// requeued, or claimed again) is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// The claiming instance.
    pub instance_id: String,
    /// The lease term the claim was made under; `None` for an unfenced claim.
    pub term: Option<i64>,
    /// The task's attempt number when claimed.
    pub attempt: i64,
}

impl Claim {
    /// A guard for `instance_id`'s claim number `attempt`, made under `term`.
    pub fn new(instance_id: impl Into<String>, term: Option<i64>, attempt: i64) -> Self {
        Claim {
            instance_id: instance_id.into(),
            term,
            attempt,
        }
    }

    /// Refuses a guard no backend can match: a NUL byte in the instance id.
    pub fn validate(&self) -> Result<()> {
        validate_instance_id("guard.instance_id", &self.instance_id)
    }

    /// Whether a task storing this claim (`claimed_by`, `claim_term`, `attempt`) carries
    /// exactly this claim.
    pub fn matches(&self, claimed_by: Option<&str>, claim_term: Option<i64>, attempt: i64) -> bool {
        claimed_by == Some(self.instance_id.as_str())
            && claim_term == self.term
            && attempt == self.attempt
    }

    /// The [`Error::LeaseLost`] for a write by this guard to `task`, whose stored claim is
    /// `stored` (`None` when it carries none). Names the stored claim, so the refused writer
    /// learns who holds the task now.
    pub fn refused(&self, task: TaskId, stored: Option<&Claim>) -> Error {
        match stored {
            Some(stored) => Error::LeaseLost(format!(
                "task {task} is claimed by {stored}, not by {self}; the write is refused"
            )),
            None => Error::LeaseLost(format!(
                "task {task} carries no claim (it was recovered, requeued or never claimed), \
                 not one by {self}; the write is refused"
            )),
        }
    }

    /// The rule of every guarded write to `task`, whose stored claim is `claimed_by`,
    /// `claim_term`, `attempt`: the task must carry exactly this claim ([`Claim::refused`]
    /// otherwise) and, when the guard has a term, `lease_held` must say its instance holds the
    /// live lease with that term. Every backend calls this with what it read in the write's
    /// own statement or transaction, so the refusals read the same everywhere.
    pub fn check(
        &self,
        task: TaskId,
        claimed_by: Option<&str>,
        claim_term: Option<i64>,
        attempt: i64,
        lease_held: bool,
    ) -> Result<()> {
        if !self.matches(claimed_by, claim_term, attempt) {
            let stored = claimed_by.map(|by| Claim::new(by, claim_term, attempt));
            return Err(self.refused(task, stored.as_ref()));
        }
        match self.term {
            Some(term) if !lease_held => Err(Error::LeaseLost(format!(
                "instance {} does not hold the lease with term {term}; task {task} still \
                 carries that claim ({self}), but its lease term is not live; the write is \
                 refused",
                self.instance_id
            ))),
            _ => Ok(()),
        }
    }

    /// The stored claim of a task, from its columns: `None` when `claimed_by` is.
    pub fn stored(
        claimed_by: Option<String>,
        claim_term: Option<i64>,
        attempt: i64,
    ) -> Option<Self> {
        claimed_by.map(|instance_id| Claim {
            instance_id,
            term: claim_term,
            attempt,
        })
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.term {
            Some(term) => write!(
                f,
                "{} under term {term} (attempt {})",
                self.instance_id, self.attempt
            ),
            None => write!(
                f,
                "{} without a term (attempt {})",
                self.instance_id, self.attempt
            ),
        }
    }
}

/// The [`Error::LeaseLost`] for a fenced operation by `instance_id` whose lease with `term`
/// is not live: it was taken over, released or has lapsed.
pub fn lease_not_held(instance_id: &str, term: i64) -> Error {
    Error::LeaseLost(format!(
        "instance {instance_id} does not hold the lease with term {term}"
    ))
}

/// The most tasks one [`crate::TaskStore::claim_batch`] may claim: a larger `n` is
/// `InvalidInput`, so one claim never locks or returns an unbounded number of rows.
pub const MAX_CLAIM_BATCH: usize = 1000;

/// The claim id that task `index` (from 0, oldest first) of a batch claimed under the claim
/// id `claim_id` carries (claim ids are unique per task, so a batch cannot give its one id to
/// every task). Deterministic, so a re-sent batch finds the tasks it claimed: the 128 bits of
/// `claim_id` plus `(index + 1)` times the odd constant `0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835`
/// (wrapping), made a UUID version 8 (custom) by setting its version and variant bits. Distinct
/// for every index below [`MAX_CLAIM_BATCH`] (a unit test checks it).
pub fn batch_claim_id(claim_id: Uuid, index: usize) -> Uuid {
    const MIX: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;
    let step = (index as u128).wrapping_add(1).wrapping_mul(MIX);
    let bits = claim_id.as_u128().wrapping_add(step);
    uuid::Builder::from_custom_bytes(bits.to_be_bytes()).into_uuid()
}

/// A request to claim the next queued task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Claim only tasks with one of these actions; empty means any.
    pub actions: Vec<String>,
    /// The claiming instance, recorded on the task.
    pub instance_id: String,
    /// The caller's lease term. When given, the claim is refused with
    /// [`Error::LeaseLost`] unless the caller holds the live lease with this term.
    pub term: Option<i64>,
    /// A caller-chosen id for this claim. Re-sending the same request with the same id (after
    /// an error that left the caller unsure whether the claim was made) returns the task
    /// already claimed under it instead of claiming another. Use a new id for every claim.
    pub claim_id: Option<Uuid>,
}

impl ClaimRequest {
    /// A claim of any action by `instance_id`, unfenced, without a claim id.
    pub fn new(instance_id: impl Into<String>) -> Self {
        ClaimRequest {
            actions: Vec::new(),
            instance_id: instance_id.into(),
            term: None,
            claim_id: None,
        }
    }

    /// Restricts the claim to these actions (builder style).
    pub fn actions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, actions: I) -> Self {
        self.actions = actions.into_iter().map(Into::into).collect();
        self
    }

    /// Fences the claim with the caller's lease term (builder style).
    pub fn fenced(mut self, term: i64) -> Self {
        self.term = Some(term);
        self
    }

    /// Names the claim, so that re-sending it is safe (builder style).
    pub fn with_claim_id(mut self, claim_id: Uuid) -> Self {
        self.claim_id = Some(claim_id);
        self
    }

    /// Records this request's claim on `task`, as a store does when it hands the task out:
    /// `running`, claimed by the instance under the request's term with `claim_id` at `at`
    /// (also its `updated`), and one more attempt.
    pub fn record_on(&self, task: &mut super::Task, claim_id: Option<Uuid>, at: DateTime<Utc>) {
        task.status = super::TaskStatus::Running;
        task.claimed_by = Some(self.instance_id.clone());
        task.claim_term = self.term;
        task.claim_id = claim_id;
        task.claimed_at = Some(at);
        task.attempt += 1;
        task.updated = Some(at);
    }

    /// Refuses a claim with a NUL byte in the instance id or an action.
    pub fn validate(&self) -> Result<()> {
        validate_instance_id("claim.instance_id", &self.instance_id)?;
        self.actions
            .iter()
            .try_for_each(|a| no_nul("claim.actions", a))
    }

    /// Refuses what [`crate::TaskStore::claim_batch`] refuses before looking at the store:
    /// what [`ClaimRequest::validate`] refuses, and a batch size `n` of zero or above
    /// [`MAX_CLAIM_BATCH`] (`InvalidInput`, field `claim.n`).
    pub fn validate_batch(&self, n: usize) -> Result<()> {
        self.validate()?;
        if n == 0 {
            return Err(Error::invalid("claim.n", "must be at least 1"));
        }
        if n > MAX_CLAIM_BATCH {
            return Err(Error::invalid(
                "claim.n",
                format!("must be at most {MAX_CLAIM_BATCH}"),
            ));
        }
        Ok(())
    }

    /// The claim ids a batch of up to `n` tasks claimed with this request's claim id records,
    /// the `i`-th (from 0) for the `i`-th oldest task of the batch: [`batch_claim_id`] of the
    /// claim id and `i`. Empty without a claim id.
    pub fn batch_claim_ids(&self, n: usize) -> Vec<Uuid> {
        match self.claim_id {
            Some(id) => (0..n).map(|i| batch_claim_id(id, i)).collect(),
            None => Vec::new(),
        }
    }

    /// The [`Error::Conflict`] for a claim id already carried by a task another instance
    /// claimed: claim ids are meant to be new for every claim.
    pub fn claim_id_taken(&self, task: TaskId, by: &str) -> Error {
        Error::conflict(
            Entity::Claim,
            self.claim_id.unwrap_or_default(),
            format!(
                "already names the claim of task {task} by {by}, not by {}",
                self.instance_id
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_matches_only_its_own_claim() {
        let g = Claim::new("a", Some(1), 2);
        assert!(g.matches(Some("a"), Some(1), 2));
        assert!(!g.matches(Some("a"), Some(1), 3), "a later run (ABA)");
        assert!(!g.matches(Some("a"), Some(2), 2), "another term");
        assert!(!g.matches(Some("b"), Some(1), 2), "another instance");
        assert!(!g.matches(None, None, 2), "no claim");
        let unfenced = Claim::new("a", None, 1);
        assert!(!unfenced.matches(Some("a"), Some(1), 1));
        assert!(unfenced.matches(Some("a"), None, 1));
    }

    #[test]
    fn batch_claim_ids_are_deterministic_and_distinct() {
        let id = Uuid::new_v4();
        let req = ClaimRequest::new("a").with_claim_id(id);
        let ids = req.batch_claim_ids(MAX_CLAIM_BATCH);
        assert_eq!(ids, req.batch_claim_ids(MAX_CLAIM_BATCH));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), MAX_CLAIM_BATCH);
        assert!(!distinct.contains(&id));
        assert_eq!(ids[3], batch_claim_id(id, 3));
        assert!(ClaimRequest::new("a").batch_claim_ids(5).is_empty());
        assert!(req.validate_batch(0).is_err());
        assert!(req.validate_batch(MAX_CLAIM_BATCH + 1).is_err());
        assert!(req.validate_batch(MAX_CLAIM_BATCH).is_ok());
    }

    #[test]
    fn a_refusal_names_the_stored_claim() {
        let g = Claim::new("a", Some(1), 1);
        let e = g
            .refused(TaskId::new(), Some(&Claim::new("b", Some(2), 2)))
            .to_string();
        assert!(e.contains("claimed by b under term 2 (attempt 2)"), "{e}");
        assert!(e.contains("not by a under term 1 (attempt 1)"), "{e}");
        let e = g.refused(TaskId::new(), None).to_string();
        assert!(e.contains("carries no claim"), "{e}");
    }
}
