#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod client;
mod driver;
pub mod fetcher;
mod retry;

use std::sync::Arc;

use drydock_state_core::{DesignConfig, DesignDriverRegistration, DesignResolver, Result};

pub use client::{build_client, MAX_REDIRECTS};
pub use driver::HttpDriver;
pub use fetcher::{ErrorDetail, Exchange, Fetcher};

/// The URI schemes this driver serves.
pub const SCHEMES: &[&str] = &["http", "https"];

/// Registers [`HttpDriver`] under `http://` and `https://`.
pub const REGISTRATION: DesignDriverRegistration = DesignDriverRegistration {
    name: "drydock-design-http",
    schemes: SCHEMES,
    build: |config| Ok(Arc::new(HttpDriver::new(config)?)),
};

inventory::submit! { REGISTRATION }

/// Adds the `http://` and `https://` driver to `resolver`: the explicit fallback for programs
/// in which this crate might not be linked (registering twice is harmless).
pub fn register(resolver: &mut DesignResolver, config: &DesignConfig) -> Result<()> {
    resolver.register(&REGISTRATION, config)?;
    Ok(())
}
