//! [`InstanceLock`] on PostgreSQL: the single-row leader lease, judged by the database's clock.

use async_trait::async_trait;
use drydock_state_core::{InstanceLock, Lease, LeaseOutcome, Result};

use crate::error::db_error;
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
        let row = queries::query(statement)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error(op, "instance_id"))?;
        match row {
            Some(row) => Ok(LeaseOutcome::Held(rows::lease(&row)?)),
            None => Ok(LeaseOutcome::Denied(self.live_lease().await?)),
        }
    }

    async fn live_lease(&self) -> Result<Option<Lease>> {
        let row = queries::query(queries::CURRENT_LEASE)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("current_lease", "instance_id"))?;
        row.as_ref().map(rows::lease).transpose()
    }
}

#[async_trait]
impl InstanceLock for PgStore {
    #[tracing::instrument(skip_all, fields(instance_id = %instance_id))]
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.take_lease("claim_lease", queries::CLAIM_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(skip_all, fields(instance_id = %instance_id))]
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.take_lease("renew_lease", queries::RENEW_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(skip_all, fields(instance_id = %instance_id))]
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        drydock_state_core::backend::validate_instance_id("instance_id", instance_id)?;
        let done = queries::query(queries::RELEASE_LEASE)
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .map_err(db_error("release_lease", "instance_id"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.live_lease().await
    }
}
