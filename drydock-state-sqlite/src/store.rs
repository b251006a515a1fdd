//! Owns [`SqliteStore`]: the store traits over one SQLite file through a sqlx pool (the
//! boot actions' in [`crate::boot_actions`]).
//!
//! Writes that need more than one statement run in `BEGIN IMMEDIATE` transactions, which take
//! SQLite's write lock up front (waiting up to the busy timeout) instead of upgrading a read
//! snapshot later, which SQLite refuses with `SQLITE_BUSY` without waiting. Reads of a task
//! with its messages run in one deferred transaction, so both queries see the same snapshot.
//!
//! Fencing: every guarded write (and every write with a status rule) is one `BEGIN IMMEDIATE`
//! transaction whose first statement, [`queries::FENCE`], reads the task's status and claim
//! and whether the guard's lease is live; the checks are made here, in the memory store's
//! order, and only then is the write made. SQLite has one writer at a time, holding the write
//! lock from `BEGIN IMMEDIATE` to commit, so no change of leader, recovery or second claim can
//! commit between the check and the write.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::backend::{
    no_nul, orphan_message, purge_cutoff, purge_keeps, refuse_new_work_under, task_exists,
    terminated_status, validate_instance_id, Recovery, ORPHAN_FAILURE_REASON,
};
use drydock_state_core::{
    lease_not_held, BuildData, BuildDataQuery, BuildStore, Claim, ClaimRequest, Config, Error,
    InstanceLock, Lease, LeaseOutcome, MessageStore, NewMessage, NewTask, OrphanPolicy,
    PurgeReport, Result, ResultDetails, ResultMessage, StateStore, SubtaskFilter, Task, TaskFilter,
    TaskId, TaskStatus, TaskStore, TaskUpdate, TreeNode, Verbosity,
};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Sqlite, SqlitePool};

use crate::codec::{
    fits, id_array, id_text, to_json, to_micros, uuid_text, BuildDataRow, FenceRow, LeaseRow,
    MessageRow, NewTaskParams, TaskRow, UpdateParams, MAX_VALUE_BYTES,
};
use crate::config::{period_micros, Target};
use crate::error::{is_busy, is_foreign_key_violation, is_unique_violation, OrStore};
use crate::queries;

/// How many root tasks one purge transaction deletes (with their trees), so that the write
/// lock is never held for long; other writers get in between batches.
const PURGE_BATCH: i64 = 100;

/// The SQLite backend: all five stores over one database file (or an in-memory database).
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

    fn wake_if_queued(&self, status: TaskStatus) {
        if status == TaskStatus::Queued {
            self.queued.notify_waiters();
        }
    }

    /// The first statement of a guarded write's `BEGIN IMMEDIATE` transaction: reads task
    /// `id`'s status and claim and checks `guard` against them, as the memory store does:
    /// `NotFound` for an unknown task, then [`Claim::refused`] naming the stored claim unless
    /// it is exactly the guard's, then [`lease_not_held`] unless, for a guard with a term, its
    /// instance holds the live lease with that term by the database's clock. Without a guard
    /// it only checks that the task exists. Returns what it read, for the operation's own
    /// rules.
    async fn fence(
        conn: &mut SqliteConnection,
        id: TaskId,
        guard: Option<&Claim>,
        op: &'static str,
    ) -> Result<FenceRow> {
        let stored: FenceRow = queries::query_as(queries::FENCE)
            .bind(id_text(id))
            .bind(guard.map(|g| g.instance_id.as_str()))
            .bind(guard.and_then(|g| g.term))
            .fetch_optional(&mut *conn)
            .await
            .or_store(op)?
            .ok_or_else(|| Error::not_found("task", id))?;
        let Some(guard) = guard else {
            return Ok(stored);
        };
        guard.check(
            id,
            stored.claimed_by.as_deref(),
            stored.claim_term,
            stored.attempt,
            stored.lease_held,
        )?;
        Ok(stored)
    }

    /// Starts a write transaction: SQLite's write lock taken now, waiting up to the busy
    /// timeout for it.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, Sqlite>> {
        queries::begin_immediate(&self.pool).await.or_store(op)
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
    let mut stored = Vec::with_capacity(messages.len());
    match batch {
        None => {}
        Some(batch) if batch.len() <= MAX_VALUE_BYTES => {
            let rows: Vec<MessageRow> = queries::query_as(queries::APPEND_MESSAGES)
                .bind(id_text(task))
                .bind(batch)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| not_found_or(op, task, e))?;
            for row in rows {
                stored.push(row.into_message()?);
            }
        }
        // A batch too long for one SQLite value: one insert per message.
        Some(_) => {
            for m in messages {
                let row: MessageRow = append_query(task, m)?
                    .try_map(|row| sqlx::FromRow::from_row(&row))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| not_found_or(op, task, e))?;
                stored.push(row.into_message()?);
            }
        }
    }
    // SQLite does not promise RETURNING's order.
    stored.sort_by_key(|m| m.sequence);
    Ok(stored)
}

/// The stored statuses in the order [`queries::TERMINATE_SUBTREE`] binds their new status.
const SUBTREE_STATUS_ORDER: [TaskStatus; 6] = [
    TaskStatus::Requested,
    TaskStatus::Queued,
    TaskStatus::Running,
    TaskStatus::Terminating,
    TaskStatus::Terminated,
    TaskStatus::Complete,
];

/// Refuses a guard no stored claim can match, before anything is read.
fn validate_guard(guard: Option<&Claim>) -> Result<()> {
    guard.map_or(Ok(()), Claim::validate)
}

/// A failed message insert: the foreign key means the task does not exist.
fn not_found_or(op: &'static str, task: TaskId, e: sqlx::Error) -> Error {
    if is_foreign_key_violation(&e) {
        Error::not_found("task", task)
    } else {
        crate::error::classify(op, e)
    }
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
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        let p = NewTaskParams::of(task)?;
        let result = queries::query_as::<_, TaskRow>(queries::CREATE_TASK)
            .bind(p.task_id)
            .bind(p.parent_task_id)
            .bind(p.action)
            .bind(p.design_ref)
            .bind(p.status)
            .bind(p.node_filter)
            .bind(p.created)
            .bind(p.created_by)
            .bind(p.retry)
            .bind(p.request_context)
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => {
                let stored = row.into_task()?;
                self.wake_if_queued(stored.status);
                Ok(stored)
            }
            Err(e) if is_unique_violation(&e) => Err(task_exists(task.task_id)),
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

    /// One `BEGIN IMMEDIATE` transaction: `FENCE` (unknown task, guard, lease), the
    /// status rule ([`TaskUpdate::check_transition`]), then `UPDATE_TASK`, whose
    /// foreign key refuses an unknown parent, and the task's messages.
    #[tracing::instrument(name = "sqlite.update_task", level = "debug", skip_all, fields(task_id = %id))]
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "update_task";
        let p = UpdateParams::of(id, update)?;
        validate_guard(guard)?;
        let mut tx = self.begin_write(OP).await?;
        let stored = Self::fence(&mut tx, id, guard, OP).await?;
        update.check_transition(id, stored.status()?)?;
        let row: TaskRow = queries::query_as(queries::UPDATE_TASK)
            .bind(id_text(id))
            .bind(p.status)
            .bind(p.result_status)
            .bind(p.set_result_message)
            .bind(p.result_message)
            .bind(p.set_result_reason)
            .bind(p.result_reason)
            .bind(p.result_successes)
            .bind(p.result_failures)
            .bind(p.result_links)
            .bind(p.retry)
            .bind(p.set_node_filter)
            .bind(p.node_filter)
            .bind(p.set_design_ref)
            .bind(p.design_ref)
            .bind(p.set_parent)
            .bind(p.ends_claim)
            .bind(p.parent_task_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::not_found(
                        "parent task",
                        update
                            .parent_task_id
                            .flatten()
                            .map_or_else(String::new, |p| p.to_string()),
                    )
                } else {
                    crate::error::classify(OP, e)
                }
            })?;
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
            .bind(filter.claimed_by.as_deref())
            .bind(filter.claim_term)
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let tasks = Self::assemble(&mut tx, rows, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(tasks)
    }

    /// One `BEGIN IMMEDIATE` transaction: `FENCE` on the parent, the no-new-work
    /// rule ([`refuse_new_work_under`]), then `ADD_SUBTASK`.
    #[tracing::instrument(name = "sqlite.add_subtask", level = "debug", skip_all, fields(parent = %parent, child = %child))]
    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        const OP: &str = "add_subtask";
        validate_guard(guard)?;
        let mut tx = self.begin_write(OP).await?;
        let stored = Self::fence(&mut tx, parent, guard, OP).await?;
        let status = stored.status()?;
        if status.is_terminal() || status == TaskStatus::Terminating || stored.terminate {
            // Refused: core's rule says so, and how (the whole task is read only for that).
            let row: TaskRow = queries::query_as(queries::GET_TASK)
                .bind(id_text(parent))
                .fetch_one(&mut *tx)
                .await
                .or_store(OP)?;
            refuse_new_work_under(&row.into_task()?)?;
        }
        queries::query(queries::ADD_SUBTASK)
            .bind(id_text(parent))
            .bind(id_text(child))
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        Ok(())
    }

    /// One deferred transaction, so the tree and its tasks come from one snapshot:
    /// `TASK_TREE` (the ids, breadth first, each once), `TASKS_BY_IDS` and the tasks'
    /// messages: three statements whatever the tree's size.
    #[tracing::instrument(name = "sqlite.task_tree", level = "debug", skip_all, fields(root = %root, depth = ?depth))]
    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        const OP: &str = "task_tree";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let members: Vec<(i64, String)> = queries::query_as(queries::TASK_TREE)
            .bind(id_text(root))
            .bind(depth.map(i64::from))
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        if members.is_empty() {
            tx.commit().await.or_store(OP)?;
            return Ok(Vec::new());
        }
        let members = members
            .into_iter()
            .map(|(level, id)| {
                let level = u32::try_from(level)
                    .map_err(|_| crate::codec::corrupt("task tree depth", "out of range"))?;
                Ok((level, crate::codec::parse_id("tasks.subtask_id_list", &id)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<TaskRow> = queries::query_as(queries::TASKS_BY_IDS)
            .bind(id_array(members.iter().map(|(_, id)| id)))
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let mut tasks: HashMap<TaskId, Task> = Self::assemble(&mut tx, rows, OP)
            .await?
            .into_iter()
            .map(|t| (t.task_id, t))
            .collect();
        tx.commit().await.or_store(OP)?;
        Ok(members
            .into_iter()
            .map(|(depth, task_id)| TreeNode {
                depth,
                task_id,
                task: tasks.remove(&task_id),
            })
            .collect())
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

    /// One `BEGIN IMMEDIATE` transaction: the lease check (`HOLDS_LEASE`) for a
    /// fenced claim, the look-up of a re-sent claim id (`CLAIMED_UNDER_ID`), the
    /// termination of marked queued tasks (`TERMINATE_MARKED_QUEUED`), then the
    /// claim (`CLAIM_NEXT`) and the claimed task's messages.
    #[tracing::instrument(name = "sqlite.claim_next", level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term))]
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        const OP: &str = "claim_next";
        request.validate()?;
        let actions = if request.actions.is_empty() {
            None
        } else {
            Some(to_json("claim.actions", &request.actions)?)
        };
        let instance = request.instance_id.as_str();
        let mut tx = self.begin_write(OP).await?;
        if let Some(term) = request.term {
            let holds: bool = queries::query_scalar(queries::HOLDS_LEASE)
                .bind(instance)
                .bind(term)
                .fetch_one(&mut *tx)
                .await
                .or_store(OP)?;
            if !holds {
                return Err(lease_not_held(instance, term));
            }
        }
        if let Some(claim_id) = request.claim_id {
            let row: Option<TaskRow> = queries::query_as(queries::CLAIMED_UNDER_ID)
                .bind(uuid_text(claim_id))
                .fetch_optional(&mut *tx)
                .await
                .or_store(OP)?;
            if let Some(row) = row {
                let task = Self::assemble_one(&mut tx, row, OP).await?;
                let by = task.claimed_by.as_deref().unwrap_or_default();
                if by != instance {
                    return Err(request.claim_id_taken(task.task_id, by));
                }
                tx.commit().await.or_store(OP)?;
                return Ok(Some(task));
            }
        }
        queries::query(queries::TERMINATE_MARKED_QUEUED)
            .bind(actions.as_deref())
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        let row: Option<TaskRow> = queries::query_as(queries::CLAIM_NEXT)
            .bind(instance)
            .bind(request.term)
            .bind(actions.as_deref())
            .bind(request.claim_id.map(uuid_text))
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let claimed = match row {
            Some(row) => Some(Self::assemble_one(&mut tx, row, OP).await?),
            None => None,
        };
        tx.commit().await.or_store(OP)?;
        Ok(claimed)
    }

    /// One `BEGIN IMMEDIATE` transaction: the orphans (`ORPHANS`), each recovered
    /// as [`Recovery::of`] says (`RECOVER_ORPHANS`, one statement per kind of
    /// recovery), and the orphan message of each.
    #[tracing::instrument(name = "sqlite.recover_orphans", level = "debug", skip_all, fields(current_term, policy = ?policy))]
    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        const OP: &str = "recover_orphans";
        let mut tx = self.begin_write(OP).await?;
        let orphans: Vec<TaskRow> = queries::query_as(queries::ORPHANS)
            .bind(current_term)
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let orphans = orphans
            .into_iter()
            .map(|row| {
                let task = row.into_task()?;
                Ok((Recovery::of(&task, policy), task))
            })
            .collect::<Result<Vec<_>>>()?;
        if orphans.is_empty() {
            tx.commit().await.or_store(OP)?;
            return Ok(Vec::new());
        }
        for kind in [Recovery::Requeue, Recovery::Fail, Recovery::Terminate] {
            let ids: Vec<&TaskId> = orphans
                .iter()
                .filter(|(recovery, _)| *recovery == kind)
                .map(|(_, task)| &task.task_id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            queries::query(queries::RECOVER_ORPHANS)
                .bind(id_array(ids))
                .bind(kind.as_str())
                .bind(kind == Recovery::Fail)
                .bind(ORPHAN_FAILURE_REASON)
                .execute(&mut *tx)
                .await
                .or_store(OP)?;
        }
        for (recovery, task) in &orphans {
            let message = NewMessage {
                error: *recovery == Recovery::Fail,
                ..NewMessage::info(orphan_message(task, current_term, *recovery))
            };
            append_query(task.task_id, &message)?
                .execute(&mut *tx)
                .await
                .or_store(OP)?;
        }
        tx.commit().await.or_store(OP)?;
        if orphans.iter().any(|(r, _)| *r == Recovery::Requeue) {
            self.queued.notify_waiters();
        }
        tracing::info!(
            count = orphans.len(),
            current_term,
            "recovered orphaned tasks"
        );
        Ok(orphans.into_iter().map(|(_, t)| t.task_id).collect())
    }

    /// One `BEGIN IMMEDIATE` transaction: `FENCE` on the root, then
    /// `TERMINATE_SUBTREE` over the root and its descendants, and the root as
    /// stored.
    #[tracing::instrument(name = "sqlite.terminate_task", level = "debug", skip_all, fields(task_id = %id))]
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        const OP: &str = "terminate_task";
        no_nul("terminated_by", by)?;
        fits("terminated_by", by)?;
        validate_guard(guard)?;
        let mut tx = self.begin_write(OP).await?;
        Self::fence(&mut tx, id, guard, OP).await?;
        let mut terminate = queries::query(queries::TERMINATE_SUBTREE)
            .bind(id_text(id))
            .bind(by);
        // The new status of each member, per stored status, by core's rule.
        for status in SUBTREE_STATUS_ORDER {
            terminate = terminate.bind(terminated_status(status).as_str());
        }
        terminate.execute(&mut *tx).await.or_store(OP)?;
        let row: TaskRow = queries::query_as(queries::GET_TASK)
            .bind(id_text(id))
            .fetch_one(&mut *tx)
            .await
            .or_store(OP)?;
        let stored = Self::assemble_one(&mut tx, row, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(stored)
    }

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
    /// Unguarded: one `INSERT` (the foreign key refuses an unknown task). Guarded: the same
    /// `INSERT` after `FENCE`, in one `BEGIN IMMEDIATE` transaction.
    #[tracing::instrument(name = "sqlite.append_message", level = "debug", skip_all, fields(task_id = %task))]
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        const OP: &str = "append_message";
        message.validate()?;
        validate_guard(guard)?;
        let insert = append_query(task, message)?.try_map(|row| sqlx::FromRow::from_row(&row));
        let row: MessageRow = if guard.is_none() {
            insert
                .fetch_one(&self.pool)
                .await
                .map_err(|e| not_found_or(OP, task, e))?
        } else {
            let mut tx = self.begin_write(OP).await?;
            Self::fence(&mut tx, task, guard, OP).await?;
            let row = insert
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| not_found_or(OP, task, e))?;
            tx.commit().await.or_store(OP)?;
            row
        };
        row.into_message()
    }

    /// Unguarded, a batch that fits one SQLite value: one `INSERT … SELECT FROM json_each`.
    /// Otherwise one `BEGIN IMMEDIATE` transaction: `FENCE`, then the batch (or,
    /// for a batch too long for one value, one insert per message).
    #[tracing::instrument(name = "sqlite.append_messages", level = "debug", skip_all, fields(task_id = %task, count = messages.len()))]
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        const OP: &str = "append_messages";
        messages.iter().try_for_each(NewMessage::validate)?;
        validate_guard(guard)?;
        let batch = if messages.is_empty() {
            None
        } else {
            Some(batch_json(messages)?)
        };
        let mut stored = match batch {
            // The common case: one statement, whatever the batch's length.
            Some(batch) if guard.is_none() && batch.len() <= MAX_VALUE_BYTES => {
                let rows: Vec<MessageRow> = queries::query_as(queries::APPEND_MESSAGES)
                    .bind(id_text(task))
                    .bind(batch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| not_found_or(OP, task, e))?;
                rows.into_iter()
                    .map(MessageRow::into_message)
                    .collect::<Result<Vec<_>>>()?
            }
            batch => {
                let mut tx = self.begin_write(OP).await?;
                Self::fence(&mut tx, task, guard, OP).await?;
                let stored = insert_messages(&mut tx, task, messages, batch, OP).await?;
                tx.commit().await.or_store(OP)?;
                stored
            }
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
    /// Unguarded: one `INSERT` (the task need not exist). Guarded: the same `INSERT` after
    /// `FENCE` on the element's task, in one `BEGIN IMMEDIATE` transaction.
    #[tracing::instrument(name = "sqlite.record_build_data", level = "debug", skip_all, fields(task_id = %data.task_id, node = %data.node_name))]
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        const OP: &str = "record_build_data";
        data.validate()?;
        validate_guard(guard)?;
        let element = data.data_element.as_deref().unwrap_or_default();
        fits("build_data.data_element", element)?;
        let insert = queries::query(queries::RECORD_BUILD_DATA)
            .bind(data.node_name.as_str())
            .bind(id_text(data.task_id))
            .bind(data.collected_date.map(to_micros))
            .bind(data.generator.as_str())
            .bind(data.data_format.as_str())
            .bind(element);
        if guard.is_none() {
            insert.execute(&self.pool).await.or_store(OP)?;
            return Ok(());
        }
        let mut tx = self.begin_write(OP).await?;
        Self::fence(&mut tx, data.task_id, guard, OP).await?;
        insert.execute(&mut *tx).await.or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        Ok(())
    }

    /// One statement: `BUILD_DATA_OF_TASKS_FULL` (or `_BRIEF`), the ids bound as one JSON
    /// array.
    #[tracing::instrument(name = "sqlite.build_data_of_tasks", level = "debug", skip_all, fields(tasks = tasks.len(), verbosity = ?verbosity))]
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        let sql = match verbosity {
            Verbosity::Full => queries::BUILD_DATA_OF_TASKS_FULL,
            Verbosity::Brief => queries::BUILD_DATA_OF_TASKS_BRIEF,
        };
        queries::query_as::<_, BuildDataRow>(sql)
            .bind(id_array(tasks))
            .fetch_all(&self.pool)
            .await
            .or_store("build_data_of_tasks")?
            .into_iter()
            .map(BuildDataRow::into_build_data)
            .collect()
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

#[async_trait]
impl StateStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    /// One statement: `PING`, SQLite's clock as every statement stamps times.
    #[tracing::instrument(name = "sqlite.ping", level = "debug", skip_all)]
    async fn ping(&self) -> Result<DateTime<Utc>> {
        let now: i64 = queries::query_scalar(queries::PING)
            .fetch_one(&self.pool)
            .await
            .or_store("ping")?;
        crate::codec::from_micros("ping", now)
    }
}
