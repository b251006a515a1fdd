//! [`TaskStore`] on PostgreSQL: the queue, claims under the lease, guarded writes, orphan
//! recovery and purge.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::backend::{
    is_refusal, no_nul, orphan_message, purge_cutoff, purge_keeps, refuse_new_work_under,
    retention_too_large, task_exists, Recovery, ORPHAN_FAILURE_REASON,
};
use drydock_state_core::Entity;
use drydock_state_core::{
    tree_subtasks, Claim, ClaimRequest, Error, GuardedUpdate, NewTask, OrphanPolicy, PurgeReport,
    Result, SubtaskFilter, Task, TaskFilter, TaskId, TaskStatus, TaskStore, TaskUpdate, TreeNode,
};
use uuid::Uuid;

use crate::error::{classify, Named, OrStore};
use crate::guard;
use crate::messages::MessageBatch;
use crate::store::PgStore;
use crate::{queries, rows};

/// How many root trees one purge transaction locks and deletes: small enough that no batch
/// holds its locks for long, large enough that a big purge takes few round trips.
pub const PURGE_BATCH_ROOTS: i64 = 500;

/// The result links as the JSON stored in `result_links`.
fn links_json(links: &[drydock_state_core::Link]) -> Result<serde_json::Value> {
    serde_json::to_value(links).map_err(|e| Error::invalid("task.result.links", e.to_string()))
}

/// A parent id as an error names it (empty when there is none).
fn parent_id(parent: Option<TaskId>) -> String {
    parent.map(|p| p.to_string()).unwrap_or_default()
}

/// A patch field that may be cleared: whether to write it, and the value (NULL clears).
fn set<T: Clone>(field: &Option<Option<T>>) -> (bool, Option<T>) {
    match field {
        Some(value) => (true, value.clone()),
        None => (false, None),
    }
}

/// A caller's JSON value as the text bound to a `json` column (cast `$n::text::json` in the
/// statement): serialised in the value's own key order, which PostgreSQL's `json` keeps.
/// Binding a `serde_json::Value` directly would send `jsonb`, which reorders keys.
pub(crate) fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

/// A statement of [`queries`] with its bind values.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds a new task's values, `$1` to `$10` of [`queries::CREATE_TASK`] and
/// [`queries::CREATE_SUBTASK`].
fn bind_new_task<'q>(query: PgQuery<'q>, task: &'q NewTask) -> PgQuery<'q> {
    query
        .bind(task.task_id.0)
        .bind(task.parent_task_id.map(|p| p.0))
        .bind(&task.action)
        .bind(&task.design_ref)
        .bind(task.status.as_str())
        .bind(json_text(&task.node_filter))
        .bind(task.created)
        .bind(&task.created_by)
        .bind(task.retry)
        .bind(json_text(&task.request_context))
}

/// `create_task`'s insert ([`queries::CREATE_TASK`]) on `executor`.
async fn create_in<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    task: &NewTask,
    op: &'static str,
) -> Result<Task> {
    let row = bind_new_task(queries::query(queries::CREATE_TASK), task)
        .fetch_one(executor)
        .await
        .or_store(op)
        .duplicate_as(|| task_exists(task.task_id))
        .missing_as(Entity::ParentTask, parent_id(task.parent_task_id))?;
    rows::task(&row)
}

/// Binds a filter's conditions, `$1` to `$9` of [`queries::LIST_TASKS`] and
/// [`queries::COUNT_TASKS`], to `$query` (a `query` or a `query_scalar`).
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let filter: &TaskFilter = $filter;
        $query
            .bind(filter.status.map(|s| s.as_str()))
            .bind(&filter.action)
            .bind(filter.parent.map(|p| p.0))
            .bind(filter.created_after)
            .bind(filter.created_before)
            .bind(filter.after.map(|(created, _)| created))
            .bind(filter.after.map(|(_, id)| id.0))
            .bind(&filter.claimed_by)
            .bind(filter.claim_term)
    }};
}

/// The bind parameters of [`queries::UPDATE_TASKS`]: parallel arrays, one element per
/// update, in the statement's order.
#[derive(Default)]
struct UpdateColumns<'a> {
    ids: Vec<Uuid>,
    status: Vec<Option<&'static str>>,
    result_status: Vec<Option<&'static str>>,
    set_message: Vec<bool>,
    message: Vec<Option<&'a str>>,
    set_reason: Vec<bool>,
    reason: Vec<Option<&'a str>>,
    successes: Vec<Option<String>>,
    failures: Vec<Option<String>>,
    links: Vec<Option<String>>,
    retry: Vec<Option<i32>>,
    set_filter: Vec<bool>,
    filter: Vec<Option<String>>,
    set_design: Vec<bool>,
    design: Vec<Option<&'a str>>,
    set_parent: Vec<bool>,
    parent: Vec<Option<Uuid>>,
    guard_by: Vec<Option<&'a str>>,
    guard_term: Vec<Option<i64>>,
    guard_attempt: Vec<Option<i64>>,
}

/// A patch field that may be cleared, borrowed: whether to write it, and the value.
fn set_str(field: &Option<Option<String>>) -> (bool, Option<&str>) {
    match field {
        Some(value) => (true, value.as_deref()),
        None => (false, None),
    }
}

/// A list of targets as the JSON array text `UPDATE_TASKS` unpacks.
fn targets_json(targets: &Option<Vec<String>>) -> Option<String> {
    targets
        .as_ref()
        .map(|list| serde_json::Value::from(list.clone()).to_string())
}

impl<'a> UpdateColumns<'a> {
    /// The columns of one update of task `id`.
    fn one(id: TaskId, update: &'a TaskUpdate, guard: Option<&'a Claim>) -> Result<Self> {
        let mut columns = Self::default();
        columns.push(id, update, guard)?;
        Ok(columns)
    }

    /// Adds the update of task `id` (validated by the caller) as the next element.
    fn push(&mut self, id: TaskId, update: &'a TaskUpdate, guard: Option<&'a Claim>) -> Result<()> {
        let links = update.links.as_deref().map(links_json).transpose()?;
        let (set_filter, filter) = set(&update.node_filter);
        let (set_message, message) = set_str(&update.result_message);
        let (set_reason, reason) = set_str(&update.result_reason);
        let (set_design, design) = set_str(&update.design_ref);
        let (set_parent, parent) = set(&update.parent_task_id);
        let (by, term, attempt) = guard::binds(guard);
        self.ids.push(id.0);
        self.status.push(update.status.map(|s| s.as_str()));
        self.result_status
            .push(update.result_status.map(|s| s.as_str()));
        self.set_message.push(set_message);
        self.message.push(message);
        self.set_reason.push(set_reason);
        self.reason.push(reason);
        self.successes.push(targets_json(&update.successes));
        self.failures.push(targets_json(&update.failures));
        self.links.push(links.map(|l| l.to_string()));
        self.retry.push(update.retry);
        self.set_filter.push(set_filter);
        self.filter.push(json_text(&filter));
        self.set_design.push(set_design);
        self.design.push(design);
        self.set_parent.push(set_parent);
        self.parent.push(parent.map(|p| p.0));
        self.guard_by.push(by);
        self.guard_term.push(term);
        self.guard_attempt.push(attempt);
        Ok(())
    }

    /// The parent the first update sets, as an error names it (one update: `update_task`).
    fn parent(&self) -> String {
        parent_id(self.parent.first().copied().flatten().map(TaskId))
    }

    fn query(&self) -> PgQuery<'_> {
        queries::query(queries::UPDATE_TASKS)
            .bind(&self.ids)
            .bind(&self.status)
            .bind(&self.result_status)
            .bind(&self.set_message)
            .bind(&self.message)
            .bind(&self.set_reason)
            .bind(&self.reason)
            .bind(&self.successes)
            .bind(&self.failures)
            .bind(&self.links)
            .bind(&self.retry)
            .bind(&self.set_filter)
            .bind(&self.filter)
            .bind(&self.set_design)
            .bind(&self.design)
            .bind(&self.set_parent)
            .bind(&self.parent)
            .bind(&self.guard_by)
            .bind(&self.guard_term)
            .bind(&self.guard_attempt)
    }
}

#[async_trait]
impl TaskStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %task.task_id))]
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        task.validate()?;
        create_in(&self.pool, task, "create_task").await
    }

    /// One transaction: each task inserted by `create_task`'s statement, parent first, then
    /// the parent's subtask list written (`SET_SUBTASK_LIST`).
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %parent.task_id, subtasks = subtasks.len()))]
    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        const OP: &str = "create_task_tree";
        let subtasks = tree_subtasks(parent, subtasks)?;
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let mut stored = Vec::with_capacity(subtasks.len() + 1);
        for task in std::iter::once(parent).chain(&subtasks) {
            stored.push(create_in(&mut *tx, task, OP).await?);
        }
        let ids: Vec<Uuid> = subtasks.iter().map(|t| t.task_id.0).collect();
        queries::query(queries::SET_SUBTASK_LIST)
            .bind(parent.task_id.0)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        stored[0].subtask_id_list = subtasks.iter().map(|t| t.task_id).collect();
        Ok(stored)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id))]
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        let row = queries::query(queries::GET_TASK)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .or_store("get_task")?;
        match row {
            None => Ok(None),
            Some(row) => rows::assembled(&row).map(Some),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id, status = ?update.status, guarded = guard.is_some()))]
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "update_task";
        update.validate(id)?;
        let columns = UpdateColumns::one(id, update, guard)?;
        let write = || async {
            let row = columns
                .query()
                .fetch_optional(&self.pool)
                .await
                .or_store(OP)
                .missing_as(Entity::ParentTask, columns.parent())?;
            row.as_ref().map(rows::assembled).transpose()
        };
        self.guarded(OP, id, guard, write, |stored| {
            update
                .check_transition(id, stored.task.status)
                .map(|()| None)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = ?filter.limit))]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        filter.validate()?;
        let rows = bind_filter!(queries::query(queries::LIST_TASKS), filter)
            .bind(filter.limit.map(i64::from))
            .fetch_all(&self.pool)
            .await
            .or_store("list_tasks")?;
        rows.iter().map(rows::assembled).collect()
    }

    /// One `SELECT count(*)` with [`TaskStore::list_tasks`]'s conditions; the limit is not
    /// bound.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        filter.validate()?;
        let n: i64 = bind_filter!(queries::query_scalar(queries::COUNT_TASKS), filter)
            .fetch_one(&self.pool)
            .await
            .or_store("count_tasks")?;
        u64::try_from(n).map_err(|e| crate::error::corrupt("task count", e))
    }

    /// One statement, `CREATE_SUBTASK`: the parent's list and the child are
    /// written together or not at all, the guard checked in the same statement
    /// (`PgStore::guarded` explains a refusal).
    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent, child = %task.task_id, guarded = guard.is_some()))]
    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        const OP: &str = "create_subtask";
        let child = &task.subtask_of(parent)?;
        child.validate()?;
        let (by, term, attempt) = guard::binds(guard);
        let write = || async move {
            let row = bind_new_task(queries::query(queries::CREATE_SUBTASK), child)
                .bind(by)
                .bind(term)
                .bind(attempt)
                .fetch_optional(&self.pool)
                .await
                .or_store(OP)
                .duplicate_as(|| task_exists(child.task_id))?;
            row.as_ref().map(rows::task).transpose()
        };
        // No row: no parent, a refused guard, or a parent taking no new work.
        self.guarded(OP, parent, guard, write, |stored| {
            refuse_new_work_under(&stored.task).map(|()| None)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent, child = %child, guarded = guard.is_some()))]
    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        const OP: &str = "add_subtask";
        let (by, term, attempt) = guard::binds(guard);
        let write = || async move {
            let done = queries::query(queries::ADD_SUBTASK)
                .bind(parent.0)
                .bind(child.0)
                .bind(by)
                .bind(term)
                .bind(attempt)
                .execute(&self.pool)
                .await
                .or_store(OP)?;
            Ok((done.rows_affected() == 1).then_some(()))
        };
        // No row: no parent, a refused guard, a parent taking no new work, or the child
        // already listed (a no-op).
        self.guarded(OP, parent, guard, write, |stored| {
            refuse_new_work_under(&stored.task)?;
            Ok(stored.task.subtask_id_list.contains(&child).then_some(()))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(root = %root, depth = ?depth))]
    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        let rows = queries::query(queries::TASK_TREE)
            .bind(root.0)
            .bind(depth.map(i64::from))
            .fetch_all(&self.pool)
            .await
            .or_store("task_tree")?;
        // The statement lists each id once, breadth first; keep the first occurrence anyway,
        // so the reference store's rule holds whatever the rows.
        let mut seen = HashSet::with_capacity(rows.len());
        let mut tree = Vec::with_capacity(rows.len());
        for row in &rows {
            let node = rows::tree_node(row)?;
            if seen.insert(node.task_id) {
                tree.push(node);
            }
        }
        Ok(tree)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(parent = %parent))]
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        let finished = match which {
            SubtaskFilter::All => None,
            SubtaskFilter::Active => Some(false),
            SubtaskFilter::Complete => Some(true),
        };
        let rows = queries::query(queries::SUBTASKS)
            .bind(parent.0)
            .bind(finished)
            .fetch_all(&self.pool)
            .await
            .or_store("subtasks")?;
        if rows.is_empty() && !self.task_exists(parent, "subtasks").await? {
            return Err(Error::not_found(Entity::Task, parent));
        }
        rows.iter().map(rows::assembled).collect()
    }

    /// `PgStore::claim` of one task, named by the request's own claim id.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term, claim_id = ?request.claim_id))]
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        request.validate()?;
        let claim_ids: Vec<Uuid> = request.claim_id.into_iter().collect();
        Ok(self
            .claim(request, &claim_ids, 1, "claim_next")
            .await?
            .pop())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(current_term, policy = ?policy))]
    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        const OP: &str = "recover_orphans";
        let mut tx = self.pool.begin().await.or_store(OP)?;
        let rows = queries::query(queries::RECOVER_ORPHANS_LOCK)
            .bind(current_term)
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let orphans = rows::tasks(&rows)?;
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<Uuid> = Vec::with_capacity(orphans.len());
        let mut statuses: Vec<&'static str> = Vec::with_capacity(orphans.len());
        let mut fails: Vec<bool> = Vec::with_capacity(orphans.len());
        let mut notes = MessageBatch::default();
        for task in &orphans {
            let recovery = Recovery::of(task, policy);
            ids.push(task.task_id.0);
            statuses.push(recovery.as_str());
            fails.push(recovery == Recovery::Fail);
            notes.push(
                task.task_id,
                orphan_message(task, current_term, recovery),
                recovery == Recovery::Fail,
            );
        }
        queries::query(queries::RECOVER_ORPHANS_APPLY)
            .bind(&ids)
            .bind(&statuses)
            .bind(&fails)
            .bind(ORPHAN_FAILURE_REASON)
            .execute(&mut *tx)
            .await
            .or_store(OP)?;
        notes.append(&mut tx).await?;
        tx.commit().await.or_store(OP)?;
        tracing::info!(recovered = ids.len(), "recovered orphaned tasks");
        Ok(orphans.into_iter().map(|t| t.task_id).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %id, guarded = guard.is_some()))]
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        const OP: &str = "terminate_task";
        no_nul("terminated_by", by)?;
        let (g_by, g_term, g_attempt) = guard::binds(guard);
        let write = || async move {
            let row = queries::query(queries::TERMINATE_TASK)
                .bind(id.0)
                .bind(by)
                .bind(g_by)
                .bind(g_term)
                .bind(g_attempt)
                .fetch_optional(&self.pool)
                .await
                .or_store(OP)?;
            row.as_ref().map(rows::assembled).transpose()
        };
        self.guarded(OP, id, guard, write, |_| Ok(None)).await
    }

    /// Returns when a task is queued anywhere (the `tasks_notify_queued` trigger's `NOTIFY`,
    /// heard by a `LISTEN` connection of this store's own), or after `max_wait`.
    #[tracing::instrument(level = "trace", skip_all)]
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        self.wake.wait(&self.pool, max_wait).await;
        Ok(())
    }

    /// `PgStore::claim` of up to `n` tasks, named by the batch's derived claim ids.
    #[tracing::instrument(level = "debug", skip_all, fields(instance_id = %request.instance_id, term = ?request.term, claim_id = ?request.claim_id, n))]
    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        request.validate_batch(n)?;
        self.claim(request, &request.batch_claim_ids(n), n, "claim_batch")
            .await
    }

    /// One transaction, and in it one statement (`UPDATE_TASKS`) for every update it can
    /// take: valid, the only update of its task in the call, and setting no parent (a
    /// missing parent fails the statement). Each update it did not write, and each it could
    /// not take, then runs alone in turn as `update_task` runs it, a refusal explained as
    /// `update_task` explains it and answered in its slot (an update that sets a parent under
    /// a savepoint). So a batch of completions under live claims is two round trips, plus the
    /// transaction's own.
    #[tracing::instrument(level = "debug", skip_all, fields(updates = updates.len()))]
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        const OP: &str = "update_tasks";
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcomes: Vec<Option<Result<Task>>> = updates.iter().map(|_| None).collect();
        let mut per_task: HashMap<TaskId, usize> = HashMap::new();
        for u in updates {
            *per_task.entry(u.task_id).or_default() += 1;
        }
        let mut columns = UpdateColumns::default();
        let mut slot_of: HashMap<Uuid, usize> = HashMap::new();
        for (i, u) in updates.iter().enumerate() {
            let sets_parent = matches!(u.update.parent_task_id, Some(Some(_)));
            if per_task[&u.task_id] > 1 || sets_parent {
                continue;
            }
            let taken = u
                .update
                .validate(u.task_id)
                .and_then(|()| guard::validate(u.guard.as_ref()))
                .and_then(|()| columns.push(u.task_id, &u.update, u.guard.as_ref()));
            match taken {
                Ok(()) => {
                    slot_of.insert(u.task_id.0, i);
                }
                Err(e) if is_refusal(&e) => outcomes[i] = Some(Err(e)),
                Err(e) => return Err(e),
            }
        }
        let mut tx = self.pool.begin().await.or_store(OP)?;
        if !columns.ids.is_empty() {
            let written = columns.query().fetch_all(&mut *tx).await.or_store(OP)?;
            for row in &written {
                let task = rows::assembled(row)?;
                if let Some(&i) = slot_of.get(&task.task_id.0) {
                    outcomes[i] = Some(Ok(task));
                }
            }
        }
        let mut answered = Vec::with_capacity(updates.len());
        for (u, outcome) in updates.iter().zip(outcomes) {
            let outcome = match outcome {
                Some(done) => done,
                None => match update_in(&mut tx, u).await {
                    Err(e) if !is_refusal(&e) => return Err(e),
                    outcome => outcome,
                },
            };
            answered.push(outcome);
        }
        tx.commit().await.or_store(OP)?;
        Ok(answered)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(older_than_secs = older_than.as_secs()))]
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        // The memory store's rule (zero and absurd retentions refused), on the database clock.
        purge_cutoff(older_than)?;
        const OP: &str = "purge";
        let micros = i64::try_from(older_than.as_micros()).map_err(|_| retention_too_large())?;
        let cutoff: DateTime<Utc> = queries::query_scalar(queries::PURGE_CUTOFF)
            .bind(micros)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match &e {
                // 22008: the cutoff falls before the earliest timestamp PostgreSQL can hold.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("22008") => {
                    retention_too_large()
                }
                _ => classify(OP, e),
            })?;
        let mut report = PurgeReport::default();
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        loop {
            // One short transaction per batch: lock the roots, then their trees level by
            // level, delete the trees without live work, commit.
            let mut tx = self.pool.begin().await.or_store(OP)?;
            let roots: Vec<(Uuid, DateTime<Utc>, String)> =
                queries::query_as(queries::PURGE_LOCK_ROOTS)
                    .bind(cutoff)
                    .bind(PURGE_BATCH_ROOTS)
                    .bind(after.map(|(created, _)| created))
                    .bind(after.map(|(_, id)| id))
                    .fetch_all(&mut *tx)
                    .await
                    .or_store(OP)?;
            // Rows locked after a wait may come out of order: the keyset is the largest.
            let Some(last) = roots.iter().map(|(id, created, _)| (*created, *id)).max() else {
                break;
            };
            after = Some(last);
            let batch = lock_trees(&mut tx, &roots).await?;
            if !batch.is_empty() {
                let messages = queries::query(queries::PURGE_DELETE_MESSAGES)
                    .bind(&batch)
                    .execute(&mut *tx)
                    .await
                    .or_store(OP)?;
                let tasks = queries::query(queries::PURGE_DELETE_TASKS)
                    .bind(&batch)
                    .execute(&mut *tx)
                    .await
                    .or_store(OP)?;
                report.tasks += tasks.rows_affected();
                report.messages += messages.rows_affected();
            }
            tx.commit().await.or_store(OP)?;
        }
        tracing::info!(
            tasks = report.tasks,
            messages = report.messages,
            "purged old task trees"
        );
        Ok(report)
    }
}

/// One update of `update_tasks` inside its transaction `tx`, under `update_task`'s rules: the
/// fenced statement, and when it changes nothing the read that says why (in the memory
/// store's order), tried again if nothing explains it.
async fn update_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    u: &GuardedUpdate,
) -> Result<Task> {
    const OP: &str = "update_tasks";
    let (id, guard) = (u.task_id, u.guard.as_ref());
    u.update.validate(id)?;
    guard::validate(guard)?;
    let columns = UpdateColumns::one(id, &u.update, guard)?;
    for _ in 0..guard::ATTEMPTS {
        let row = if matches!(u.update.parent_task_id, Some(Some(_))) {
            // A missing parent fails the statement, which would abort the whole transaction.
            let mut savepoint = sqlx::Acquire::begin(&mut *tx).await.or_store(OP)?;
            let sent = columns
                .query()
                .fetch_optional(&mut *savepoint)
                .await
                .or_store(OP)
                .missing_as(Entity::ParentTask, columns.parent());
            match sent {
                Ok(row) => {
                    savepoint.commit().await.or_store(OP)?;
                    row
                }
                Err(e) => {
                    savepoint.rollback().await.or_store(OP)?;
                    return Err(e);
                }
            }
        } else {
            columns
                .query()
                .fetch_optional(&mut **tx)
                .await
                .or_store(OP)?
        };
        if let Some(row) = row {
            return rows::assembled(&row);
        }
        let stored = guard::refused_in(&mut **tx, OP, id, guard).await?;
        if let Some(refused) = stored.guard_error(guard) {
            return Err(refused);
        }
        u.update.check_transition(id, stored.task.status)?;
    }
    Err(guard::kept_changing(OP, id))
}

impl PgStore {
    /// Claims up to `n` tasks in one statement (`CLAIM_NEXT` for one, else `CLAIM_BATCH`),
    /// the `i`-th (oldest first) recording `claim_ids[i]` (none when `claim_ids` is empty); a
    /// request whose ids a task already carries is answered with those tasks. A second query
    /// only when a fenced claim found nothing, to tell "fenced out" from "nothing queued".
    async fn claim(
        &self,
        request: &ClaimRequest,
        claim_ids: &[Uuid],
        n: usize,
        op: &'static str,
    ) -> Result<Vec<Task>> {
        let limit = i64::try_from(n).map_err(|_| Error::invalid("claim.n", "is too large"))?;
        // Two claims sent at once with one new claim id both find its ids unused; the second
        // fails on the unique index and, sent again, finds the first's.
        let mut tries = 2;
        let rows = loop {
            tries -= 1;
            let claim = |statement| {
                queries::query(statement)
                    .bind(&request.actions)
                    .bind(&request.instance_id)
                    .bind(request.term)
                    .bind(claim_ids)
            };
            let statement = match limit {
                1 => claim(queries::CLAIM_NEXT),
                _ => claim(queries::CLAIM_BATCH).bind(limit),
            };
            let sent = statement.fetch_all(&self.pool).await.or_store(op);
            match sent {
                Err(Error::Conflict { .. }) if tries > 0 && request.claim_id.is_some() => continue,
                other => break other?,
            }
        };
        if !rows.is_empty() {
            let tasks = rows
                .iter()
                .map(rows::assembled)
                .collect::<Result<Vec<_>>>()?;
            if let Some(other) = tasks
                .iter()
                .find(|t| t.claimed_by.as_deref() != Some(request.instance_id.as_str()))
            {
                let by = other.claimed_by.as_deref().unwrap_or_default();
                return Err(request.claim_id_taken(other.task_id, by));
            }
            return Ok(tasks);
        }
        let Some(term) = request.term else {
            return Ok(Vec::new());
        };
        let holds: bool = queries::query_scalar(queries::LEASE_HELD_WITH_TERM)
            .bind(&request.instance_id)
            .bind(term)
            .fetch_one(&self.pool)
            .await
            .or_store(op)?;
        if holds {
            Ok(Vec::new())
        } else {
            Err(drydock_state_core::lease_not_held(
                &request.instance_id,
                term,
            ))
        }
    }

    /// Whether a task exists; asked only to tell "not found" from "nothing to do".
    pub(crate) async fn task_exists(&self, id: TaskId, op: &'static str) -> Result<bool> {
        queries::query_scalar(queries::TASK_EXISTS)
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .or_store(op)
    }
}

/// Locks the trees of the locked `roots` (id, created, status) one level at a time, from the
/// roots down, and returns the tasks of the trees to delete: every tree with no task that
/// [`purge_keeps`] (such a tree is kept whole, and its lower levels are not even locked).
/// Statuses are those of the locked rows, so they cannot change before the batch commits.
async fn lock_trees(
    tx: &mut sqlx::PgConnection,
    roots: &[(Uuid, DateTime<Utc>, String)],
) -> Result<Vec<Uuid>> {
    const OP: &str = "purge";
    let keeps = |status: &str| -> Result<bool> {
        let status: TaskStatus = status
            .parse()
            .map_err(|e| crate::error::corrupt("task status", e))?;
        Ok(purge_keeps(status))
    };
    // Each locked task's root, and the roots whose trees are kept.
    let mut root_of: HashMap<Uuid, Uuid> = HashMap::new();
    let mut kept: HashSet<Uuid> = HashSet::new();
    for (id, _, status) in roots {
        root_of.insert(*id, *id);
        if keeps(status)? {
            kept.insert(*id);
        }
    }
    let mut level: Vec<Uuid> = roots
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !kept.contains(id))
        .collect();
    while !level.is_empty() {
        let rows: Vec<(Uuid, Uuid, String)> = queries::query_as(queries::PURGE_LOCK_LEVEL)
            .bind(&level)
            .fetch_all(&mut *tx)
            .await
            .or_store(OP)?;
        let mut next = Vec::with_capacity(rows.len());
        for (id, parent, status) in rows {
            // The lock re-checked that the parent is in this level.
            let Some(&root) = root_of.get(&parent) else {
                continue;
            };
            // A task already seen (a parent cycle) is not walked again.
            if root_of.contains_key(&id) {
                continue;
            }
            root_of.insert(id, root);
            if keeps(&status)? {
                kept.insert(root);
            }
            next.push(id);
        }
        next.retain(|id| !kept.contains(&root_of[id]));
        level = next;
    }
    Ok(root_of
        .into_iter()
        .filter(|(_, root)| !kept.contains(root))
        .map(|(id, _)| id)
        .collect())
}
