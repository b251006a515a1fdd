//! [`TaskStore`] on SQLite: the queue, claims under the lease, guarded writes, orphan
//! recovery and purge.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use drydock_state_core::backend::{
    is_refusal, no_nul, orphan_message, purge_cutoff, purge_keeps, refuse_new_work_under,
    task_exists, terminated_status, Recovery, ORPHAN_FAILURE_REASON,
};
use drydock_state_core::Entity;
use drydock_state_core::{
    lease_not_held, tree_subtasks, Claim, ClaimRequest, Error, GuardedUpdate, NewMessage, NewTask,
    OrphanPolicy, PurgeReport, Result, ResultDetails, ResultMessage, SubtaskFilter, Task,
    TaskFilter, TaskId, TaskStatus, TaskStore, TaskUpdate, TreeNode,
};
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use crate::codec::{
    fits, id_array, id_text, to_json, to_micros, uuid_text, NewTaskParams, UpdateParams,
};
use crate::error::{Named, OrStore};
use crate::messages::append_query;
use crate::rows::{MessageRow, TaskRow};
use crate::store::SqliteStore;
use crate::{guard, queries};

/// How many root tasks one purge batch finds (outside any write transaction).
const PURGE_BATCH: i64 = 100;

/// How many of a batch's trees one purge write transaction deletes, so that the write lock
/// is held for a few milliseconds at a time (5 trees of 10 tasks with 10 messages each: about
/// 1 ms a tree on this machine) and a claimer waiting for it is not held up for the whole
/// batch (S5 of the benchmark: a claim's p99 during a purge 184 ms with all 100 trees in one
/// transaction).
const PURGE_TREES_PER_TRANSACTION: usize = 5;

impl SqliteStore {
    /// Reads `rows` into tasks with their messages attached: one query whatever their number.
    pub(crate) async fn assemble(
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

    pub(crate) async fn assemble_one(
        conn: &mut SqliteConnection,
        row: TaskRow,
        op: &'static str,
    ) -> Result<Task> {
        let mut tasks = Self::assemble(conn, vec![row], op).await?;
        Ok(tasks.pop().expect("one row in, one task out"))
    }
}

impl SqliteStore {
    /// `create_task`'s insert on `executor` ([`insert_task`], a taken id and a missing parent
    /// answered as such).
    async fn create_in<'c>(
        executor: impl sqlx::SqliteExecutor<'c>,
        task: &NewTask,
        op: &'static str,
    ) -> Result<Task> {
        let row = insert_task(NewTaskParams::of(task)?)
            .fetch_one(executor)
            .await
            .or_store(op)
            .duplicate_as(|| task_exists(task.task_id))
            .missing_as(Entity::ParentTask, parent_id(task.parent_task_id))?;
        row.into_task()
    }

    /// A claim's allowed actions as the JSON array the statements take (NULL for any).
    fn claim_actions(request: &ClaimRequest) -> Result<Option<String>> {
        if request.actions.is_empty() {
            Ok(None)
        } else {
            to_json("claim.actions", &request.actions).map(Some)
        }
    }

    /// A fenced claim's lease check, first statement of its `BEGIN IMMEDIATE` transaction.
    async fn claim_fence(
        tx: &mut SqliteConnection,
        request: &ClaimRequest,
        op: &'static str,
    ) -> Result<()> {
        if let Some(term) = request.term {
            let holds: bool = queries::query_scalar(queries::HOLDS_LEASE)
                .bind(request.instance_id.as_str())
                .bind(term)
                .fetch_one(&mut *tx)
                .await
                .or_store(op)?;
            if !holds {
                return Err(lease_not_held(&request.instance_id, term));
            }
        }
        Ok(())
    }

    /// `claim_next` and `claim_batch`, in one `BEGIN IMMEDIATE` transaction: the lease check
    /// (`HOLDS_LEASE`) for a fenced claim; with claim ids, the tasks already carrying one
    /// (`CLAIMED_UNDER_IDS`: a re-sent request, answered with them, or another instance's
    /// ids, a `Conflict`); the marked queued tasks terminated (`TERMINATE_MARKED_QUEUED`);
    /// then one statement claiming up to `n` (`CLAIM_BATCH`), the `i`-th (oldest first)
    /// recording `claim_ids[i]` (none when `claim_ids` is empty), with their messages.
    async fn claim(
        &self,
        request: &ClaimRequest,
        claim_ids: &[Uuid],
        n: usize,
        op: &'static str,
    ) -> Result<Vec<Task>> {
        let limit = i64::try_from(n).map_err(|_| Error::invalid("claim.n", "is too large"))?;
        let instance = request.instance_id.as_str();
        let actions = Self::claim_actions(request)?;
        let claim_ids: Option<String> = if claim_ids.is_empty() {
            None
        } else {
            let ids: Vec<String> = claim_ids.iter().copied().map(uuid_text).collect();
            Some(to_json("claim.claim_id", &ids)?)
        };
        let mut tx = self.begin_write(op).await?;
        Self::claim_fence(&mut tx, request, op).await?;
        if let Some(ids) = &claim_ids {
            let rows: Vec<TaskRow> = queries::query_as(queries::CLAIMED_UNDER_IDS)
                .bind(ids.as_str())
                .fetch_all(&mut *tx)
                .await
                .or_store(op)?;
            if !rows.is_empty() {
                let tasks = Self::assemble(&mut tx, rows, op).await?;
                if let Some(other) = tasks
                    .iter()
                    .find(|t| t.claimed_by.as_deref() != Some(instance))
                {
                    let by = other.claimed_by.as_deref().unwrap_or_default();
                    return Err(request.claim_id_taken(other.task_id, by));
                }
                tx.commit().await.or_store(op)?;
                return Ok(tasks);
            }
        }
        Self::terminate_marked_queued(&mut tx, actions.as_deref(), op).await?;
        let rows: Vec<TaskRow> = queries::query_as(queries::CLAIM_BATCH)
            .bind(instance)
            .bind(request.term)
            .bind(actions.as_deref())
            .bind(claim_ids.as_deref())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .or_store(op)?;
        let mut tasks = Self::assemble(&mut tx, rows, op).await?;
        tx.commit().await.or_store(op)?;
        tasks.sort_by_key(|t| (t.created, t.task_id));
        Ok(tasks)
    }

    /// A claim's first write: the queued tasks of its actions marked for termination are
    /// terminated instead of handed out.
    async fn terminate_marked_queued(
        tx: &mut SqliteConnection,
        actions: Option<&str>,
        op: &'static str,
    ) -> Result<()> {
        queries::query(queries::TERMINATE_MARKED_QUEUED)
            .bind(actions)
            .bind(terminated_status(TaskStatus::Queued).as_str())
            .execute(&mut *tx)
            .await
            .or_store(op)?;
        Ok(())
    }

    /// `update_task` inside the write transaction `tx`: the fence, core's rules, the write.
    async fn update_in(
        tx: &mut SqliteConnection,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "update_task";
        let p = UpdateParams::of(id, update)?;
        guard::validate(guard)?;
        let stored = guard::fence(&mut *tx, id, guard, OP).await?;
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
            .or_store(OP)
            .missing_as(
                Entity::ParentTask,
                parent_id(update.parent_task_id.flatten()),
            )?;
        Self::assemble_one(tx, row, OP).await
    }
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

/// A parent id as an error names it (empty when there is none).
fn parent_id(parent: Option<TaskId>) -> String {
    parent.map_or_else(String::new, |p| p.to_string())
}

fn subtask_filter_code(which: SubtaskFilter) -> i64 {
    match which {
        SubtaskFilter::All => 0,
        SubtaskFilter::Active => 1,
        SubtaskFilter::Complete => 2,
    }
}

/// [`queries::CREATE_TASK`] with a new task's values bound, `?1` to `?10`.
fn insert_task<'q>(
    p: NewTaskParams,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, TaskRow, sqlx::sqlite::SqliteArguments<'q>> {
    queries::query_as::<_, TaskRow>(queries::CREATE_TASK)
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
}

/// Binds a filter's conditions, `?1` to `?9` of [`queries::LIST_TASKS`] and
/// [`queries::COUNT_TASKS`], to `$query` (a `query_as` or a `query_scalar`), the keyset
/// `(?6, ?7)` as `$after_created` and `$after_id` (the statements differ in how they take a
/// filter without one).
macro_rules! bind_filter {
    ($query:expr, $filter:expr, $after_created:expr, $after_id:expr) => {{
        let filter: &TaskFilter = $filter;
        $query
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.action.as_deref())
            .bind(filter.parent.map(id_text))
            .bind(filter.created_after.map(to_micros))
            .bind(filter.created_before.map(to_micros))
            .bind($after_created)
            .bind($after_id)
            .bind(filter.claimed_by.as_deref())
            .bind(filter.claim_term)
    }};
}

#[async_trait]
impl TaskStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task.task_id))]
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        let stored = Self::create_in(&self.pool, task, "create_task").await?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    /// One `BEGIN IMMEDIATE` transaction: each task inserted as `create_task` inserts it,
    /// parent first, then the parent's subtask list written.
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %parent.task_id, subtasks = subtasks.len()))]
    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        const OP: &str = "create_task_tree";
        let subtasks = tree_subtasks(parent, subtasks)?;
        let mut tx = self.begin_write(OP).await?;
        let mut stored = Vec::with_capacity(subtasks.len() + 1);
        for task in std::iter::once(parent).chain(&subtasks) {
            stored.push(Self::create_in(&mut *tx, task, OP).await?);
        }
        let ids: Vec<TaskId> = subtasks.iter().map(|t| t.task_id).collect();
        queries::query(queries::SET_SUBTASK_LIST)
            .bind(id_text(parent.task_id))
            .bind(id_array(&ids))
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        stored[0].subtask_id_list = ids;
        if stored.iter().any(|t| t.status == TaskStatus::Queued) {
            self.wake_if_queued(TaskStatus::Queued);
        }
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id))]
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
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id))]
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "update_task";
        UpdateParams::of(id, update)?;
        guard::validate(guard)?;
        let mut tx = self.begin_write(OP).await?;
        let stored = Self::update_in(&mut tx, id, update, guard).await?;
        tx.commit().await.or_store(OP)?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = ?filter.limit))]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        filter.validate()?;
        const OP: &str = "list_tasks";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        // `LIST_TASKS` always takes a keyset: without one, the smallest, which every task is
        // after (as `purge` starts its keyset).
        let (after_created, after_id) = filter
            .after
            .map_or((i64::MIN, String::new()), |(created, id)| {
                (to_micros(created), id_text(id))
            });
        let rows: Vec<TaskRow> = bind_filter!(
            queries::query_as(queries::LIST_TASKS),
            filter,
            after_created,
            after_id
        )
        .bind(filter.limit.map_or(-1, i64::from))
        .fetch_all(&mut *tx)
        .await
        .or_store(OP)?;
        let tasks = Self::assemble(&mut tx, rows, OP).await?;
        tx.commit().await.or_store(OP)?;
        Ok(tasks)
    }

    /// One `SELECT count(*)` with [`TaskStore::list_tasks`]'s conditions; the limit is not
    /// bound.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        filter.validate()?;
        let n: i64 = bind_filter!(
            queries::query_scalar(queries::COUNT_TASKS),
            filter,
            filter.after.map(|(created, _)| to_micros(created)),
            filter.after.map(|(_, id)| id_text(id))
        )
        .fetch_one(&self.pool)
        .await
        .or_store("count_tasks")?;
        u64::try_from(n).map_err(|_| crate::error::corrupt("count(*)", "is negative"))
    }

    /// One `BEGIN IMMEDIATE` transaction: `FENCE` on the parent, the no-new-work rule
    /// ([`refuse_new_work_under`]), then `CREATE_TASK` (a taken id fails the primary key)
    /// and `ADD_SUBTASK`; any refusal drops the transaction, so nothing is written.
    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent, child = %task.task_id))]
    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "create_subtask";
        let child = task.subtask_of(parent)?;
        let p = NewTaskParams::of(&child)?;
        guard::validate(guard)?;
        let mut tx = self.begin_write(OP).await?;
        let stored = guard::fence(&mut tx, parent, guard, OP).await?;
        refuse_new_work_under(&stored.task.into_task()?)?;
        let row = insert_task(p)
            .fetch_one(&mut *tx)
            .await
            .or_store(OP)
            .duplicate_as(|| task_exists(child.task_id))?;
        queries::query(queries::ADD_SUBTASK)
            .bind(id_text(parent))
            .bind(id_text(child.task_id))
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        let stored = row.into_task()?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    /// One `BEGIN IMMEDIATE` transaction: `FENCE` on the parent, the no-new-work
    /// rule ([`refuse_new_work_under`]), then `ADD_SUBTASK`.
    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent, child = %child))]
    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        const OP: &str = "add_subtask";
        guard::validate(guard)?;
        let mut tx = self.begin_write(OP).await?;
        let stored = guard::fence(&mut tx, parent, guard, OP).await?;
        refuse_new_work_under(&stored.task.into_task()?)?;
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
    #[tracing::instrument(level = "debug", skip_all, fields(root = %root, depth = ?depth))]
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
                    .map_err(|_| crate::error::corrupt("task tree depth", "out of range"))?;
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

    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent, which = ?which))]
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        const OP: &str = "subtasks";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let list: Option<String> = queries::query_scalar(queries::SUBTASK_LIST)
            .bind(id_text(parent))
            .fetch_optional(&mut *tx)
            .await
            .or_store(OP)?;
        let Some(list) = list else {
            return Err(Error::not_found(Entity::Task, parent));
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

    /// `SqliteStore::claim` of one task, named by the request's own claim id.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term))]
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        request.validate()?;
        let claim_ids: Vec<Uuid> = request.claim_id.into_iter().collect();
        Ok(self
            .claim(request, &claim_ids, 1, "claim_next")
            .await?
            .pop())
    }

    /// One `BEGIN IMMEDIATE` transaction: the orphans (`ORPHANS`), each recovered
    /// as [`Recovery::of`] says (`RECOVER_ORPHANS`, one statement per kind of
    /// recovery), and the orphan message of each.
    #[tracing::instrument(level = "debug", skip_all, fields(current_term, policy = ?policy))]
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
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id))]
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        const OP: &str = "terminate_task";
        no_nul("terminated_by", by)?;
        fits("terminated_by", by)?;
        guard::validate(guard)?;
        let mut tx = self.begin_write(OP).await?;
        guard::fence(&mut tx, id, guard, OP).await?;
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

    /// `SqliteStore::claim` of up to `n` tasks, named by the batch's derived claim ids.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term, claim_id = ?request.claim_id, n))]
    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        request.validate_batch(n)?;
        self.claim(request, &request.batch_claim_ids(n), n, "claim_batch")
            .await
    }

    /// One `BEGIN IMMEDIATE` transaction: each update as `update_task` makes it (fence, rules,
    /// write), a refusal answered in its slot (it wrote nothing: the checks come first, and a
    /// failed statement is undone on its own); a store failure rolls back the whole batch.
    #[tracing::instrument(level = "debug", skip_all, fields(updates = updates.len()))]
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        const OP: &str = "update_tasks";
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write(OP).await?;
        let mut outcomes = Vec::with_capacity(updates.len());
        for u in updates {
            match Self::update_in(&mut tx, u.task_id, &u.update, u.guard.as_ref()).await {
                Err(e) if !is_refusal(&e) => return Err(e),
                outcome => outcomes.push(outcome),
            }
        }
        tx.commit().await.or_store(OP)?;
        for outcome in outcomes.iter().flatten() {
            self.wake_if_queued(outcome.status);
        }
        Ok(outcomes)
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        let _ = tokio::time::timeout(max_wait, self.queued.notified()).await;
        Ok(())
    }

    /// Batches of up to `PURGE_BATCH` roots in `(created, task_id)` order: `PURGE_ROOTS`
    /// read outside any write transaction, then one `BEGIN IMMEDIATE` transaction for every
    /// `PURGE_TREES_PER_TRANSACTION` of them: `PURGE_ROOTS_RECHECK` (the roots that still
    /// are) and each tree's delete under a savepoint of its own.
    #[tracing::instrument(level = "debug", skip_all, fields(older_than = ?older_than))]
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        const OP: &str = "purge";
        let cutoff = to_micros(purge_cutoff(older_than)?);
        let mut report = PurgeReport::default();
        // Keyset over (created, task_id): a tree kept (live work) or skipped (its delete
        // failed) is passed over by the next batch instead of being found first again.
        let mut after: (i64, String) = (i64::MIN, String::new());
        loop {
            // The batch's roots are found before the write lock is taken, so that claimers
            // wait for the deletes only, not for the walk of the history that finds them.
            let roots: Vec<(i64, String)> = queries::query_as(queries::PURGE_ROOTS)
                .bind(cutoff)
                .bind(PURGE_BATCH)
                .bind(after.0)
                .bind(after.1.as_str())
                .fetch_all(&self.pool)
                .await
                .or_store(OP)?;
            let Some(last) = roots.last().cloned() else {
                break;
            };
            for chunk in roots.chunks(PURGE_TREES_PER_TRANSACTION) {
                let purged = purge_roots(&self.pool, chunk, cutoff).await?;
                report.tasks += purged.tasks;
                report.messages += purged.messages;
                // Let waiting writers take the lock between transactions.
                tokio::task::yield_now().await;
            }
            if (roots.len() as i64) < PURGE_BATCH {
                break;
            }
            after = last;
        }
        tracing::info!(
            tasks = report.tasks,
            messages = report.messages,
            "purged task trees"
        );
        Ok(report)
    }
}

/// One purge write transaction: of `roots` (found before the lock), those that still are
/// roots older than `cutoff` (`PURGE_ROOTS_RECHECK`, under the lock), each tree deleted under
/// a savepoint of its own; a tree that cannot be deleted is rolled back alone, reported and
/// passed over. A claim made since the roots were read is seen by `purge_tree`, which reads
/// the tree's statuses under the lock.
async fn purge_roots(
    pool: &sqlx::SqlitePool,
    roots: &[(i64, String)],
    cutoff: i64,
) -> Result<PurgeReport> {
    const OP: &str = "purge";
    let mut report = PurgeReport::default();
    let found: Vec<&str> = roots.iter().map(|(_, id)| id.as_str()).collect();
    let mut tx = queries::begin_immediate(pool).await.or_store(OP)?;
    // Under the lock, the roots that still are: one may have been deleted or given a
    // parent since it was read.
    let still: HashSet<String> = queries::query_scalar(queries::PURGE_ROOTS_RECHECK)
        .bind(serde_json::Value::from(found).to_string())
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await
        .or_store(OP)?
        .into_iter()
        .collect();
    for (_, root) in roots.iter().filter(|(_, id)| still.contains(id)) {
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
    Ok(report)
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
            .map_err(|_| crate::error::corrupt("tasks.status", "unknown status"))?;
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
