//! Owns [`SqliteStore`]: the four store traits over one SQLite file through a sqlx pool.
//!
//! Writes that need more than one statement run in `BEGIN IMMEDIATE` transactions, which take
//! SQLite's write lock up front (waiting up to the busy timeout) instead of upgrading a read
//! snapshot later, which SQLite refuses with `SQLITE_BUSY` without waiting. Reads of a task
//! with its messages run in one deferred transaction, so both queries see the same snapshot.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use drydock_state_core::memory::{
    claim_is_stale, orphan_message, purge_cutoff, purge_keeps, stale_claim,
};
use drydock_state_core::{
    no_nul, validate_instance_id, BuildData, BuildDataQuery, BuildStore, ClaimRequest, Config,
    Error, InstanceLock, Lease, LeaseOutcome, MessageStore, NewMessage, OrphanPolicy, PurgeReport,
    Result, ResultDetails, ResultMessage, StateStore, SubtaskFilter, Task, TaskFilter, TaskId,
    TaskStatus, TaskStore, Verbosity,
};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Sqlite, SqlitePool};

use crate::codec::{
    fits, id_array, id_text, to_json, to_micros, BuildDataRow, LeaseRow, MessageRow, TaskParams,
    TaskRow, MAX_VALUE_BYTES,
};
use crate::config::{period_micros, Target};
use crate::error::{is_busy, is_foreign_key_violation, is_unique_violation, OrStore};
use crate::queries;

/// How many root tasks one purge transaction deletes (with their trees), so that the write
/// lock is never held for long; other writers get in between batches.
const PURGE_BATCH: i64 = 100;

/// The SQLite backend: all four stores over one database file (or an in-memory database).
///
/// Open it with [`SqliteStore::open`], then [`SqliteStore::migrate`] (the registry's `open`
/// does both). Cloning is not offered: share it as `Arc<dyn StateStore>`.
pub struct SqliteStore {
    pool: SqlitePool,
    path: Option<PathBuf>,
    grace_micros: i64,
    /// Wakes this process's waiting claimers when this store queues a task.
    queued: tokio::sync::Notify,
    // Held only to be dropped with the store.
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("grace_micros", &self.grace_micros)
            .finish_non_exhaustive()
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

impl SqliteStore {
    /// Opens (creating if missing, with its directory) the database `url` names:
    /// `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:relative.db` or
    /// `sqlite::memory:`. The pool holds up to `pool_size + pool_overflow` connections, waits
    /// `pool_timeout` for one, and each connection waits as long for SQLite's write lock. The
    /// lease lasts `config.leader.grace_period`. Does not migrate; see [`SqliteStore::migrate`].
    pub async fn open(url: &str, config: &Config) -> Result<Self> {
        let target = Target::from_url(url, config)?;
        target.create_parent_dir()?;
        let pool = Self::first_connection(&target, config.database.pool_timeout).await?;
        tracing::debug!(path = ?target.path, "opened sqlite store");
        Ok(SqliteStore {
            pool,
            path: target.path,
            grace_micros: period_micros(config.leader.grace_period),
            queued: tokio::sync::Notify::new(),
            _guard: None,
        })
    }

    /// Opens the pool with its first connection. On a new file the first connections of
    /// several instances race to switch it to WAL, and SQLite refuses all but one with
    /// `SQLITE_BUSY` at once (deadlock avoidance: the busy timeout does not apply), so a busy
    /// refusal is tried again, with a short growing pause; no new attempt starts once
    /// `patience` has passed (an attempt itself may wait up to the pool and busy timeouts).
    /// Any other failure is returned at once. Once the file is in WAL mode the race is over
    /// for good.
    async fn first_connection(target: &Target, patience: Duration) -> Result<SqlitePool> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match target
                .pool
                .clone()
                .connect_with(target.connect.clone())
                .await
            {
                Err(e) if is_busy(&e) && started.elapsed() + pause < patience => {
                    tracing::debug!(?pause, "sqlite file busy while opening; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                connected => return connected.or_store("open"),
            }
        }
    }

    /// Brings the schema up to date; returns how many migrations were applied (zero when it
    /// already was). Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<usize> {
        crate::migrate::run(&self.pool).await
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The connection pool, for inspection and maintenance (the schema is this crate's).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Keeps `guard` alive as long as the store: e.g. the `tempfile::TempDir` holding a
    /// throwaway database, so the directory goes when the store does.
    pub fn keep_alive<T: Send + Sync + 'static>(mut self, guard: T) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Reads `rows` into tasks with their messages attached: one query whatever their number.
    async fn assemble(
        conn: &mut SqliteConnection,
        rows: Vec<TaskRow>,
        op: &'static str,
    ) -> Result<Vec<Task>> {
        let mut tasks = rows
            .into_iter()
            .map(TaskRow::into_task)
            .collect::<Result<Vec<_>>>()?;
        if tasks.is_empty() {
            return Ok(tasks);
        }
        let ids = id_array(tasks.iter().map(|t| &t.task_id));
        let rows: Vec<MessageRow> = queries::query_as(queries::MESSAGES_OF_TASKS)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .or_store(op)?;
        let mut by_task: HashMap<TaskId, Vec<ResultMessage>> = HashMap::new();
        for row in rows {
            let m = row.into_message()?;
            by_task.entry(m.task_id).or_default().push(m);
        }
        for task in &mut tasks {
            let message_list = by_task.remove(&task.task_id).unwrap_or_default();
            task.result.details = ResultDetails {
                error_count: message_list.iter().filter(|m| m.error).count() as u64,
                message_list,
            };
        }
        Ok(tasks)
    }

    async fn assemble_one(
        conn: &mut SqliteConnection,
        row: TaskRow,
        op: &'static str,
    ) -> Result<Task> {
        let mut tasks = Self::assemble(conn, vec![row], op).await?;
        Ok(tasks.pop().expect("one row in, one task out"))
    }

    /// After a guarded update changed nothing: `NotFound` if the task is gone, otherwise the
    /// status change was illegal.
    async fn refused_change(
        conn: &mut SqliteConnection,
        id: TaskId,
        next: TaskStatus,
        op: &'static str,
    ) -> Error {
        let stored: Option<String> = match queries::query_scalar(queries::TASK_STATUS)
            .bind(id_text(id))
            .fetch_optional(&mut *conn)
            .await
            .or_store(op)
        {
            Ok(s) => s,
            Err(e) => return e,
        };
        match stored {
            None => Error::not_found("task", id),
            Some(from) => Error::Conflict(format!(
                "task {id} is {from}, which is final; it cannot become {next}"
            )),
        }
    }

    /// Why an `update_task` changed nothing: the task is gone, its claim is stale, or its
    /// status is final.
    async fn refused_put(conn: &mut SqliteConnection, task: &Task, op: &'static str) -> Error {
        let stored: Option<(String, Option<String>, Option<i64>)> =
            match queries::query_as(queries::TASK_STATUS_AND_CLAIM)
                .bind(id_text(task.task_id))
                .fetch_optional(&mut *conn)
                .await
                .or_store(op)
            {
                Ok(s) => s,
                Err(e) => return e,
            };
        match stored {
            None => Error::not_found("task", task.task_id),
            Some((_, by, term)) if claim_is_stale(task, by.as_deref(), term) => stale_claim(task),
            Some((from, _, _)) => Error::Conflict(format!(
                "task {} is {from}, which is final; it cannot become {}",
                task.task_id, task.status
            )),
        }
    }

    fn wake_if_queued(&self, status: TaskStatus) {
        if status == TaskStatus::Queued {
            self.queued.notify_waiters();
        }
    }

    async fn task_exists(&self, id: TaskId, op: &'static str) -> Result<bool> {
        let status: Option<String> = queries::query_scalar(queries::TASK_STATUS)
            .bind(id_text(id))
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?;
        Ok(status.is_some())
    }

    /// Runs a lease statement (`?1` the instance, `?2` the grace period) that returns the row
    /// it took or kept, or nothing; nothing means denied, with the live lease as it stands.
    async fn take_lease(
        &self,
        op: &'static str,
        statement: &'static str,
        instance_id: &str,
    ) -> Result<LeaseOutcome> {
        validate_instance_id("instance_id", instance_id)?;
        let held: Option<LeaseRow> = queries::query_as(statement)
            .bind(instance_id)
            .bind(self.grace_micros)
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?;
        match held {
            Some(row) => Ok(LeaseOutcome::Held(row.into_lease()?)),
            None => Ok(LeaseOutcome::Denied(self.current(op).await?)),
        }
    }

    async fn current(&self, op: &'static str) -> Result<Option<Lease>> {
        queries::query_as::<_, LeaseRow>(queries::CURRENT_LEASE)
            .fetch_optional(&self.pool)
            .await
            .or_store(op)?
            .map(LeaseRow::into_lease)
            .transpose()
    }
}

/// Binds a message's values to [`queries::APPEND_MESSAGE`], after checking it fits.
fn append_query(task: TaskId, message: &NewMessage) -> Result<Query<'static>> {
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
fn batch_json(messages: &[NewMessage]) -> Result<String> {
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

fn subtask_filter_code(which: SubtaskFilter) -> i64 {
    match which {
        SubtaskFilter::All => 0,
        SubtaskFilter::Active => 1,
        SubtaskFilter::Complete => 2,
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    #[tracing::instrument(name = "sqlite.create_task", level = "debug", skip_all, fields(task_id = %task.task_id))]
    async fn create_task(&self, task: &Task) -> Result<()> {
        let p = TaskParams::of(task)?;
        let result = queries::query(queries::CREATE_TASK)
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
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => {
                self.wake_if_queued(task.status);
                Ok(())
            }
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(format!(
                "task {} already exists",
                task.task_id
            ))),
            Err(e) if is_foreign_key_violation(&e) => Err(Error::not_found(
                "parent task",
                task.parent_task_id
                    .map_or_else(String::new, |p| p.to_string()),
            )),
            Err(e) => Err(crate::error::classify("create_task", e)),
        }
    }

    #[tracing::instrument(name = "sqlite.get_task", level = "debug", skip_all, fields(task_id = %id))]
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        const OP: &str = "get_task";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::GET_TASK)
            .bind(id_text(id))
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let task = match row {
            Some(row) => Some(Self::assemble_one(&mut tx, row, OP).await?),
            None => None,
        };
        tx.commit().await.or_store(OP)?;
        Ok(task)
    }

    #[tracing::instrument(name = "sqlite.update_task", level = "debug", skip_all, fields(task_id = %task.task_id))]
    async fn update_task(&self, task: &Task) -> Result<Task> {
        const OP: &str = "update_task";
        let p = TaskParams::of(task)?;
        let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::UPDATE_TASK)
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
            .bind(p.created_by)
            .bind(p.retry)
            .bind(p.terminated)
            .bind(p.terminated_by)
            .bind(p.terminate)
            .bind(p.request_context)
            .bind(task.claimed_by.as_deref())
            .bind(task.claim_term)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::not_found(
                        "parent task",
                        task.parent_task_id
                            .map_or_else(String::new, |p| p.to_string()),
                    )
                } else {
                    crate::error::classify(OP, e)
                }
            })?;
        let Some(row) = row else {
            return Err(Self::refused_put(&mut tx, task, OP).await);
        };
        let stored = Self::assemble_one(&mut tx, row, OP).await?;
        tx.commit().await.or_store(OP)?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    #[tracing::instrument(name = "sqlite.set_status", level = "debug", skip_all, fields(task_id = %id, status = %status))]
    async fn set_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        const OP: &str = "set_status";
        let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::SET_STATUS)
            .bind(id_text(id))
            .bind(status.as_str())
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let Some(row) = row else {
            return Err(Self::refused_change(&mut tx, id, status, OP).await);
        };
        let stored = Self::assemble_one(&mut tx, row, OP).await?;
        tx.commit().await.or_store(OP)?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    #[tracing::instrument(name = "sqlite.list_tasks", level = "debug", skip_all, fields(limit = ?filter.limit))]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        filter.validate()?;
        const OP: &str = "list_tasks";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let rows: Vec<TaskRow> = queries::query_as(queries::LIST_TASKS)
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.action.as_deref())
            .bind(filter.parent.map(id_text))
            .bind(filter.created_after.map(to_micros))
            .bind(filter.created_before.map(to_micros))
            .bind(filter.after.map(|(created, _)| to_micros(created)))
            .bind(filter.after.map(|(_, id)| id_text(id)))
            .bind(filter.limit.map_or(-1, i64::from))
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let tasks = Self::assemble(&mut tx, rows, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(tasks)
    }

    #[tracing::instrument(name = "sqlite.add_subtask", level = "debug", skip_all, fields(parent = %parent, child = %child))]
    async fn add_subtask(&self, parent: TaskId, child: TaskId) -> Result<()> {
        const OP: &str = "add_subtask";
        let done = queries::query(queries::ADD_SUBTASK)
            .bind(id_text(parent))
            .bind(id_text(child))
            .execute(&self.pool)
            .await
            .or_store(OP)?;
        // No row changed: the child was already listed, or there is no such parent.
        if done.rows_affected() == 0 && !self.task_exists(parent, OP).await? {
            return Err(Error::not_found("task", parent));
        }
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.subtasks", level = "debug", skip_all, fields(parent = %parent, which = ?which))]
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        const OP: &str = "subtasks";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let list: Option<String> = queries::query_scalar(queries::SUBTASK_LIST)
            .bind(id_text(parent))
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let Some(list) = list else {
            return Err(Error::not_found("task", parent));
        };
        let rows: Vec<TaskRow> = queries::query_as(queries::SUBTASKS)
            .bind(list)
            .bind(subtask_filter_code(which))
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let tasks = Self::assemble(&mut tx, rows, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(tasks)
    }

    #[tracing::instrument(name = "sqlite.claim_next", level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term))]
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        const OP: &str = "claim_next";
        request.validate()?;
        let actions = if request.actions.is_empty() {
            None
        } else {
            Some(to_json("claim.actions", &request.actions)?)
        };
        let mut conn = self.pool.acquire().await.or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::CLAIM_NEXT)
            .bind(request.instance_id.as_str())
            .bind(request.term)
            .bind(actions)
            .fetch_optional(&mut *conn)
            .await
            .or_store(OP)?;
        match (row, request.term) {
            (Some(row), _) => Ok(Some(Self::assemble_one(&mut conn, row, OP).await?)),
            (None, None) => Ok(None),
            (None, Some(term)) => {
                let holds: bool = queries::query_scalar(queries::HOLDS_LEASE)
                    .bind(request.instance_id.as_str())
                    .bind(term)
                    .fetch_one(&mut *conn)
                    .await
                    .or_store(OP)?;
                if holds {
                    Ok(None)
                } else {
                    Err(Error::LeaseLost(format!(
                        "instance {} does not hold the lease with term {term}",
                        request.instance_id
                    )))
                }
            }
        }
    }

    #[tracing::instrument(name = "sqlite.recover_orphans", level = "debug", skip_all, fields(current_term, policy = ?policy))]
    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        const OP: &str = "recover_orphans";
        let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
        let orphans: Vec<TaskRow> = queries::query_as(queries::ORPHANS)
            .bind(current_term)
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let orphans = orphans
            .into_iter()
            .map(TaskRow::into_task)
            .collect::<Result<Vec<_>>>()?;
        if orphans.is_empty() {
            tx.commit().await.or_store(OP)?;
            return Ok(Vec::new());
        }
        let recover = match policy {
            OrphanPolicy::Requeue => queries::REQUEUE_ORPHANS,
            OrphanPolicy::Fail => queries::FAIL_ORPHANS,
        };
        queries::query(recover)
            .bind(current_term)
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        for task in &orphans {
            let message = NewMessage {
                error: policy == OrphanPolicy::Fail,
                ..NewMessage::info(orphan_message(task, current_term, policy))
            };
            append_query(task.task_id, &message)?
                .execute(&mut *tx)
                .await
                .or_store(OP)?;
        }
        tx.commit().await.or_store(OP)?;
        if policy == OrphanPolicy::Requeue {
            self.queued.notify_waiters();
        }
        tracing::info!(
            count = orphans.len(),
            current_term,
            "recovered orphaned tasks"
        );
        Ok(orphans.into_iter().map(|t| t.task_id).collect())
    }

    #[tracing::instrument(name = "sqlite.terminate_task", level = "debug", skip_all, fields(task_id = %id))]
    async fn terminate_task(&self, id: TaskId, by: &str) -> Result<Task> {
        const OP: &str = "terminate_task";
        no_nul("terminated_by", by)?;
        let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::TERMINATE_TASK)
            .bind(id_text(id))
            .bind(by)
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let Some(row) = row else {
            return Err(Error::not_found("task", id));
        };
        let stored = Self::assemble_one(&mut tx, row, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(stored)
    }

    /// Returns when this store queues a task, or after `max_wait`. Tasks queued by other
    /// processes on the same file are found by the caller's next poll.
    #[tracing::instrument(name = "sqlite.wait_for_queued", level = "trace", skip_all)]
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        let _ = tokio::time::timeout(max_wait, self.queued.notified()).await;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.purge", level = "debug", skip_all, fields(older_than = ?older_than))]
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        const OP: &str = "purge";
        let cutoff = to_micros(purge_cutoff(older_than)?);
        let mut report = PurgeReport::default();
        // Keyset over (created, task_id): a tree kept (live work) or skipped (its delete
        // failed) is passed over by the next batch instead of being found first again.
        let mut after: (i64, String) = (i64::MIN, String::new());
        loop {
            let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
            let roots: Vec<(i64, String)> = queries::query_as(queries::PURGE_ROOTS)
                .bind(cutoff)
                .bind(PURGE_BATCH)
                .bind(after.0)
                .bind(after.1.as_str())
                .fetch_all(&mut *tx)
                .await
                .or_store(OP)?;
            let Some(last) = roots.last().cloned() else {
                tx.commit().await.or_store(OP)?;
                break;
            };
            for (_, root) in &roots {
                // Each tree under a savepoint of its own: one that cannot be deleted is
                // rolled back alone and reported, and the others still go.
                let mut tree_tx = sqlx::Connection::begin(&mut *tx).await.or_store(OP)?;
                match purge_tree(&mut tree_tx, root).await {
                    Ok(Some(purged)) => {
                        tree_tx.commit().await.or_store(OP)?;
                        report.tasks += purged.tasks;
                        report.messages += purged.messages;
                    }
                    Ok(None) => tree_tx.commit().await.or_store(OP)?,
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tree_tx.rollback().await.or_store(OP)?;
                        tracing::warn!(
                            root = %root,
                            error = %e,
                            "could not purge this task tree; skipped it and went on"
                        );
                    }
                }
            }
            tx.commit().await.or_store(OP)?;
            if (roots.len() as i64) < PURGE_BATCH {
                break;
            }
            after = last;
            // Let waiting writers take the lock between batches.
            tokio::task::yield_now().await;
        }
        tracing::info!(
            tasks = report.tasks,
            messages = report.messages,
            "purged task trees"
        );
        Ok(report)
    }
}

/// Deletes the tree rooted at `root` bottom-up, deepest level first, so that no delete
/// cascades (a cascade nests a trigger level per tree level, and SQLite refuses more than
/// `SQLITE_MAX_TRIGGER_DEPTH`). Returns what it deleted, or `None` when the tree has a task
/// that keeps it ([`purge_keeps`]) and nothing was deleted. Runs in the caller's transaction,
/// which holds the write lock, so the tree cannot change in between.
async fn purge_tree(conn: &mut SqliteConnection, root: &str) -> Result<Option<PurgeReport>> {
    const OP: &str = "purge";
    let tree: Vec<(String, i64, String)> = queries::query_as(queries::PURGE_TREE)
        .bind(root)
        .fetch_all(&mut *conn)
        .await
        .or_store(OP)?;
    for (_, _, status) in &tree {
        let status: TaskStatus = status
            .parse()
            .map_err(|_| crate::codec::corrupt("tasks.status", "unknown status"))?;
        if purge_keeps(status) {
            return Ok(None);
        }
    }
    let all: Vec<&str> = tree.iter().map(|(id, _, _)| id.as_str()).collect();
    let messages = queries::query(queries::PURGE_DELETE_MESSAGES)
        .bind(serde_json::Value::from(all).to_string())
        .execute(&mut *conn)
        .await
        .or_store(OP)?
        .rows_affected();
    let mut tasks = 0;
    // `tree` is deepest first: delete it one level at a time.
    for level in tree.chunk_by(|a, b| a.1 == b.1) {
        let ids: Vec<&str> = level.iter().map(|(id, _, _)| id.as_str()).collect();
        tasks += queries::query(queries::PURGE_DELETE_TASKS)
            .bind(serde_json::Value::from(ids).to_string())
            .execute(&mut *conn)
            .await
            .or_store(OP)?
            .rows_affected();
    }
    Ok(Some(PurgeReport { tasks, messages }))
}

#[async_trait]
impl MessageStore for SqliteStore {
    #[tracing::instrument(name = "sqlite.append_message", level = "debug", skip_all, fields(task_id = %task))]
    async fn append_message(&self, task: TaskId, message: &NewMessage) -> Result<ResultMessage> {
        message.validate()?;
        let row: MessageRow = append_query(task, message)?
            .try_map(|row| sqlx::FromRow::from_row(&row))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::not_found("task", task)
                } else {
                    crate::error::classify("append_message", e)
                }
            })?;
        row.into_message()
    }

    #[tracing::instrument(name = "sqlite.append_messages", level = "debug", skip_all, fields(task_id = %task, count = messages.len()))]
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
    ) -> Result<Vec<ResultMessage>> {
        const OP: &str = "append_messages";
        messages.iter().try_for_each(NewMessage::validate)?;
        if messages.is_empty() {
            return if self.task_exists(task, OP).await? {
                Ok(Vec::new())
            } else {
                Err(Error::not_found("task", task))
            };
        }
        let batch = batch_json(messages)?;
        let not_found_or = |e: sqlx::Error| {
            if is_foreign_key_violation(&e) {
                Error::not_found("task", task)
            } else {
                crate::error::classify(OP, e)
            }
        };
        let mut stored = if batch.len() <= MAX_VALUE_BYTES {
            // The common case: one statement, whatever the batch's length.
            let rows: Vec<MessageRow> = queries::query_as(queries::APPEND_MESSAGES)
                .bind(id_text(task))
                .bind(batch)
                .fetch_all(&self.pool)
                .await
                .map_err(not_found_or)?;
            rows.into_iter()
                .map(MessageRow::into_message)
                .collect::<Result<Vec<_>>>()?
        } else {
            // A batch too long for one SQLite value: one insert per message, in one
            // transaction.
            let queries = messages
                .iter()
                .map(|m| append_query(task, m))
                .collect::<Result<Vec<_>>>()?;
            let mut tx = queries::begin_immediate(&self.pool).await.or_store(OP)?;
            let mut stored = Vec::with_capacity(queries.len());
            for query in queries {
                let row: MessageRow = query
                    .try_map(|row| sqlx::FromRow::from_row(&row))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(not_found_or)?;
                stored.push(row.into_message()?);
            }
            tx.commit().await.or_store(OP)?;
            stored
        };
        // SQLite does not promise RETURNING's order.
        stored.sort_by_key(|m| m.sequence);
        Ok(stored)
    }

    #[tracing::instrument(name = "sqlite.messages", level = "debug", skip_all, fields(task_id = %task))]
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

#[async_trait]
impl BuildStore for SqliteStore {
    #[tracing::instrument(name = "sqlite.record_build_data", level = "debug", skip_all, fields(task_id = %data.task_id, node = %data.node_name))]
    async fn record_build_data(&self, data: &BuildData) -> Result<()> {
        data.validate()?;
        let element = data.data_element.as_deref().unwrap_or_default();
        fits("build_data.data_element", element)?;
        queries::query(queries::RECORD_BUILD_DATA)
            .bind(data.node_name.as_str())
            .bind(id_text(data.task_id))
            .bind(data.collected_date.map(to_micros))
            .bind(data.generator.as_str())
            .bind(data.data_format.as_str())
            .bind(element)
            .execute(&self.pool)
            .await
            .or_store("record_build_data")?;
        Ok(())
    }

    #[tracing::instrument(name = "sqlite.build_data", level = "debug", skip_all, fields(task_id = ?query.task_id, node = ?query.node_name))]
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        query.validate()?;
        let sql = match (query.latest, query.verbosity) {
            (false, Verbosity::Full) => queries::BUILD_DATA_FULL,
            (false, Verbosity::Brief) => queries::BUILD_DATA_BRIEF,
            (true, Verbosity::Full) => queries::BUILD_DATA_LATEST_FULL,
            (true, Verbosity::Brief) => queries::BUILD_DATA_LATEST_BRIEF,
        };
        queries::query_as::<_, BuildDataRow>(sql)
            .bind(query.node_name.as_deref())
            .bind(query.task_id.map(id_text))
            .fetch_all(&self.pool)
            .await
            .or_store("build_data")?
            .into_iter()
            .map(BuildDataRow::into_build_data)
            .collect()
    }
}

#[async_trait]
impl InstanceLock for SqliteStore {
    #[tracing::instrument(name = "sqlite.claim_lease", level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.take_lease("claim_lease", queries::CLAIM_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(name = "sqlite.renew_lease", level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.take_lease("renew_lease", queries::RENEW_LEASE, instance_id)
            .await
    }

    #[tracing::instrument(name = "sqlite.release_lease", level = "debug", skip_all, fields(instance_id = %instance_id))]
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        validate_instance_id("instance_id", instance_id)?;
        let done = queries::query(queries::RELEASE_LEASE)
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .or_store("release_lease")?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(name = "sqlite.current_lease", level = "debug", skip_all)]
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.current("current_lease").await
    }
}

impl StateStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}
