#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod adopt;
mod boot_actions;
mod build_data;
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
mod wake;

use drydock_state_core::BackendRegistration;

pub use store::PgStore;
pub use tasks::PURGE_BATCH_ROOTS;

/// The URL schemes this backend serves.
pub const URL_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// Registers the PostgreSQL backend under [`URL_SCHEMES`]: opening connects and migrates.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("postgres", URL_SCHEMES, |url, config| {
        Box::pin(store::open(url, config))
    });

inventory::submit! { REGISTRATION }
