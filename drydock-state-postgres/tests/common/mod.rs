//! What the PostgreSQL backend's tests add to the shared harness
//! (`drydock_state_testsupport::postgres`): migrated stores on fresh databases.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drydock_state_core::testkit::{
    Capabilities, SharedFuture, SharedStore, StoreFactory, StoreFuture,
};
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
pub use drydock_state_testsupport::postgres::*;

/// A migrated store on a fresh database. Keep the `TestDatabase` alive as long as the store.
pub async fn fresh_store(config: &Config) -> (PgStore, TestDatabase) {
    let db = fresh_database().await;
    let store = PgStore::connect(&db.url, config)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate");
    (store, db)
}

/// A store for the conformance kit: a [`PgStore`] that drops its database when dropped.
pub async fn conformance_store(config: Config) -> Arc<dyn StateStore> {
    conformance_store_and_url(config).await.0
}

/// [`conformance_store`] and the URL of its database, which other processes open.
async fn conformance_store_and_url(config: Config) -> (Arc<dyn StateStore>, String) {
    let (store, db) = fresh_store(&config).await;
    let url = db.url.clone();
    (Arc::new(TestStore { store, _db: db }), url)
}

/// The kit's factory: a fresh migrated database per store, which other processes reach by
/// its URL (they open it through the registered `postgres` backend).
pub struct Databases;

impl StoreFactory for Databases {
    fn open(&self, config: Config) -> StoreFuture {
        Box::pin(conformance_store(config))
    }
    fn open_shared(&self, config: Config) -> SharedFuture {
        Box::pin(async move {
            let (store, url) = conformance_store_and_url(config).await;
            Some(SharedStore::new(store, url))
        })
    }
}

/// What PostgreSQL stores do beyond what every store must: `LISTEN` wakes idle claimers, and
/// any process reaches a database by URL.
pub const CAPABILITIES: Capabilities = Capabilities::new()
    .wakes_on_queue()
    .shared_between_processes();

/// A [`PgStore`] owning its test database (fields drop in order: the pool, then the database).
pub struct TestStore {
    store: PgStore,
    _db: TestDatabase,
}

#[async_trait]
impl TaskStore for TestStore {
    async fn create_task(&self, task: &NewTask) -> Result<Task> {
        self.store.create_task(task).await
    }
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>> {
        self.store.get_task(id).await
    }
    async fn update_task(
        &self,
        id: TaskId,
        update: &TaskUpdate,
        guard: Option<&Claim>,
    ) -> Result<Task> {
        self.store.update_task(id, update, guard).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        self.store.list_tasks(filter).await
    }
    async fn add_subtask(
        &self,
        parent: TaskId,
        child: TaskId,
        guard: Option<&Claim>,
    ) -> Result<()> {
        self.store.add_subtask(parent, child, guard).await
    }
    async fn task_tree(&self, root: TaskId, depth: Option<u32>) -> Result<Vec<TreeNode>> {
        self.store.task_tree(root, depth).await
    }
    async fn subtasks(&self, parent: TaskId, which: SubtaskFilter) -> Result<Vec<Task>> {
        self.store.subtasks(parent, which).await
    }
    async fn claim_next(&self, request: &ClaimRequest) -> Result<Option<Task>> {
        self.store.claim_next(request).await
    }
    async fn recover_orphans(
        &self,
        current_term: i64,
        policy: OrphanPolicy,
    ) -> Result<Vec<TaskId>> {
        self.store.recover_orphans(current_term, policy).await
    }
    async fn terminate_task(&self, id: TaskId, by: &str, guard: Option<&Claim>) -> Result<Task> {
        self.store.terminate_task(id, by, guard).await
    }
    async fn purge(&self, older_than: Duration) -> Result<PurgeReport> {
        self.store.purge(older_than).await
    }
    async fn wait_for_queued(&self, max_wait: Duration) -> Result<()> {
        self.store.wait_for_queued(max_wait).await
    }
}

#[async_trait]
impl MessageStore for TestStore {
    async fn append_message(
        &self,
        task: TaskId,
        message: &NewMessage,
        guard: Option<&Claim>,
    ) -> Result<ResultMessage> {
        self.store.append_message(task, message, guard).await
    }
    async fn append_messages(
        &self,
        task: TaskId,
        messages: &[NewMessage],
        guard: Option<&Claim>,
    ) -> Result<Vec<ResultMessage>> {
        self.store.append_messages(task, messages, guard).await
    }
    async fn messages(&self, task: TaskId) -> Result<Vec<ResultMessage>> {
        self.store.messages(task).await
    }
}

#[async_trait]
impl BuildStore for TestStore {
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        self.store.record_build_data(data, guard).await
    }
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        self.store.build_data_of_tasks(tasks, verbosity).await
    }
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        self.store.build_data(query).await
    }
}

#[async_trait]
impl InstanceLock for TestStore {
    async fn claim_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.store.claim_lease(instance_id).await
    }
    async fn renew_lease(&self, instance_id: &str) -> Result<LeaseOutcome> {
        self.store.renew_lease(instance_id).await
    }
    async fn release_lease(&self, instance_id: &str) -> Result<bool> {
        self.store.release_lease(instance_id).await
    }
    async fn current_lease(&self) -> Result<Option<Lease>> {
        self.store.current_lease().await
    }
}

#[async_trait]
impl BootActionStore for TestStore {
    async fn set_boot_action_context(&self, context: &BootActionContext) -> Result<()> {
        self.store.set_boot_action_context(context).await
    }
    async fn boot_action_context(&self, node_name: &str) -> Result<Option<BootActionContext>> {
        self.store.boot_action_context(node_name).await
    }
    async fn add_boot_action(&self, action: &BootAction) -> Result<()> {
        self.store.add_boot_action(action).await
    }
    async fn set_boot_action_status(
        &self,
        id: BootActionId,
        status: BootActionStatus,
        details: &[NewMessage],
    ) -> Result<BootAction> {
        self.store.set_boot_action_status(id, status, details).await
    }
    async fn boot_actions_for_node(
        &self,
        node_name: &str,
    ) -> Result<std::collections::BTreeMap<String, BootAction>> {
        self.store.boot_actions_for_node(node_name).await
    }
    async fn boot_action(&self, id: BootActionId) -> Result<Option<BootAction>> {
        self.store.boot_action(id).await
    }
}

#[async_trait]
impl StateStore for TestStore {
    fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }
    async fn ping(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        self.store.ping().await
    }
}
