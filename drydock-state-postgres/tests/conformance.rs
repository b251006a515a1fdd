//! The whole conformance kit of drydock-state-core against PostgreSQL, a fresh database per
//! store; the multi-process drain reaches its database from child processes by URL.

mod common;

drydock_state_core::conformance_tests!(common::Databases, common::CAPABILITIES);
