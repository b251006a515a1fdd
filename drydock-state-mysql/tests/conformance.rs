//! The whole conformance kit of drydock-state-core against MariaDB/MySQL, a fresh database per
//! case.

mod common;

drydock_state_core::conformance_tests!(|config: drydock_state_core::Config| async move {
    common::conformance_store(config).await
});
