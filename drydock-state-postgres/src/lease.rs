//! [`InstanceLock`] on PostgreSQL: the single-row leader lease, judged by the database's clock.

use async_trait::async_trait;
use drydock_state_core::{InstanceLock, Lease, LeaseOutcome, Result};

use crate::error::db_error;
use crate::store::PgStore;
use crate::{queries, rows};

impl PgStore {
    async fn live_lease(&self) -> Result<Option<Lease>> {
        let row = sqlx::query(queries::CURRENT_LEASE)
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
        drydock_state_core::model::validate_instance_id("instance_id", instance_id)?;
        let row = sqlx::query(queries::CLAIM_LEASE)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("claim_lease", "instance_id"))?;
        match row {
            Some(row) => Ok(LeaseOutcome::Held(rows::lease(&row)?)),
            // Another holds a live lease; report it (None if it lapsed in between).
            None => Ok(LeaseOutcome::Denied(self.live_lease().await?)),
        }
    }

    #[tracing::instrument(skip_all, fields(instance_id = %instance_id))]
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        drydock_state_core::model::validate_instance_id("instance_id", instance_id)?;
        let row = sqlx::query(queries::RENEW_LEASE)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("renew_lease", "instance_id"))?;
        match row {
            Some(row) => Ok(LeaseOutcome::Held(rows::lease(&row)?)),
            None => Ok(LeaseOutcome::Denied(self.live_lease().await?)),
        }
    }

    #[tracing::instrument(skip_all, fields(instance_id = %instance_id))]
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        drydock_state_core::model::validate_instance_id("instance_id", instance_id)?;
        let done = sqlx::query(queries::RELEASE_LEASE)
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
