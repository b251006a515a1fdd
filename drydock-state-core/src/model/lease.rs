//! The orchestrator's leader lease.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The holder of the orchestrator's leader lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holding instance.
    pub instance_id: String,
    /// The fencing token: higher with every change of holder.
    pub term: i64,
    /// When this holder acquired it.
    pub acquired_at: DateTime<Utc>,
    /// When it was last claimed or renewed.
    pub renewed_at: DateTime<Utc>,
    /// When it lapses unless renewed (the database's clock).
    pub expires_at: DateTime<Utc>,
}

/// What a lease claim or renewal found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "lease", rename_all = "snake_case")]
pub enum LeaseOutcome {
    /// The caller holds the lease now.
    Held(Lease),
    /// Another instance holds it (`None` when a renewal found no live lease at all).
    Denied(Option<Lease>),
}

impl LeaseOutcome {
    /// The lease if the caller holds it.
    pub fn held(&self) -> Option<&Lease> {
        match self {
            LeaseOutcome::Held(l) => Some(l),
            LeaseOutcome::Denied(_) => None,
        }
    }
}
