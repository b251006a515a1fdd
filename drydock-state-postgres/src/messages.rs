//! [`MessageStore`] on PostgreSQL: result messages, sequenced by a `bigserial`.

use async_trait::async_trait;
use drydock_state_core::{Error, MessageStore, NewMessage, Result, ResultMessage, TaskId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{db_error, missing};
use crate::store::PgStore;
use crate::tasks::json_text;
use crate::{queries, rows};

/// Messages for one or more tasks, written with one `UNNEST` insert.
#[derive(Default)]
pub(crate) struct MessageBatch {
    task_ids: Vec<Uuid>,
    texts: Vec<String>,
    errors: Vec<bool>,
    context_types: Vec<String>,
    contexts: Vec<String>,
    /// Each extra's JSON text, cast to `json` in the statement so it is stored as given.
    extras: Vec<Option<String>>,
}

impl MessageBatch {
    /// Adds a message about the task itself.
    pub(crate) fn push(&mut self, task: TaskId, text: String, error: bool) {
        self.push_message(
            task,
            &NewMessage {
                error,
                ..NewMessage::info(text)
            },
        );
    }

    fn push_message(&mut self, task: TaskId, m: &NewMessage) {
        self.task_ids.push(task.0);
        self.texts.push(m.message.clone());
        self.errors.push(m.error);
        self.context_types.push(m.context_type.clone());
        self.contexts.push(m.context.clone());
        self.extras.push(json_text(&m.extra));
    }

    /// Inserts them all in one statement, in the order pushed, and returns them as stored.
    pub(crate) async fn append(self, conn: &mut PgConnection) -> Result<Vec<ResultMessage>> {
        let rows = queries::query(queries::APPEND_MESSAGES)
            .bind(&self.task_ids)
            .bind(&self.texts)
            .bind(&self.errors)
            .bind(&self.context_types)
            .bind(&self.contexts)
            .bind(&self.extras)
            .fetch_all(conn)
            .await
            .map_err(db_error("append_messages", "message.message"))?;
        let mut stored = rows.iter().map(rows::message).collect::<Result<Vec<_>>>()?;
        stored.sort_by_key(|m| m.sequence);
        Ok(stored)
    }
}

#[async_trait]
impl MessageStore for PgStore {
    #[tracing::instrument(skip_all, fields(task_id = %task))]
    async fn append_message(&self, task: TaskId, message: &NewMessage) -> Result<ResultMessage> {
        message.validate()?;
        let row = queries::query(queries::APPEND_MESSAGE)
            .bind(task.0)
            .bind(&message.message)
            .bind(message.error)
            .bind(&message.context_type)
            .bind(&message.context)
            .bind(json_text(&message.extra))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("append_message", "message.message"))
            .map_err(missing("task", task))?;
        rows::message(&row)
    }

    #[tracing::instrument(skip_all, fields(task_id = %task, count = messages.len()))]
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
    ) -> Result<Vec<ResultMessage>> {
        messages.iter().try_for_each(NewMessage::validate)?;
        if messages.is_empty() {
            // Nothing to insert, but an unknown task is still an error, as for a non-empty batch.
            return match self.task_exists(task).await? {
                true => Ok(Vec::new()),
                false => Err(Error::not_found("task", task)),
            };
        }
        let mut batch = MessageBatch::default();
        for m in messages {
            batch.push_message(task, m);
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_error("append_messages", "message.message"))?;
        batch.append(&mut conn).await.map_err(missing("task", task))
    }

    #[tracing::instrument(skip_all, fields(task_id = %task))]
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        let rows = queries::query(queries::MESSAGES_OF_TASK)
            .bind(task.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("messages", "task_id"))?;
        rows.iter().map(rows::message).collect()
    }
}
