#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

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

use drydock_state_core::BackendRegistration;

pub use store::MySqlStore;
pub use tasks::PURGE_BATCH_ROOTS;

/// The URL schemes this backend serves: `mysql://` and `mariadb://` (the same server
/// protocol; sqlx reads both).
pub const URL_SCHEMES: &[&str] = &["mysql", "mariadb"];

/// Registers the MariaDB/MySQL backend under [`URL_SCHEMES`]: opening connects and migrates.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("mysql", URL_SCHEMES, |url, config| {
        Box::pin(store::open(url, config))
    });

inventory::submit! { REGISTRATION }
