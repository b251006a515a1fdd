//! [`ImportStore`] on SQLite: rows written as given, keys and times included, in one
//! `BEGIN IMMEDIATE` transaction, committed for [`ImportMode::Write`] and rolled back for
//! [`ImportMode::DryRun`].
//!
//! Tasks, messages, contexts and actions are each one `INSERT … ON CONFLICT DO NOTHING` on
//! their key: no row affected means the key was stored (present). Build data has no key; its
//! stored copies are counted per distinct content before anything of the batch is written.

use async_trait::async_trait;
use drydock_state_core::backend::BuildDataContents;
use drydock_state_core::{
    BuildData, Entity, Error, ImportBatch, ImportCount, ImportMode, ImportOutcome, ImportStore,
    Result, ResultMessage, Task, TaskStatus,
};
use sqlx::sqlite::SqliteConnection;

use crate::codec::{fits, id_text, parse_id, to_json, to_micros, TaskRowParams};
use crate::error::{Named, OrStore};
use crate::queries;
use crate::store::SqliteStore;

const OP: &str = "import";

/// Counts one row: written or present.
fn count(count: &mut ImportCount, written: bool) {
    if written {
        count.written += 1;
    } else {
        count.present += 1;
    }
}

/// Inserts `task` unless its id is stored; whether it was written.
async fn import_task(conn: &mut SqliteConnection, task: &Task) -> Result<bool> {
    let p = TaskRowParams::of(task)?;
    let done = queries::query(queries::IMPORT_TASK)
        .bind(p.task_id)
        .bind(p.parent_task_id)
        .bind(p.action)
        .bind(p.design_ref)
        .bind(p.status)
        .bind(p.result_status)
        .bind(p.result_message)
        .bind(p.result_reason)
        .bind(p.result_successes)
        .bind(p.result_failures)
        .bind(p.result_links)
        .bind(p.node_filter)
        .bind(p.subtask_id_list)
        .bind(p.created)
        .bind(p.created_by)
        .bind(p.updated)
        .bind(p.retry)
        .bind(p.terminated)
        .bind(p.terminated_by)
        .bind(p.terminate)
        .bind(p.request_context)
        .bind(p.claimed_by)
        .bind(p.claim_term)
        .bind(p.claimed_at)
        .bind(p.attempt)
        .bind(p.claim_id)
        .execute(&mut *conn)
        .await
        .or_store(OP)
        .missing_as(
            Entity::ParentTask,
            task.parent_task_id
                .map_or_else(String::new, |p| p.to_string()),
        )?;
    Ok(done.rows_affected() == 1)
}

/// Inserts `message` with its sequence unless that sequence is stored; whether it was
/// written. The sequence stored for another task is a `Conflict`.
async fn import_message(conn: &mut SqliteConnection, message: &ResultMessage) -> Result<bool> {
    fits("message.message", &message.message)?;
    let extra = message
        .extra
        .as_ref()
        .map(|v| to_json("message.extra", v))
        .transpose()?;
    fits("message.extra", extra.as_deref().unwrap_or_default())?;
    let done = queries::query(queries::IMPORT_MESSAGE)
        .bind(message.sequence)
        .bind(id_text(message.task_id))
        .bind(message.message.as_str())
        .bind(message.error)
        .bind(message.context_type.as_str())
        .bind(message.context.as_str())
        .bind(to_micros(message.ts))
        .bind(extra)
        .execute(&mut *conn)
        .await
        .or_store(OP)
        .missing_as(Entity::Task, message.task_id)?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    let owner: String = queries::query_scalar(queries::MESSAGE_OWNER)
        .bind(message.sequence)
        .fetch_one(&mut *conn)
        .await
        .or_store(OP)?;
    let owner = parse_id("result_messages.task_id", &owner)?;
    if owner != message.task_id {
        return Err(Error::conflict(
            Entity::Message,
            message.sequence,
            format!("is stored for task {owner}, not {}", message.task_id),
        ));
    }
    Ok(false)
}

/// A build-data element as stored (a missing element is stored empty).
type BuildKey<'a> = (&'a str, String, i64, &'a str, &'a str, &'a str);

fn build_key(data: &BuildData) -> Result<BuildKey<'_>> {
    let collected = data.collected_date.ok_or_else(|| {
        Error::invalid(
            "import.build_data",
            "every imported element needs its collected date",
        )
    })?;
    let element = data.data_element.as_deref().unwrap_or_default();
    fits("build_data.data_element", element)?;
    Ok((
        data.node_name.as_str(),
        id_text(data.task_id),
        to_micros(collected),
        data.generator.as_str(),
        data.data_format.as_str(),
        element,
    ))
}

/// Imports the batch's build data by content with multiplicity ([`BuildDataContents`]): the
/// stored copies of each distinct content are counted before any insert, then the elements
/// to write are inserted in batch order.
async fn import_build_data(
    conn: &mut SqliteConnection,
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
            .or_store(OP)?;
        stored.push(u64::try_from(n).unwrap_or(0));
    }
    for (data, write) in batch.build_data.iter().zip(contents.to_write(&stored)) {
        if write {
            let key = build_key(data)?;
            queries::query(queries::RECORD_BUILD_DATA)
                .bind(key.0)
                .bind(key.1.as_str())
                .bind(key.2)
                .bind(key.3)
                .bind(key.4)
                .bind(key.5)
                .execute(&mut *conn)
                .await
                .or_store(OP)?;
        }
        count(outcome, write);
    }
    Ok(())
}

/// Writes `batch` in the caller's transaction and counts what it wrote.
async fn import_all(conn: &mut SqliteConnection, batch: &ImportBatch) -> Result<ImportOutcome> {
    let mut outcome = ImportOutcome::default();
    for task in &batch.tasks {
        let written = import_task(conn, task).await?;
        count(&mut outcome.tasks, written);
    }
    for message in &batch.messages {
        let written = import_message(conn, message).await?;
        count(&mut outcome.messages, written);
    }
    import_build_data(conn, batch, &mut outcome.build_data).await?;
    for context in &batch.boot_contexts {
        let done = queries::query(queries::IMPORT_BOOT_ACTION_CONTEXT)
            .bind(context.node_name.as_str())
            .bind(id_text(context.task_id))
            .bind(context.identity_key.as_bytes().as_slice())
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
        count(&mut outcome.boot_contexts, done.rows_affected() == 1);
    }
    for action in &batch.boot_actions {
        let done = queries::query(queries::IMPORT_BOOT_ACTION)
            .bind(action.action_id.as_bytes().as_slice())
            .bind(action.node_name.as_str())
            .bind(action.action_name.as_str())
            .bind(id_text(action.task_id))
            .bind(action.identity_key.as_bytes().as_slice())
            .bind(action.action_status.as_str())
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
        count(&mut outcome.boot_actions, done.rows_affected() == 1);
    }
    Ok(outcome)
}

#[async_trait]
impl ImportStore for SqliteStore {
    /// One `BEGIN IMMEDIATE` transaction: `IMPORT_TASK` per task (parents first, so a parent
    /// in the batch is found by the foreign key), `IMPORT_MESSAGE` per message (with
    /// `MESSAGE_OWNER` when its sequence is taken), `IMPORT_BUILD_DATA_COUNT` per distinct
    /// build-data content then `RECORD_BUILD_DATA` per element to write, then the contexts and
    /// actions; committed, or rolled back for a dry run. Any error rolls everything back.
    #[tracing::instrument(level = "debug", skip_all, fields(tasks = batch.tasks.len(), messages = batch.messages.len(), mode = ?mode))]
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        batch.validate()?;
        let mut tx = self.begin_write(OP).await?;
        let outcome = import_all(&mut tx, batch).await?;
        match mode {
            ImportMode::Write => {
                tx.commit().await.or_store(OP)?;
                // As the memory store: waiting claimers look again if the batch queued work.
                if batch.tasks.iter().any(|t| t.status == TaskStatus::Queued) {
                    self.queued.notify_waiters();
                }
            }
            ImportMode::DryRun => tx.rollback().await.or_store(OP)?,
        }
        Ok(outcome)
    }
}
