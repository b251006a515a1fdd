#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod boot_actions;
mod codec;
mod config;
mod error;
pub mod migrate;
mod queries;
mod sql;
mod store;

use std::sync::Arc;

use drydock_state_core::{BackendRegistration, StateStore};

pub use codec::MAX_VALUE_BYTES;
pub use store::SqliteStore;

/// The URL schemes this backend serves.
pub const URL_SCHEMES: &[&str] = &["sqlite"];

/// Registers the SQLite backend under `sqlite:`; its `open` opens the database and migrates it.
///
/// Also submitted to `inventory`; register it explicitly
/// (`BackendRegistry::register(&drydock_state_sqlite::REGISTRATION)`) where this crate might not
/// be linked otherwise.
pub const REGISTRATION: BackendRegistration =
    BackendRegistration::new("sqlite", URL_SCHEMES, |url, config| {
        Box::pin(async move {
            let store = SqliteStore::open(&url, &config).await?;
            store.migrate().await?;
            Ok(Arc::new(store) as Arc<dyn StateStore>)
        })
    });

inventory::submit! { REGISTRATION }
