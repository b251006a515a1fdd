//! [`InstanceLock`] on MariaDB/MySQL: the single-row leader lease, judged by the database's
//! clock.
//!
//! The row always exists (the first migration inserts it, term 0, lapsed). Taking or renewing
//! locks it `FOR UPDATE`, reads the database's now with it, decides as the memory store does,
//! and writes it back, in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{Error, InstanceLock, Lease, LeaseOutcome, Result};

use crate::error::db_error;
use crate::queries;
use crate::rows::{self, LeaseRow};
use crate::store::{retry_races, MySqlStore};

/// The latest time a DATETIME column holds.
fn max_datetime() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl MySqlStore {
    /// When a lease taken or renewed at `now` lapses; an error naming the key, not a panic,
    /// for a grace period too long to store.
    fn expiry(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        now.checked_add_signed(chrono::Duration::microseconds(self.grace_micros))
            .filter(|t| *t <= max_datetime())
            .ok_or_else(|| Error::Config {
                key: "leader.grace_period".into(),
                origin: "the store's configuration".into(),
                reason: "is too long to add to the current time".into(),
            })
    }

    /// Takes (`renew_only` false) or renews the lease for `instance_id`, in one transaction.
    async fn take_lease(
        &self,
        op: &'static str,
        instance_id: &str,
        renew_only: bool,
    ) -> Result<LeaseOutcome> {
        let mut tx = self.pool.begin().await.map_err(db_error(op, "database"))?;
        let row = queries::query(queries::LEASE_FOR_UPDATE)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(op, "instance_id"))?;
        let LeaseRow { lease, now } = rows::lease(&row)?;
        let current = LeaseRow {
            lease: lease.clone(),
            now,
        };
        let expires_at = self.expiry(now)?;
        let ours = current.is_live() && lease.instance_id == instance_id;
        let next = if ours {
            Lease {
                renewed_at: now,
                expires_at,
                ..lease
            }
        } else if current.is_live() || renew_only {
            let live = current.is_live().then_some(lease);
            return Ok(LeaseOutcome::Denied(live));
        } else {
            Lease {
                instance_id: instance_id.to_string(),
                term: lease.term + 1,
                acquired_at: now,
                renewed_at: now,
                expires_at,
            }
        };
        queries::query(queries::WRITE_LEASE)
            .bind(next.instance_id.as_str())
            .bind(next.term)
            .bind(next.acquired_at.naive_utc())
            .bind(next.renewed_at.naive_utc())
            .bind(next.expires_at.naive_utc())
            .execute(&mut *tx)
            .await
            .map_err(db_error(op, "instance_id"))?;
        tx.commit().await.map_err(db_error(op, "database"))?;
        Ok(LeaseOutcome::Held(next))
    }
}

#[async_trait]
impl InstanceLock for MySqlStore {
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        retry_races!(self.take_lease("claim_lease", instance_id, false).await)
    }

    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        retry_races!(self.take_lease("renew_lease", instance_id, true).await)
    }

    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        let done = queries::query(queries::RELEASE_LEASE)
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .map_err(db_error("release_lease", "instance_id"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn current_lease(&self) -> Result<Option<Lease>> {
        let row = queries::query(queries::CURRENT_LEASE)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("current_lease", "instance_id"))?;
        Ok(row.as_ref().map(rows::lease).transpose()?.map(|r| r.lease))
    }
}
