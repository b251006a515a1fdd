#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod boot_actions;
mod build_data;
mod codec;
mod config;
mod error;
mod guard;
mod import;
mod lease;
mod messages;
pub mod migrate;
mod queries;
mod rows;
mod sql;
mod store;
mod tasks;

use drydock_state_core::BackendRegistration;

pub use codec::MAX_VALUE_BYTES;
pub use store::SqliteStore;

/// The statements whose query plans the crate's tests check (`tests/plans.rs`, with
/// `EXPLAIN QUERY PLAN` on a migrated file), re-exported as they are run. Not part of the API:
/// it may change with any release.
#[doc(hidden)]
pub mod plan_checked {
    pub use crate::queries::{
        BUILD_DATA_ALL, BUILD_DATA_BY_NODE, BUILD_DATA_BY_TASK, BUILD_DATA_LATEST_ALL,
        BUILD_DATA_LATEST_BY_NODE, BUILD_DATA_LATEST_BY_TASK, COUNT_TASKS, LIST_TASKS, PURGE_ROOTS,
        PURGE_ROOTS_RECHECK, PURGE_TREE,
    };
}

/// The URL schemes this backend serves.
pub const URL_SCHEMES: &[&str] = &["sqlite"];

/// Registers the SQLite backend under [`URL_SCHEMES`]: opening opens the database and migrates.
///
/// Also submitted to `inventory`; register it explicitly
/// (`BackendRegistry::register(&drydock_state_sqlite::REGISTRATION)`) where this crate might not
/// be linked otherwise.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("sqlite", URL_SCHEMES, |url, config| {
        Box::pin(store::open(url, config))
    });

inventory::submit! { REGISTRATION }
