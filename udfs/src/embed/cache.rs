//! The embedding cache: (model, hash of text) → vector, bounded, with visible statistics.
//!
//! Why: a catalogue is re-embedded every night but changes by a few percent. Keyed by a
//! 128-bit XXH3 of the text (collisions are negligible at any catalogue size), an
//! unchanged product costs a hash and a lookup. Least-recently-used entries are evicted
//! beyond `capacity`, so memory stays bounded.
//!
//! With a cache file (the server's data directory has one), every new vector is also
//! appended to it, and the file is read back at start, so a restart does not re-embed
//! the catalogue. Each record carries a checksum: a record cut short by a crash ends
//! the read and is dropped, never misread. The file is rewritten from the live entries
//! when it holds more than twice `capacity` records, so it stays bounded too.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

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
    file: Mutex<Option<CacheFile>>,
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
            file: Mutex::new(None),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A cache of at most `capacity` vectors that loads the vectors stored in `path`
    /// (if it exists) and appends every new one to it.
    pub fn with_file(capacity: usize, path: &Path) -> std::io::Result<Self> {
        let cache = Self::new(capacity);
        if capacity == 0 {
            return Ok(cache);
        }
        let records = match File::open(path) {
            Ok(file) => read_records(file, &mut |key, vector| cache.insert(key, vector)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        let file = if records > 2 * capacity {
            rewrite(path, &cache.entries.lock())?
        } else {
            File::options().create(true).append(true).open(path)?
        };
        *cache.file.lock() = Some(CacheFile {
            path: path.to_path_buf(),
            file,
        });
        cache.evictions.store(0, Ordering::Relaxed);
        Ok(cache)
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
        let mut file = self.file.lock();
        if let Some(open) = file.as_mut() {
            if let Err(error) = open.file.write_all(&encode_record(&key, &vector)) {
                tracing::warn!(
                    "embedding cache file {}: {error}; vectors are no longer persisted",
                    open.path.display()
                );
                *file = None;
            }
        }
        drop(file);
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

/// The append handle of the cache file.
struct CacheFile {
    path: PathBuf,
    file: File,
}

/// A record: model hash (8 bytes), text hash (16), dimension (4), the floats, and an
/// XXH3-64 of everything before it (8). Little-endian throughout.
fn encode_record(key: &CacheKey, vector: &[f32]) -> Vec<u8> {
    let mut record = Vec::with_capacity(36 + 4 * vector.len());
    record.extend_from_slice(&key.model.to_le_bytes());
    record.extend_from_slice(&key.text.to_le_bytes());
    record.extend_from_slice(&(vector.len() as u32).to_le_bytes());
    for value in vector {
        record.extend_from_slice(&value.to_le_bytes());
    }
    let checksum = xxh3_64(&record);
    record.extend_from_slice(&checksum.to_le_bytes());
    record
}

/// Largest dimension a record may claim; anything larger is corruption.
const MAX_STORED_DIMENSION: usize = 1 << 16;

/// Reads records until the end or the first incomplete or corrupt one; returns how
/// many were read.
fn read_records(file: File, store: &mut dyn FnMut(CacheKey, Arc<[f32]>)) -> usize {
    let mut reader = BufReader::new(file);
    let mut count = 0;
    loop {
        let mut head = [0u8; 28];
        if reader.read_exact(&mut head).is_err() {
            return count;
        }
        let dimension = u32::from_le_bytes([head[24], head[25], head[26], head[27]]) as usize;
        if dimension > MAX_STORED_DIMENSION {
            return count;
        }
        let mut body = vec![0u8; 4 * dimension + 8];
        if reader.read_exact(&mut body).is_err() {
            return count;
        }
        let (values, checksum) = body.split_at(4 * dimension);
        let mut record = head.to_vec();
        record.extend_from_slice(values);
        let mut expected = [0u8; 8];
        expected.copy_from_slice(checksum);
        if xxh3_64(&record) != u64::from_le_bytes(expected) {
            return count;
        }
        let mut model = [0u8; 8];
        model.copy_from_slice(&head[..8]);
        let mut text = [0u8; 16];
        text.copy_from_slice(&head[8..24]);
        let vector: Arc<[f32]> = values
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        store(
            CacheKey {
                model: u64::from_le_bytes(model),
                text: u128::from_le_bytes(text),
            },
            vector,
        );
        count += 1;
    }
}

/// Replaces the file with the live entries (written aside, then renamed over it).
fn rewrite(path: &Path, entries: &LruCache<CacheKey, Arc<[f32]>>) -> std::io::Result<File> {
    let staging = path.with_extension("rewrite");
    {
        let mut out = std::io::BufWriter::new(File::create(&staging)?);
        for (key, vector) in entries.iter().rev() {
            out.write_all(&encode_record(key, vector))?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&staging, path)?;
    File::options().append(true).open(path)
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

    #[test]
    fn a_cache_file_survives_reopening_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embed-cache.bin");
        {
            let cache = EmbeddingCache::with_file(10, &path).unwrap();
            cache.insert(CacheKey::new("m", "lamp"), Arc::from(vec![0.5f32, -1.0]));
            cache.insert(CacheKey::new("m", "sofa"), Arc::from(vec![2.0f32, 3.0]));
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, bytes).unwrap();
        let cache = EmbeddingCache::with_file(10, &path).unwrap();
        assert_eq!(
            cache.get(&CacheKey::new("m", "lamp")).as_deref(),
            Some(&[0.5f32, -1.0][..])
        );
        assert_eq!(
            cache.get(&CacheKey::new("m", "sofa")).as_deref(),
            Some(&[2.0f32, 3.0][..])
        );
    }

    #[test]
    fn an_oversized_cache_file_is_rewritten_to_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embed-cache.bin");
        {
            let cache = EmbeddingCache::with_file(2, &path).unwrap();
            for text in ["a", "b", "c", "d", "e", "f"] {
                cache.insert(CacheKey::new("m", text), Arc::from(vec![1.0f32]));
            }
        }
        let cache = EmbeddingCache::with_file(2, &path).unwrap();
        assert!(cache.get(&CacheKey::new("m", "f")).is_some());
        drop(cache);
        let record = encode_record(&CacheKey::new("m", "f"), &[1.0]).len() as u64;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * record);
    }
}
