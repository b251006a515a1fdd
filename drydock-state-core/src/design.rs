//! Design references and the drivers that resolve them.
//!
//! Drydock never stores the site design: a task carries a URI, and the driver registered for
//! the URI's scheme fetches the document. A driver crate submits a [`DesignDriverRegistration`]
//! with [`inventory::submit!`] and exports the same registration for explicit use, so a new
//! scheme needs no change to this workspace.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::DesignConfig;
use crate::error::{redact_uri, Error, Result};
use crate::registry::SchemeRegistry;

/// Longest design reference accepted, in bytes.
pub const MAX_DESIGN_REF_LEN: usize = 8192;

/// A parsed, validated design reference. Its `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DesignRef {
    url: url::Url,
}

impl DesignRef {
    /// Parses an absolute URI with a scheme. Which schemes are served is the resolver's
    /// business, not the parser's.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_DESIGN_REF_LEN {
            return Err(Error::invalid(
                "design_ref",
                format!("longer than {MAX_DESIGN_REF_LEN} bytes"),
            ));
        }
        if text.contains('\0') {
            return Err(Error::invalid("design_ref", "contains a NUL byte"));
        }
        let url = url::Url::parse(text).map_err(|e| {
            Error::invalid(
                "design_ref",
                format!("{} is not an absolute URI ({e})", redact_uri(text)),
            )
        })?;
        // `scheme:/path` parses, but a design reference always names a source with `//`
        // (even `file:///abs`); requiring it also keeps user info from hiding in a path.
        if url.cannot_be_a_base()
            || !text
                .get(url.scheme().len()..)
                .is_some_and(|rest| rest.starts_with("://"))
        {
            return Err(Error::invalid(
                "design_ref",
                format!("{} has no `//` authority part", redact_uri(text)),
            ));
        }
        Ok(DesignRef { url })
    }

    /// The scheme, lowercase (`file`, `https`, `deckhand+https`).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The full URL, credentials included: for drivers, never for logs.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The URI without user name or password: safe to log, and the key for caches.
    pub fn without_credentials(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.to_string()
    }

    /// The URI with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_uri(self.url.as_str())
    }

    /// A [`Error::DesignFetch`] for this reference (the URI redacted).
    pub fn fetch_error(&self, reason: impl Into<String>, retryable: bool) -> Error {
        Error::DesignFetch {
            uri: self.redacted(),
            reason: reason.into(),
            retryable,
            source: None,
        }
    }
}

impl std::str::FromStr for DesignRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DesignRef::parse(s)
    }
}

impl fmt::Display for DesignRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DesignRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DesignRef({})", self.redacted())
    }
}

/// A fetched design document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesignDocument {
    /// The document's bytes.
    pub bytes: Bytes,
    /// Its MIME type, when the source said.
    pub content_type: Option<String>,
    /// Where it came from: the URI finally read, without credentials.
    pub source: String,
}

/// Per-fetch limits, taken from [`DesignConfig`] by the resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// The largest document accepted, in bytes; enforced while reading.
    pub max_size: u64,
    /// Time allowed for the whole fetch, retries included.
    pub deadline: Duration,
}

impl From<&DesignConfig> for FetchOptions {
    fn from(c: &DesignConfig) -> Self {
        FetchOptions {
            max_size: c.max_document_size,
            deadline: c.total_timeout,
        }
    }
}

/// Resolves design references of the schemes it serves into documents.
#[async_trait]
pub trait DesignDriver: Send + Sync {
    /// The schemes it serves, lowercase.
    fn schemes(&self) -> &'static [&'static str];

    /// Fetches the document `design_ref` names. Errors are [`Error::DesignFetch`] (naming the
    /// URI without its password, and saying whether a retry may help) or
    /// [`Error::InvalidInput`] for a reference the driver cannot serve.
    async fn fetch(&self, design_ref: &DesignRef, options: &FetchOptions)
        -> Result<DesignDocument>;
}

/// How a driver crate announces itself: its name, its schemes and how to build it.
pub struct DesignDriverRegistration {
    /// A name unique to the driver (its crate name is a good one).
    pub name: &'static str,
    /// The schemes it serves, lowercase.
    pub schemes: &'static [&'static str],
    /// Builds the driver from the design configuration.
    pub build: fn(&DesignConfig) -> Result<Arc<dyn DesignDriver>>,
}

inventory::collect!(DesignDriverRegistration);

/// Every design-driver registration linked into this program.
pub fn registered_design_drivers() -> impl Iterator<Item = &'static DesignDriverRegistration> {
    inventory::iter::<DesignDriverRegistration>.into_iter()
}

/// Dispatches design references to drivers by scheme.
#[derive(Clone)]
pub struct DesignResolver {
    drivers: SchemeRegistry<Arc<dyn DesignDriver>>,
    options: FetchOptions,
}

impl fmt::Debug for DesignResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesignResolver")
            .field("schemes", &self.schemes())
            .field("options", &self.options)
            .finish()
    }
}

impl DesignResolver {
    /// An empty resolver; add drivers with [`DesignResolver::register`].
    pub fn new(config: &DesignConfig) -> Self {
        DesignResolver {
            drivers: SchemeRegistry::default(),
            options: FetchOptions::from(config),
        }
    }

    /// A resolver with every driver registered through `inventory` in this program.
    pub fn from_registry(config: &DesignConfig) -> Result<Self> {
        let mut resolver = Self::new(config);
        for registration in registered_design_drivers() {
            resolver.register(registration, config)?;
        }
        Ok(resolver)
    }

    /// Builds and adds one driver. Registering the same registration again is a no-op; a
    /// different registration for a scheme already served is [`Error::DuplicateScheme`].
    pub fn register(
        &mut self,
        registration: &DesignDriverRegistration,
        config: &DesignConfig,
    ) -> Result<&mut Self> {
        if self
            .drivers
            .check(registration.name, registration.schemes)?
        {
            return Ok(self);
        }
        let driver = (registration.build)(config)?;
        self.drivers
            .insert(registration.name, registration.schemes, driver)?;
        Ok(self)
    }

    /// The schemes served, sorted.
    pub fn schemes(&self) -> Vec<&str> {
        self.drivers.schemes().collect()
    }

    /// Each scheme with the name of the driver serving it, sorted by scheme.
    pub fn drivers(&self) -> Vec<(&str, &'static str)> {
        self.drivers.owners().collect()
    }

    /// Fetches `design_ref` with the driver registered for its scheme.
    #[tracing::instrument(skip(self), fields(design_ref = %design_ref))]
    pub async fn fetch(&self, design_ref: &DesignRef) -> Result<DesignDocument> {
        let driver = self.drivers.get(design_ref.scheme())?;
        let document = driver.fetch(design_ref, &self.options).await?;
        if document.bytes.len() as u64 > self.options.max_size {
            return Err(design_ref.fetch_error(
                format!(
                    "document of {} bytes exceeds the limit of {} bytes",
                    document.bytes.len(),
                    self.options.max_size
                ),
                false,
            ));
        }
        tracing::debug!(bytes = document.bytes.len(), "design fetched");
        Ok(document)
    }

    /// Parses `uri` and fetches it.
    pub async fn fetch_uri(&self, uri: &str) -> Result<DesignDocument> {
        self.fetch(&DesignRef::parse(uri)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_hide_password() {
        let r = DesignRef::parse("https://user:hunter2@host/site.yaml").unwrap();
        assert!(!r.to_string().contains("hunter2"));
        assert!(!format!("{r:?}").contains("hunter2"));
        assert_eq!(r.without_credentials(), "https://host/site.yaml");
        assert_eq!(r.url().password(), Some("hunter2"));
    }

    #[test]
    fn parse_refuses_relative_and_opaque() {
        assert!(DesignRef::parse("site.yaml").is_err());
        assert!(DesignRef::parse("mailto:a@b").is_err());
        assert!(DesignRef::parse("foo:/u:pw@h/x").is_err());
        let e = DesignRef::parse("ht!tp://x").unwrap_err();
        assert!(e.to_string().contains("design_ref"));
        assert_eq!(
            DesignRef::parse("deckhand+https://d:8443/123")
                .unwrap()
                .scheme(),
            "deckhand+https"
        );
    }

    struct Echo;
    #[async_trait]
    impl DesignDriver for Echo {
        fn schemes(&self) -> &'static [&'static str] {
            &["echo"]
        }
        async fn fetch(&self, r: &DesignRef, _: &FetchOptions) -> Result<DesignDocument> {
            Ok(DesignDocument {
                bytes: Bytes::from(r.url().path().to_string()),
                content_type: None,
                source: r.without_credentials(),
            })
        }
    }

    static ECHO: DesignDriverRegistration = DesignDriverRegistration {
        name: "echo",
        schemes: &["echo"],
        build: |_| Ok(Arc::new(Echo)),
    };
    static OTHER_ECHO: DesignDriverRegistration = DesignDriverRegistration {
        name: "other-echo",
        schemes: &["echo"],
        build: |_| Ok(Arc::new(Echo)),
    };

    #[tokio::test]
    async fn resolver_dispatches_and_reports() {
        let config = DesignConfig::default();
        let mut r = DesignResolver::new(&config);
        r.register(&ECHO, &config).unwrap();
        r.register(&ECHO, &config).unwrap();
        assert!(matches!(
            r.register(&OTHER_ECHO, &config),
            Err(Error::DuplicateScheme { .. })
        ));
        let d = r.fetch_uri("echo://h/p").await.unwrap();
        assert_eq!(&d.bytes[..], b"/p");
        let e = r.fetch_uri("nope://h/p").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown scheme `nope`; registered schemes: echo"
        );
    }
}
