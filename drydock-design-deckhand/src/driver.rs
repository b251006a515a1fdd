//! The Deckhand driver: reference-to-URL rules, authentication, and the rendered-documents
//! request.

use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use drydock_state_core::{
    DesignConfig, DesignDocument, DesignDriver, DesignRef, Error, FetchOptions, Result,
};
use reqwest::StatusCode;

use crate::config::DeckhandConfig;
use crate::keystone::Keystone;
use crate::SCHEMES;

/// The prefix that turns an HTTP URL into a Deckhand reference.
const PREFIX: &str = "deckhand+";

/// Fetches the rendered documents of a Deckhand revision.
pub struct DeckhandDriver {
    client: reqwest::Client,
    auth: Auth,
}

enum Auth {
    None,
    Token(String),
    Keystone(Box<Keystone>),
}

impl fmt::Debug for DeckhandDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth {
            Auth::None => "none",
            Auth::Token(_) => "token",
            Auth::Keystone(_) => "keystone",
        };
        f.debug_struct("DeckhandDriver")
            .field("auth", &auth)
            .finish()
    }
}

impl DeckhandDriver {
    /// A driver configured from `[design]` (timeouts, TLS) and `[design.drivers.deckhand]`
    /// (authentication).
    pub fn new(config: &DesignConfig) -> Result<Self> {
        let section = DeckhandConfig::from_design_config(config)?;
        let auth = match (section.token, section.keystone) {
            (Some(token), _) => Auth::Token(token),
            (None, Some(keystone)) => Auth::Keystone(Box::new(Keystone::new(keystone)?)),
            (None, None) => Auth::None,
        };
        Ok(DeckhandDriver {
            client: build_client(config)?,
            auth,
        })
    }

    async fn token(&self, design_ref: &DesignRef) -> Result<Option<String>> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(token) => Ok(Some(token.clone())),
            Auth::Keystone(keystone) => keystone.token(&self.client, design_ref).await.map(Some),
        }
    }

    async fn get(
        &self,
        design_ref: &DesignRef,
        url: &reqwest::Url,
        token: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/x-yaml");
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        request
            .send()
            .await
            .map_err(|e| transport_error(design_ref, "deckhand", e))
    }

    async fn fetch_rendered(
        &self,
        design_ref: &DesignRef,
        url: &reqwest::Url,
        max_size: u64,
    ) -> Result<DesignDocument> {
        let token = self.token(design_ref).await?;
        let mut response = self.get(design_ref, url, token.as_deref()).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let (Auth::Keystone(keystone), Some(rejected)) = (&self.auth, &token) {
                // Tokens can be revoked before they expire: one fresh token, one more try.
                tracing::debug!("deckhand refused the keystone token; authenticating again");
                keystone.forget(rejected).await;
                let token = self.token(design_ref).await?;
                response = self.get(design_ref, url, token.as_deref()).await?;
            }
        }
        let status = response.status();
        if !status.is_success() {
            let retryable = status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error();
            return Err(design_ref
                .fetch_error(format!("deckhand answered HTTP status {status}"), retryable));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(design_ref, "deckhand", response, max_size).await?;
        Ok(DesignDocument {
            bytes,
            content_type,
            source: design_ref.without_credentials(),
        })
    }
}

#[async_trait]
impl DesignDriver for DeckhandDriver {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    #[tracing::instrument(skip_all, fields(design_ref = %design_ref.without_credentials()))]
    async fn fetch(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let url = rendered_documents_url(design_ref)?;
        tokio::time::timeout(
            options.deadline,
            self.fetch_rendered(design_ref, &url, options.max_size),
        )
        .await
        .map_err(|_| {
            design_ref.fetch_error(
                format!(
                    "no complete answer within the total timeout of {:?}",
                    options.deadline
                ),
                true,
            )
        })?
    }
}

/// The Deckhand URL a `deckhand+http(s)://` reference stands for: the prefix is dropped, a
/// bare revision (`/42`) becomes `/api/v1.0/revisions/42/rendered-documents`, and a path
/// starting with `/api/` is kept as is, query included.
pub fn rendered_documents_url(design_ref: &DesignRef) -> Result<reqwest::Url> {
    let invalid = |why: &str| Error::invalid("design_ref", format!("{design_ref}: {why}"));
    let source = design_ref.url();
    if !source.username().is_empty() || source.password().is_some() {
        return Err(invalid(
            "credentials in a deckhand reference are not used; \
             configure [design.drivers.deckhand] instead",
        ));
    }
    let inner = source
        .as_str()
        .strip_prefix(PREFIX)
        .ok_or_else(|| invalid("not a deckhand+http(s) reference"))?;
    let mut url = reqwest::Url::parse(inner).map_err(|_| invalid("not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "the scheme must be deckhand+http or deckhand+https",
        ));
    }
    if !url.path().starts_with("/api/") {
        let revision = url.path().trim_matches('/').to_owned();
        // Deckhand's revision ids are integers; anything else is a mistake worth naming here
        // rather than a 404 from the server.
        if revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "the path must be a numeric revision id (/42) or a Deckhand API path (/api/...)",
            ));
        }
        url.set_path(&format!(
            "/api/v1.0/revisions/{revision}/rendered-documents"
        ));
    }
    Ok(url)
}

/// The `reqwest` client: timeouts and TLS trust from `[design]`.
fn build_client(config: &DesignConfig) -> Result<reqwest::Client> {
    let config_error = |key: &str, reason: String| Error::Config {
        key: key.into(),
        origin: "configuration".into(),
        reason,
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .user_agent(concat!(
            "drydock-design-deckhand/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(path) = &config.ca_bundle {
        let pem = std::fs::read(path).map_err(|e| {
            config_error(
                "design.ca_bundle",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| config_error("design.ca_bundle", format!("not a PEM bundle: {e}")))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if config.danger_accept_invalid_certs {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| config_error("design", format!("cannot build the HTTP client: {e}")))
}

/// A transport failure talking to `peer`; timeouts and connect errors may pass.
pub(crate) fn transport_error(design_ref: &DesignRef, peer: &str, error: reqwest::Error) -> Error {
    let error = error.without_url();
    let retryable = error.is_timeout() || error.is_connect() || error.is_body();
    let mut reason = format!("{peer}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        reason.push_str(&format!(": {e}"));
        source = e.source();
    }
    Error::DesignFetch {
        uri: design_ref.redacted(),
        reason,
        retryable,
        source: Some(Box::new(error)),
    }
}

/// Reads a body chunk by chunk, refusing it as soon as it is known to exceed `max_size`.
pub(crate) async fn read_limited(
    design_ref: &DesignRef,
    peer: &str,
    mut response: reqwest::Response,
    max_size: u64,
) -> Result<Bytes> {
    let too_large = |size: u64| {
        design_ref.fetch_error(
            format!(
                "{peer}: document of {size} bytes or more exceeds the limit of {max_size} bytes"
            ),
            false,
        )
    };
    let declared = response.content_length();
    if let Some(declared) = declared.filter(|d| *d > max_size) {
        return Err(too_large(declared));
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(design_ref, peer, e))?
    {
        let size = (buffer.len() + chunk.len()) as u64;
        if size > max_size {
            return Err(too_large(size));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(uri: &str) -> Result<String> {
        rendered_documents_url(&DesignRef::parse(uri).unwrap()).map(|u| u.to_string())
    }

    #[test]
    fn references_expand() {
        assert_eq!(
            expand("deckhand+https://deckhand-api:8443/42").unwrap(),
            "https://deckhand-api:8443/api/v1.0/revisions/42/rendered-documents"
        );
        assert_eq!(
            expand("deckhand+http://d/api/v1.0/revisions/7/rendered-documents?metadata.label=site")
                .unwrap(),
            "http://d/api/v1.0/revisions/7/rendered-documents?metadata.label=site"
        );
        assert!(expand("deckhand+https://d/").is_err());
        assert!(expand("deckhand+https://d/a/b").is_err());
        let e = expand("deckhand+https://u:pw-SECRET@d/42")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw-SECRET"), "{e}");
        assert!(expand("deckhand+ftp://d/42").is_err());
    }
}
