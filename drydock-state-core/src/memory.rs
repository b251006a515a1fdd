//! The in-memory store: every store trait over plain collections behind one mutex.
//!
//! It keeps nothing across restarts and shares nothing between processes; it is the reference
//! the SQL backends are checked against, and handy in tests. Open it as `memory://`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::{
    boot_action_exists, now, orphan_message, purge_cutoff, purge_keeps, refuse_new_work_under,
    task_exists, terminated_status, BackendRegistration, BuildDataContents, Recovery,
};
use crate::config::Config;
use crate::error::{Entity, Error, Result};
use crate::model::*;
use crate::store::*;

/// The URL schemes the in-memory store serves.
pub const URL_SCHEMES: &[&str] = &["memory"];

/// Registers the in-memory store under `memory://`. It is not submitted to `inventory` by core:
/// the facade registers it when its `memory` feature is on, so that feature means something.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("memory", URL_SCHEMES, |_url, config| {
        Box::pin(async move { Ok(Arc::new(MemoryStore::new(&config)) as Arc<dyn StateStore>) })
    });

/// All four stores in process memory.
#[derive(Debug)]
pub struct MemoryStore {
    grace_period: chrono::Duration,
    inner: Mutex<Inner>,
    queued: tokio::sync::Notify,
}

#[derive(Clone, Debug, Default)]
struct Inner {
    tasks: HashMap<TaskId, Task>,
    messages: HashMap<TaskId, Vec<ResultMessage>>,
    next_sequence: i64,
    build_data: Vec<BuildData>,
    lease: Option<Lease>,
    last_term: i64,
    boot_contexts: HashMap<String, BootActionContext>,
    boot_actions: HashMap<BootActionId, BootAction>,
}

impl MemoryStore {
    /// An empty store whose lease lasts `config.leader.grace_period`. It checks no input:
    /// wrap it in [`crate::backend::Checked`] (as `memory://` through
    /// [`crate::BackendRegistry::open`] is) to have bad input refused.
    pub fn new(config: &Config) -> Self {
        MemoryStore {
            grace_period: chrono::Duration::from_std(config.leader.grace_period)
                .unwrap_or(chrono::Duration::MAX),
            inner: Mutex::new(Inner::default()),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// When a lease taken or renewed at `now` lapses; an error, not a panic, for a grace
    /// period too long to add to the clock.
    fn expiry(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        now.checked_add_signed(self.grace_period)
            .ok_or_else(|| Error::Config {
                key: "leader.grace_period".into(),
                origin: "the store's configuration".into(),
                reason: "is too long to add to the current time".into(),
            })
    }

    fn wake_if_queued(&self, status: TaskStatus) {
        if status == TaskStatus::Queued {
            self.queued.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written task (every mutation is
        // a single assignment), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn assembled(&self, task: &Task) -> Task {
        let mut task = task.clone();
        let messages = self
            .messages
            .get(&task.task_id)
            .cloned()
            .unwrap_or_default();
        task.result.details = ResultDetails {
            error_count: messages.iter().filter(|m| m.error).count() as u64,
            message_list: messages,
        };
        task
    }

    fn task_mut(&mut self, id: TaskId) -> Result<&mut Task> {
        self.tasks
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(Entity::Task, id))
    }

    fn append(&mut self, task: TaskId, message: &NewMessage, ts: DateTime<Utc>) -> ResultMessage {
        self.next_sequence += 1;
        let stored = ResultMessage {
            sequence: self.next_sequence,
            task_id: task,
            message: message.message.clone(),
            error: message.error,
            context_type: message.context_type.clone(),
            context: message.context.clone(),
            ts,
            extra: message.extra.clone(),
        };
        self.messages.entry(task).or_default().push(stored.clone());
        stored
    }

    fn live_lease(&self, now: DateTime<Utc>) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.expires_at > now)
    }
}

impl Inner {
    /// Checks `guard` against the stored claim of `id` and, when it has a term, the live
    /// lease: the rule of every guarded write.
    fn check_guard(&self, id: TaskId, guard: Option<&Claim>, now: DateTime<Utc>) -> Result<()> {
        let Some(guard) = guard else { return Ok(()) };
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| Error::not_found(Entity::Task, id))?;
        let lease_held = guard
            .term
            .is_some_and(|term| self.holds(&guard.instance_id, term, now));
        guard.check(
            id,
            task.claimed_by.as_deref(),
            task.claim_term,
            task.attempt,
            lease_held,
        )
    }

    fn holds(&self, instance_id: &str, term: i64, now: DateTime<Utc>) -> bool {
        self.live_lease(now)
            .is_some_and(|l| l.instance_id == instance_id && l.term == term)
    }

    /// `update_task`'s rules and write, returning the task assembled.
    fn update(
        &mut self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
        now: DateTime<Utc>,
    ) -> Result<Task> {
        let from = self.task_mut(id)?.status;
        self.check_guard(id, guard, now)?;
        update.check_transition(id, from)?;
        if let Some(Some(parent)) = update.parent_task_id {
            if !self.tasks.contains_key(&parent) {
                return Err(Error::not_found(Entity::ParentTask, parent));
            }
        }
        let stored = self.task_mut(id)?;
        update.apply(stored, now);
        let stored = stored.clone();
        Ok(self.assembled(&stored))
    }

    /// `claim_next`'s and `claim_batch`'s claim: the fence, a re-sent claim id (any of
    /// `claim_ids`), the marked queued tasks terminated, then up to `n` oldest queued tasks
    /// claimed, the `i`-th with `claim_ids[i]` (none without a claim id).
    fn claim(
        &mut self,
        request: &ClaimRequest,
        n: usize,
        claim_ids: &[uuid::Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>> {
        if let Some(term) = request.term {
            if !self.holds(&request.instance_id, term, now) {
                return Err(lease_not_held(&request.instance_id, term));
            }
        }
        let mut resent: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| t.claim_id.is_some_and(|c| claim_ids.contains(&c)))
            .collect();
        if !resent.is_empty() {
            resent.sort_by_key(|t| (t.created, t.task_id));
            if let Some(other) = resent
                .iter()
                .find(|t| t.claimed_by.as_deref() != Some(request.instance_id.as_str()))
            {
                let by = other.claimed_by.clone().unwrap_or_default();
                return Err(request.claim_id_taken(other.task_id, &by));
            }
            return Ok(resent.into_iter().map(|t| self.assembled(t)).collect());
        }
        let allowed = |t: &Task| request.actions.is_empty() || request.actions.contains(&t.action);
        let doomed: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued && t.terminate && allowed(t))
            .map(|t| t.task_id)
            .collect();
        for id in doomed {
            let task = self.task_mut(id)?;
            task.status = TaskStatus::Terminated;
            task.updated = Some(now);
        }
        let mut next: Vec<(DateTime<Utc>, TaskId)> = self
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued && allowed(t))
            .map(|t| (t.created, t.task_id))
            .collect();
        next.sort();
        let mut claimed = Vec::with_capacity(n.min(next.len()));
        for (i, (_, id)) in next.into_iter().take(n).enumerate() {
            let task = self.task_mut(id)?;
            request.record_on(task, claim_ids.get(i).copied(), now);
            let task = task.clone();
            claimed.push(self.assembled(&task));
        }
        Ok(claimed)
    }

    /// Each task's children by parent link, oldest first.
    fn children(&self) -> HashMap<TaskId, Vec<TaskId>> {
        let mut children: HashMap<TaskId, Vec<(DateTime<Utc>, TaskId)>> = HashMap::new();
        for t in self.tasks.values() {
            if let Some(parent) = t.parent_task_id {
                children
                    .entry(parent)
                    .or_default()
                    .push((t.created, t.task_id));
            }
        }
        children
            .into_iter()
            .map(|(parent, mut kids)| {
                kids.sort();
                (parent, kids.into_iter().map(|(_, id)| id).collect())
            })
            .collect()
    }
}

/// `root` and every descendant by parent link in `children`, breadth first, each once (a
/// parent cycle made by an update ends the walk instead of looping).
fn subtree(children: &HashMap<TaskId, Vec<TaskId>>, root: TaskId) -> Vec<TaskId> {
    let mut seen = std::collections::HashSet::from([root]);
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        for child in children.get(&tree[i]).into_iter().flatten() {
            if seen.insert(*child) {
                tree.push(*child);
            }
        }
        i += 1;
    }
    tree
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        let mut inner = self.lock();
        if inner.tasks.contains_key(&task.task_id) {
            return Err(task_exists(task.task_id));
        }
        if let Some(parent) = task.parent_task_id {
            if !inner.tasks.contains_key(&parent) {
                return Err(Error::not_found(Entity::ParentTask, parent));
            }
        }
        let stored = task.to_task();
        inner.tasks.insert(task.task_id, stored.clone());
        drop(inner);
        self.wake_if_queued(task.status);
        Ok(stored)
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        let inner = self.lock();
        Ok(inner.tasks.get(&id).map(|t| inner.assembled(t)))
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        let mut inner = self.lock();
        let stored = inner.update(id, update, guard, now())?;
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        let inner = self.lock();
        let mut tasks: Vec<&Task> = inner.tasks.values().filter(|t| filter.matches(t)).collect();
        tasks.sort_by_key(|t| (t.created, t.task_id));
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        Ok(tasks
            .into_iter()
            .take(limit)
            .map(|t| inner.assembled(t))
            .collect())
    }

    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        let inner = self.lock();
        Ok(inner.tasks.values().filter(|t| filter.matches(t)).count() as u64)
    }

    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        let child = task.subtask_of(parent)?;
        let mut inner = self.lock();
        let now = now();
        inner.task_mut(parent)?;
        inner.check_guard(parent, guard, now)?;
        refuse_new_work_under(inner.task_mut(parent)?)?;
        if inner.tasks.contains_key(&child.task_id) {
            return Err(task_exists(child.task_id));
        }
        let stored = child.to_task();
        inner.tasks.insert(child.task_id, stored.clone());
        let list = &mut inner.task_mut(parent)?.subtask_id_list;
        if !list.contains(&child.task_id) {
            list.push(child.task_id);
        }
        drop(inner);
        self.wake_if_queued(stored.status);
        Ok(stored)
    }

    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let now = now();
        inner.task_mut(parent)?;
        inner.check_guard(parent, guard, now)?;
        let parent_task = inner.task_mut(parent)?;
        refuse_new_work_under(parent_task)?;
        if !parent_task.subtask_id_list.contains(&child) {
            parent_task.subtask_id_list.push(child);
        }
        Ok(())
    }

    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        let inner = self.lock();
        let Some(first) = inner.tasks.get(&root) else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashSet::from([root]);
        let mut tree = vec![TreeNode {
            depth: 0,
            task_id: root,
            task: Some(inner.assembled(first)),
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
                        task: inner.tasks.get(&id).map(|t| inner.assembled(t)),
                    });
                }
            }
            i += 1;
        }
        Ok(tree)
    }

    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        let inner = self.lock();
        let parent = inner
            .tasks
            .get(&parent)
            .ok_or_else(|| Error::not_found(Entity::Task, parent))?;
        Ok(parent
            .subtask_id_list
            .iter()
            .filter_map(|id| inner.tasks.get(id))
            .filter(|t| match which {
                SubtaskFilter::All => true,
                SubtaskFilter::Active => !t.status.is_terminal(),
                SubtaskFilter::Complete => t.status.is_terminal(),
            })
            .map(|t| inner.assembled(t))
            .collect())
    }

    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        let claim_ids: Vec<uuid::Uuid> = request.claim_id.into_iter().collect();
        let mut claimed = self.lock().claim(request, 1, &claim_ids, now())?;
        Ok(claimed.pop())
    }

    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        let mut inner = self.lock();
        let now = now();
        let mut orphans: Vec<(DateTime<Utc>, TaskId)> = inner
            .tasks
            .values()
            .filter(|t| t.is_live() && t.claim_term.is_some_and(|c| c < current_term))
            .map(|t| (t.created, t.task_id))
            .collect();
        orphans.sort();
        let mut requeued = false;
        for (_, id) in &orphans {
            let task = inner.task_mut(*id)?;
            let recovery = Recovery::of(task, policy);
            let text = orphan_message(task, current_term, recovery);
            recovery.apply(task, now);
            requeued |= task.status == TaskStatus::Queued;
            let message = NewMessage {
                error: recovery == Recovery::Fail,
                ..NewMessage::info(text)
            };
            inner.append(*id, &message, now);
        }
        if requeued {
            self.queued.notify_waiters();
        }
        Ok(orphans.into_iter().map(|(_, id)| id).collect())
    }

    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        let mut inner = self.lock();
        let now = now();
        inner.task_mut(id)?;
        inner.check_guard(id, guard, now)?;
        for member in subtree(&inner.children(), id) {
            let task = inner.task_mut(member)?;
            task.terminate = true;
            task.terminated = Some(now);
            task.terminated_by = Some(by.to_string());
            task.status = terminated_status(task.status);
            task.updated = Some(now);
        }
        let task = inner.task_mut(id)?.clone();
        Ok(inner.assembled(&task))
    }

    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        // A task queued between the caller's empty claim and this call is missed until
        // max_wait passes: the poll is the safety net, as the trait says.
        let _ = tokio::time::timeout(max_wait, self.queued.notified()).await;
        Ok(())
    }

    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        let cutoff = purge_cutoff(older_than)?;
        let mut inner = self.lock();
        let mut roots: Vec<(DateTime<Utc>, TaskId)> = inner
            .tasks
            .values()
            .filter(|t| {
                t.parent_task_id
                    .is_none_or(|p| !inner.tasks.contains_key(&p))
                    && t.created < cutoff
            })
            .map(|t| (t.created, t.task_id))
            .collect();
        roots.sort();
        let children = inner.children();
        let mut report = PurgeReport::default();
        for (_, root) in roots {
            // The whole tree; a tree with live work is kept whole.
            let tree = subtree(&children, root);
            if tree
                .iter()
                .any(|id| inner.tasks.get(id).is_some_and(|t| purge_keeps(t.status)))
            {
                continue;
            }
            for id in tree {
                if inner.tasks.remove(&id).is_some() {
                    report.tasks += 1;
                }
                report.messages += inner.messages.remove(&id).map_or(0, |m| m.len() as u64);
            }
        }
        Ok(report)
    }

    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        request.validate_batch(n)?;
        let claim_ids = request.batch_claim_ids(n);
        self.lock().claim(request, n, &claim_ids, now())
    }

    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        let subtasks = tree_subtasks(parent, subtasks)?;
        let mut inner = self.lock();
        for t in std::iter::once(parent).chain(&subtasks) {
            if inner.tasks.contains_key(&t.task_id) {
                return Err(task_exists(t.task_id));
            }
        }
        if let Some(grandparent) = parent.parent_task_id {
            if !inner.tasks.contains_key(&grandparent) {
                return Err(Error::not_found(Entity::ParentTask, grandparent));
            }
        }
        let mut root = parent.to_task();
        root.subtask_id_list = subtasks.iter().map(|t| t.task_id).collect();
        let mut stored = vec![root];
        stored.extend(subtasks.iter().map(NewTask::to_task));
        for t in &stored {
            inner.tasks.insert(t.task_id, t.clone());
        }
        drop(inner);
        if stored.iter().any(|t| t.status == TaskStatus::Queued) {
            self.queued.notify_waiters();
        }
        Ok(stored)
    }

    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        let mut inner = self.lock();
        let now = now();
        let outcomes: Vec<Result<Task>> = updates
            .iter()
            .map(|u| inner.update(u.task_id, &u.update, u.guard.as_ref(), now))
            .collect();
        drop(inner);
        if outcomes
            .iter()
            .any(|o| o.as_ref().is_ok_and(|t| t.status == TaskStatus::Queued))
        {
            self.queued.notify_waiters();
        }
        Ok(outcomes)
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        let mut inner = self.lock();
        let now = now();
        inner.task_mut(task)?;
        inner.check_guard(task, guard, now)?;
        Ok(inner.append(task, message, now))
    }

    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        let mut inner = self.lock();
        let ts = now();
        inner.task_mut(task)?;
        inner.check_guard(task, guard, ts)?;
        Ok(messages.iter().map(|m| inner.append(task, m, ts)).collect())
    }

    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        Ok(self.lock().messages.get(&task).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl BuildStore for MemoryStore {
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        let mut inner = self.lock();
        let now = now();
        inner.check_guard(data.task_id, guard, now)?;
        let mut stored = data.clone();
        stored.collected_date.get_or_insert(now);
        inner.build_data.push(stored);
        Ok(())
    }

    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        let mut rows = Vec::new();
        for task in tasks.iter().collect::<std::collections::BTreeSet<_>>() {
            rows.extend(
                self.build_data(&BuildDataQuery {
                    task_id: Some(*task),
                    verbosity,
                    ..Default::default()
                })
                .await?,
            );
        }
        // Newest first across tasks; the sort is stable, so equal dates keep each task's order.
        rows.sort_by_key(|b| std::cmp::Reverse(b.collected_date));
        Ok(rows)
    }

    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        let inner = self.lock();
        // Newest first; among equal dates the later insertion is newer.
        let mut rows: Vec<(usize, &BuildData)> = inner
            .build_data
            .iter()
            .enumerate()
            .filter(|(_, b)| query.node_name.as_ref().is_none_or(|n| &b.node_name == n))
            .filter(|(_, b)| query.task_id.is_none_or(|t| b.task_id == t))
            .collect();
        rows.sort_by(|(ia, a), (ib, b)| (b.collected_date, ib).cmp(&(a.collected_date, ia)));
        if query.latest {
            let mut seen = std::collections::HashSet::new();
            rows.retain(|(_, b)| seen.insert((b.node_name.clone(), b.generator.clone())));
        }
        Ok(rows
            .into_iter()
            .map(|(_, b)| {
                let mut b = b.clone();
                if query.verbosity == Verbosity::Brief {
                    b.data_element = None;
                }
                b
            })
            .collect())
    }
}

#[async_trait]
impl InstanceLock for MemoryStore {
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        let mut inner = self.lock();
        let now = now();
        let expires_at = self.expiry(now)?;
        if let Some(live) = inner.live_lease(now) {
            if live.instance_id != instance_id {
                return Ok(LeaseOutcome::Denied(Some(live.clone())));
            }
            let lease = inner.lease.as_mut().expect("a live lease exists");
            lease.renewed_at = now;
            lease.expires_at = expires_at;
            return Ok(LeaseOutcome::Held(lease.clone()));
        }
        inner.last_term += 1;
        let lease = Lease {
            instance_id: instance_id.to_string(),
            term: inner.last_term,
            acquired_at: now,
            renewed_at: now,
            expires_at,
        };
        inner.lease = Some(lease.clone());
        Ok(LeaseOutcome::Held(lease))
    }

    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        let mut inner = self.lock();
        let now = now();
        let expires_at = self.expiry(now)?;
        match inner.live_lease(now).cloned() {
            Some(live) if live.instance_id == instance_id => {
                let lease = inner.lease.as_mut().expect("a live lease exists");
                lease.renewed_at = now;
                lease.expires_at = expires_at;
                Ok(LeaseOutcome::Held(lease.clone()))
            }
            other => Ok(LeaseOutcome::Denied(other)),
        }
    }

    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        let mut inner = self.lock();
        let now = now();
        match inner.lease.as_mut() {
            Some(lease) if lease.instance_id == instance_id && lease.expires_at > now => {
                lease.expires_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn current_lease(&self) -> Result<Option<Lease>> {
        Ok(self.lock().live_lease(now()).cloned())
    }
}

#[async_trait]
impl BootActionStore for MemoryStore {
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        let mut inner = self.lock();
        if !inner.tasks.contains_key(&context.task_id) {
            return Err(Error::not_found(Entity::Task, context.task_id));
        }
        inner
            .boot_contexts
            .insert(context.node_name.clone(), context.clone());
        Ok(())
    }

    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        Ok(self.lock().boot_contexts.get(node_name).cloned())
    }

    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        let mut inner = self.lock();
        if inner.boot_actions.contains_key(&action.action_id) {
            return Err(boot_action_exists(action.action_id));
        }
        if !inner.tasks.contains_key(&action.task_id) {
            return Err(Error::not_found(Entity::Task, action.task_id));
        }
        inner.boot_actions.insert(action.action_id, action.clone());
        Ok(())
    }

    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        let mut inner = self.lock();
        let action = inner
            .boot_actions
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::BootAction, id))?;
        if action.action_status.is_final() {
            return Err(action.finalized(status));
        }
        let note = action.status_message(status);
        if inner.tasks.contains_key(&action.task_id) {
            let ts = now();
            inner.append(action.task_id, &note, ts);
            for detail in details {
                inner.append(action.task_id, detail, ts);
            }
        }
        let stored = inner.boot_actions.get_mut(&id).expect("read above");
        stored.action_status = status;
        Ok(stored.clone())
    }

    async fn boot_actions_for_node(
        &self,
        node_name: &str,
    ) -> Result<std::collections::BTreeMap<String, BootAction>> {
        let inner = self.lock();
        let mut actions: Vec<&BootAction> = inner
            .boot_actions
            .values()
            .filter(|a| a.node_name == node_name)
            .collect();
        // Oldest first, so the newest of a name is inserted last and kept.
        actions.sort_by_key(|a| a.action_id);
        Ok(actions
            .into_iter()
            .map(|a| (a.action_name.clone(), a.clone()))
            .collect())
    }

    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        Ok(self.lock().boot_actions.get(&id).cloned())
    }
}

#[async_trait]
impl ImportStore for MemoryStore {
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        let mut inner = self.lock();
        // All or nothing: the import works on a copy that replaces the store only on success.
        let mut next = inner.clone();
        let outcome = next.import(batch)?;
        if mode == ImportMode::Write {
            *inner = next;
            drop(inner);
            if batch.tasks.iter().any(|t| t.status == TaskStatus::Queued) {
                self.queued.notify_waiters();
            }
        }
        Ok(outcome)
    }
}

impl Inner {
    fn import(&mut self, batch: &ImportBatch) -> Result<ImportOutcome> {
        let mut outcome = ImportOutcome::default();
        for task in &batch.tasks {
            if self.tasks.contains_key(&task.task_id) {
                outcome.tasks.present += 1;
                continue;
            }
            if let Some(parent) = task.parent_task_id {
                if !self.tasks.contains_key(&parent) {
                    return Err(Error::not_found(Entity::ParentTask, parent));
                }
            }
            let mut stored = task.clone();
            stored.result.details = ResultDetails::default();
            self.tasks.insert(task.task_id, stored);
            outcome.tasks.written += 1;
        }
        for message in &batch.messages {
            let owner = self
                .messages
                .values()
                .flatten()
                .find(|m| m.sequence == message.sequence)
                .map(|m| m.task_id);
            match owner {
                Some(owner) if owner == message.task_id => outcome.messages.present += 1,
                Some(owner) => {
                    return Err(Error::conflict(
                        Entity::Message,
                        message.sequence,
                        format!("is stored for task {owner}, not {}", message.task_id),
                    ))
                }
                None => {
                    if !self.tasks.contains_key(&message.task_id) {
                        return Err(Error::not_found(Entity::Task, message.task_id));
                    }
                    let list = self.messages.entry(message.task_id).or_default();
                    list.push(message.clone());
                    list.sort_by_key(|m| m.sequence);
                    self.next_sequence = self.next_sequence.max(message.sequence);
                    outcome.messages.written += 1;
                }
            }
        }
        // Build data by content, with multiplicity.
        let contents = BuildDataContents::of(&batch.build_data);
        let stored: Vec<u64> = contents
            .distinct()
            .iter()
            .map(|d| self.build_data.iter().filter(|s| s == d).count() as u64)
            .collect();
        for (data, write) in batch.build_data.iter().zip(contents.to_write(&stored)) {
            if write {
                self.build_data.push(data.clone());
                outcome.build_data.written += 1;
            } else {
                outcome.build_data.present += 1;
            }
        }
        for context in &batch.boot_contexts {
            match self.boot_contexts.entry(context.node_name.clone()) {
                Entry::Occupied(_) => outcome.boot_contexts.present += 1,
                Entry::Vacant(slot) => {
                    slot.insert(context.clone());
                    outcome.boot_contexts.written += 1;
                }
            }
        }
        for action in &batch.boot_actions {
            match self.boot_actions.entry(action.action_id) {
                Entry::Occupied(_) => outcome.boot_actions.present += 1,
                Entry::Vacant(slot) => {
                    slot.insert(action.clone());
                    outcome.boot_actions.written += 1;
                }
            }
        }
        Ok(outcome)
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<DateTime<Utc>> {
        Ok(now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grace period too long to add to the clock (one `Config::check` refuses, but a caller
    /// may build the configuration by hand) is an error naming the key, not a panic.
    #[tokio::test]
    async fn an_overlong_grace_period_is_an_error_not_a_panic() {
        let mut config = Config::default();
        config.leader.grace_period = Duration::from_secs(1_000_000_000 * 86_400);
        let store = MemoryStore::new(&config);
        for outcome in [store.claim_lease("a").await, store.renew_lease("a").await] {
            match outcome {
                Err(Error::Config { key, .. }) => assert_eq!(key, "leader.grace_period"),
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_waiting_claimer_wakes_when_a_task_is_queued() {
        let store = Arc::new(MemoryStore::new(&Config::default()));
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                store
                    .wait_for_queued(Duration::from_secs(60))
                    .await
                    .unwrap();
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
            .await
            .unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("woken well before max_wait")
            .unwrap();
        assert!(waited < Duration::from_secs(60));
    }
}
