//! The whole conformance kit of drydock-state-core, each case on a fresh database file of its
//! own (in a temporary directory that lives as long as the store), and again on
//! `sqlite::memory:`. A file is shared between processes (the multi-process drain opens it
//! by URL in child processes); an in-memory database is not. Both wake idle claimers when a
//! task is queued through the same store.

use std::sync::Arc;

use drydock_state_core::testkit::{
    Capabilities, SharedFuture, SharedStore, StoreFactory, StoreFuture,
};
use drydock_state_core::{Config, StateStore};
use drydock_state_sqlite::migrate::MIGRATIONS;
use drydock_state_sqlite::SqliteStore;

/// Fresh migrated database files, each in a temporary directory of its own.
struct Files;

impl Files {
    async fn fresh(config: Config) -> (Arc<dyn StateStore>, String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = SqliteStore::open(&url, &config).await.expect("open");
        assert_eq!(
            store.migrate().await.expect("migrate"),
            MIGRATIONS.len(),
            "a fresh file"
        );
        (Arc::new(store.keep_alive(dir)), url)
    }
}

impl StoreFactory for Files {
    fn open(&self, config: Config) -> StoreFuture {
        Box::pin(async move { Self::fresh(config).await.0 })
    }
    fn open_shared(&self, config: Config) -> SharedFuture {
        Box::pin(async move {
            let (store, url) = Self::fresh(config).await;
            Some(SharedStore::new(store, url))
        })
    }
}

drydock_state_core::conformance_tests!(
    Files,
    Capabilities::new()
        .wakes_on_queue()
        .shared_between_processes(),
);

mod in_memory {
    use super::*;

    async fn fresh_memory_store(config: Config) -> Arc<dyn StateStore> {
        let store = SqliteStore::open("sqlite::memory:", &config)
            .await
            .expect("open");
        assert_eq!(
            store.migrate().await.expect("migrate"),
            MIGRATIONS.len(),
            "a fresh database"
        );
        Arc::new(store)
    }

    drydock_state_core::conformance_tests!(
        |config: Config| fresh_memory_store(config),
        Capabilities::new().wakes_on_queue(),
    );
}
