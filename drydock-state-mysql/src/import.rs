//! [`ImportStore`] on MariaDB/MySQL: rows written as given, keys and times included, in one
//! transaction, committed for [`ImportMode::Write`] and rolled back for
//! [`ImportMode::DryRun`] (a transaction the server rolls back to break a deadlock is run
//! again, as every write is).
//!
//! Each keyed row is looked up by its key first (a stored one is present and left as it is),
//! then inserted; a task's parent and a message's task are share-locked when they are
//! checked, so no purge removes them before the import commits. Build data has no key: its
//! stored copies are counted per distinct content before anything of the batch is written.
//!
//! `AUTO_INCREMENT` is not transactional: a dry run (or any rolled-back import) that carried
//! a message numbered above the counter leaves the counter past it. Sequence numbers only
//! ever need to rise, and gaps are allowed, so nothing depends on it.

use std::collections::HashSet;

use async_trait::async_trait;
use drydock_state_core::backend::BuildDataContents;
use drydock_state_core::{
    BuildData, Entity, Error, ImportBatch, ImportCount, ImportMode, ImportOutcome, ImportStore,
    Result, ResultMessage, TaskId,
};
use sqlx::MySqlConnection;

use crate::error::db_error;
use crate::store::{retry_races, MySqlStore};
use crate::{queries, rows};

const OP: &str = "import";

/// Counts one row: written or present.
fn count(count: &mut ImportCount, written: bool) {
    if written {
        count.written += 1;
    } else {
        count.present += 1;
    }
}

/// `statement` (a `SELECT COUNT(*)` of one key) bound with `key`: whether it is stored.
async fn stored<'q, K>(
    conn: &mut MySqlConnection,
    statement: &'static str,
    key: K,
    field: &'static str,
) -> Result<bool>
where
    K: 'q + Send + sqlx::Encode<'q, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
{
    let n: i64 = queries::query_scalar(statement)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error(OP, field))?;
    Ok(n != 0)
}

/// The bytes a message puts in its insert.
fn message_bytes(m: &ResultMessage) -> usize {
    m.message.len()
        + m.context_type.len()
        + m.context.len()
        + m.extra.as_ref().map_or(0, |e| rows::json_text(e).len())
}

impl MySqlStore {
    /// Refuses up front what the server would not take in one statement.
    fn check_import_sizes(&self, batch: &ImportBatch) -> Result<()> {
        for m in &batch.messages {
            self.check_size("message.message", message_bytes(m))?;
        }
        for d in &batch.build_data {
            let bytes = d.node_name.len()
                + d.generator.len()
                + d.data_format.len()
                + d.data_element.as_ref().map_or(0, String::len);
            self.check_size("build_data.data_element", bytes)?;
        }
        Ok(())
    }

    async fn try_import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let mut outcome = ImportOutcome::default();
        // Tasks known to exist in this transaction: those of the batch, once written or found,
        // and those checked for a message.
        let mut known: HashSet<TaskId> = HashSet::new();
        for task in &batch.tasks {
            let id = rows::id_text(task.task_id);
            let present = stored(&mut tx, queries::TASK_EXISTS_LOCKED, id, "task_id").await?;
            if !present {
                if let Some(parent) = task.parent_task_id {
                    if !known.contains(&parent)
                        && !stored(
                            &mut tx,
                            queries::TASK_EXISTS_LOCKED,
                            rows::id_text(parent),
                            "task_id",
                        )
                        .await?
                    {
                        return Err(Error::not_found(Entity::ParentTask, parent));
                    }
                }
                rows::bind_new_task(queries::query(queries::INSERT_TASK), task)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error(OP, "task"))?;
            }
            known.insert(task.task_id);
            count(&mut outcome.tasks, !present);
        }
        for message in &batch.messages {
            let written = import_message(&mut tx, message, &mut known).await?;
            count(&mut outcome.messages, written);
        }
        import_build_data(&mut tx, batch, &mut outcome.build_data).await?;
        for context in &batch.boot_contexts {
            let name = context.node_name.as_str();
            let present = stored(
                &mut tx,
                queries::BOOT_CONTEXT_EXISTS,
                name,
                "boot_action.node_name",
            )
            .await?;
            if !present {
                queries::query(queries::INSERT_BOOT_CONTEXT)
                    .bind(name)
                    .bind(rows::id_text(context.task_id))
                    .bind(context.identity_key.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error(OP, "boot_action.node_name"))?;
            }
            count(&mut outcome.boot_contexts, !present);
        }
        for action in &batch.boot_actions {
            let id = action.action_id.as_bytes().as_slice();
            let present = stored(
                &mut tx,
                queries::BOOT_ACTION_EXISTS,
                id,
                "boot_action.action_id",
            )
            .await?;
            if !present {
                queries::query(queries::INSERT_BOOT_ACTION)
                    .bind(id)
                    .bind(action.node_name.as_str())
                    .bind(action.action_name.as_str())
                    .bind(rows::id_text(action.task_id))
                    .bind(action.identity_key.as_bytes().as_slice())
                    .bind(action.action_status.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error(OP, "boot_action"))?;
            }
            count(&mut outcome.boot_actions, !present);
        }
        match mode {
            ImportMode::Write => tx.commit().await,
            ImportMode::DryRun => tx.rollback().await,
        }
        .map_err(db_error(OP, "database"))?;
        Ok(outcome)
    }
}

/// Inserts `message` with its sequence unless that sequence is stored; whether it was
/// written. The sequence stored for another task is a `Conflict`; a task neither in `known`
/// nor stored is `NotFound`.
async fn import_message(
    conn: &mut MySqlConnection,
    message: &ResultMessage,
    known: &mut HashSet<TaskId>,
) -> Result<bool> {
    let row = queries::query(queries::MESSAGE_BY_SEQUENCE)
        .bind(message.sequence)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error(OP, "message.sequence"))?;
    if let Some(row) = row {
        let owner = rows::message(&row)?.task_id;
        if owner != message.task_id {
            return Err(Error::conflict(
                Entity::Message,
                message.sequence,
                format!("is stored for task {owner}, not {}", message.task_id),
            ));
        }
        return Ok(false);
    }
    let task = message.task_id;
    if !known.contains(&task) {
        if !stored(
            conn,
            queries::TASK_EXISTS_LOCKED,
            rows::id_text(task),
            "task_id",
        )
        .await?
        {
            return Err(Error::not_found(Entity::Task, task));
        }
        known.insert(task);
    }
    queries::query(queries::IMPORT_MESSAGE)
        .bind(message.sequence)
        .bind(rows::id_text(task))
        .bind(message.message.as_str())
        .bind(message.error)
        .bind(message.context_type.as_str())
        .bind(message.context.as_str())
        .bind(message.ts.naive_utc())
        .bind(message.extra.as_ref().map(rows::json_text))
        .execute(&mut *conn)
        .await
        .map_err(db_error(OP, "message.message"))?;
    Ok(true)
}

/// A build-data element as bound, its identity when counting copies.
type BuildKey<'a> = (
    &'a str,
    String,
    chrono::NaiveDateTime,
    &'a str,
    &'a str,
    Option<&'a str>,
);

fn build_key(data: &BuildData) -> Result<BuildKey<'_>> {
    let collected = data.collected_date.ok_or_else(|| {
        Error::invalid(
            "import.build_data",
            "every imported element needs its collected date",
        )
    })?;
    Ok((
        data.node_name.as_str(),
        rows::id_text(data.task_id),
        collected.naive_utc(),
        data.generator.as_str(),
        data.data_format.as_str(),
        data.data_element.as_deref(),
    ))
}

/// Imports the batch's build data by content with multiplicity ([`BuildDataContents`]): the
/// stored copies of each distinct content are counted before any insert, then the elements
/// to write are inserted in batch order.
async fn import_build_data(
    conn: &mut MySqlConnection,
    batch: &ImportBatch,
    outcome: &mut ImportCount,
) -> Result<()> {
    let contents = BuildDataContents::of(&batch.build_data);
    let mut stored = Vec::with_capacity(contents.distinct().len());
    for data in contents.distinct() {
        let key = build_key(data)?;
        let n: i64 = queries::query_scalar(queries::IMPORT_BUILD_DATA_COUNT)
            .bind(key.0)
            .bind(key.1.as_str())
            .bind(key.2)
            .bind(key.3)
            .bind(key.4)
            .bind(key.5)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error(OP, "build_data"))?;
        stored.push(u64::try_from(n).unwrap_or(0));
    }
    for (data, write) in batch.build_data.iter().zip(contents.to_write(&stored)) {
        if write {
            let key = build_key(data)?;
            queries::query(queries::INSERT_BUILD_DATA)
                .bind(key.0)
                .bind(key.1.as_str())
                .bind(key.2)
                .bind(key.3)
                .bind(key.4)
                .bind(key.5)
                .execute(&mut *conn)
                .await
                .map_err(db_error(OP, "build_data.data_element"))?;
        }
        count(outcome, write);
    }
    Ok(())
}

#[async_trait]
impl ImportStore for MySqlStore {
    /// One transaction (run again when the server breaks a deadlock): per task `TASK_EXISTS_LOCKED`
    /// (and its parent's, unless imported just before), then `INSERT_TASK`; per message
    /// `MESSAGE_BY_SEQUENCE`, its task's `TASK_EXISTS_LOCKED`, then `IMPORT_MESSAGE`;
    /// `IMPORT_BUILD_DATA_COUNT` per distinct build-data content, then `INSERT_BUILD_DATA`
    /// per element to write; the contexts and actions by their keys. Committed, or rolled
    /// back for a dry run; any error rolls everything back.
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        self.check_import_sizes(batch)?;
        retry_races!(self.try_import(batch, mode).await)
    }
}
