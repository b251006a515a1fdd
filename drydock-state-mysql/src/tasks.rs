//! [`TaskStore`] on MariaDB/MySQL.
//!
//! Every write to a task reads its row locked (`FOR UPDATE`) in a transaction, checks the
//! guard ([`crate::guard`]) and core's rules on what it read ([`TaskUpdate::check_transition`],
//! [`refuse_new_work_under`], [`terminated_status`], [`Recovery`]), applies the change with
//! core's own code ([`TaskUpdate::apply`], [`Recovery::apply`]) and writes the row back, so
//! the rules are the memory store's by construction. Claims take the oldest queued row with
//! `FOR UPDATE SKIP LOCKED`: concurrent claimers skip each other's rows instead of waiting,
//! and no row is handed out twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::backend::{
    is_refusal, orphan_message, purge_cutoff, purge_keeps, refuse_new_work_under,
    terminated_status, Recovery,
};
use drydock_state_core::model::lease_not_held;
use drydock_state_core::Entity;
use drydock_state_core::{
    tree_subtasks, Claim, ClaimRequest, Error, GuardedUpdate, NewMessage, NewTask, OrphanPolicy,
    PurgeReport, Result, SubtaskFilter, Task, TaskFilter, TaskId, TaskStatus, TaskStore,
    TaskUpdate, TreeNode,
};
use sqlx::Row;
use uuid::Uuid;

use crate::error::db_error;
use crate::store::{append, db_now, read_task, retry_races, with_messages, write_task, MySqlStore};
use crate::{guard, queries, rows};

/// How many task trees (by root) a purge examines and deletes per transaction, so no
/// transaction holds many locks for long.
pub const PURGE_BATCH_ROOTS: u32 = 500;

/// Binds a filter's conditions, the parameters of `queries::task_filter!` in
/// [`queries::LIST_TASKS`] and [`queries::COUNT_TASKS`], to `$query` (a `query` or a
/// `query_scalar`).
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let filter: &TaskFilter = $filter;
        let status = filter.status.map(|s| s.as_str());
        let parent = filter.parent.map(rows::id_text);
        let (after_at, after_id) = match filter.after {
            Some((at, id)) => (Some(at), Some(rows::id_text(id))),
            None => (None, None),
        };
        $query
            .bind(status)
            .bind(status)
            .bind(filter.action.as_deref())
            .bind(filter.action.as_deref())
            .bind(parent.clone())
            .bind(parent)
            .bind(rows::naive(filter.created_after))
            .bind(rows::naive(filter.created_after))
            .bind(rows::naive(filter.created_before))
            .bind(rows::naive(filter.created_before))
            .bind(rows::naive(after_at))
            .bind(rows::naive(after_at))
            .bind(rows::naive(after_at))
            .bind(after_id)
            .bind(filter.claimed_by.as_deref())
            .bind(filter.claimed_by.as_deref())
            .bind(filter.claim_term)
            .bind(filter.claim_term)
    }};
}

/// `AlreadyExists` when a task with `id` exists, read in the transaction on `conn`.
async fn refuse_taken_id(
    conn: &mut sqlx::MySqlConnection,
    op: &'static str,
    id: TaskId,
) -> Result<()> {
    let exists: i64 = queries::query_scalar(queries::TASK_EXISTS)
        .bind(rows::id_text(id))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error(op, "task_id"))?;
    if exists != 0 {
        return Err(drydock_state_core::backend::task_exists(id));
    }
    Ok(())
}

/// Inserts `stored` (a new task as stored) in the transaction on `conn` and returns it; a
/// taken id (a concurrent insert of it) is `AlreadyExists`.
async fn insert_task(
    conn: &mut sqlx::MySqlConnection,
    op: &'static str,
    stored: Task,
) -> Result<Task> {
    rows::bind_new_task(queries::query(queries::INSERT_TASK), &stored)
        .execute(&mut *conn)
        .await
        .map_err(|e| match db_error(op, "task")(e) {
            Error::Conflict { .. } => drydock_state_core::backend::task_exists(stored.task_id),
            other => other,
        })?;
    Ok(stored)
}

/// `create_task`'s checks and insert of `stored` (a new task as stored) inside `tx`: the id
/// not taken ([`refuse_taken_id`]), the parent present (read locked), then [`insert_task`].
async fn create_in(tx: &mut sqlx::MySqlConnection, op: &'static str, stored: Task) -> Result<Task> {
    refuse_taken_id(&mut *tx, op, stored.task_id).await?;
    if let Some(parent) = stored.parent_task_id {
        if !task_exists_locked(&mut *tx, op, parent).await? {
            return Err(Error::not_found(Entity::ParentTask, parent));
        }
    }
    insert_task(&mut *tx, op, stored).await
}

/// `update_task` inside the transaction `tx`: the task locked, the guard and core's rules
/// checked on what was read, the update applied with core's code and written back.
async fn update_in(
    tx: &mut sqlx::MySqlConnection,
    op: &'static str,
    id: TaskId,
    update: &TaskUpdate,
    guard: Option<&Claim>,
) -> Result<Task> {
    let mut task = read_task(&mut *tx, op, queries::TASK_FOR_UPDATE, id)
        .await?
        .ok_or_else(|| Error::not_found(Entity::Task, id))?;
    guard::check(&mut *tx, op, &task, guard).await?;
    update.check_transition(id, task.status)?;
    if let Some(Some(parent)) = update.parent_task_id {
        if !task_exists_locked(&mut *tx, op, parent).await? {
            return Err(Error::not_found(Entity::ParentTask, parent));
        }
    }
    let now = db_now(&mut *tx, op).await?;
    update.apply(&mut task, now);
    write_task(&mut *tx, op, &task).await?;
    one(with_messages(&mut *tx, op, vec![task]).await?)
}

impl MySqlStore {
    async fn try_create(&self, task: &NewTask) -> Result<Task> {
        const OP: &str = "create_task";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let stored = create_in(&mut tx, OP, task.to_task()).await?;
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(stored)
    }

    /// `create_task_tree` in one transaction: each task inserted as `create_task` inserts
    /// it, the parent first, with its subtask list.
    async fn try_create_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        const OP: &str = "create_task_tree";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let mut root = parent.to_task();
        root.subtask_id_list = subtasks.iter().map(|t| t.task_id).collect();
        let mut stored = vec![create_in(&mut tx, OP, root).await?];
        for task in subtasks {
            stored.push(create_in(&mut tx, OP, task.to_task()).await?);
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(stored)
    }

    /// One transaction: the parent read locked, the guard and the no-new-work rule checked
    /// on it, then the child inserted and the parent's list written back; any refusal drops
    /// the transaction, so nothing is written.
    async fn try_create_subtask(
        &self,
        parent: TaskId,
        child: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "create_subtask";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let mut task = read_task(&mut tx, OP, queries::TASK_FOR_UPDATE, parent)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Task, parent))?;
        guard::check(&mut tx, OP, &task, guard).await?;
        refuse_new_work_under(&task)?;
        refuse_taken_id(&mut tx, OP, child.task_id).await?;
        let stored = insert_task(&mut tx, OP, child.to_task()).await?;
        if !task.subtask_id_list.contains(&child.task_id) {
            task.subtask_id_list.push(child.task_id);
            write_task(&mut tx, OP, &task).await?;
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(stored)
    }

    async fn try_update(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "update_task";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let task = update_in(&mut tx, OP, id, update, guard).await?;
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(task)
    }

    /// `update_tasks` in one transaction: each update as `update_task` makes it, a refusal
    /// (which wrote nothing: the checks come before the write) answered in its slot.
    async fn try_update_many(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        const OP: &str = "update_tasks";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let mut outcomes = Vec::with_capacity(updates.len());
        for u in updates {
            let outcome = match u.update.validate(u.task_id) {
                Err(refused) => Err(refused),
                Ok(()) => update_in(&mut tx, OP, u.task_id, &u.update, u.guard.as_ref()).await,
            };
            match outcome {
                Err(e) if !is_refusal(&e) => return Err(e),
                outcome => outcomes.push(outcome),
            }
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(outcomes)
    }

    async fn try_add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        const OP: &str = "add_subtask";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let mut task = read_task(&mut tx, OP, queries::TASK_FOR_UPDATE, parent)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Task, parent))?;
        guard::check(&mut tx, OP, &task, guard).await?;
        refuse_new_work_under(&task)?;
        if !task.subtask_id_list.contains(&child) {
            task.subtask_id_list.push(child);
            write_task(&mut tx, OP, &task).await?;
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(())
    }

    /// `claim_next` and `claim_batch` in one transaction: up to `n` tasks, the `i`-th (oldest
    /// first) recording `claim_ids[i]` (none when `claim_ids` is empty); a request whose ids
    /// a task already carries is answered with those tasks and claims nothing.
    async fn try_claim(
        &self,
        request: &ClaimRequest,
        claim_ids: &[Uuid],
        n: usize,
        op: &'static str,
    ) -> Result<Vec<Task>> {
        let limit = u32::try_from(n).map_err(|_| Error::invalid("claim.n", "is too large"))?;
        let mut tx = self.pool.begin().await.map_err(db_error(op, "database"))?;
        if let Some(term) = request.term {
            if !guard::lease_held(&mut tx, op, &request.instance_id, term).await? {
                return Err(lease_not_held(&request.instance_id, term));
            }
        }
        let now = db_now(&mut tx, op).await?;
        let actions = rows::text_array(&request.actions);
        if !claim_ids.is_empty() {
            let ids: Vec<String> = claim_ids
                .iter()
                .map(|c| c.hyphenated().to_string())
                .collect();
            let found = queries::query(queries::TASKS_BY_CLAIM_IDS)
                .bind(rows::text_array(&ids))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error(op, "claim.claim_id"))?;
            if !found.is_empty() {
                let tasks = rows::tasks(&found)?;
                if let Some(other) = tasks
                    .iter()
                    .find(|t| t.claimed_by.as_deref() != Some(request.instance_id.as_str()))
                {
                    let by = other.claimed_by.clone().unwrap_or_default();
                    return Err(request.claim_id_taken(other.task_id, &by));
                }
                let tasks = with_messages(&mut tx, op, tasks).await?;
                tx.commit().await.map_err(db_error(op, "database"))?;
                return Ok(tasks);
            }
        }
        queries::query(queries::TERMINATE_MARKED_QUEUED)
            .bind(now.naive_utc())
            .bind(actions.as_str())
            .bind(actions.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error(op, "claim.actions"))?;
        let found = queries::query(queries::NEXT_QUEUED)
            .bind(actions.as_str())
            .bind(actions.as_str())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(op, "claim.actions"))?;
        let mut tasks = rows::tasks(&found)?;
        for (i, task) in tasks.iter_mut().enumerate() {
            request.record_on(task, claim_ids.get(i).copied(), now);
            write_task(&mut tx, op, task).await?;
        }
        let tasks = with_messages(&mut tx, op, tasks).await?;
        tx.commit().await.map_err(db_error(op, "database"))?;
        Ok(tasks)
    }

    async fn try_recover(&self, current_term: i64, policy: OrphanPolicy) -> Result<Vec<TaskId>> {
        const OP: &str = "recover_orphans";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let now = db_now(&mut tx, OP).await?;
        let orphans = queries::query(queries::ORPHANS)
            .bind(current_term)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(OP, "current_term"))?;
        let mut recovered = Vec::with_capacity(orphans.len());
        for mut task in rows::tasks(&orphans)? {
            let recovery = Recovery::of(&task, policy);
            let text = orphan_message(&task, current_term, recovery);
            recovery.apply(&mut task, now);
            write_task(&mut tx, OP, &task).await?;
            let message = NewMessage {
                error: recovery == Recovery::Fail,
                ..NewMessage::info(text)
            };
            append(&mut tx, OP, task.task_id, &message, now).await?;
            recovered.push(task.task_id);
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(recovered)
    }

    async fn try_terminate(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        const OP: &str = "terminate_task";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let root = read_task(&mut tx, OP, queries::TASK_FOR_UPDATE, id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Task, id))?;
        guard::check(&mut tx, OP, &root, guard).await?;
        let now = db_now(&mut tx, OP).await?;
        let ids: Vec<String> = queries::query(queries::SUBTREE_IDS)
            .bind(rows::id_text(id))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(OP, "task_id"))?
            .iter()
            .map(|row| row.try_get_unchecked::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db_error(OP, "task_id"))?;
        let ids = serde_json::Value::from(ids).to_string();
        let members = queries::query(queries::TASKS_BY_IDS_FOR_UPDATE)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(OP, "task_id"))?;
        let mut stored = None;
        for mut task in rows::tasks(&members)? {
            task.terminate = true;
            task.terminated = Some(now);
            task.terminated_by = Some(by.to_string());
            task.status = terminated_status(task.status);
            task.updated = Some(now);
            write_task(&mut tx, OP, &task).await?;
            if task.task_id == id {
                stored = Some(task);
            }
        }
        let stored = stored.ok_or_else(|| Error::not_found(Entity::Task, id))?;
        let task = one(with_messages(&mut tx, OP, vec![stored]).await?)?;
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(task)
    }

    /// Purges one batch of roots: the trees without live work, with their messages.
    async fn purge_batch(&self, roots: &[TaskId], report: &mut PurgeReport) -> Result<()> {
        const OP: &str = "purge";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        let members = queries::query(queries::PURGE_TREES)
            .bind(rows::id_array(roots.iter().copied()))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(OP, "task_id"))?;
        let mut trees: HashMap<String, (bool, Vec<String>)> = HashMap::new();
        for row in &members {
            let root: String = row
                .try_get_unchecked("root")
                .map_err(db_error(OP, "root"))?;
            let id: String = row.try_get_unchecked("id").map_err(db_error(OP, "id"))?;
            let status: String = row
                .try_get_unchecked("status")
                .map_err(db_error(OP, "status"))?;
            let status: TaskStatus = status
                .parse()
                .map_err(|e| crate::error::corrupt("task status", e))?;
            let tree = trees.entry(root).or_default();
            tree.0 |= purge_keeps(status);
            tree.1.push(id);
        }
        let doomed: Vec<String> = trees
            .into_values()
            .filter(|(keep, _)| !keep)
            .flat_map(|(_, ids)| ids)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !doomed.is_empty() {
            let doomed = serde_json::Value::from(doomed).to_string();
            let messages = queries::query(queries::PURGE_MESSAGES)
                .bind(doomed.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error(OP, "task_id"))?;
            let tasks = queries::query(queries::PURGE_TASKS)
                .bind(doomed.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error(OP, "task_id"))?;
            tx.commit().await.map_err(db_error(OP, "database"))?;
            // Counted once committed, so a batch run again after a lost race counts once.
            report.messages += messages.rows_affected();
            report.tasks += tasks.rows_affected();
            return Ok(());
        }
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(())
    }
}

/// Whether task `id` exists, its row share-locked so it stays until the transaction ends.
async fn task_exists_locked(
    conn: &mut sqlx::MySqlConnection,
    op: &'static str,
    id: TaskId,
) -> Result<bool> {
    let n: i64 = queries::query_scalar(queries::TASK_EXISTS_LOCKED)
        .bind(rows::id_text(id))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error(op, "task_id"))?;
    Ok(n != 0)
}

/// The one task of a list of one.
fn one(mut tasks: Vec<Task>) -> Result<Task> {
    tasks
        .pop()
        .ok_or_else(|| crate::error::corrupt("task", "a task read back is gone"))
}

/// The earliest time a DATETIME column holds, the start of a purge's keyset.
fn min_datetime() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("1000-01-01T00:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[async_trait]
impl TaskStore for MySqlStore {
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        retry_races!(self.try_create(task).await)
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        const OP: &str = "get_task";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_error(OP, "database"))?;
        let Some(task) = read_task(&mut conn, OP, queries::GET_TASK, id).await? else {
            return Ok(None);
        };
        Ok(Some(one(with_messages(&mut conn, OP, vec![task]).await?)?))
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        update.validate(id)?;
        retry_races!(self.try_update(id, update, guard).await)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        const OP: &str = "list_tasks";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_error(OP, "database"))?;
        let limit: u64 = filter.limit.map_or(u64::MAX, u64::from);
        let found = bind_filter!(queries::query(queries::LIST_TASKS), filter)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error(OP, "filter"))?;
        with_messages(&mut conn, OP, rows::tasks(&found)?).await
    }

    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        const OP: &str = "count_tasks";
        filter.validate()?;
        let n: i64 = bind_filter!(queries::query_scalar(queries::COUNT_TASKS), filter)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(OP, "filter"))?;
        u64::try_from(n).map_err(|e| crate::error::corrupt("task count", e))
    }

    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        let child = task.subtask_of(parent)?;
        child.validate()?;
        retry_races!(self.try_create_subtask(parent, &child, guard).await)
    }

    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        retry_races!(self.try_add_subtask(parent, child, guard).await)
    }

    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        const OP: &str = "task_tree";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_error(OP, "database"))?;
        let found = queries::query(queries::TREE_TASKS)
            .bind(rows::id_text(root))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error(OP, "task_id"))?;
        let tasks = with_messages(&mut conn, OP, rows::tasks(&found)?).await?;
        let mut by_id: HashMap<TaskId, Task> = tasks.into_iter().map(|t| (t.task_id, t)).collect();
        let Some(first) = by_id.remove(&root) else {
            return Ok(Vec::new());
        };
        // Breadth first along the lists, each id once, as the trait says.
        let mut seen = HashSet::from([root]);
        let mut tree = vec![TreeNode {
            depth: 0,
            task_id: root,
            task: Some(first),
        }];
        let mut i = 0;
        while i < tree.len() {
            let level = tree[i].depth;
            let listed = match &tree[i].task {
                Some(t) if depth.is_none_or(|d| level < d) => t.subtask_id_list.clone(),
                _ => Vec::new(),
            };
            for id in listed {
                if seen.insert(id) {
                    tree.push(TreeNode {
                        depth: level + 1,
                        task_id: id,
                        task: by_id.remove(&id),
                    });
                }
            }
            i += 1;
        }
        Ok(tree)
    }

    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        const OP: &str = "subtasks";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_error(OP, "database"))?;
        let parent = read_task(&mut conn, OP, queries::GET_TASK, parent)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Task, parent))?;
        if parent.subtask_id_list.is_empty() {
            return Ok(Vec::new());
        }
        let found = queries::query(queries::TASKS_BY_IDS)
            .bind(rows::id_array(parent.subtask_id_list.iter().copied()))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error(OP, "task_id"))?;
        let mut by_id: HashMap<TaskId, Task> = rows::tasks(&found)?
            .into_iter()
            .map(|t| (t.task_id, t))
            .collect();
        let listed: Vec<Task> = parent
            .subtask_id_list
            .iter()
            .filter_map(|id| by_id.remove(id))
            .filter(|t| match which {
                SubtaskFilter::All => true,
                SubtaskFilter::Active => !t.status.is_terminal(),
                SubtaskFilter::Complete => t.status.is_terminal(),
            })
            .collect();
        with_messages(&mut conn, OP, listed).await
    }

    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        let claim_ids: Vec<Uuid> = request.claim_id.into_iter().collect();
        Ok(retry_races!(self.try_claim(request, &claim_ids, 1, "claim_next").await)?.pop())
    }

    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        retry_races!(self.try_recover(current_term, policy).await)
    }

    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        retry_races!(self.try_terminate(id, by, guard).await)
    }

    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        request.validate_batch(n)?;
        let claim_ids = request.batch_claim_ids(n);
        retry_races!(self.try_claim(request, &claim_ids, n, "claim_batch").await)
    }

    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        let subtasks = tree_subtasks(parent, subtasks)?;
        retry_races!(self.try_create_tree(parent, &subtasks).await)
    }

    /// One transaction for the whole batch, retried whole on a lost race (a deadlock rolls
    /// the transaction back).
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        retry_races!(self.try_update_many(updates).await)
    }

    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        const OP: &str = "purge";
        // Refuses a zero or unrepresentable retention; the cutoff itself is the database's.
        purge_cutoff(older_than)?;
        let micros = i64::try_from(older_than.as_micros())
            .map_err(|_| Error::invalid("purge.older_than", "is too large"))?;
        let cutoff: Option<DateTime<Utc>> = queries::query_scalar(queries::PURGE_CUTOFF)
            .bind(micros)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(OP, "purge.older_than"))?;
        let mut report = PurgeReport::default();
        let Some(cutoff) = cutoff else {
            return Ok(report);
        };
        let mut key = (min_datetime(), String::new());
        loop {
            let found = queries::query(queries::PURGE_ROOTS)
                .bind(cutoff.naive_utc())
                .bind(key.0.naive_utc())
                .bind(key.0.naive_utc())
                .bind(key.1.as_str())
                .bind(PURGE_BATCH_ROOTS)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error(OP, "task_id"))?;
            let mut roots = Vec::with_capacity(found.len());
            for row in &found {
                let id: String = row
                    .try_get_unchecked("task_id")
                    .map_err(db_error(OP, "task_id"))?;
                let created: DateTime<Utc> = row
                    .try_get_unchecked("created")
                    .map_err(db_error(OP, "created"))?;
                roots.push(
                    id.parse::<uuid::Uuid>()
                        .map(TaskId)
                        .map_err(|e| crate::error::corrupt("task_id", e))?,
                );
                key = (created, id);
            }
            if roots.is_empty() {
                break;
            }
            retry_races!(self.purge_batch(&roots, &mut report).await)?;
            if found.len() < PURGE_BATCH_ROOTS as usize {
                break;
            }
        }
        Ok(report)
    }
}
