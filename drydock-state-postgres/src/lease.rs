//! [`InstanceLock`] on PostgreSQL: the single-row leader lease, judged by the database's clock.

use async_trait::async_trait;
use drydock_state_core::{InstanceLock, Lease, LeaseOutcome, Result};

use crate::error::OrStore;
use crate::store::PgStore;
use crate::{queries, rows};

impl PgStore {
    /// Runs a lease statement (`$1` the instance, `$2` the grace period) that returns the row
    /// it took or kept, or no row: denied, reported with the live lease as it stands (`None`
    /// if it lapsed in between).
    async fn take_lease(
        &self,
        op: &'static str,
        statement: &'static str,
        instance_id: &str,
    ) -> Result<LeaseOutcome> {
        drydock_state_core::backend::validate_instance_id("instance_id", instance_id)?;
        match self.lease_statement(op, statement, instance_id).await? {
            Some(lease) => Ok(LeaseOutcome::Held(lease)),
            None => Ok(LeaseOutcome::Denied(self.live_lease().await?)),
        }
    }

    /// One lease statement of [`Self::take_lease`]: the lease it took or kept, if any.
    async fn lease_statement(
        &self,
        op: &'static str,
        statement: &'static str,
        instance_id: &str,
    ) -> Result<Option<Lease>> {
        let row = queries::query(statement)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?;
        row.as_ref().map(rows::lease).transpose()
    }

    async fn live_lease(&self) -> Result<Option<Lease>> {
        let row = queries::query(queries::CURRENT_LEASE)
            .fetch_optional(&self.pool)
            .await
            .or_store("current_lease")?;
        row.as_ref().map(rows::lease).transpose()
    }
}

#[async_trait]
impl InstanceLock for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        // A holder keeping its lease (the runtime claims to renew) writes no key column, so it
        // does not wait for its own fenced writes in flight, as `CLAIM_LEASE`'s upsert would.
        drydock_state_core::backend::validate_instance_id("instance_id", instance_id)?;
        if let Some(lease) = self
            .lease_statement("claim_lease", queries::RENEW_LEASE, instance_id)
            .await?
        {
            return Ok(LeaseOutcome::Held(lease));
        }
        self.take_lease("claim_lease", queries::CLAIM_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.take_lease("renew_lease", queries::RENEW_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        drydock_state_core::backend::validate_instance_id("instance_id", instance_id)?;
        let done = queries::query(queries::RELEASE_LEASE)
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .or_store("release_lease")?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.live_lease().await
    }
}
