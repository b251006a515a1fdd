#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod driver;

use std::sync::Arc;

use drydock_state_core::{DesignConfig, DesignDriverRegistration, DesignResolver, Result};

pub use driver::FileDriver;

/// The URI schemes this driver serves.
pub const SCHEMES: &[&str] = &["file"];

/// Registers [`FileDriver`] under `file://`.
pub const REGISTRATION: DesignDriverRegistration = DesignDriverRegistration {
    name: "drydock-design-file",
    schemes: SCHEMES,
    build: |_config| Ok(Arc::new(FileDriver::new())),
};

inventory::submit! { REGISTRATION }

/// Adds the `file://` driver to `resolver`: the explicit fallback for programs in which this
/// crate might not be linked (registering twice is harmless).
pub fn register(resolver: &mut DesignResolver, config: &DesignConfig) -> Result<()> {
    resolver.register(&REGISTRATION, config)?;
    Ok(())
}
