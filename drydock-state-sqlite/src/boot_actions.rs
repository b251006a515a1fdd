//! [`BootActionStore`] for [`SqliteStore`]: Drydock's `boot_action` (a node's context) and
//! `boot_action_status` (its actions) tables, as `drydock_boot_action` and
//! `drydock_boot_action_status`.
//!
//! Ids and keys are BLOBs, kept byte for byte. The tables have no foreign key to the tasks (a
//! report for a purged task is still recorded), so every write that must refuse a missing task
//! checks for it in its own `BEGIN IMMEDIATE` transaction, where no purge can commit between
//! the check and the write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use drydock_state_core::backend::{boot_action_exists, no_nul};
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BootActionStore, Error,
    NewMessage, Result,
};

use crate::codec::{id_text, BootActionContextRow, BootActionForStatusRow, BootActionRow};
use crate::error::{is_unique_violation, OrStore};
use crate::queries;
use crate::store::{batch_json, insert_messages, SqliteStore};

#[async_trait]
impl BootActionStore for SqliteStore {
    /// One `BEGIN IMMEDIATE` transaction: `TASK_EXISTS`, then the upsert
    /// `SET_BOOT_ACTION_CONTEXT`.
    #[tracing::instrument(name = "sqlite.set_boot_action_context", level = "debug", skip_all, fields(node = %context.node_name, task_id = %context.task_id))]
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        const OP: &str = "set_boot_action_context";
        context.validate()?;
        let mut tx = self.begin_write(OP).await?;
        let task_exists: bool = queries::query_scalar(queries::TASK_EXISTS)
            .bind(id_text(context.task_id))
            .fetch_one(&mut *tx)
            .await
            .or_store(OP)?;
        if !task_exists {
            return Err(Error::not_found("task", context.task_id));
        }
        queries::query(queries::SET_BOOT_ACTION_CONTEXT)
            .bind(context.node_name.as_str())
            .bind(id_text(context.task_id))
            .bind(context.identity_key.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.boot_action_context", level = "debug", skip_all, fields(node = %node_name))]
    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        no_nul("boot_action.node_name", node_name)?;
        queries::query_as::<_, BootActionContextRow>(queries::BOOT_ACTION_CONTEXT)
            .bind(node_name)
            .fetch_optional(self.pool())
            .await
            .or_store("boot_action_context")?
            .map(BootActionContextRow::into_context)
            .transpose()
    }

    /// One `BEGIN IMMEDIATE` transaction: `BOOT_ACTION_ADD_CHECK` (id taken: `Conflict`;
    /// no task: `NotFound`), then `ADD_BOOT_ACTION`.
    #[tracing::instrument(name = "sqlite.add_boot_action", level = "debug", skip_all, fields(action_id = %action.action_id, node = %action.node_name, task_id = %action.task_id))]
    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        const OP: &str = "add_boot_action";
        action.validate()?;
        let conflict = || boot_action_exists(action.action_id);
        let mut tx = self.begin_write(OP).await?;
        let (id_taken, task_exists): (bool, bool) =
            queries::query_as(queries::BOOT_ACTION_ADD_CHECK)
                .bind(action.action_id.as_bytes().as_slice())
                .bind(id_text(action.task_id))
                .fetch_one(&mut *tx)
                .await
                .or_store(OP)?;
        if id_taken {
            return Err(conflict());
        }
        if !task_exists {
            return Err(Error::not_found("task", action.task_id));
        }
        queries::query(queries::ADD_BOOT_ACTION)
            .bind(action.action_id.as_bytes().as_slice())
            .bind(action.node_name.as_str())
            .bind(action.action_name.as_str())
            .bind(id_text(action.task_id))
            .bind(action.identity_key.as_bytes().as_slice())
            .bind(action.action_status.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    conflict()
                } else {
                    crate::error::classify(OP, e)
                }
            })?;
        tx.commit().await.or_store(OP)?;
        Ok(())
    }

    /// One `BEGIN IMMEDIATE` transaction: `BOOT_ACTION_FOR_STATUS` (unknown id: `NotFound`;
    /// a final status: [`BootAction::finalized`]), `SET_BOOT_ACTION_STATUS`, then, if the task
    /// still exists, [`BootAction::status_message`] and the details in one `APPEND_MESSAGES`.
    #[tracing::instrument(name = "sqlite.set_boot_action_status", level = "debug", skip_all, fields(action_id = %id, status = %status, details = details.len()))]
    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        const OP: &str = "set_boot_action_status";
        details.iter().try_for_each(NewMessage::validate)?;
        let mut tx = self.begin_write(OP).await?;
        let stored: BootActionForStatusRow = queries::query_as(queries::BOOT_ACTION_FOR_STATUS)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?
            .ok_or_else(|| Error::not_found("boot action", id))?;
        let task_exists = stored.task_exists;
        let action = stored.action.into_boot_action()?;
        if action.action_status.is_final() {
            return Err(action.finalized(status));
        }
        let updated: BootActionRow = queries::query_as(queries::SET_BOOT_ACTION_STATUS)
            .bind(id.as_bytes().as_slice())
            .bind(status.as_str())
            .fetch_one(&mut *tx)
            .await
            .or_store(OP)?;
        if task_exists {
            let messages: Vec<NewMessage> = std::iter::once(action.status_message(status))
                .chain(details.iter().cloned())
                .collect();
            let batch = batch_json(&messages)?;
            insert_messages(&mut tx, action.task_id, &messages, Some(batch), OP).await?;
        }
        tx.commit().await.or_store(OP)?;
        updated.into_boot_action()
    }

    /// One statement, `BOOT_ACTIONS_FOR_NODE`, oldest id first: of a repeated name the newest
    /// is inserted last and kept.
    #[tracing::instrument(name = "sqlite.boot_actions_for_node", level = "debug", skip_all, fields(node = %node_name))]
    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>> {
        no_nul("boot_action.node_name", node_name)?;
        let rows: Vec<BootActionRow> = queries::query_as(queries::BOOT_ACTIONS_FOR_NODE)
            .bind(node_name)
            .fetch_all(self.pool())
            .await
            .or_store("boot_actions_for_node")?;
        let mut actions = BTreeMap::new();
        for row in rows {
            let action = row.into_boot_action()?;
            actions.insert(action.action_name.clone(), action);
        }
        Ok(actions)
    }

    #[tracing::instrument(name = "sqlite.boot_action", level = "debug", skip_all, fields(action_id = %id))]
    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        queries::query_as::<_, BootActionRow>(queries::BOOT_ACTION)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await
            .or_store("boot_action")?
            .map(BootActionRow::into_boot_action)
            .transpose()
    }
}
