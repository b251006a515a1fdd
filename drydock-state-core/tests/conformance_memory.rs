//! The whole conformance kit against the in-memory store.

use std::sync::Arc;

use drydock_state_core::{Config, MemoryStore, StateStore};

drydock_state_core::conformance_tests!(|config: Config| async move {
    Arc::new(MemoryStore::new(&config)) as Arc<dyn StateStore>
});
