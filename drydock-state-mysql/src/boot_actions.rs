//! [`BootActionStore`] on MariaDB/MySQL: boot-action contexts and statuses, ids and keys
//! stored byte for byte (`BINARY`), names compared byte for byte (`utf8mb4_nopad_bin`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use drydock_state_core::Entity;
use drydock_state_core::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BootActionStore, Error,
    NewMessage, Result, TaskId,
};

use crate::error::db_error;
use crate::store::{append, db_now, message_bytes, retry_races, MySqlStore};
use crate::{queries, rows};

impl MySqlStore {
    async fn try_set_context(&self, context: &BootActionContext) -> Result<()> {
        const OP: &str = "set_boot_action_context";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        if !exists_locked(&mut tx, OP, context.task_id).await? {
            return Err(Error::not_found(Entity::Task, context.task_id));
        }
        queries::query(queries::UPSERT_BOOT_CONTEXT)
            .bind(context.node_name.as_str())
            .bind(rows::id_text(context.task_id))
            .bind(context.identity_key.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_error(OP, "boot_action.node_name"))?;
        tx.commit().await.map_err(db_error(OP, "database"))
    }

    async fn try_add(&self, action: &BootAction) -> Result<()> {
        const OP: &str = "add_boot_action";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let taken: i64 = queries::query_scalar(queries::BOOT_ACTION_EXISTS)
            .bind(action.action_id.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(OP, "boot_action.action_id"))?;
        if taken != 0 {
            return Err(drydock_state_core::backend::boot_action_exists(
                action.action_id,
            ));
        }
        if !exists_locked(&mut tx, OP, action.task_id).await? {
            return Err(Error::not_found(Entity::Task, action.task_id));
        }
        queries::query(queries::INSERT_BOOT_ACTION)
            .bind(action.action_id.as_bytes().as_slice())
            .bind(action.node_name.as_str())
            .bind(action.action_name.as_str())
            .bind(rows::id_text(action.task_id))
            .bind(action.identity_key.as_bytes().as_slice())
            .bind(action.action_status.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| match db_error(OP, "boot_action")(e) {
                Error::Conflict { .. } => {
                    drydock_state_core::backend::boot_action_exists(action.action_id)
                }
                other => other,
            })?;
        tx.commit().await.map_err(db_error(OP, "database"))
    }

    async fn try_set_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        const OP: &str = "set_boot_action_status";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let row = queries::query(queries::BOOT_ACTION_FOR_UPDATE)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error(OP, "boot_action.action_id"))?;
        let mut action = match row {
            Some(row) => rows::boot_action(&row)?,
            None => return Err(Error::not_found(Entity::BootAction, id)),
        };
        if action.action_status.is_final() {
            return Err(action.finalized(status));
        }
        if exists_locked(&mut tx, OP, action.task_id).await? {
            let ts = db_now(&mut tx, OP).await?;
            let note = action.status_message(status);
            append(&mut tx, OP, action.task_id, &note, ts).await?;
            for detail in details {
                append(&mut tx, OP, action.task_id, detail, ts).await?;
            }
        }
        queries::query(queries::SET_BOOT_ACTION_STATUS)
            .bind(status.as_str())
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_error(OP, "boot_action.action_status"))?;
        tx.commit().await.map_err(db_error(OP, "database"))?;
        action.action_status = status;
        Ok(action)
    }
}

async fn exists_locked(
    conn: &mut sqlx::MySqlConnection,
    op: &'static str,
    task: TaskId,
) -> Result<bool> {
    let n: i64 = queries::query_scalar(queries::TASK_EXISTS_LOCKED)
        .bind(rows::id_text(task))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error(op, "task_id"))?;
    Ok(n != 0)
}

#[async_trait]
impl BootActionStore for MySqlStore {
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        retry_races!(self.try_set_context(context).await)
    }

    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        let row = queries::query(queries::BOOT_CONTEXT)
            .bind(node_name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("boot_action_context", "boot_action.node_name"))?;
        row.as_ref().map(rows::boot_action_context).transpose()
    }

    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        retry_races!(self.try_add(action).await)
    }

    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        for detail in details {
            self.check_size("message.message", message_bytes(detail))?;
        }
        retry_races!(self.try_set_status(id, status, details).await)
    }

    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>> {
        let found = queries::query(queries::BOOT_ACTIONS_OF_NODE)
            .bind(node_name)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("boot_actions_for_node", "boot_action.node_name"))?;
        // Oldest id first, so the newest of a name is inserted last and kept.
        let mut actions = BTreeMap::new();
        for row in &found {
            let action = rows::boot_action(row)?;
            actions.insert(action.action_name.clone(), action);
        }
        Ok(actions)
    }

    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        let row = queries::query(queries::BOOT_ACTION)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("boot_action", "boot_action.action_id"))?;
        row.as_ref().map(rows::boot_action).transpose()
    }
}
