#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod client;
mod driver;
pub mod fetcher;
mod retry;

use std::sync::Arc;

use drydock_state_core::DesignDriverRegistration;

pub use client::{build_client, MAX_REDIRECTS};
pub use driver::HttpDriver;
pub use fetcher::{ErrorDetail, Exchange, Fetcher};

/// The URI schemes this driver serves.
pub const SCHEMES: &[&str] = &["http", "https"];

/// Registers [`HttpDriver`] under `http://` and `https://`.
pub const REGISTRATION: DesignDriverRegistration =
    DesignDriverRegistration::new("drydock-design-http", SCHEMES, |config| {
        Ok(Arc::new(HttpDriver::new(config)?))
    });

inventory::submit! { REGISTRATION }
