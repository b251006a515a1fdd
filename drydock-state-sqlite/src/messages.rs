//! [`MessageStore`] on SQLite: result messages, sequenced by an `INTEGER PRIMARY KEY`, a
//! batch bound as one JSON array.

use async_trait::async_trait;
use drydock_state_core::Entity;
use drydock_state_core::{Claim, MessageStore, NewMessage, Result, ResultMessage, TaskId};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::Sqlite;

use crate::codec::{fits, id_text, to_json, MAX_VALUE_BYTES};
use crate::error::{Named, OrStore};
use crate::rows::MessageRow;
use crate::store::SqliteStore;
use crate::{guard, queries};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Binds a message's values to [`queries::APPEND_MESSAGE`], after checking it fits.
pub(crate) fn append_query(task: TaskId, message: &NewMessage) -> Result<Query<'static>> {
    fits("message.message", &message.message)?;
    let extra = message
        .extra
        .as_ref()
        .map(|v| to_json("message.extra", v))
        .transpose()?;
    fits("message.extra", extra.as_deref().unwrap_or_default())?;
    Ok(queries::query(queries::APPEND_MESSAGE)
        .bind(id_text(task))
        .bind(message.message.clone())
        .bind(message.error)
        .bind(message.context_type.clone())
        .bind(message.context.clone())
        .bind(extra))
}

/// A batch of messages as the JSON array [`queries::APPEND_MESSAGES`] reads, after checking
/// each value fits.
pub(crate) fn batch_json(messages: &[NewMessage]) -> Result<String> {
    let mut items = Vec::with_capacity(messages.len());
    for m in messages {
        fits("message.message", &m.message)?;
        let extra = m
            .extra
            .as_ref()
            .map(|v| to_json("message.extra", v))
            .transpose()?;
        fits("message.extra", extra.as_deref().unwrap_or_default())?;
        items.push(serde_json::json!({
            "m": m.message,
            "e": m.error,
            "ct": m.context_type,
            "c": m.context,
            "x": extra,
        }));
    }
    to_json("messages", &items)
}

/// Inserts `messages` for `task` in the caller's transaction, in order, and returns them in
/// sequence order: `batch` (their [`batch_json`], `None` when there are none) in one
/// [`queries::APPEND_MESSAGES`] when it fits one SQLite value, else one
/// [`queries::APPEND_MESSAGE`] per message.
pub(crate) async fn insert_messages(
    conn: &mut SqliteConnection,
    task: TaskId,
    messages: &[NewMessage],
    batch: Option<String>,
    op: &'static str,
) -> Result<Vec<ResultMessage>> {
    let mut rows = Vec::with_capacity(messages.len());
    match batch {
        None => {}
        Some(batch) if batch.len() <= MAX_VALUE_BYTES => {
            rows = queries::query_as(queries::APPEND_MESSAGES)
                .bind(id_text(task))
                .bind(batch)
                .fetch_all(&mut *conn)
                .await
                .or_store(op)
                .missing_as(Entity::Task, task)?;
        }
        // A batch too long for one SQLite value: one insert per message.
        Some(_) => {
            for m in messages {
                let row: MessageRow = append_query(task, m)?
                    .try_map(|row| sqlx::FromRow::from_row(&row))
                    .fetch_one(&mut *conn)
                    .await
                    .or_store(op)
                    .missing_as(Entity::Task, task)?;
                rows.push(row);
            }
        }
    }
    in_sequence(rows)
}

/// Inserted message rows as messages in sequence order: SQLite does not promise RETURNING's.
fn in_sequence(rows: Vec<MessageRow>) -> Result<Vec<ResultMessage>> {
    let mut stored = rows
        .into_iter()
        .map(MessageRow::into_message)
        .collect::<Result<Vec<_>>>()?;
    stored.sort_by_key(|m| m.sequence);
    Ok(stored)
}

#[async_trait]
impl MessageStore for SqliteStore {
    /// Unguarded: one `INSERT` (the foreign key refuses an unknown task). Guarded: the same
    /// `INSERT` after `FENCE`, in one `BEGIN IMMEDIATE` transaction.
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task))]
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        const OP: &str = "append_message";
        message.validate()?;
        guard::validate(guard)?;
        let insert = append_query(task, message)?.try_map(|row| sqlx::FromRow::from_row(&row));
        let row: MessageRow = if guard.is_none() {
            insert
                .fetch_one(&self.pool)
                .await
                .or_store(OP)
                .missing_as(Entity::Task, task)?
        } else {
            let mut tx = self.begin_write(OP).await?;
            guard::fence(&mut tx, task, guard, OP).await?;
            let row = insert
                .fetch_one(&mut *tx)
                .await
                .or_store(OP)
                .missing_as(Entity::Task, task)?;
            tx.commit().await.or_store(OP)?;
            row
        };
        row.into_message()
    }

    /// Unguarded, a batch that fits one SQLite value: one `INSERT … SELECT FROM json_each`.
    /// Otherwise one `BEGIN IMMEDIATE` transaction: `FENCE`, then the batch (or,
    /// for a batch too long for one value, one insert per message).
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task, count = messages.len()))]
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        const OP: &str = "append_messages";
        messages.iter().try_for_each(NewMessage::validate)?;
        guard::validate(guard)?;
        let batch = if messages.is_empty() {
            None
        } else {
            Some(batch_json(messages)?)
        };
        match batch {
            // The common case: one statement, whatever the batch's length.
            Some(batch) if guard.is_none() && batch.len() <= MAX_VALUE_BYTES => {
                let rows = queries::query_as(queries::APPEND_MESSAGES)
                    .bind(id_text(task))
                    .bind(batch)
                    .fetch_all(&self.pool)
                    .await
                    .or_store(OP)
                    .missing_as(Entity::Task, task)?;
                in_sequence(rows)
            }
            batch => {
                let mut tx = self.begin_write(OP).await?;
                guard::fence(&mut tx, task, guard, OP).await?;
                let stored = insert_messages(&mut tx, task, messages, batch, OP).await?;
                tx.commit().await.or_store(OP)?;
                Ok(stored)
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task))]
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        queries::query_as::<_, MessageRow>(queries::MESSAGES)
            .bind(id_text(task))
            .fetch_all(&self.pool)
            .await
            .or_store("messages")?
            .into_iter()
            .map(MessageRow::into_message)
            .collect()
    }
}
