#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod boot_actions;
mod build_data;
mod config;
mod error;
mod guard;
mod lease;
mod messages;
pub mod migrate;
mod queries;
mod rows;
mod sql;
mod store;
mod tasks;
mod wake;

use drydock_state_core::BackendRegistration;

pub use store::PgStore;
pub use tasks::PURGE_BATCH_ROOTS;

/// The URL schemes this backend serves.
pub const URL_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// Registers the PostgreSQL backend under [`URL_SCHEMES`]: opening connects and migrates.
///
/// Also submitted to `inventory`; register it explicitly
/// (`BackendRegistry::register(&drydock_state_postgres::REGISTRATION)`) where this crate might
/// not be linked otherwise.
pub const REGISTRATION: BackendRegistration = BackendRegistration {
    name: "postgres",
    schemes: URL_SCHEMES,
    open: |url, config| Box::pin(store::open(url, config)),
};

inventory::submit! { REGISTRATION }
