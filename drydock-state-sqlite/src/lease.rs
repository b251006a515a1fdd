//! [`InstanceLock`] on SQLite: the single-row leader lease, judged by the database's clock.

use async_trait::async_trait;
use drydock_state_core::backend::validate_instance_id;
use drydock_state_core::{InstanceLock, Lease, LeaseOutcome, Result};

use crate::error::OrStore;
use crate::queries;
use crate::rows::LeaseRow;
use crate::store::SqliteStore;

impl SqliteStore {
    /// Runs a lease statement (`?1` the instance, `?2` the grace period) that returns the row
    /// it took or kept, or nothing; nothing means denied, with the live lease as it stands.
    async fn take_lease(
        &self,
        op: &'static str,
        statement: &'static str,
        instance_id: &str,
    ) -> Result<LeaseOutcome> {
        validate_instance_id("instance_id", instance_id)?;
        let held: Option<LeaseRow> = queries::query_as(statement)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?;
        match held {
            Some(row) => Ok(LeaseOutcome::Held(row.into_lease()?)),
            None => Ok(LeaseOutcome::Denied(self.current(op).await?)),
        }
    }

    async fn current(&self, op: &'static str) -> Result<Option<Lease>> {
        queries::query_as::<_, LeaseRow>(queries::CURRENT_LEASE)
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?
            .map(LeaseRow::into_lease)
            .transpose()
    }
}

#[async_trait]
impl InstanceLock for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
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
        validate_instance_id("instance_id", instance_id)?;
        let done = queries::query(queries::RELEASE_LEASE)
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .or_store("release_lease")?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.current("current_lease").await
    }
}
