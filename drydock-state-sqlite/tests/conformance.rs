//! The whole conformance kit of drydock-state-core, each case on a fresh database file of its
//! own (in a temporary directory that lives as long as the store), and again on
//! `sqlite::memory:`.

use std::sync::Arc;

use drydock_state_core::{Config, StateStore};
use drydock_state_sqlite::migrate::MIGRATIONS;
use drydock_state_sqlite::SqliteStore;

async fn fresh_file_store(config: Config) -> Arc<dyn StateStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url, &config).await.expect("open");
    assert_eq!(
        store.migrate().await.expect("migrate"),
        MIGRATIONS.len(),
        "a fresh file"
    );
    Arc::new(store.keep_alive(dir))
}

drydock_state_core::conformance_tests!(|config: Config| fresh_file_store(config));

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

    drydock_state_core::conformance_tests!(|config: Config| fresh_memory_store(config));
}
