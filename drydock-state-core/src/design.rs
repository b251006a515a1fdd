//! Design references and the drivers that resolve them.
//!
//! Drydock never stores the site design: a task carries a URI, and the driver registered for
//! the URI's scheme fetches the document. A driver crate submits a [`DesignDriverRegistration`]
//! with [`inventory::submit!`] and exports the same registration for explicit use, so a new
//! scheme needs no change to this workspace.

use std::fmt;
use std::sync::{Arc, OnceLock};
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

/// Resolves design references into documents. Which schemes a driver serves is said by its
/// [`DesignDriverRegistration`], not by the driver.
#[async_trait]
pub trait DesignDriver: Send + Sync {
    /// Fetches the document `design_ref` names. Errors are [`Error::DesignFetch`] (naming the
    /// URI without its password, and saying whether a retry may help) or
    /// [`Error::InvalidInput`] for a reference the driver cannot serve.
    async fn fetch(&self, design_ref: &DesignRef, options: &FetchOptions)
        -> Result<DesignDocument>;
}

/// Builds a driver from the design configuration.
pub type BuildDriver = fn(&DesignConfig) -> Result<Arc<dyn DesignDriver>>;

/// Shows a driver's configuration section with its secrets as `***`: the section read into the
/// driver's own settings type and written back (see [`DesignDriverRegistration::with_config`]).
pub type RedactSection = fn(&serde_json::Value) -> Result<serde_json::Value>;

/// How a driver crate announces itself: its name, its schemes, how to build it and, if it has
/// one, its configuration section.
///
/// Built with [`DesignDriverRegistration::new`] (fields may be added in any release, so it
/// cannot be written as a struct literal outside this crate):
///
/// ```
/// # use std::sync::Arc;
/// # use drydock_state_core::{DesignDocument, DesignDriver, DesignDriverRegistration, DesignRef, FetchOptions, Result};
/// struct Env;
/// #[async_trait::async_trait]
/// impl DesignDriver for Env {
///     async fn fetch(&self, r: &DesignRef, _: &FetchOptions) -> Result<DesignDocument> {
///         Err(r.fetch_error("not here", false))
///     }
/// }
/// pub const REGISTRATION: DesignDriverRegistration =
///     DesignDriverRegistration::new("example-env", &["env"], |_config| Ok(Arc::new(Env)));
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct DesignDriverRegistration {
    /// A name unique to the driver (its crate name is a good one).
    pub name: &'static str,
    /// The schemes it serves, lowercase.
    pub schemes: &'static [&'static str],
    /// Builds the driver from the design configuration. Called the first time one of its
    /// schemes is fetched, not before: a driver whose settings are wrong fails its own
    /// fetches only.
    pub build: BuildDriver,
    /// The driver's section under `[design.drivers]`, if it reads one.
    pub config_section: Option<&'static str>,
    /// Shows that section with its secrets as `***`, by the types of the driver's settings.
    pub redact_section: Option<RedactSection>,
}

impl DesignDriverRegistration {
    /// A driver `name` serving `schemes`, built by `build`.
    pub const fn new(
        name: &'static str,
        schemes: &'static [&'static str],
        build: BuildDriver,
    ) -> Self {
        DesignDriverRegistration {
            name,
            schemes,
            build,
            config_section: None,
            redact_section: None,
        }
    }

    /// Declares the driver's section under `[design.drivers]` and its settings type `T`.
    /// Secrets in `T` are [`crate::Secret`]s: `drydock-state config` shows the section as `T`
    /// writes it back, so they print as `***` because of their type, whatever their name. A
    /// section that does not read as `T` is shown as `***` whole.
    pub const fn with_config<T>(mut self, section: &'static str) -> Self
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        self.config_section = Some(section);
        self.redact_section = Some(redact_as::<T>);
        self
    }
}

fn redact_as<T>(section: &serde_json::Value) -> Result<serde_json::Value>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(section.clone())
        .map_err(|e| Error::invalid("design.drivers", e.to_string()))?;
    serde_json::to_value(&typed).map_err(|e| Error::invalid("design.drivers", e.to_string()))
}

/// Replaces each section of `drivers` (the `[design.drivers]` table as JSON) with what its
/// driver's [`DesignDriverRegistration::redact_section`] shows, and every section no linked
/// driver declares, or that does not read as its driver's settings, with `"***"`: only a type
/// can say what is secret, so what no type describes is not shown.
pub fn redact_driver_sections(drivers: &mut serde_json::Value) {
    let serde_json::Value::Object(map) = drivers else {
        *drivers = serde_json::Value::String("***".into());
        return;
    };
    for (name, section) in map.iter_mut() {
        let redact = registered_design_drivers()
            .find(|r| r.config_section == Some(name.as_str()))
            .and_then(|r| r.redact_section);
        *section = match redact.map(|f| f(section)) {
            Some(Ok(shown)) => shown,
            _ => serde_json::Value::String("***".into()),
        };
    }
}

inventory::collect!(DesignDriverRegistration);

/// Every design-driver registration linked into this program.
pub fn registered_design_drivers() -> impl Iterator<Item = &'static DesignDriverRegistration> {
    inventory::iter::<DesignDriverRegistration>.into_iter()
}

/// A registered driver, built the first time one of its schemes is fetched.
struct LazyDriver {
    registration: DesignDriverRegistration,
    driver: OnceLock<Arc<dyn DesignDriver>>,
}

impl LazyDriver {
    fn get(&self, config: &DesignConfig) -> Result<&Arc<dyn DesignDriver>> {
        if let Some(driver) = self.driver.get() {
            return Ok(driver);
        }
        // Two first fetches may both build; one driver is kept. A failed build is not kept:
        // the next fetch reports the same error.
        let built = (self.registration.build)(config)?;
        Ok(self.driver.get_or_init(|| built))
    }
}

/// Dispatches design references to drivers by scheme. Drivers are built lazily, each the
/// first time one of its schemes is fetched, so a driver with bad settings breaks only the
/// fetches of its own schemes ([`DesignResolver::check`] builds them all at once).
#[derive(Clone)]
pub struct DesignResolver {
    drivers: SchemeRegistry<Arc<LazyDriver>>,
    config: Arc<DesignConfig>,
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
    /// An empty resolver; add drivers with [`DesignResolver::register`]. They are built with
    /// `config`.
    pub fn new(config: &DesignConfig) -> Self {
        DesignResolver {
            drivers: SchemeRegistry::default(),
            config: Arc::new(config.clone()),
            options: FetchOptions::from(config),
        }
    }

    /// A resolver with every driver registered through `inventory` in this program. Fails only
    /// when two registrations claim one scheme; no driver is built yet.
    pub fn from_registry(config: &DesignConfig) -> Result<Self> {
        let mut resolver = Self::new(config);
        for registration in registered_design_drivers() {
            resolver.register(registration)?;
        }
        Ok(resolver)
    }

    /// Adds one driver, to be built on first use. Registering the same registration again is
    /// a no-op; a different registration for a scheme already served is
    /// [`Error::DuplicateScheme`].
    pub fn register(&mut self, registration: &DesignDriverRegistration) -> Result<&mut Self> {
        if self
            .drivers
            .check(registration.name, registration.schemes)?
        {
            return Ok(self);
        }
        let lazy = Arc::new(LazyDriver {
            registration: *registration,
            driver: OnceLock::new(),
        });
        self.drivers
            .insert(registration.name, registration.schemes, lazy)?;
        Ok(self)
    }

    /// Builds every registered driver now, so wrong driver settings are found at start-up
    /// rather than at the first fetch; the first failure is returned.
    pub fn check(&self) -> Result<()> {
        for (scheme, _) in self.drivers.owners() {
            self.drivers.get(scheme)?.get(&self.config)?;
        }
        Ok(())
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
        let driver = self.drivers.get(design_ref.scheme())?.get(&self.config)?;
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
        async fn fetch(&self, r: &DesignRef, _: &FetchOptions) -> Result<DesignDocument> {
            Ok(DesignDocument {
                bytes: Bytes::from(r.url().path().to_string()),
                content_type: None,
                source: r.without_credentials(),
            })
        }
    }

    static ECHO: DesignDriverRegistration =
        DesignDriverRegistration::new("echo", &["echo"], |_| Ok(Arc::new(Echo)));
    static OTHER_ECHO: DesignDriverRegistration =
        DesignDriverRegistration::new("other-echo", &["echo"], |_| Ok(Arc::new(Echo)));
    static BROKEN: DesignDriverRegistration =
        DesignDriverRegistration::new("broken", &["broken"], |_| {
            Err(Error::invalid("design.drivers.broken", "cannot be built"))
        });

    #[tokio::test]
    async fn resolver_dispatches_and_reports() {
        let config = DesignConfig::default();
        let mut r = DesignResolver::new(&config);
        r.register(&ECHO).unwrap();
        r.register(&ECHO).unwrap();
        assert!(matches!(
            r.register(&OTHER_ECHO),
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

    /// A driver that cannot be built fails its own scheme's fetches, not the others', and
    /// `check` reports it.
    #[tokio::test]
    async fn a_driver_that_cannot_be_built_breaks_only_its_own_scheme() {
        let config = DesignConfig::default();
        let mut r = DesignResolver::new(&config);
        r.register(&BROKEN).unwrap();
        r.register(&ECHO).unwrap();
        let d = r.fetch_uri("echo://h/p").await.unwrap();
        assert_eq!(&d.bytes[..], b"/p");
        let e = r.fetch_uri("broken://h/p").await.unwrap_err();
        assert!(e.to_string().contains("design.drivers.broken"), "{e}");
        let e = r.check().unwrap_err();
        assert!(e.to_string().contains("cannot be built"), "{e}");
    }

    #[derive(serde::Deserialize, serde::Serialize)]
    struct EchoSettings {
        user: String,
        api_key: crate::Secret,
    }

    static SECRETIVE: DesignDriverRegistration =
        DesignDriverRegistration::new("secretive", &["secretive"], |_| Ok(Arc::new(Echo)))
            .with_config::<EchoSettings>("secretive");
    inventory::submit! { SECRETIVE }

    /// Redaction is by the settings' types: `api_key` is a `Secret`, `user` is not; a section
    /// no driver declares is hidden whole.
    #[test]
    fn driver_sections_are_redacted_by_type() {
        let section = serde_json::json!({"user": "me", "api_key": "k-123"});
        let shown = (SECRETIVE.redact_section.unwrap())(&section).unwrap();
        assert_eq!(shown, serde_json::json!({"user": "me", "api_key": "***"}));
        let mut drivers = serde_json::json!({
            "secretive": {"user": "me", "api_key": "k-123"},
            "nobody": {"user": "x", "plain": "p-456"},
        });
        redact_driver_sections(&mut drivers);
        assert_eq!(
            drivers,
            serde_json::json!({"secretive": {"user": "me", "api_key": "***"}, "nobody": "***"})
        );
    }
}
