//! The embedding cache: (model, hash of text) → vector, bounded, with visible statistics.
//!
//! Why: a catalogue is re-embedded every night but changes by a few percent. Keyed by a
//! 128-bit XXH3 of the text (collisions are negligible at any catalogue size), an
//! unchanged product costs a hash and a lookup. Least-recently-used entries are evicted
//! beyond `capacity`, so memory stays bounded.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_128;

/// A cache key: the model's name hash and the text's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    model: u64,
    text: u128,
}

impl CacheKey {
    /// The key of `text` embedded by `model`.
    pub fn new(model: &str, text: &str) -> Self {
        Self {
            model: xxhash_rust::xxh3::xxh3_64(model.as_bytes()),
            text: xxh3_128(text.as_bytes()),
        }
    }
}

/// A point-in-time reading of the cache's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Vectors held now.
    pub entries: u64,
    /// Most vectors held.
    pub capacity: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to run the model.
    pub misses: u64,
    /// Vectors dropped to stay within capacity.
    pub evictions: u64,
}

/// A bounded LRU cache of embeddings, shared by all models and queries.
pub struct EmbeddingCache {
    entries: Mutex<LruCache<CacheKey, Arc<[f32]>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl EmbeddingCache {
    /// A cache of at most `capacity` vectors (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("≥ 1"),
            )),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The vector for `key`, counting a hit or a miss.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<[f32]>> {
        let found = if self.capacity == 0 {
            None
        } else {
            self.entries.lock().get(key).cloned()
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `vector` under `key`.
    pub fn insert(&self, key: CacheKey, vector: Arc<[f32]>) {
        if self.capacity == 0 {
            return;
        }
        if let Some((evicted, _)) = self.entries.lock().push(key, vector) {
            if evicted != key {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.lock().len() as u64,
            capacity: self.capacity as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_counted() {
        let cache = EmbeddingCache::new(2);
        for text in ["a", "b", "c"] {
            cache.insert(CacheKey::new("m", text), Arc::from(vec![1.0f32]));
        }
        assert!(cache.get(&CacheKey::new("m", "a")).is_none());
        assert!(cache.get(&CacheKey::new("m", "c")).is_some());
        assert!(cache.get(&CacheKey::new("other", "c")).is_none());
        let stats = cache.stats();
        assert_eq!(
            (stats.entries, stats.hits, stats.misses, stats.evictions),
            (2, 1, 2, 1)
        );
    }
}
