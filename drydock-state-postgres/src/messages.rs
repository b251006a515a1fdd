//! [`MessageStore`] on PostgreSQL: result messages, sequenced by a `bigserial`.

use async_trait::async_trait;
use drydock_state_core::Entity;
use drydock_state_core::{Claim, Error, MessageStore, NewMessage, Result, ResultMessage, TaskId};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{Named, OrStore};
use crate::guard;
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

    /// Adds a message as the caller wrote it.
    pub(crate) fn push_message(&mut self, task: TaskId, m: &NewMessage) {
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
            .or_store("append_messages")?;
        sorted(&rows)
    }

    /// Inserts them all for `task` in one statement if it exists (key-share-locked until the
    /// transaction ends, so a purge cannot delete it first), in the order pushed; empty, with
    /// nothing inserted, when it does not.
    pub(crate) async fn append_if_task(
        &self,
        conn: &mut PgConnection,
        task: TaskId,
    ) -> Result<Vec<ResultMessage>> {
        let rows = queries::query(queries::APPEND_MESSAGES_IF_TASK)
            .bind(&self.task_ids)
            .bind(&self.texts)
            .bind(&self.errors)
            .bind(&self.context_types)
            .bind(&self.contexts)
            .bind(&self.extras)
            .bind(task.0)
            .fetch_all(conn)
            .await
            .or_store("append_messages")?;
        sorted(&rows)
    }

    /// Inserts them all for `task` in one statement guarded by `guard`, in the order pushed,
    /// and returns them as stored; none (nothing inserted) when the task is missing or the
    /// guard does not hold.
    pub(crate) async fn append_guarded(
        &self,
        pool: &PgPool,
        task: TaskId,
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        let (by, term, attempt) = guard::binds(guard);
        let rows = queries::query(queries::APPEND_MESSAGES_GUARDED)
            .bind(&self.task_ids)
            .bind(&self.texts)
            .bind(&self.errors)
            .bind(&self.context_types)
            .bind(&self.contexts)
            .bind(&self.extras)
            .bind(task.0)
            .bind(by)
            .bind(term)
            .bind(attempt)
            .fetch_all(pool)
            .await
            .or_store("append_messages")?;
        sorted(&rows)
    }
}

/// Inserted message rows in sequence order.
fn sorted(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<ResultMessage>> {
    let mut stored = rows.iter().map(rows::message).collect::<Result<Vec<_>>>()?;
    stored.sort_by_key(|m| m.sequence);
    Ok(stored)
}

#[async_trait]
impl MessageStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task, guarded = guard.is_some()))]
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        const OP: &str = "append_message";
        message.validate()?;
        guard::validate(guard)?;
        let extra = &json_text(&message.extra);
        if guard.is_none() {
            let row = queries::query(queries::APPEND_MESSAGE)
                .bind(task.0)
                .bind(&message.message)
                .bind(message.error)
                .bind(&message.context_type)
                .bind(&message.context)
                .bind(extra)
                .fetch_one(&self.pool)
                .await
                .or_store(OP)
                .missing_as(Entity::Task, task)?;
            return rows::message(&row);
        }
        let (by, term, attempt) = guard::binds(guard);
        let write = || async move {
            let row = queries::query(queries::APPEND_MESSAGE_GUARDED)
                .bind(task.0)
                .bind(&message.message)
                .bind(message.error)
                .bind(&message.context_type)
                .bind(&message.context)
                .bind(extra)
                .bind(by)
                .bind(term)
                .bind(attempt)
                .fetch_optional(&self.pool)
                .await
                .or_store(OP)?;
            row.as_ref().map(rows::message).transpose()
        };
        self.guarded(OP, task, guard, write, |_| Ok(None)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task, count = messages.len(), guarded = guard.is_some()))]
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        const OP: &str = "append_messages";
        messages.iter().try_for_each(NewMessage::validate)?;
        guard::validate(guard)?;
        if messages.is_empty() {
            // Nothing to insert, but an unknown task or a refused guard is still an error,
            // as for a non-empty batch.
            if guard.is_some() {
                let stored = self.refused_write(OP, task, guard).await?;
                return stored.guard_error(guard).map_or(Ok(Vec::new()), Err);
            }
            return match self.task_exists(task, OP).await? {
                true => Ok(Vec::new()),
                false => Err(Error::not_found(Entity::Task, task)),
            };
        }
        let mut batch = MessageBatch::default();
        for m in messages {
            batch.push_message(task, m);
        }
        if guard.is_none() {
            let mut conn = self.pool.acquire().await.or_store(OP)?;
            return batch.append(&mut conn).await.missing_as(Entity::Task, task);
        }
        let batch = &batch;
        let write = || async move {
            let stored = batch.append_guarded(&self.pool, task, guard).await?;
            Ok((!stored.is_empty()).then_some(stored))
        };
        self.guarded(OP, task, guard, write, |_| Ok(None)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task))]
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        let rows = queries::query(queries::MESSAGES_OF_TASK)
            .bind(task.0)
            .fetch_all(&self.pool)
            .await
            .or_store("messages")?;
        rows.iter().map(rows::message).collect()
    }
}
