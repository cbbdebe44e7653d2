//! Decoded data files of durable tables, kept in memory. Why: a committed Delta data file
//! never changes, so decoding its Parquet again for every query is pure waste — on 1M
//! vectors of 384 floats the decoding took ten times longer than the cosine itself. The
//! cache maps a data file's path to its decoded batches (in the table's scan schema),
//! is filled by the first scan that reads a file, is shared by every connection, and
//! evicts the least recently used files beyond its byte budget (`--table-cache`). A new
//! commit adds files and compaction replaces them; files no longer in a table's snapshot
//! are simply never asked for again and age out.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parking_lot::Mutex;

use super::committer::cast_batch;

/// A failure to read a data file into the cache.
#[derive(Debug, thiserror::Error)]
#[error("reading data file {path}: {reason}")]
pub struct CacheLoadError {
    /// The data file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// The decoded batches of one data file.
pub(crate) type FileBatches = Arc<Vec<RecordBatch>>;

/// The cache shared by every durable table of a data directory.
#[derive(Debug)]
pub struct TableCache {
    budget: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    files: HashMap<PathBuf, Entry>,
    bytes: usize,
    /// Increases on every access: an entry's `last_used` orders the evictions.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    batches: FileBatches,
    bytes: usize,
    last_used: u64,
}

impl TableCache {
    /// A cache holding at most `budget` bytes of decoded batches (0: no caching).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::default(),
        }
    }

    /// Whether a table whose data files take `file_bytes` on disk should be read through
    /// the cache: not when it cannot fit (it would only evict everything else).
    pub(crate) fn fits(&self, file_bytes: u64) -> bool {
        file_bytes <= self.budget as u64
    }

    /// Bytes of decoded batches held now.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// The batches of `path` in `schema`, decoded now if they are not cached (blocking:
    /// call it off the async workers).
    pub(crate) fn get_or_load(
        &self,
        path: &Path,
        schema: &SchemaRef,
    ) -> Result<FileBatches, CacheLoadError> {
        if let Some(batches) = self.lookup(path) {
            return Ok(batches);
        }
        let batches = Arc::new(read_file(path, schema)?);
        let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        self.insert(path, batches.clone(), bytes);
        Ok(batches)
    }

    fn lookup(&self, path: &Path) -> Option<FileBatches> {
        let mut state = self.state.lock();
        state.clock += 1;
        let now = state.clock;
        let entry = state.files.get_mut(path)?;
        entry.last_used = now;
        Some(entry.batches.clone())
    }

    fn insert(&self, path: &Path, batches: FileBatches, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        let mut state = self.state.lock();
        state.clock += 1;
        let now = state.clock;
        let entry = Entry {
            batches,
            bytes,
            last_used: now,
        };
        if let Some(previous) = state.files.insert(path.to_path_buf(), entry) {
            state.bytes -= previous.bytes;
        }
        state.bytes += bytes;
        while state.bytes > self.budget {
            let oldest = state
                .files
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(path, _)| path.clone());
            let Some(oldest) = oldest else { break };
            if let Some(evicted) = state.files.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
    }
}

/// Every row of a Parquet data file, cast to `schema` (the table's scan types).
fn read_file(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>, CacheLoadError> {
    let failed = |reason: String| CacheLoadError {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| failed(e.to_string()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.with_batch_size(8192).build())
        .map_err(|e| failed(e.to_string()))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|e| failed(e.to_string()))?;
            cast_batch(&batch, schema).map_err(|e| failed(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    use super::*;

    fn write_file(dir: &Path, name: &str, rows: i64) -> (PathBuf, SchemaRef) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let path = dir.join(name);
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        (path, schema)
    }

    #[test]
    fn files_are_decoded_once_and_the_least_recently_used_is_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, schema) = write_file(dir.path(), "a.parquet", 1000);
        let (b, _) = write_file(dir.path(), "b.parquet", 1000);
        let (c, _) = write_file(dir.path(), "c.parquet", 1000);
        let one_file = {
            let probe = TableCache::new(usize::MAX);
            probe.get_or_load(&a, &schema).unwrap();
            probe.bytes()
        };
        let cache = TableCache::new(2 * one_file);
        let first = cache.get_or_load(&a, &schema).unwrap();
        assert_eq!(first.iter().map(RecordBatch::num_rows).sum::<usize>(), 1000);
        cache.get_or_load(&b, &schema).unwrap();
        // Touch a, so b is the least recently used when c arrives.
        let again = cache.get_or_load(&a, &schema).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a is served from memory");
        cache.get_or_load(&c, &schema).unwrap();
        assert_eq!(cache.bytes(), 2 * one_file);
        assert!(cache.lookup(&a).is_some());
        assert!(cache.lookup(&b).is_none(), "b was evicted");
        assert!(cache.lookup(&c).is_some());
    }

    #[test]
    fn a_missing_file_is_named() {
        let cache = TableCache::new(1 << 20);
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let error = cache
            .get_or_load(Path::new("/nonexistent/x.parquet"), &schema)
            .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/x.parquet"),
            "{error}"
        );
    }
}
