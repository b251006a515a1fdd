//! The driver: reference-to-URL rules for Deckhand and Promenade, the shared authentication,
//! and the request each attempt of the shared fetcher sends.

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use drydock_design_http::{ErrorDetail, Exchange, Fetcher};
use drydock_state_core::{
    DesignConfig, DesignDocument, DesignDriver, DesignRef, Error, FetchOptions, Result, Secret,
};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::config::DeckhandConfig;
use crate::keystone::Keystone;
use crate::status;

/// The Deckhand API path a revision shorthand expands to, after the revision id.
const RENDERED: &str = "rendered-documents";

/// The services served, each by the `<service>+http(s)://` schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Deckhand,
    Promenade,
}

impl Service {
    fn of(design_ref: &DesignRef) -> Option<Self> {
        match design_ref.scheme() {
            "deckhand+http" | "deckhand+https" => Some(Service::Deckhand),
            "promenade+http" | "promenade+https" => Some(Service::Promenade),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Deckhand => "deckhand",
            Service::Promenade => "promenade",
        }
    }
}

/// Fetches from Deckhand (the rendered documents of a revision) and Promenade (join scripts
/// and other documents of its API), both authenticated the same way: one token, or one
/// Keystone whose token is shared by every request to either service.
pub struct DeckhandDriver {
    fetcher: Fetcher,
    auth: Auth,
}

enum Auth {
    None,
    Token(Secret),
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
            .field("fetcher", &self.fetcher)
            .finish()
    }
}

impl DeckhandDriver {
    /// A driver configured from `[design]` (client, TLS, retries, cache: see
    /// [`Fetcher::new`]) and `[design.drivers.deckhand]` (authentication, for both services).
    pub fn new(config: &DesignConfig) -> Result<Self> {
        let section = DeckhandConfig::from_design_config(config)?;
        let auth = match (section.token, section.keystone) {
            (Some(token), _) => Auth::Token(token),
            (None, Some(keystone)) => Auth::Keystone(Box::new(Keystone::new(keystone)?)),
            (None, None) => Auth::None,
        };
        Ok(DeckhandDriver {
            fetcher: Fetcher::new(config)?,
            auth,
        })
    }

    async fn token(&self, design_ref: &DesignRef) -> Result<Option<String>> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(token) => Ok(Some(token.expose().to_string())),
            Auth::Keystone(keystone) => keystone
                .token(self.fetcher.client(), design_ref)
                .await
                .map(Some),
        }
    }
}

#[async_trait]
impl DesignDriver for DeckhandDriver {
    #[tracing::instrument(skip_all, fields(design_ref = %design_ref.without_credentials()))]
    async fn fetch(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let service = Service::of(design_ref).ok_or_else(|| {
            Error::invalid(
                "design_ref",
                format!("{design_ref}: not a deckhand+ or promenade+ reference"),
            )
        })?;
        let url = match service {
            Service::Deckhand => rendered_documents_url(design_ref)?,
            Service::Promenade => promenade_url(design_ref)?,
        };
        let request = ServiceRequest {
            driver: self,
            design_ref,
            service,
            url,
            sent: Mutex::new(None),
        };
        self.fetcher.fetch(design_ref, options, &request).await
    }
}

/// One fetch's request: a fresh token for each attempt, one re-authentication after a 401,
/// and the service's error bodies read into the error.
struct ServiceRequest<'a> {
    driver: &'a DeckhandDriver,
    design_ref: &'a DesignRef,
    service: Service,
    url: reqwest::Url,
    /// The token the last attempt sent.
    sent: Mutex<Option<String>>,
}

impl ServiceRequest<'_> {
    fn sent(&self) -> Option<String> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Exchange for ServiceRequest<'_> {
    async fn request(&self, client: &reqwest::Client) -> Result<reqwest::RequestBuilder> {
        let token = self.driver.token(self.design_ref).await?;
        let mut request = client.get(self.url.clone());
        if self.service == Service::Deckhand {
            request = request.header(reqwest::header::ACCEPT, "application/x-yaml");
        }
        if let Some(token) = &token {
            request = request.header("X-Auth-Token", token);
        }
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) = token;
        Ok(request)
    }

    async fn unauthorized(&self) -> bool {
        // Tokens can be revoked before they expire: one fresh token, one more try.
        match (&self.driver.auth, self.sent()) {
            (Auth::Keystone(keystone), Some(rejected)) => {
                tracing::debug!(
                    service = self.service.name(),
                    "the keystone token was refused; authenticating again"
                );
                keystone.forget(&rejected).await;
                true
            }
            _ => false,
        }
    }

    fn error_detail(&self, _status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> ErrorDetail {
        let sent = self.sent();
        let mut secrets: Vec<&str> = sent.as_deref().into_iter().collect();
        match &self.driver.auth {
            Auth::Token(token) => secrets.push(token.expose()),
            Auth::Keystone(keystone) => secrets.push(keystone.password()),
            Auth::None => {}
        }
        status::error_detail(self.service.name(), body, &secrets)
    }
}

/// The inner `http(s)` URL of a `<service>+http(s)://` reference, which must not carry
/// credentials (they belong in the configuration).
fn inner_url(design_ref: &DesignRef, service: &str) -> Result<reqwest::Url> {
    let invalid = |why: &str| Error::invalid("design_ref", format!("{design_ref}: {why}"));
    let source = design_ref.url();
    if !source.username().is_empty() || source.password().is_some() {
        return Err(invalid(&format!(
            "credentials in a {service} reference are not used; \
             configure [design.drivers.deckhand] instead"
        )));
    }
    let inner = source
        .as_str()
        .strip_prefix(service)
        .and_then(|rest| rest.strip_prefix('+'))
        .ok_or_else(|| invalid(&format!("not a {service}+http(s) reference")))?;
    let url = reqwest::Url::parse(inner).map_err(|_| invalid("not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&format!(
            "the scheme must be {service}+http or {service}+https"
        )));
    }
    Ok(url)
}

fn is_revision(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// The Deckhand URL a `deckhand+http(s)://` reference stands for. Deckhand may be served
/// under a path prefix (`/deckhand`, say), so:
///
/// * a path ending in a Deckhand API path that returns documents,
///   `.../api/v1.0/revisions/{id}/rendered-documents` or `.../api/v1.0/revisions/{id}/documents`,
///   is used as is, query included;
/// * a path ending in a revision id, `/42` or `/deckhand/42`, becomes
///   `{prefix}/api/v1.0/revisions/42/rendered-documents` (a prefix already ending in
///   `/api/v1.0` or `/api/v1.0/revisions` is not doubled). A prefix holding a number is refused: `/1/2` names no
///   single revision.
pub fn rendered_documents_url(design_ref: &DesignRef) -> Result<reqwest::Url> {
    let invalid = |why: &str| Error::invalid("design_ref", format!("{design_ref}: {why}"));
    let mut url = inner_url(design_ref, "deckhand")?;
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "api", "v1.0", "revisions", revision, "rendered-documents" | "documents"]
            if is_revision(revision) =>
        {
            Ok(url)
        }
        [prefix @ .., revision] if is_revision(revision) => {
            if prefix.iter().any(|s| is_revision(s)) {
                return Err(invalid(
                    "more than one number in the path: which is the revision id?",
                ));
            }
            let prefix = match prefix {
                [rest @ .., "api", "v1.0", "revisions"] | [rest @ .., "api", "v1.0"] => rest,
                all => all,
            };
            let mut path = String::new();
            for segment in prefix {
                path.push('/');
                path.push_str(segment);
            }
            path.push_str(&format!("/api/v1.0/revisions/{revision}/{RENDERED}"));
            url.set_path(&path);
            Ok(url)
        }
        _ => Err(invalid(
            "the path must end in a numeric revision id (/42, /deckhand/42) or in a Deckhand \
             API path (.../api/v1.0/revisions/{id}/rendered-documents or .../documents)",
        )),
    }
}

/// The Promenade URL a `promenade+http(s)://` reference stands for: the prefix dropped, path
/// and query kept as they are (Drydock used it as is, e.g.
/// `/api/v1.0/join-scripts?design_ref=...&hostname=...&ip=...`). The path must name a
/// resource.
pub fn promenade_url(design_ref: &DesignRef) -> Result<reqwest::Url> {
    let url = inner_url(design_ref, "promenade")?;
    if url.path().trim_matches('/').is_empty() {
        return Err(Error::invalid(
            "design_ref",
            format!(
                "{design_ref}: the path must name a Promenade resource \
                 (e.g. /api/v1.0/join-scripts?...)"
            ),
        ));
    }
    Ok(url)
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

    #[test]
    fn a_path_prefix_is_accepted() {
        for (uri, url) in [
            (
                "deckhand+https://gw/deckhand/api/v1.0/revisions/3/rendered-documents",
                "https://gw/deckhand/api/v1.0/revisions/3/rendered-documents",
            ),
            (
                "deckhand+https://gw/a/b/api/v1.0/revisions/3/documents?status.bucket=x",
                "https://gw/a/b/api/v1.0/revisions/3/documents?status.bucket=x",
            ),
            (
                "deckhand+https://gw/deckhand/42",
                "https://gw/deckhand/api/v1.0/revisions/42/rendered-documents",
            ),
            (
                "deckhand+https://gw/deckhand/42/",
                "https://gw/deckhand/api/v1.0/revisions/42/rendered-documents",
            ),
            (
                "deckhand+https://gw/deckhand/api/v1.0/42",
                "https://gw/deckhand/api/v1.0/revisions/42/rendered-documents",
            ),
            (
                "deckhand+https://gw/deckhand/api/v1.0/revisions/42",
                "https://gw/deckhand/api/v1.0/revisions/42/rendered-documents",
            ),
        ] {
            assert_eq!(expand(uri).unwrap(), url, "{uri}");
        }
        for uri in [
            "deckhand+https://gw/1/2",
            "deckhand+https://gw/deckhand/api/v1.0/revisions/x/rendered-documents",
            "deckhand+https://gw/deckhand/api/v1.0/revisions/3/tags",
            "deckhand+https://gw/deckhand/api/v1.0/revisions",
        ] {
            assert!(expand(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn promenade_references_are_used_as_is() {
        let url = |uri: &str| promenade_url(&DesignRef::parse(uri).unwrap()).map(|u| u.to_string());
        assert_eq!(
            url("promenade+http://prom:80/api/v1.0/join-scripts?hostname=n1&ip=10.0.0.1").unwrap(),
            "http://prom/api/v1.0/join-scripts?hostname=n1&ip=10.0.0.1"
        );
        assert!(url("promenade+https://prom/").is_err());
        assert!(url("promenade+https://u:pw@prom/api/v1.0/join-scripts").is_err());
        assert!(url("promenade+ftp://prom/x").is_err());
    }
}
