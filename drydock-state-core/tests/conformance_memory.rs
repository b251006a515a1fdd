//! The whole conformance kit against the in-memory store. It wakes idle claimers when a task
//! is queued; other processes cannot reach it, so the multi-process drain does not run.

use std::sync::Arc;

use drydock_state_core::testkit::Capabilities;
use drydock_state_core::{Config, MemoryStore, StateStore};

drydock_state_core::conformance_tests!(
    |config: Config| async move { Arc::new(MemoryStore::new(&config)) as Arc<dyn StateStore> },
    Capabilities::new().wakes_on_queue(),
);
