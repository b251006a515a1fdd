//! The in-memory store: every store trait over plain collections behind one mutex.
//!
//! It keeps nothing across restarts and shares nothing between processes; it is the reference
//! the SQL backends are checked against, and handy in tests. Open it as `memory://`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::BackendRegistration;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::*;

/// The URL schemes the in-memory store serves.
pub const URL_SCHEMES: &[&str] = &["memory"];

/// Registers the in-memory store under `memory://`. It is not submitted to `inventory` by core:
/// the facade registers it when its `memory` feature is on, so that feature means something.
pub const REGISTRATION: BackendRegistration = BackendRegistration {
    name: "memory",
    schemes: URL_SCHEMES,
    open: |_url, config| {
        Box::pin(async move { Ok(Arc::new(MemoryStore::new(&config)) as Arc<dyn StateStore>) })
    },
};

/// All four stores in process memory.
#[derive(Debug)]
pub struct MemoryStore {
    grace_period: chrono::Duration,
    inner: Mutex<Inner>,
    queued: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<TaskId, Task>,
    messages: HashMap<TaskId, Vec<ResultMessage>>,
    next_sequence: i64,
    build_data: Vec<BuildData>,
    lease: Option<Lease>,
    last_term: i64,
}

impl MemoryStore {
    /// An empty store whose lease lasts `config.leader.grace_period`.
    pub fn new(config: &Config) -> Self {
        MemoryStore {
            grace_period: chrono::Duration::from_std(config.leader.grace_period)
                .unwrap_or(chrono::Duration::MAX),
            inner: Mutex::new(Inner::default()),
            queued: tokio::sync::Notify::new(),
        }
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
            .ok_or_else(|| Error::not_found("task", id))
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

fn illegal_change(id: TaskId, from: TaskStatus, to: TaskStatus) -> Error {
    Error::Conflict(format!(
        "task {id} is {from}, which is final; it cannot become {to}"
    ))
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(&self, task: &Task) -> Result<()> {
        task.validate()?;
        let mut inner = self.lock();
        if inner.tasks.contains_key(&task.task_id) {
            return Err(Error::Conflict(format!(
                "task {} already exists",
                task.task_id
            )));
        }
        if let Some(parent) = task.parent_task_id {
            if !inner.tasks.contains_key(&parent) {
                return Err(Error::not_found("parent task", parent));
            }
        }
        let mut stored = task.clone();
        stored.subtask_id_list.clear();
        stored.result.details = ResultDetails::default();
        inner.tasks.insert(task.task_id, stored);
        drop(inner);
        self.wake_if_queued(task.status);
        Ok(())
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        let inner = self.lock();
        Ok(inner.tasks.get(&id).map(|t| inner.assembled(t)))
    }

    async fn update_task(&self, task: &Task) -> Result<Task> {
        task.validate()?;
        let mut inner = self.lock();
        let stored = inner.task_mut(task.task_id)?;
        if claim_is_stale(task, stored.claimed_by.as_deref(), stored.claim_term) {
            return Err(stale_claim(task));
        }
        if !stored.status.can_become(task.status) {
            return Err(illegal_change(task.task_id, stored.status, task.status));
        }
        let mut next = task.clone();
        next.subtask_id_list = std::mem::take(&mut stored.subtask_id_list);
        next.result.details = ResultDetails::default();
        next.created = stored.created;
        next.claimed_by = stored.claimed_by.take();
        next.claim_term = stored.claim_term;
        next.claimed_at = stored.claimed_at;
        next.updated = Some(now());
        *stored = next;
        let stored = stored.clone();
        self.wake_if_queued(stored.status);
        Ok(inner.assembled(&stored))
    }

    async fn set_status(&self, id: TaskId, status: TaskStatus) -> Result<Task> {
        let mut inner = self.lock();
        let stored = inner.task_mut(id)?;
        if !stored.status.can_become(status) {
            return Err(illegal_change(id, stored.status, status));
        }
        stored.status = status;
        stored.updated = Some(now());
        let stored = stored.clone();
        self.wake_if_queued(status);
        Ok(inner.assembled(&stored))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        filter.validate()?;
        let inner = self.lock();
        let mut tasks: Vec<&Task> = inner
            .tasks
            .values()
            .filter(|t| filter.status.is_none_or(|s| t.status == s))
            .filter(|t| filter.action.as_ref().is_none_or(|a| &t.action == a))
            .filter(|t| filter.parent.is_none_or(|p| t.parent_task_id == Some(p)))
            .filter(|t| filter.created_after.is_none_or(|c| t.created >= c))
            .filter(|t| filter.created_before.is_none_or(|c| t.created < c))
            .filter(|t| filter.after.is_none_or(|key| (t.created, t.task_id) > key))
            .collect();
        tasks.sort_by_key(|t| (t.created, t.task_id));
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        Ok(tasks
            .into_iter()
            .take(limit)
            .map(|t| inner.assembled(t))
            .collect())
    }

    async fn add_subtask(&self, parent: TaskId, child: TaskId) -> Result<()> {
        let mut inner = self.lock();
        let parent = inner.task_mut(parent)?;
        if !parent.subtask_id_list.contains(&child) {
            parent.subtask_id_list.push(child);
        }
        Ok(())
    }

    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        let inner = self.lock();
        let parent = inner
            .tasks
            .get(&parent)
            .ok_or_else(|| Error::not_found("task", parent))?;
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
        request.validate()?;
        let mut inner = self.lock();
        let now = now();
        if let Some(term) = request.term {
            let fenced_in = inner
                .live_lease(now)
                .is_some_and(|l| l.instance_id == request.instance_id && l.term == term);
            if !fenced_in {
                return Err(Error::LeaseLost(format!(
                    "instance {} does not hold the lease with term {term}",
                    request.instance_id
                )));
            }
        }
        let next = inner
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued)
            .filter(|t| request.actions.is_empty() || request.actions.contains(&t.action))
            .min_by_key(|t| (t.created, t.task_id))
            .map(|t| t.task_id);
        let Some(id) = next else { return Ok(None) };
        let task = inner.task_mut(id)?;
        task.status = TaskStatus::Running;
        task.claimed_by = Some(request.instance_id.clone());
        task.claim_term = request.term;
        task.claimed_at = Some(now);
        task.updated = Some(now);
        let task = task.clone();
        Ok(Some(inner.assembled(&task)))
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
            .filter(|t| {
                t.status == TaskStatus::Running && t.claim_term.is_some_and(|c| c < current_term)
            })
            .map(|t| (t.created, t.task_id))
            .collect();
        orphans.sort();
        for (_, id) in &orphans {
            let task = inner.task_mut(*id)?;
            let text = orphan_message(task, current_term, policy);
            match policy {
                OrphanPolicy::Requeue => {
                    task.status = TaskStatus::Queued;
                    task.claimed_by = None;
                    task.claim_term = None;
                    task.claimed_at = None;
                }
                OrphanPolicy::Fail => {
                    task.status = TaskStatus::Complete;
                    task.result.status = ResultStatus::Failure;
                    task.result.reason = Some("orphaned by a change of leader".into());
                }
            }
            task.updated = Some(now);
            let message = NewMessage {
                error: policy == OrphanPolicy::Fail,
                ..NewMessage::info(text)
            };
            inner.append(*id, &message, now);
        }
        if policy == OrphanPolicy::Requeue && !orphans.is_empty() {
            self.queued.notify_waiters();
        }
        Ok(orphans.into_iter().map(|(_, id)| id).collect())
    }

    async fn terminate_task(&self, id: TaskId, by: &str) -> Result<Task> {
        crate::model::no_nul("terminated_by", by)?;
        let mut inner = self.lock();
        let task = inner.task_mut(id)?;
        let now = now();
        task.terminate = true;
        task.terminated = Some(now);
        task.terminated_by = Some(by.to_string());
        if !task.status.is_terminal() {
            task.status = TaskStatus::Terminated;
        }
        task.updated = Some(now);
        let task = task.clone();
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
        let mut children: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
        for t in inner.tasks.values() {
            if let Some(parent) = t.parent_task_id {
                children.entry(parent).or_default().push(t.task_id);
            }
        }
        let mut report = PurgeReport::default();
        for (_, root) in roots {
            // The whole tree, level by level; a tree with live work is kept whole.
            let mut tree = vec![root];
            let mut i = 0;
            while i < tree.len() {
                tree.extend(children.get(&tree[i]).into_iter().flatten().copied());
                i += 1;
            }
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
}

/// Whether a task in `status` keeps its whole tree from being purged, however old the root:
/// running and terminating tasks are live work a worker may still be writing. Requested and
/// queued leftovers are purged with their trees, as Drydock did.
pub fn purge_keeps(status: TaskStatus) -> bool {
    matches!(status, TaskStatus::Running | TaskStatus::Terminating)
}

/// Whether writing `written` must be refused because the claim it carries is no longer the
/// stored one (`stored_by`, `stored_term`): the task was recovered or re-claimed since the
/// writer read it. A task written without a claim is never refused for this.
pub fn claim_is_stale(written: &Task, stored_by: Option<&str>, stored_term: Option<i64>) -> bool {
    written.claimed_by.is_some()
        && (written.claimed_by.as_deref() != stored_by || written.claim_term != stored_term)
}

/// The [`Error::LeaseLost`] for a write refused by [`claim_is_stale`].
pub fn stale_claim(written: &Task) -> Error {
    Error::LeaseLost(format!(
        "task {} is no longer claimed by {} under term {}; it was recovered or claimed again, so this write is refused",
        written.task_id,
        written.claimed_by.as_deref().unwrap_or_default(),
        written.claim_term.map_or_else(|| "none".to_string(), |t| t.to_string()),
    ))
}

/// The result message [`TaskStore::recover_orphans`] leaves on each task it recovers.
pub fn orphan_message(task: &Task, current_term: i64, policy: OrphanPolicy) -> String {
    let what = match policy {
        OrphanPolicy::Requeue => "requeued",
        OrphanPolicy::Fail => "failed",
    };
    format!(
        "orphaned: claimed by {} under lease term {}, but leadership passed to term {current_term}; {what}",
        task.claimed_by.as_deref().unwrap_or("an unknown instance"),
        task.claim_term.unwrap_or_default(),
    )
}

/// The instant before which a purge removes task trees, refusing a zero retention.
pub fn purge_cutoff(older_than: Duration) -> Result<DateTime<Utc>> {
    if older_than.is_zero() {
        return Err(Error::invalid(
            "purge.older_than",
            "must be greater than zero",
        ));
    }
    let age = chrono::Duration::from_std(older_than)
        .map_err(|_| Error::invalid("purge.older_than", "is too large"))?;
    now()
        .checked_sub_signed(age)
        .ok_or_else(|| Error::invalid("purge.older_than", "is too large"))
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append_message(&self, task: TaskId, message: &NewMessage) -> Result<ResultMessage> {
        message.validate()?;
        let mut inner = self.lock();
        inner.task_mut(task)?;
        Ok(inner.append(task, message, now()))
    }

    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
    ) -> Result<Vec<ResultMessage>> {
        messages.iter().try_for_each(NewMessage::validate)?;
        let mut inner = self.lock();
        inner.task_mut(task)?;
        let ts = now();
        Ok(messages.iter().map(|m| inner.append(task, m, ts)).collect())
    }

    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        Ok(self.lock().messages.get(&task).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl BuildStore for MemoryStore {
    async fn record_build_data(&self, data: &BuildData) -> Result<()> {
        data.validate()?;
        let mut stored = data.clone();
        stored.collected_date.get_or_insert_with(now);
        self.lock().build_data.push(stored);
        Ok(())
    }

    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        query.validate()?;
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
        validate_instance_id("instance_id", instance_id)?;
        let mut inner = self.lock();
        let now = now();
        let expires_at = now + self.grace_period;
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
        validate_instance_id("instance_id", instance_id)?;
        let mut inner = self.lock();
        let now = now();
        match inner.live_lease(now).cloned() {
            Some(live) if live.instance_id == instance_id => {
                let lease = inner.lease.as_mut().expect("a live lease exists");
                lease.renewed_at = now;
                lease.expires_at = now + self.grace_period;
                Ok(LeaseOutcome::Held(lease.clone()))
            }
            other => Ok(LeaseOutcome::Denied(other)),
        }
    }

    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        validate_instance_id("instance_id", instance_id)?;
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

impl StateStore for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .create_task(&Task::new("deploy_nodes").with_status(TaskStatus::Queued))
            .await
            .unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("woken well before max_wait")
            .unwrap();
        assert!(waited < Duration::from_secs(60));
    }
}
