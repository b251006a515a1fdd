#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod driver;
mod keystone;

use std::sync::Arc;

use drydock_state_core::{DesignConfig, DesignDriverRegistration, DesignResolver, Result};

pub use config::{DeckhandConfig, KeystoneConfig, CONFIG_SECTION};
pub use driver::{rendered_documents_url, DeckhandDriver};

/// The URI schemes this driver serves.
pub const SCHEMES: &[&str] = &["deckhand+http", "deckhand+https"];

/// Registers [`DeckhandDriver`] under `deckhand+http://` and `deckhand+https://`.
pub const REGISTRATION: DesignDriverRegistration = DesignDriverRegistration {
    name: "drydock-design-deckhand",
    schemes: SCHEMES,
    build: |config| Ok(Arc::new(DeckhandDriver::new(config)?)),
};

inventory::submit! { REGISTRATION }

/// Adds the Deckhand driver to `resolver`: the explicit fallback for programs in which this
/// crate might not be linked (registering twice is harmless).
pub fn register(resolver: &mut DesignResolver, config: &DesignConfig) -> Result<()> {
    resolver.register(&REGISTRATION, config)?;
    Ok(())
}
