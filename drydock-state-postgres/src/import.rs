//! [`ImportStore`] on PostgreSQL: a batch of rows written as given, in one transaction, with
//! set-based statements (parallel arrays, `UNNEST`), [`IMPORT_CHUNK`] rows per statement.
//!
//! Everything is checked before anything is written: the stored tasks the batch names (its
//! own, the parents and message tasks outside it) are read and key-share-locked, the stored
//! messages numbered like imported ones are read, and a missing parent or task or a number
//! held by another task's message fails the import with nothing written. Then tasks (parents
//! first), messages, build data, boot-action contexts and boot actions are inserted; a dry
//! run rolls the transaction back.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::backend::BuildDataContents;
use drydock_state_core::{
    BootAction, BootActionContext, BuildData, Entity, Error, ImportBatch, ImportCount, ImportMode,
    ImportOutcome, ImportStore, Result, ResultMessage, Task,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Named, OrStore};
use crate::queries;
use crate::store::PgStore;
use crate::tasks::json_text;

/// Rows per statement: large enough that tens of thousands of rows take a few round trips,
/// small enough that no statement's arrays grow without bound.
const IMPORT_CHUNK: usize = 5_000;

const OP: &str = "import";

#[async_trait]
impl ImportStore for PgStore {
    /// One transaction, committed for [`ImportMode::Write`] and rolled back for
    /// [`ImportMode::DryRun`]. The messages' `bigserial` is moved past the highest imported
    /// number (only forward) by a write only: a sequence is not transactional, so a dry run
    /// leaves it alone.
    #[tracing::instrument(level = "debug", skip_all, fields(tasks = batch.tasks.len(), messages = batch.messages.len(), build_data = batch.build_data.len(), mode = ?mode))]
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        batch.validate()?;
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let plan = check(&mut tx, batch).await?;
        let outcome = ImportOutcome {
            tasks: insert_tasks(&mut tx, &plan.tasks, batch.tasks.len()).await?,
            messages: insert_messages(&mut tx, &plan.messages, batch.messages.len(), mode).await?,
            build_data: import_build_data(&mut tx, &batch.build_data).await?,
            boot_contexts: import_boot_contexts(&mut tx, &batch.boot_contexts).await?,
            boot_actions: import_boot_actions(&mut tx, &batch.boot_actions).await?,
        };
        match mode {
            ImportMode::Write => tx.commit().await.or_store(OP)?,
            ImportMode::DryRun => tx.rollback().await.or_store(OP)?,
        }
        tracing::info!(?mode, ?outcome, "imported");
        Ok(outcome)
    }
}

/// What [`check`] found to write: the tasks and messages not stored, in batch order.
struct Plan<'b> {
    tasks: Vec<&'b Task>,
    messages: Vec<&'b ResultMessage>,
}

/// Reads what the batch depends on and decides, in the reference store's order (tasks, then
/// messages, each in batch order), what to write or why the import fails.
async fn check<'b>(conn: &mut PgConnection, batch: &'b ImportBatch) -> Result<Plan<'b>> {
    let in_batch: HashSet<Uuid> = batch.tasks.iter().map(|t| t.task_id.0).collect();
    // The batch's tasks, then the parents and message tasks outside it, each once.
    let mut named: Vec<Uuid> = batch.tasks.iter().map(|t| t.task_id.0).collect();
    let mut outside = HashSet::new();
    let referred = batch
        .tasks
        .iter()
        .filter_map(|t| t.parent_task_id)
        .chain(batch.messages.iter().map(|m| m.task_id));
    for id in referred {
        if !in_batch.contains(&id.0) && outside.insert(id.0) {
            named.push(id.0);
        }
    }
    let mut stored: HashSet<Uuid> = HashSet::new();
    for chunk in named.chunks(IMPORT_CHUNK) {
        let found: Vec<Uuid> = queries::query_scalar(queries::IMPORT_STORED_TASKS)
            .bind(chunk)
            .fetch_all(&mut *conn)
            .await
            .or_store(OP)?;
        stored.extend(found);
    }

    let mut tasks = Vec::new();
    for task in &batch.tasks {
        if stored.contains(&task.task_id.0) {
            continue;
        }
        // A parent in the batch comes earlier (validated), so it is stored or written first.
        if let Some(parent) = task.parent_task_id {
            if !in_batch.contains(&parent.0) && !stored.contains(&parent.0) {
                return Err(Error::not_found(Entity::ParentTask, parent));
            }
        }
        tasks.push(task);
    }

    let sequences: Vec<i64> = batch.messages.iter().map(|m| m.sequence).collect();
    let mut owners: HashMap<i64, Uuid> = HashMap::new();
    for chunk in sequences.chunks(IMPORT_CHUNK) {
        let found: Vec<(i64, Uuid)> = queries::query_as(queries::IMPORT_MESSAGE_OWNERS)
            .bind(chunk)
            .fetch_all(&mut *conn)
            .await
            .or_store(OP)?;
        owners.extend(found);
    }
    let mut messages = Vec::new();
    for message in &batch.messages {
        match owners.get(&message.sequence) {
            Some(owner) if *owner == message.task_id.0 => {}
            Some(owner) => {
                return Err(Error::conflict(
                    Entity::Message,
                    message.sequence,
                    format!("is stored for task {owner}, not {}", message.task_id),
                ))
            }
            None => {
                let task = message.task_id.0;
                if !in_batch.contains(&task) && !stored.contains(&task) {
                    return Err(Error::not_found(Entity::Task, message.task_id));
                }
                messages.push(message);
            }
        }
    }
    Ok(Plan { tasks, messages })
}

/// A list serialised as the JSON array text [`queries::IMPORT_TASKS`] unpacks.
fn json_list(field: &'static str, list: serde_json::Result<String>) -> Result<String> {
    list.map_err(|e| Error::invalid(field, e.to_string()))
}

/// Inserts the tasks not stored, parents first; `total` is the batch's task count.
async fn insert_tasks(
    conn: &mut PgConnection,
    tasks: &[&Task],
    total: usize,
) -> Result<ImportCount> {
    let mut written = 0u64;
    for chunk in tasks.chunks(IMPORT_CHUNK) {
        let n = chunk.len();
        let mut ids = Vec::with_capacity(n);
        let mut parents = Vec::with_capacity(n);
        let mut subtasks = Vec::with_capacity(n);
        let mut actions = Vec::with_capacity(n);
        let mut design_refs = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut result_statuses = Vec::with_capacity(n);
        let mut result_messages = Vec::with_capacity(n);
        let mut result_reasons = Vec::with_capacity(n);
        let mut successes = Vec::with_capacity(n);
        let mut failures = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        let mut node_filters = Vec::with_capacity(n);
        let mut created: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        let mut created_by = Vec::with_capacity(n);
        let mut updated: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        let mut retries = Vec::with_capacity(n);
        let mut terminated: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        let mut terminated_by = Vec::with_capacity(n);
        let mut terminate = Vec::with_capacity(n);
        let mut request_contexts = Vec::with_capacity(n);
        let mut claimed_by = Vec::with_capacity(n);
        let mut claim_terms = Vec::with_capacity(n);
        let mut claimed_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut claim_ids = Vec::with_capacity(n);
        for task in chunk {
            let subtask_ids: Vec<String> = task
                .subtask_id_list
                .iter()
                .map(|id| id.0.to_string())
                .collect();
            ids.push(task.task_id.0);
            parents.push(task.parent_task_id.map(|p| p.0));
            subtasks.push(json_list(
                "task.subtask_id_list",
                serde_json::to_string(&subtask_ids),
            )?);
            actions.push(task.action.as_str());
            design_refs.push(task.design_ref.as_deref());
            statuses.push(task.status.as_str());
            result_statuses.push(task.result.status.as_str());
            result_messages.push(task.result.message.as_deref());
            result_reasons.push(task.result.reason.as_deref());
            successes.push(json_list(
                "task.result.successes",
                serde_json::to_string(&task.result.successes),
            )?);
            failures.push(json_list(
                "task.result.failures",
                serde_json::to_string(&task.result.failures),
            )?);
            links.push(json_list(
                "task.result.links",
                serde_json::to_string(&task.result.links),
            )?);
            node_filters.push(json_text(&task.node_filter));
            created.push(task.created);
            created_by.push(task.created_by.as_deref());
            updated.push(task.updated);
            retries.push(task.retry);
            terminated.push(task.terminated);
            terminated_by.push(task.terminated_by.as_deref());
            terminate.push(task.terminate);
            request_contexts.push(json_text(&task.request_context));
            claimed_by.push(task.claimed_by.as_deref());
            claim_terms.push(task.claim_term);
            claimed_at.push(task.claimed_at);
            attempts.push(task.attempt);
            claim_ids.push(task.claim_id);
        }
        let done = queries::query(queries::IMPORT_TASKS)
            .bind(&ids)
            .bind(&parents)
            .bind(&subtasks)
            .bind(&actions)
            .bind(&design_refs)
            .bind(&statuses)
            .bind(&result_statuses)
            .bind(&result_messages)
            .bind(&result_reasons)
            .bind(&successes)
            .bind(&failures)
            .bind(&links)
            .bind(&node_filters)
            .bind(&created)
            .bind(&created_by)
            .bind(&updated)
            .bind(&retries)
            .bind(&terminated)
            .bind(&terminated_by)
            .bind(&terminate)
            .bind(&request_contexts)
            .bind(&claimed_by)
            .bind(&claim_terms)
            .bind(&claimed_at)
            .bind(&attempts)
            .bind(&claim_ids)
            .execute(&mut *conn)
            .await
            .or_store(OP)
            // The parents were checked and locked; a claim id is the only other unique key.
            .missing_as(Entity::ParentTask, "(a parent of an imported task)")
            .duplicate_as(|| {
                Error::conflict(
                    Entity::Claim,
                    "(of an imported task)",
                    "a stored task carries the same claim id",
                )
            })?;
        written += done.rows_affected();
    }
    Ok(count(written, total))
}

/// Inserts the messages not stored (`messages`, of the batch's `total`), with their numbers.
/// A write first moves the `bigserial` past the highest imported number.
async fn insert_messages(
    conn: &mut PgConnection,
    messages: &[&ResultMessage],
    total: usize,
    mode: ImportMode,
) -> Result<ImportCount> {
    // Ascending (validated): the last one is the highest.
    if let (Some(last), ImportMode::Write) = (messages.last(), mode) {
        queries::query(queries::IMPORT_ADVANCE_MESSAGE_SEQUENCE)
            .bind(last.sequence)
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
    }
    let mut written = 0u64;
    for chunk in messages.chunks(IMPORT_CHUNK) {
        let sequences: Vec<i64> = chunk.iter().map(|m| m.sequence).collect();
        let tasks: Vec<Uuid> = chunk.iter().map(|m| m.task_id.0).collect();
        let texts: Vec<&str> = chunk.iter().map(|m| m.message.as_str()).collect();
        let errors: Vec<bool> = chunk.iter().map(|m| m.error).collect();
        let context_types: Vec<&str> = chunk.iter().map(|m| m.context_type.as_str()).collect();
        let contexts: Vec<&str> = chunk.iter().map(|m| m.context.as_str()).collect();
        let stamps: Vec<DateTime<Utc>> = chunk.iter().map(|m| m.ts).collect();
        let extras: Vec<Option<String>> = chunk.iter().map(|m| json_text(&m.extra)).collect();
        let done = queries::query(queries::IMPORT_MESSAGES)
            .bind(&sequences)
            .bind(&tasks)
            .bind(&texts)
            .bind(&errors)
            .bind(&context_types)
            .bind(&contexts)
            .bind(&stamps)
            .bind(&extras)
            .execute(&mut *conn)
            .await
            .or_store(OP)
            // The tasks were checked and locked, the numbers read: only a message appended
            // meanwhile under an imported number can still refuse the insert.
            .missing_as(Entity::Task, "(the task of an imported message)")
            .duplicate_as(|| {
                Error::conflict(
                    Entity::Message,
                    "(an imported sequence)",
                    "was taken by a message appended during the import",
                )
            })?;
        written += done.rows_affected();
    }
    // Present: those found stored by the check (an insert writes all its rows or fails).
    Ok(ImportCount {
        written,
        present: (total - messages.len()) as u64,
    })
}

/// Build data by content with multiplicity: the stored rows equal to each distinct element
/// are counted (before anything is inserted), the n-th copy in the batch is present when
/// at least n are stored, and the rest are inserted in batch order.
async fn import_build_data(conn: &mut PgConnection, data: &[BuildData]) -> Result<ImportCount> {
    let contents = BuildDataContents::of(data);
    let distinct = contents.distinct();
    let mut stored = vec![0u64; distinct.len()];
    for (c, chunk) in distinct.chunks(IMPORT_CHUNK).enumerate() {
        let columns = BuildColumns::of(chunk);
        let counts: Vec<(i64, i64)> = queries::query_as(queries::IMPORT_BUILD_DATA_COUNTS)
            .bind(&columns.nodes)
            .bind(&columns.tasks)
            .bind(&columns.dates)
            .bind(&columns.generators)
            .bind(&columns.formats)
            .bind(&columns.elements)
            .fetch_all(&mut *conn)
            .await
            .or_store(OP)?;
        for (ord, n) in counts {
            let i = usize::try_from(ord - 1)
                .ok()
                .map(|i| c * IMPORT_CHUNK + i)
                .filter(|&i| i < stored.len())
                .ok_or_else(|| {
                    crate::error::corrupt("build-data count", "position out of range")
                })?;
            stored[i] = u64::try_from(n).unwrap_or(0);
        }
    }
    let missing: Vec<&BuildData> = data
        .iter()
        .zip(contents.to_write(&stored))
        .filter_map(|(d, write)| write.then_some(d))
        .collect();
    for chunk in missing.chunks(IMPORT_CHUNK) {
        let columns = BuildColumns::of(chunk);
        queries::query(queries::IMPORT_BUILD_DATA)
            .bind(&columns.nodes)
            .bind(&columns.tasks)
            .bind(&columns.dates)
            .bind(&columns.generators)
            .bind(&columns.formats)
            .bind(&columns.elements)
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
    }
    let written = missing.len() as u64;
    Ok(count(written, data.len()))
}

/// Build-data elements as the six parallel arrays of [`queries::IMPORT_BUILD_DATA`] and
/// [`queries::IMPORT_BUILD_DATA_COUNTS`].
struct BuildColumns<'b> {
    nodes: Vec<&'b str>,
    tasks: Vec<Uuid>,
    dates: Vec<Option<DateTime<Utc>>>,
    generators: Vec<&'b str>,
    formats: Vec<&'b str>,
    elements: Vec<Option<&'b str>>,
}

impl<'b> BuildColumns<'b> {
    fn of(data: &[&'b BuildData]) -> Self {
        BuildColumns {
            nodes: data.iter().map(|d| d.node_name.as_str()).collect(),
            tasks: data.iter().map(|d| d.task_id.0).collect(),
            dates: data.iter().map(|d| d.collected_date).collect(),
            generators: data.iter().map(|d| d.generator.as_str()).collect(),
            formats: data.iter().map(|d| d.data_format.as_str()).collect(),
            elements: data.iter().map(|d| d.data_element.as_deref()).collect(),
        }
    }
}

/// Boot-action contexts by node: a node that has one keeps it.
async fn import_boot_contexts(
    conn: &mut PgConnection,
    contexts: &[BootActionContext],
) -> Result<ImportCount> {
    let mut written = 0u64;
    for chunk in contexts.chunks(IMPORT_CHUNK) {
        let nodes: Vec<&str> = chunk.iter().map(|c| c.node_name.as_str()).collect();
        let tasks: Vec<Uuid> = chunk.iter().map(|c| c.task_id.0).collect();
        let keys: Vec<&[u8]> = chunk
            .iter()
            .map(|c| &c.identity_key.as_bytes()[..])
            .collect();
        let done = queries::query(queries::IMPORT_BOOT_CONTEXTS)
            .bind(&nodes)
            .bind(&tasks)
            .bind(&keys)
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
        written += done.rows_affected();
    }
    Ok(count(written, contexts.len()))
}

/// Boot actions by id: a stored id keeps its action.
async fn import_boot_actions(
    conn: &mut PgConnection,
    actions: &[BootAction],
) -> Result<ImportCount> {
    let mut written = 0u64;
    for chunk in actions.chunks(IMPORT_CHUNK) {
        let ids: Vec<&[u8]> = chunk.iter().map(|a| &a.action_id.as_bytes()[..]).collect();
        let nodes: Vec<&str> = chunk.iter().map(|a| a.node_name.as_str()).collect();
        let names: Vec<&str> = chunk.iter().map(|a| a.action_name.as_str()).collect();
        let tasks: Vec<Uuid> = chunk.iter().map(|a| a.task_id.0).collect();
        let keys: Vec<&[u8]> = chunk
            .iter()
            .map(|a| &a.identity_key.as_bytes()[..])
            .collect();
        let statuses: Vec<&str> = chunk.iter().map(|a| a.action_status.as_str()).collect();
        let done = queries::query(queries::IMPORT_BOOT_ACTIONS)
            .bind(&ids)
            .bind(&nodes)
            .bind(&names)
            .bind(&tasks)
            .bind(&keys)
            .bind(&statuses)
            .execute(&mut *conn)
            .await
            .or_store(OP)?;
        written += done.rows_affected();
    }
    Ok(count(written, actions.len()))
}

/// Of `total` rows, `written` were written and the rest found stored.
fn count(written: u64, total: usize) -> ImportCount {
    ImportCount {
        written,
        present: (total as u64).saturating_sub(written),
    }
}
