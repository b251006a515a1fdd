//! [`MessageStore`] on MariaDB/MySQL: result messages, appended under a share lock of their
//! task's row (so a guard's claim cannot change, nor the task be purged, until the append
//! commits), each stored whole in `LONGTEXT`.

use async_trait::async_trait;
use drydock_state_core::Entity;
use drydock_state_core::{Claim, Error, MessageStore, NewMessage, Result, ResultMessage, TaskId};

use crate::error::db_error;
use crate::store::{append, db_now, message_bytes, read_task, retry_races, MySqlStore};
use crate::{guard, queries, rows};

impl MySqlStore {
    async fn try_append(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        const OP: &str = "append_messages";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let stored = read_task(&mut tx, OP, queries::TASK_FOR_SHARE, task)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Task, task))?;
        guard::check(&mut tx, OP, &stored, guard).await?;
        let ts = db_now(&mut tx, OP).await?;
        let mut appended = Vec::with_capacity(messages.len());
        for message in messages {
            appended.push(append(&mut tx, OP, task, message, ts).await?);
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(appended)
    }

    fn check_messages(&self, messages: &[NewMessage]) -> Result<()> {
        for message in messages {
            self.check_size("message.message", message_bytes(message))?;
        }
        Ok(())
    }
}

#[async_trait]
impl MessageStore for MySqlStore {
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        let batch = std::slice::from_ref(message);
        self.check_messages(batch)?;
        let mut appended = retry_races!(self.try_append(task, batch, guard).await)?;
        appended
            .pop()
            .ok_or_else(|| crate::error::corrupt("result message", "the append returned none"))
    }

    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        self.check_messages(messages)?;
        retry_races!(self.try_append(task, messages, guard).await)
    }

    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        let found = queries::query(queries::MESSAGES_OF_TASK)
            .bind(rows::id_text(task))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("messages", "task_id"))?;
        found.iter().map(rows::message).collect()
    }
}
