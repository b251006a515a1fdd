//! Adds an `env://NAME` design scheme from outside drydock-state's crates: one type, one trait
//! impl, one `inventory::submit!`, and every `DesignResolver::from_registry` serves it.
//! Run it with `cargo run --example custom_driver`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use drydock_state_core::{
    DesignConfig, DesignDocument, DesignDriver, DesignDriverRegistration, DesignRef,
    DesignResolver, FetchOptions, Result,
};

/// Resolves `env://NAME` to the value of the environment variable `NAME`.
struct EnvDriver;

#[async_trait]
impl DesignDriver for EnvDriver {
    async fn fetch(&self, design_ref: &DesignRef, _: &FetchOptions) -> Result<DesignDocument> {
        let name = design_ref.url().host_str().unwrap_or_default();
        let value = std::env::var(name).map_err(|e| {
            design_ref.fetch_error(format!("environment variable `{name}`: {e}"), false)
        })?;
        Ok(DesignDocument {
            bytes: Bytes::from(value),
            content_type: Some("application/yaml".into()),
            source: design_ref.without_credentials(),
        })
    }
}

inventory::submit! {
    DesignDriverRegistration::new("example-env", &["env"], |_| Ok(Arc::new(EnvDriver)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // Set while the program has a single thread; an existing value is left alone.
    if std::env::var_os("DRYDOCK_EXAMPLE_DESIGN").is_none() {
        let design = "apiVersion: drydock/v1\nkind: Region\nmetadata:\n  name: from-env\n";
        std::env::set_var("DRYDOCK_EXAMPLE_DESIGN", design);
    }
    let resolver = DesignResolver::from_registry(&DesignConfig::default())?;
    println!("registered schemes: {}", resolver.schemes().join(", "));
    let document = resolver.fetch_uri("env://DRYDOCK_EXAMPLE_DESIGN").await?;
    let (source, size) = (&document.source, document.bytes.len());
    println!("resolved {source} ({size} bytes):");
    print!("{}", String::from_utf8_lossy(&document.bytes));
    Ok(())
}
