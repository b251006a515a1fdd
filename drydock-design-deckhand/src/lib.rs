#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod driver;
mod keystone;
mod status;

use std::sync::Arc;

use drydock_state_core::{DesignConfig, DesignDriverRegistration, DesignResolver, Result};

pub use config::{DeckhandConfig, KeystoneConfig, KeystoneRef, CONFIG_SECTION, DEFAULT_DOMAIN_ID};
pub use driver::{promenade_url, rendered_documents_url, DeckhandDriver};

/// The Deckhand schemes.
pub const DECKHAND_SCHEMES: &[&str] = &["deckhand+http", "deckhand+https"];

/// The Promenade schemes.
pub const PROMENADE_SCHEMES: &[&str] = &["promenade+http", "promenade+https"];

/// Every URI scheme this driver serves: Deckhand's and Promenade's, which Drydock resolves
/// through one Keystone session. One driver serves them all, so that they share one
/// authentication (one token cache), one connection pool and one document cache.
pub const SCHEMES: &[&str] = &[
    "deckhand+http",
    "deckhand+https",
    "promenade+http",
    "promenade+https",
];

/// Registers [`DeckhandDriver`] under `deckhand+http(s)://` and `promenade+http(s)://`.
pub const REGISTRATION: DesignDriverRegistration = DesignDriverRegistration {
    name: "drydock-design-deckhand",
    schemes: SCHEMES,
    build: |config| Ok(Arc::new(DeckhandDriver::new(config)?)),
};

inventory::submit! { REGISTRATION }

/// Adds the Deckhand and Promenade driver to `resolver`: the explicit fallback for programs
/// in which this crate might not be linked (registering twice is harmless).
pub fn register(resolver: &mut DesignResolver, config: &DesignConfig) -> Result<()> {
    resolver.register(&REGISTRATION, config)?;
    Ok(())
}
