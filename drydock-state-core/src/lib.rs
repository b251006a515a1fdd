#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod adopt;
pub mod backend;
pub mod config;
pub mod design;
pub mod error;
pub mod memory;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod secret;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod views;

pub use backend::{BackendRegistration, BackendRegistry};
pub use config::{Config, DatabaseConfig, DesignConfig, LeaderConfig};
pub use design::{
    DesignDocument, DesignDriver, DesignDriverRegistration, DesignRef, DesignResolver, FetchOptions,
};
pub use error::{redact_uri, Entity, Error, Result};
pub use memory::MemoryStore;
pub use model::*;
pub use secret::Secret;
pub use store::{
    BootActionStore, BuildStore, ImportStore, InstanceLock, MessageStore, StateStore, TaskStore,
};
pub use views::{task_view, TaskViewOptions};

#[doc(hidden)]
pub use inventory as __inventory;
