//! The HTTP client: timeouts, redirect policy and the TLS trust roots taken from `[design]`.

use std::time::Duration;

use drydock_state_core::{DesignConfig, Error, Result};

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// Builds the `reqwest` client the driver uses from the design configuration: connect and
/// read timeouts, at most [`MAX_REDIRECTS`] redirects, the system and webpki roots plus the
/// `ca_bundle` PEM if set, and certificate verification unless `danger_accept_invalid_certs`.
pub fn build_client(config: &DesignConfig) -> Result<reqwest::Client> {
    positive("design.connect_timeout", config.connect_timeout)?;
    positive("design.read_timeout", config.read_timeout)?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("drydock-state/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_bundle {
        let pem = std::fs::read(path).map_err(|e| {
            config_error(
                "design.ca_bundle",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            config_error(
                "design.ca_bundle",
                format!("{} is not a PEM certificate bundle: {e}", path.display()),
            )
        })?;
        if certificates.is_empty() {
            return Err(config_error(
                "design.ca_bundle",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if config.danger_accept_invalid_certs {
        tracing::warn!(
            "design.danger_accept_invalid_certs is set: TLS certificates are not verified"
        );
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| config_error("design", format!("cannot build the HTTP client: {e}")))
}

fn positive(key: &str, value: Duration) -> Result<()> {
    if value.is_zero() {
        return Err(config_error(key, "must be greater than zero".into()));
    }
    Ok(())
}

fn config_error(key: &str, reason: String) -> Error {
    Error::Config {
        key: key.into(),
        origin: "configuration".into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_ca_bundle_names_the_key() {
        let config = DesignConfig {
            ca_bundle: Some("/nonexistent/ca.pem".into()),
            ..DesignConfig::default()
        };
        let e = build_client(&config).unwrap_err().to_string();
        assert!(e.contains("design.ca_bundle"), "{e}");

        let dir = std::env::temp_dir().join(format!("drydock-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let config = DesignConfig {
            ca_bundle: Some(empty),
            ..DesignConfig::default()
        };
        let e = build_client(&config).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn zero_timeout_is_refused() {
        let config = DesignConfig {
            read_timeout: Duration::ZERO,
            ..DesignConfig::default()
        };
        let e = build_client(&config).unwrap_err().to_string();
        assert!(e.contains("design.read_timeout"), "{e}");
    }
}
