//! What the MariaDB/MySQL backend's tests add to the shared harness
//! (`drydock_state_testsupport::mysql`): migrated stores on fresh databases.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::sync::Arc;

use drydock_state_core::backend::Checked;
use drydock_state_core::testkit::{
    Capabilities, SharedFuture, SharedStore, StoreFactory, StoreFuture,
};
use drydock_state_core::*;
use drydock_state_mysql::MySqlStore;
pub use drydock_state_testsupport::mysql::*;

/// A migrated store on a fresh database. Keep the `TestDatabase` alive as long as the store.
pub async fn fresh_store(config: &Config) -> (MySqlStore, TestDatabase) {
    let db = fresh_database().await;
    let store = MySqlStore::connect(&db.url, config)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate");
    (store, db)
}

/// A store for the conformance kit: a checked [`MySqlStore`] that drops its database after itself.
pub async fn conformance_store(config: Config) -> Arc<dyn StateStore> {
    conformance_store_and_url(config).await.0
}

/// [`conformance_store`] and the URL of its database, which other processes open.
async fn conformance_store_and_url(config: Config) -> (Arc<dyn StateStore>, String) {
    let (store, db) = fresh_store(&config).await;
    let url = db.url.clone();
    (Arc::new(Checked::new(store).keeping(db)), url)
}

/// The kit's factory: a fresh migrated database per store, which other processes reach by
/// its URL (they open it through the registered `mysql` backend).
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

/// What MariaDB stores do beyond what every store must: any process reaches a database by
/// URL. There is no `LISTEN`: `wait_for_queued` is the trait's poll.
pub const CAPABILITIES: Capabilities = Capabilities::new().shared_between_processes();
