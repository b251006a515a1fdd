//! The document cache: fetched documents kept for `cache_ttl`, keyed by credential-free URI.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use drydock_state_core::DesignDocument;

/// Most documents kept at once; a site has a handful of designs, not hundreds.
const MAX_ENTRIES: usize = 64;

/// Successful fetches, each reused until it is `ttl` old.
#[derive(Debug)]
pub(crate) struct DocumentCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, DesignDocument)>>,
}

impl DocumentCache {
    /// A cache whose entries live for `ttl`; zero disables it.
    pub(crate) fn new(ttl: Duration) -> Self {
        DocumentCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long an entry lives.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The document stored under `key`, if it is younger than the TTL.
    pub(crate) fn get(&self, key: &str) -> Option<DesignDocument> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let (stored, document) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| document.clone())
    }

    /// Stores `document` under `key`, dropping expired entries and, when full, the oldest.
    pub(crate) fn insert(&self, key: String, document: DesignDocument) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        entries.retain(|_, (stored, _)| stored.elapsed() < self.ttl);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (stored, _))| *stored)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now(), document));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, DesignDocument)>> {
        // Entries are inserted whole, so a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &'static str) -> DesignDocument {
        DesignDocument {
            bytes: bytes::Bytes::from_static(text.as_bytes()),
            content_type: None,
            source: "http://h/x".into(),
        }
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = DocumentCache::new(Duration::ZERO);
        cache.insert("k".into(), doc("a"));
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn entries_expire_and_the_oldest_goes_when_full() {
        let cache = DocumentCache::new(Duration::from_millis(50));
        cache.insert("k".into(), doc("a"));
        assert_eq!(cache.get("k").unwrap().bytes, "a");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("k").is_none());

        let cache = DocumentCache::new(Duration::from_secs(60));
        for i in 0..=MAX_ENTRIES {
            cache.insert(format!("k{i}"), doc("a"));
        }
        assert!(cache.get("k0").is_none());
        assert!(cache.get(&format!("k{MAX_ENTRIES}")).is_some());
        assert_eq!(cache.lock().len(), MAX_ENTRIES);
    }
}
