//! Scheme registries: which design driver or store backend serves a URI scheme.
//!
//! Drivers and backends register with [`inventory::submit!`]; a crate that is only a
//! dependency and never named in code may not be linked, so every driver and backend crate
//! also exports its registration as a `REGISTRATION` constant for explicit registration.
//! Registering the same registration twice is harmless; two different registrations claiming
//! one scheme is [`Error::DuplicateScheme`].

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A map from URI scheme to a value, remembering which registration put each scheme there.
#[derive(Clone)]
pub struct SchemeRegistry<T> {
    entries: BTreeMap<String, (&'static str, T)>,
}

impl<T> Default for SchemeRegistry<T> {
    fn default() -> Self {
        SchemeRegistry {
            entries: BTreeMap::new(),
        }
    }
}

impl<T: Clone> SchemeRegistry<T> {
    /// Adds `value` under each of `schemes`, as registered by `owner`. A scheme already held by
    /// the same owner is left as is; one held by another owner is an error and nothing is added.
    pub fn insert(&mut self, owner: &'static str, schemes: &[&str], value: T) -> Result<()> {
        self.check(owner, schemes)?;
        for scheme in schemes {
            self.entries
                .entry(scheme.to_ascii_lowercase())
                .or_insert_with(|| (owner, value.clone()));
        }
        Ok(())
    }

    /// Whether `owner` may add `schemes`: `Ok(true)` if it already serves all of them,
    /// `Ok(false)` if it may add them, [`Error::DuplicateScheme`] if another owner holds one.
    pub fn check(&self, owner: &'static str, schemes: &[&str]) -> Result<bool> {
        let mut all_ours = true;
        for scheme in schemes {
            if let Some((first, _)) = self.entries.get(&scheme.to_ascii_lowercase()) {
                if *first != owner {
                    return Err(Error::DuplicateScheme {
                        scheme: scheme.to_string(),
                        first: first.to_string(),
                        second: owner.to_string(),
                    });
                }
            } else {
                all_ours = false;
            }
        }
        Ok(all_ours)
    }

    /// The value for `scheme` (case-insensitive), or [`Error::UnknownScheme`] listing the
    /// registered schemes.
    pub fn get(&self, scheme: &str) -> Result<&T> {
        self.entries
            .get(&scheme.to_ascii_lowercase())
            .map(|(_, v)| v)
            .ok_or_else(|| Error::UnknownScheme {
                scheme: scheme.to_string(),
                known: self.schemes().map(str::to_string).collect(),
            })
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Each registered scheme with the name of the registration that serves it, sorted.
    pub fn owners(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.entries
            .iter()
            .map(|(k, (owner, _))| (k.as_str(), *owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_lists_known_schemes() {
        let mut r = SchemeRegistry::default();
        r.insert("file-driver", &["file"], 1).unwrap();
        r.insert("http-driver", &["http", "https"], 2).unwrap();
        let e = r.get("ftp").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown scheme `ftp`; registered schemes: file, http, https"
        );
        assert_eq!(*r.get("HTTPS").unwrap(), 2);
    }

    #[test]
    fn duplicate_scheme_is_reported_not_shadowed() {
        let mut r = SchemeRegistry::default();
        r.insert("a", &["x"], 1).unwrap();
        r.insert("a", &["x"], 1).unwrap();
        let e = r.insert("b", &["y", "x"], 2).unwrap_err();
        assert!(matches!(e, Error::DuplicateScheme { .. }), "{e}");
        assert_eq!(*r.get("x").unwrap(), 1);
        assert!(r.get("y").is_err(), "a refused registration adds nothing");
    }
}
