//! Store backends by URL scheme: how a backend crate announces itself, and opening one; and
//! what a backend author builds on: the rules every backend applies the same way
//! ([`Recovery`], [`purge_cutoff`], ...), the shared checks and clock ([`no_nul`], [`now`]) and
//! the shared error constructors ([`task_exists`], ...).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::registry::SchemeRegistry;
use crate::store::StateStore;

mod errors;
mod rules;
mod values;

pub use errors::*;
pub use rules::*;
pub use values::*;

/// The future a backend's `open` returns.
pub type OpenFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn StateStore>>> + Send>>;

/// Opens a backend: connects, runs migrations and returns the store.
pub type OpenBackend = fn(url: String, config: Config) -> OpenFuture;

/// How a backend crate announces itself: its name, its URL schemes and how to open it.
///
/// Built with [`BackendRegistration::new`] (fields may be added in any release, so it cannot
/// be written as a struct literal outside this crate):
///
/// ```
/// # use std::sync::Arc;
/// # use drydock_state_core::{BackendRegistration, MemoryStore, StateStore};
/// pub const REGISTRATION: BackendRegistration =
///     BackendRegistration::new("my-store", &["my-store"], |_url, config| {
///         Box::pin(async move { Ok(Arc::new(MemoryStore::new(&config)) as Arc<dyn StateStore>) })
///     });
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct BackendRegistration {
    /// A name unique to the backend (`postgres`, `sqlite`, `memory`).
    pub name: &'static str,
    /// The URL schemes it serves, lowercase.
    pub schemes: &'static [&'static str],
    /// Connects, runs migrations and returns the store. The URL may carry a password: an
    /// implementation must never log it or put it in an error.
    pub open: OpenBackend,
}

impl BackendRegistration {
    /// A backend `name` serving `schemes`, opened by `open`.
    pub const fn new(
        name: &'static str,
        schemes: &'static [&'static str],
        open: OpenBackend,
    ) -> Self {
        BackendRegistration {
            name,
            schemes,
            open,
        }
    }
}

inventory::collect!(BackendRegistration);

/// A set of backends by scheme.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    backends: SchemeRegistry<&'static BackendRegistration>,
}

impl BackendRegistry {
    /// Every backend registered through `inventory` in this program.
    pub fn from_inventory() -> Result<Self> {
        let mut registry = Self::default();
        for registration in inventory::iter::<BackendRegistration> {
            registry.register(registration)?;
        }
        Ok(registry)
    }

    /// Adds a backend; the same registration twice is a no-op, a clash is an error.
    pub fn register(&mut self, registration: &'static BackendRegistration) -> Result<&mut Self> {
        self.backends
            .insert(registration.name, registration.schemes, registration)?;
        Ok(self)
    }

    /// The schemes served, sorted.
    pub fn schemes(&self) -> Vec<&str> {
        self.backends.schemes().collect()
    }

    /// Opens the backend serving `url`'s scheme.
    pub async fn open(&self, url: &str, config: &Config) -> Result<Arc<dyn StateStore>> {
        let scheme = url_scheme(url)?;
        let registration = self.backends.get(&scheme)?;
        (registration.open)(url.to_string(), config.clone()).await
    }
}

/// The scheme of a database URL, lowercase, or an error naming `database.url` (never echoing
/// the URL, which may hold a password).
pub fn url_scheme(url: &str) -> Result<String> {
    match url.split_once(':') {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(scheme.to_ascii_lowercase())
        }
        _ => Err(Error::invalid(
            "database.url",
            "is not a URL with a scheme (e.g. postgres://host/db, sqlite:///path/state.db, memory://)",
        )),
    }
}
