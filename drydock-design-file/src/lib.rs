#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod driver;

use std::sync::Arc;

use drydock_state_core::DesignDriverRegistration;

pub use driver::FileDriver;

/// The URI schemes this driver serves.
pub const SCHEMES: &[&str] = &["file"];

/// Registers [`FileDriver`] under `file://`.
pub const REGISTRATION: DesignDriverRegistration =
    DesignDriverRegistration::new("drydock-design-file", SCHEMES, |_config| {
        Ok(Arc::new(FileDriver::new()))
    });

inventory::submit! { REGISTRATION }
