//! The whole public conformance kit of drydock-state-core against `tiny://`, opened the way
//! an application opens it: through the backends registered in this program. The store wakes
//! idle claimers (its memory store does); other processes cannot reach it.

use std::sync::Arc;

use drydock_state_core::testkit::Capabilities;
use drydock_state_core::{BackendRegistry, Config, StateStore};

async fn fresh(config: Config) -> Arc<dyn StateStore> {
    BackendRegistry::from_inventory()
        .expect("the registered backends")
        .open("tiny://", &config)
        .await
        .expect("open tiny://")
}

drydock_state_core::conformance_tests!(
    |config: Config| fresh(config),
    Capabilities::new().wakes_on_queue(),
);

/// The store really is the one under test: it counts the calls made to it.
#[tokio::test]
async fn the_kit_calls_this_store() {
    let store = third_party_backend::TinyStore::new(&Config::default());
    store.ping().await.expect("ping");
    assert_eq!(store.calls(), 1);
}
