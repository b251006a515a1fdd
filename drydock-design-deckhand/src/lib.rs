#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod driver;
mod keystone;
mod status;

use std::sync::Arc;

use drydock_state_core::DesignDriverRegistration;

pub use config::{DeckhandConfig, KeystoneConfig, KeystoneRef, CONFIG_SECTION, DEFAULT_DOMAIN_ID};
pub use driver::{promenade_url, rendered_documents_url, DeckhandDriver};

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
/// Its settings are the `[design.drivers.deckhand]` section ([`DeckhandConfig`]); the token and
/// the Keystone password are [`drydock_state_core::Secret`]s.
pub const REGISTRATION: DesignDriverRegistration =
    DesignDriverRegistration::new("drydock-design-deckhand", SCHEMES, |config| {
        Ok(Arc::new(DeckhandDriver::new(config)?))
    })
    .with_config::<DeckhandConfig>(CONFIG_SECTION);

inventory::submit! { REGISTRATION }
