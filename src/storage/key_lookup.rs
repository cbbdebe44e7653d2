//! Equality lookups on one column of a durable table without scanning it: the rows whose
//! `product_id` is 42. Why: an application reads "this product" or "this user's vector"
//! on every request, and a scan of 100,000 rows plus DataFusion's planning costs ten
//! times PostgreSQL's primary-key lookup.
//!
//! A committed data file never changes, so each file gets a sorted list of
//! (key, batch, row) for the looked-up column, built on the first lookup and kept while
//! the file is in the table's snapshot. A lookup binary-searches each file's list and
//! filters the rows still in the write-ahead log (few: the writer commits them a few times
//! a second). Keys are integers (exact) or text (a hash, checked against the row). The
//! rows stay in the table cache (a table is looked up this way only while it fits
//! there); a list keeps its key column and 16 bytes per row, and is built again when the
//! cache has evicted its file.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use parking_lot::Mutex;
use rayon::prelude::*;

use super::committer::DataFile;
use super::table_cache::{FileBatches, TableCache};

/// The value looked for, in the form its column's keys take.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// For an integer column.
    Integer(i64),
    /// For a text column.
    Text(String),
    /// SQL NULL: `column = NULL` is never true, so no row matches.
    Null,
}

/// How a column's values become keys.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyKind {
    Integer,
    Text,
}

impl KeyKind {
    fn of(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Some(Self::Integer),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Self::Text),
            _ => None,
        }
    }

    /// The column as the array its keys are read from (Int64 or Utf8).
    fn normalise(self, column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
        match self {
            Self::Integer => cast(column, &DataType::Int64),
            Self::Text => cast(column, &DataType::Utf8),
        }
    }
}

impl Probe {
    /// `value` as a probe of a column of type `column`, or `None` when this path does not
    /// compare them exactly as DataFusion would (the caller then runs the query normally).
    pub fn of(value: &ScalarValue, column: &DataType) -> Option<Self> {
        if value.is_null() {
            return Some(Self::Null);
        }
        match (KeyKind::of(column)?, value) {
            (KeyKind::Integer, _) if value.data_type().is_integer() => {
                match value.cast_to(&DataType::Int64).ok()? {
                    ScalarValue::Int64(Some(v)) => Some(Self::Integer(v)),
                    _ => None,
                }
            }
            (
                KeyKind::Text,
                ScalarValue::Utf8(Some(v))
                | ScalarValue::LargeUtf8(Some(v))
                | ScalarValue::Utf8View(Some(v)),
            ) => Some(Self::Text(v.clone())),
            _ => None,
        }
    }

    fn key(&self) -> Option<u64> {
        match self {
            Self::Integer(v) => Some(*v as u64),
            Self::Text(v) => Some(text_key(v)),
            Self::Null => None,
        }
    }

    /// Which rows of `keys` (a normalised column) equal the probe.
    fn matches(&self, keys: &ArrayRef) -> BooleanArray {
        match self {
            Self::Integer(v) => keys
                .as_primitive::<Int64Type>()
                .iter()
                .map(|k| Some(k == Some(*v)))
                .collect(),
            Self::Text(v) => keys
                .as_string::<i32>()
                .iter()
                .map(|k| Some(k == Some(v.as_str())))
                .collect(),
            Self::Null => BooleanArray::from(vec![false; keys.len()]),
        }
    }
}

fn text_key(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// One data file's rows ordered by the key of one column. The rows themselves stay the
/// table cache's: when it evicts the file, the list is built again on the next lookup.
struct FileKeys {
    batches: Weak<Vec<RecordBatch>>,
    /// The normalised key column of each batch (to check text keys against).
    columns: Vec<ArrayRef>,
    /// (key, batch, row), sorted.
    entries: Vec<(u64, u32, u32)>,
}

impl FileKeys {
    fn build(batches: FileBatches, column: usize, kind: KeyKind) -> Result<Self, ArrowError> {
        let columns = batches
            .iter()
            .map(|batch| kind.normalise(batch.column(column)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut entries = Vec::with_capacity(columns.iter().map(|c| c.len()).sum());
        for (batch, keys) in columns.iter().enumerate() {
            let batch = batch as u32;
            match kind {
                KeyKind::Integer => {
                    for (row, key) in keys.as_primitive::<Int64Type>().iter().enumerate() {
                        if let Some(key) = key {
                            entries.push((key as u64, batch, row as u32));
                        }
                    }
                }
                KeyKind::Text => {
                    for (row, key) in keys.as_string::<i32>().iter().enumerate() {
                        if let Some(key) = key {
                            entries.push((text_key(key), batch, row as u32));
                        }
                    }
                }
            }
        }
        entries.sort_unstable();
        Ok(Self {
            batches: Arc::downgrade(&batches),
            columns,
            entries,
        })
    }

    /// The list with its file's rows, if the table cache still holds them.
    fn with_rows(self: &Arc<Self>) -> Option<(Arc<FileKeys>, FileBatches)> {
        Some((self.clone(), self.batches.upgrade()?))
    }

    /// The rows of `batches` (this file's) equal to `probe`, projected.
    fn find(
        &self,
        batches: &[RecordBatch],
        probe: &Probe,
        projection: &[usize],
    ) -> Result<Vec<RecordBatch>, ArrowError> {
        let Some(key) = probe.key() else {
            return Ok(Vec::new());
        };
        let start = self.entries.partition_point(|entry| entry.0 < key);
        let end = self.entries.partition_point(|entry| entry.0 <= key);
        let mut found = Vec::new();
        for &(_, batch, row) in &self.entries[start..end] {
            let keys = &self.columns[batch as usize];
            let equal = match probe {
                Probe::Integer(_) => true,
                Probe::Text(text) => keys.as_string::<i32>().value(row as usize) == text,
                Probe::Null => false,
            };
            if equal {
                let projected = batches[batch as usize].project(projection)?;
                found.push(take_record_batch(
                    &projected,
                    &UInt32Array::from(vec![row]),
                )?);
            }
        }
        Ok(found)
    }
}

/// The key lists of one durable table, by column and data file.
#[derive(Default)]
pub(crate) struct KeyIndexes {
    columns: Mutex<HashMap<usize, HashMap<PathBuf, Arc<FileKeys>>>>,
}

impl std::fmt::Debug for KeyIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndexes")
            .field("columns", &self.columns.lock().len())
            .finish()
    }
}

/// A failure to look rows up by key.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A data file could not be read.
    #[error(transparent)]
    Read(#[from] super::CacheLoadError),
    /// Arrow could not cast, take or filter the rows.
    #[error("key lookup: {0}")]
    Arrow(#[from] ArrowError),
    /// The task building the key lists stopped before it finished.
    #[error("key lookup stopped: {0}")]
    Stopped(String),
}

impl KeyIndexes {
    /// Each file's key list for `column`, if all are built (no waiting).
    pub(crate) fn ready(&self, files: &[DataFile], column: usize) -> Option<KeyLists> {
        let columns = self.columns.lock();
        let lists = columns.get(&column)?;
        let found = files
            .iter()
            .map(|file| lists.get(&file.path)?.with_rows())
            .collect::<Option<Vec<_>>>()?;
        Some(KeyLists(found))
    }

    /// Each file's key list for `column` of `schema`, built now where missing (blocking:
    /// call it off the async workers); lists of files no longer in the snapshot are
    /// dropped. `None` when the column's type has no key form or the files do not fit
    /// in `cache`.
    pub(crate) fn build(
        &self,
        cache: &TableCache,
        schema: &SchemaRef,
        files: &[DataFile],
        column: usize,
    ) -> Result<Option<KeyLists>, LookupError> {
        let Some(kind) = KeyKind::of(schema.field(column).data_type()) else {
            return Ok(None);
        };
        if !cache.fits(files.iter().map(|file| file.bytes).sum()) {
            return Ok(None);
        }
        let known: Vec<Option<(Arc<FileKeys>, FileBatches)>> = {
            let columns = self.columns.lock();
            let lists = columns.get(&column);
            files
                .iter()
                .map(|file| lists.and_then(|lists| lists.get(&file.path)?.with_rows()))
                .collect()
        };
        let built: Vec<(Arc<FileKeys>, FileBatches)> = files
            .par_iter()
            .zip(known)
            .map(|(file, known)| match known {
                Some(list) => Ok(list),
                None => {
                    let batches = cache.get_or_load(&file.path, schema)?;
                    let list = Arc::new(FileKeys::build(batches.clone(), column, kind)?);
                    Ok((list, batches))
                }
            })
            .collect::<Result<_, LookupError>>()?;
        let lists: HashMap<PathBuf, Arc<FileKeys>> = files
            .iter()
            .map(|file| file.path.clone())
            .zip(built.iter().map(|(list, _)| list.clone()))
            .collect();
        self.columns.lock().insert(column, lists);
        Ok(Some(KeyLists(built)))
    }
}

/// The key lists of every data file of a snapshot, for one column, with the files' rows.
pub(crate) struct KeyLists(Vec<(Arc<FileKeys>, FileBatches)>);

impl KeyLists {
    /// The rows of the files and of `pending` whose column `column` equals `probe`, with
    /// the columns of `projection`.
    pub(crate) fn find(
        &self,
        pending: &[RecordBatch],
        column: usize,
        probe: &Probe,
        projection: &[usize],
    ) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut rows = Vec::new();
        for (list, batches) in &self.0 {
            rows.extend(list.find(batches, probe, projection)?);
        }
        for batch in pending {
            let Some(kind) = KeyKind::of(batch.schema().field(column).data_type()) else {
                continue;
            };
            let keys = kind.normalise(batch.column(column))?;
            let matching = filter_record_batch(batch, &probe.matches(&keys))?;
            if matching.num_rows() > 0 {
                rows.push(matching.project(projection)?);
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ids: Vec<i32>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn names(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let names = b.column(0).as_string::<i32>();
                (0..names.len())
                    .map(|i| names.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn integer_and_text_keys_find_every_equal_row() {
        let batches = Arc::new(vec![
            batch(vec![3, 1, 2], vec!["c", "a", "b"]),
            batch(vec![2, 5], vec!["b2", "e"]),
        ]);
        let by_id = FileKeys::build(batches.clone(), 0, KeyKind::Integer).unwrap();
        let found = by_id.find(&batches, &Probe::Integer(2), &[1]).unwrap();
        assert_eq!(names(&found), ["b", "b2"]);
        assert!(by_id
            .find(&batches, &Probe::Integer(4), &[1])
            .unwrap()
            .is_empty());
        assert!(by_id.find(&batches, &Probe::Null, &[1]).unwrap().is_empty());

        let by_name = Arc::new(FileKeys::build(batches.clone(), 1, KeyKind::Text).unwrap());
        let found = by_name
            .find(&batches, &Probe::Text("e".into()), &[1])
            .unwrap();
        assert_eq!(names(&found), ["e"]);
        assert!(by_name
            .find(&batches, &Probe::Text("z".into()), &[1])
            .unwrap()
            .is_empty());
        // The list does not keep the rows: once the cache drops them, it must be rebuilt.
        assert!(by_name.with_rows().is_some());
        drop(batches);
        assert!(by_name.with_rows().is_none());
    }

    #[test]
    fn probes_are_taken_only_where_the_comparison_is_exact() {
        let int = DataType::Int32;
        assert_eq!(
            Probe::of(&ScalarValue::Int64(Some(7)), &int),
            Some(Probe::Integer(7))
        );
        assert_eq!(
            Probe::of(&ScalarValue::Int64(None), &int),
            Some(Probe::Null)
        );
        assert_eq!(Probe::of(&ScalarValue::Utf8(Some("7".into())), &int), None);
        assert_eq!(Probe::of(&ScalarValue::Float64(Some(7.0)), &int), None);
        assert_eq!(
            Probe::of(&ScalarValue::Utf8(Some("x".into())), &DataType::Utf8View),
            Some(Probe::Text("x".into()))
        );
        assert_eq!(
            Probe::of(&ScalarValue::Int64(Some(1)), &DataType::Float64),
            None
        );
    }

    #[test]
    fn logged_rows_are_filtered() {
        let indexes = KeyIndexes::default();
        let cache = TableCache::new(1 << 20);
        let pending = vec![batch(vec![1, 9, 1], vec!["x", "y", "z"])];
        let schema = pending[0].schema();
        let lists = indexes.build(&cache, &schema, &[], 0).unwrap().unwrap();
        let found = lists.find(&pending, 0, &Probe::Integer(1), &[1]).unwrap();
        assert_eq!(names(&found), ["x", "z"]);
    }
}
