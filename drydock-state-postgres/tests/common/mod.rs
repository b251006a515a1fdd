//! What the PostgreSQL backend's tests add to the shared harness
//! (`drydock_state_testsupport::postgres`): migrated stores on fresh databases.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::sync::Arc;

use drydock_state_core::backend::Checked;
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

/// A store for the conformance kit: a checked [`PgStore`] that drops its database after itself.
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
