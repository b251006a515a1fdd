//! An example store backend written outside the drydock-state workspace: `tiny://`, a store
//! of this process's memory. It keeps its state in a [`MemoryStore`] and counts the calls
//! made to it, to show the shape every backend has: the store traits implemented, a
//! [`BackendRegistration`] submitted to `inventory`, and a `tests/conformance.rs` that runs
//! the whole public conformance kit (`drydock_state_core::conformance_tests!`).
//!
//! The store traits are the six [`StateStore`] combines: [`TaskStore`], [`MessageStore`],
//! [`BuildStore`], [`InstanceLock`], [`BootActionStore`] and [`ImportStore`].

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drydock_state_core::{
    BackendRegistration, BootAction, BootActionContext, BootActionId, BootActionStatus,
    BootActionStore, BuildData, BuildDataQuery, BuildStore, Claim, ClaimRequest, Config, Error,
    GuardedUpdate, ImportBatch, ImportMode, ImportOutcome, ImportStore, InstanceLock, Lease, LeaseOutcome,
    MemoryStore, MessageStore, NewMessage, NewTask, OrphanPolicy, PurgeReport, Result,
    ResultMessage, StateStore, SubtaskFilter, Task, TaskFilter, TaskId, TaskStore, TaskUpdate,
    TreeNode, Verbosity,
};

/// The URL schemes this backend serves.
pub const URL_SCHEMES: &[&str] = &["tiny"];

/// Registers the backend under `tiny:`. A `tiny://` URL has nothing after the scheme: every
/// open is a new, empty store.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("tiny", URL_SCHEMES, |url, config| {
        Box::pin(async move {
            if url != "tiny://" {
                return Err(Error::invalid(
                    "database.url",
                    "a tiny:// URL has no host, path or query",
                ));
            }
            Ok(Arc::new(TinyStore::new(&config)) as Arc<dyn StateStore>)
        })
    });

inventory::submit! { REGISTRATION }

/// A store of this process's memory that counts the calls made to it.
pub struct TinyStore {
    inner: MemoryStore,
    calls: AtomicU64,
}

impl TinyStore {
    /// An empty store.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: MemoryStore::new(config),
            calls: AtomicU64::new(0),
        }
    }

    /// How many store calls were made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) -> &MemoryStore {
        self.calls.fetch_add(1, Ordering::Relaxed);
        &self.inner
    }
}

#[async_trait]
impl TaskStore for TinyStore {
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        self.count().create_task(task).await
    }
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        self.count().get_task(id).await
    }
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        self.count().update_task(id, update, guard).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        self.count().list_tasks(filter).await
    }
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<u64> {
        self.count().count_tasks(filter).await
    }
    async fn create_subtask(
        &self,
        parent: TaskId,
        task: &NewTask,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        self.count().create_subtask(parent, task, guard).await
    }
    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        self.count().add_subtask(parent, child, guard).await
    }
    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        self.count().task_tree(root, depth).await
    }
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        self.count().subtasks(parent, which).await
    }
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        self.count().claim_next(request).await
    }
    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        self.count().recover_orphans(current_term, policy).await
    }
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        self.count().terminate_task(id, by, guard).await
    }
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        self.count().purge(older_than).await
    }
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        self.count().wait_for_queued(max_wait).await
    }
    async fn claim_batch(&self, request: &ClaimRequest, n: usize) -> Result<Vec<Task>> {
        self.count().claim_batch(request, n).await
    }
    async fn update_tasks(&self, updates: &[GuardedUpdate]) -> Result<Vec<Result<Task>>> {
        self.count().update_tasks(updates).await
    }
    async fn create_task_tree(&self, parent: &NewTask, subtasks: &[NewTask]) -> Result<Vec<Task>> {
        self.count().create_task_tree(parent, subtasks).await
    }
}

#[async_trait]
impl MessageStore for TinyStore {
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        self.count().append_message(task, message, guard).await
    }
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        self.count().append_messages(task, messages, guard).await
    }
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        self.count().messages(task).await
    }
}

#[async_trait]
impl BuildStore for TinyStore {
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        self.count().record_build_data(data, guard).await
    }
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        self.count().build_data_of_tasks(tasks, verbosity).await
    }
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        self.count().build_data(query).await
    }
}

#[async_trait]
impl InstanceLock for TinyStore {
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.count().claim_lease(instance_id).await
    }
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.count().renew_lease(instance_id).await
    }
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        self.count().release_lease(instance_id).await
    }
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.count().current_lease().await
    }
}

#[async_trait]
impl BootActionStore for TinyStore {
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        self.count().set_boot_action_context(context).await
    }
    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        self.count().boot_action_context(node_name).await
    }
    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        self.count().add_boot_action(action).await
    }
    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        self.count()
            .set_boot_action_status(id, status, details)
            .await
    }
    async fn boot_actions_for_node(&self, node_name: &str) -> Result<BTreeMap<String, BootAction>> {
        self.count().boot_actions_for_node(node_name).await
    }
    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        self.count().boot_action(id).await
    }
}

#[async_trait]
impl ImportStore for TinyStore {
    async fn import(&self, batch: &ImportBatch, mode: ImportMode) -> Result<ImportOutcome> {
        self.count().import(batch, mode).await
    }
}

#[async_trait]
impl StateStore for TinyStore {
    fn backend_name(&self) -> &'static str {
        "tiny"
    }
    async fn ping(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        self.count().ping().await
    }
}
