//! [`Checked`]: validation applied in one place, in front of any backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{no_nul, purge_cutoff, validate_instance_id};
use crate::error::Result;
use crate::model::*;
use crate::store::*;

/// A store that checks every input a backend must refuse before anything is stored (the
/// `validate` methods of the model types, guards, instance ids, node names, the purge
/// retention), then delegates to the store it wraps.
///
/// [`crate::BackendRegistry::open`] wraps every store it opens in it, so a backend reached
/// through the registry never sees an input every backend must refuse. A store built
/// directly (`MemoryStore::new`, `PgStore::connect`, `SqliteStore::open`) is not wrapped:
/// wrap it with [`Checked::new`] to get the same checks. A backend keeps only the limits of
/// its own (a largest value, say) and what can only be checked inside its transaction.
#[derive(Debug)]
pub struct Checked<S: ?Sized> {
    inner: Arc<S>,
    /// Dropped after `inner` (fields drop in order): what the store lives on.
    keep: Option<Kept>,
}

/// What a [`Checked`] store keeps alive beside its store.
#[derive(Clone)]
struct Kept(#[allow(dead_code)] Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

impl<S> Checked<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Checked::from_arc(Arc::new(inner))
    }
}

impl<S: ?Sized> Checked<S> {
    /// Wraps a shared store, e.g. an `Arc<dyn StateStore>`.
    pub fn from_arc(inner: Arc<S>) -> Self {
        Checked { inner, keep: None }
    }

    /// Keeps `resource` (a test database, a temporary directory) alive as long as the store,
    /// and drops it after the store: for tests and tools whose store lives on something that
    /// must outlast it.
    pub fn keeping(mut self, resource: impl std::any::Any + Send + Sync) -> Self {
        self.keep = Some(Kept(Arc::new(resource)));
        self
    }

    /// The wrapped store, unchecked.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }
}

impl<S: ?Sized> Clone for Checked<S> {
    fn clone(&self) -> Self {
        Checked {
            inner: Arc::clone(&self.inner),
            keep: self.keep.clone(),
        }
    }
}

fn guard_ok(guard: Option<&Claim>) -> Result<()> {
    guard.map_or(Ok(()), Claim::validate)
}

#[async_trait]
impl<S: TaskStore + ?Sized> TaskStore for Checked<S> {
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        task.validate()?;
        self.inner.create_task(task).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        self.inner.get_task(id).await
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        update.validate(id)?;
        guard_ok(guard)?;
        self.inner.update_task(id, update, guard).await
    }

    async fn set_status(
        &self,
        id: TaskId,
        status: TaskStatus,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        guard_ok(guard)?;
        self.inner.set_status(id, status, guard).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        filter.validate()?;
        self.inner.list_tasks(filter).await
    }

    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        filter.validate()?;
        self.inner.count_tasks(filter).await
    }

    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        task.subtask_of(parent)?.validate()?;
        guard_ok(guard)?;
        self.inner.create_subtask(parent, task, guard).await
    }

    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        guard_ok(guard)?;
        self.inner.add_subtask(parent, child, guard).await
    }

    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        self.inner.task_tree(root, depth).await
    }

    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        self.inner.subtasks(parent, which).await
    }

    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        request.validate()?;
        self.inner.claim_next(request).await
    }

    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        self.inner.recover_orphans(current_term, policy).await
    }

    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        no_nul("terminated_by", by)?;
        guard_ok(guard)?;
        self.inner.terminate_task(id, by, guard).await
    }

    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        purge_cutoff(older_than)?;
        self.inner.purge(older_than).await
    }

    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        self.inner.wait_for_queued(max_wait).await
    }

    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        request.validate_batch(n)?;
        self.inner.claim_batch(request, n).await
    }

    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        tree_subtasks(parent, subtasks)?;
        self.inner.create_task_tree(parent, subtasks).await
    }

    /// Each update is checked as `update_task` checks it; a refused one is answered in its own
    /// slot and not passed on, the others go to the wrapped store in one call.
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        let checks: Vec<Result<()>> = updates
            .iter()
            .map(|u| {
                u.update.validate(u.task_id)?;
                guard_ok(u.guard.as_ref())
            })
            .collect();
        let passed: Vec<GuardedUpdate> = updates
            .iter()
            .zip(&checks)
            .filter(|(_, check)| check.is_ok())
            .map(|(u, _)| u.clone())
            .collect();
        let mut written = if passed.is_empty() {
            Vec::new()
        } else {
            self.inner.update_tasks(&passed).await?
        }
        .into_iter();
        let outcomes: Vec<Result<Task>> = checks
            .into_iter()
            .map(|check| match check {
                Err(refused) => Err(refused),
                Ok(()) => written.next().unwrap_or_else(|| {
                    Err(crate::error::Error::Backend {
                        message: "update_tasks: the store answered fewer updates than it was given"
                            .into(),
                        source: None,
                    })
                }),
            })
            .collect();
        Ok(outcomes)
    }
}

#[async_trait]
impl<S: MessageStore + ?Sized> MessageStore for Checked<S> {
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        message.validate()?;
        guard_ok(guard)?;
        self.inner.append_message(task, message, guard).await
    }

    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        messages.iter().try_for_each(NewMessage::validate)?;
        guard_ok(guard)?;
        self.inner.append_messages(task, messages, guard).await
    }

    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        self.inner.messages(task).await
    }
}

#[async_trait]
impl<S: BuildStore + ?Sized> BuildStore for Checked<S> {
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        data.validate()?;
        guard_ok(guard)?;
        self.inner.record_build_data(data, guard).await
    }

    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        self.inner.build_data_of_tasks(tasks, verbosity).await
    }

    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        query.validate()?;
        self.inner.build_data(query).await
    }
}

#[async_trait]
impl<S: InstanceLock + ?Sized> InstanceLock for Checked<S> {
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        validate_instance_id("instance_id", instance_id)?;
        self.inner.claim_lease(instance_id).await
    }

    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        validate_instance_id("instance_id", instance_id)?;
        self.inner.renew_lease(instance_id).await
    }

    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        validate_instance_id("instance_id", instance_id)?;
        self.inner.release_lease(instance_id).await
    }

    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.inner.current_lease().await
    }
}

#[async_trait]
impl<S: BootActionStore + ?Sized> BootActionStore for Checked<S> {
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        context.validate()?;
        self.inner.set_boot_action_context(context).await
    }

    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        no_nul("boot_action.node_name", node_name)?;
        self.inner.boot_action_context(node_name).await
    }

    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        action.validate()?;
        self.inner.add_boot_action(action).await
    }

    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        details.iter().try_for_each(NewMessage::validate)?;
        self.inner.set_boot_action_status(id, status, details).await
    }

    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>> {
        no_nul("boot_action.node_name", node_name)?;
        self.inner.boot_actions_for_node(node_name).await
    }

    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        self.inner.boot_action(id).await
    }
}

#[async_trait]
impl<S: ImportStore + ?Sized> ImportStore for Checked<S> {
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        batch.validate()?;
        self.inner.import(batch, mode).await
    }
}

#[async_trait]
impl<S: StateStore + ?Sized> StateStore for Checked<S> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn ping(&self) -> Result<DateTime<Utc>> {
        self.inner.ping().await
    }
}
