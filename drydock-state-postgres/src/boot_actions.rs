//! [`BootActionStore`] on PostgreSQL: boot-action contexts (`boot_action`) and boot
//! actions with their reported status (`boot_action_status`), ids and keys as bytea.

use std::collections::BTreeMap;

use async_trait::async_trait;
use drydock_state_core::backend::{boot_action_exists, no_nul};
use drydock_state_core::Entity;
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BootActionStore, Error,
    NewMessage, Result,
};

use crate::error::{Named, OrStore};
use crate::messages::MessageBatch;
use crate::store::PgStore;
use crate::{queries, rows};

#[async_trait]
impl BootActionStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(node_name = %context.node_name, task_id = %context.task_id))]
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        context.validate()?;
        let done = queries::query(queries::SET_BOOT_ACTION_CONTEXT)
            .bind(&context.node_name)
            .bind(context.task_id.0)
            .bind(&context.identity_key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .or_store("set_boot_action_context")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(Entity::Task, context.task_id));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(node_name = %node_name))]
    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        no_nul("boot_action.node_name", node_name)?;
        let row = queries::query(queries::BOOT_ACTION_CONTEXT)
            .bind(node_name)
            .fetch_optional(&self.pool)
            .await
            .or_store("boot_action_context")?;
        row.as_ref().map(rows::boot_action_context).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(action_id = %action.action_id, node_name = %action.node_name, task_id = %action.task_id))]
    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        action.validate()?;
        let (added, id_taken): (bool, bool) = queries::query_as(queries::ADD_BOOT_ACTION)
            .bind(&action.action_id.as_bytes()[..])
            .bind(&action.node_name)
            .bind(&action.action_name)
            .bind(action.task_id.0)
            .bind(&action.identity_key.as_bytes()[..])
            .bind(action.action_status.as_str())
            .fetch_one(&self.pool)
            .await
            .or_store("add_boot_action")
            .duplicate_as(|| boot_action_exists(action.action_id))?;
        match (added, id_taken) {
            (true, _) => Ok(()),
            // The reference store's order: a taken id is a conflict before a missing task.
            (false, true) => Err(boot_action_exists(action.action_id)),
            (false, false) => Err(Error::not_found(Entity::Task, action.task_id)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(action_id = %id, status = %status, details = details.len()))]
    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        details.iter().try_for_each(NewMessage::validate)?;
        const OP: &str = "set_boot_action_status";
        // One transaction: the action locked and updated in one statement, which returns the
        // status it had; then checked, and the messages appended to its task. A refusal rolls
        // back (the transaction is dropped) with nothing written.
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let row = queries::query(queries::SET_BOOT_ACTION_STATUS)
            .bind(&id.as_bytes()[..])
            .bind(status.as_str())
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let Some(row) = row else {
            return Err(Error::not_found(Entity::BootAction, id));
        };
        let stored = rows::boot_action(&row)?;
        let action = BootAction {
            action_status: rows::previous_status(&row)?,
            ..stored.clone()
        };
        if action.action_status.is_final() {
            // Dropping the transaction rolls the write back.
            return Err(action.finalized(status));
        }
        let mut notes = MessageBatch::default();
        notes.push_message(action.task_id, &action.status_message(status));
        for detail in details {
            notes.push_message(action.task_id, detail);
        }
        // A purged task takes no messages; the status is recorded all the same.
        notes.append_if_task(&mut tx, action.task_id).await?;
        tx.commit().await.or_store(OP)?;
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(node_name = %node_name))]
    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>> {
        no_nul("boot_action.node_name", node_name)?;
        let rows = queries::query(queries::BOOT_ACTIONS_OF_NODE)
            .bind(node_name)
            .fetch_all(&self.pool)
            .await
            .or_store("boot_actions_for_node")?;
        // In id order, oldest first: the newest of a repeated name is inserted last and kept.
        let mut actions = BTreeMap::new();
        for row in &rows {
            let action = rows::boot_action(row)?;
            actions.insert(action.action_name.clone(), action);
        }
        Ok(actions)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(action_id = %id))]
    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        let row = queries::query(queries::BOOT_ACTION)
            .bind(&id.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .or_store("boot_action")?;
        row.as_ref().map(rows::boot_action).transpose()
    }
}
