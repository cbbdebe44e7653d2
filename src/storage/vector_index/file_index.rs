//! The HNSW graph of one data file. A committed Delta data file never changes, so its
//! graph, once built, is valid for as long as the file is part of the table: a file's
//! graph is built once, saved beside the table (`_rankql_index/INDEX/FILE.usearch`,
//! written under a temporary name and renamed, so a crash leaves a whole graph or none)
//! and opened memory-mapped by every query. Keys are row positions within the file, in
//! the order the table cache decodes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Condvar, Mutex};
use rankql_udfs::vector::args::Vectors;
use rayon::prelude::*;
use usearch::{Index, IndexOptions, ScalarKind};

use super::definition::{IndexDefinition, Metric};
use super::IndexError;
use crate::storage::durability::sync_path;

/// Suffix of a data file's graph.
pub(super) const GRAPH_SUFFIX: &str = ".usearch";
/// Suffix of a graph being written.
const PARTIAL_SUFFIX: &str = ".partial";
/// Builds of at least this many vectors log their progress.
const PROGRESS_ROWS: usize = 100_000;

/// Where the graph of `data_file` for index `index_dir` lives.
pub(super) fn graph_path(index_dir: &Path, data_file: &Path) -> PathBuf {
    let name = data_file
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    index_dir.join(format!("{name}{GRAPH_SUFFIX}"))
}

/// The rows of one data file the graph does not hold: NULL vectors, and for cosine
/// zero vectors (whose cosine is NULL). An ordering with NULLs first needs them.
#[derive(Debug, Default, Clone)]
pub(super) struct Unindexed {
    pub rows: Vec<u64>,
}

/// The vectors of column `column` of a file's batches, as (row position, values), with
/// the rows left out of the graph; a vector of another dimension is an error.
fn file_vectors(
    definition: &IndexDefinition,
    batches: &[RecordBatch],
    column: usize,
) -> Result<(Vec<Vectors>, Unindexed), IndexError> {
    let mut columns = Vec::with_capacity(batches.len());
    let mut unindexed = Unindexed::default();
    let mut position = 0u64;
    for batch in batches {
        let vectors = Vectors::try_new(batch.column(column), &definition.name).map_err(|e| {
            IndexError::Vectors {
                column: definition.column.clone(),
                reason: e.to_string(),
            }
        })?;
        for row in 0..vectors.len() {
            match vectors.row(row) {
                None => unindexed.rows.push(position),
                Some(values) if values.len() != definition.dimension => {
                    return Err(IndexError::Dimension {
                        column: definition.column.clone(),
                        expected: definition.dimension,
                        found: values.len(),
                    })
                }
                Some(values)
                    if definition.metric == Metric::Cosine && values.iter().all(|v| *v == 0.0) =>
                {
                    unindexed.rows.push(position)
                }
                Some(_) => {}
            }
            position += 1;
        }
        columns.push(vectors);
    }
    Ok((columns, unindexed))
}

/// A new, empty usearch index for `definition`, sized for `capacity` vectors.
fn new_index(definition: &IndexDefinition, capacity: usize) -> Result<Index, IndexError> {
    let options = IndexOptions {
        dimensions: definition.dimension,
        metric: definition.metric.usearch_kind(),
        // Full precision: the candidates are re-ranked exactly, but recall depends on
        // the graph seeing the true distances.
        quantization: ScalarKind::F32,
        connectivity: definition.m,
        expansion_add: definition.ef_construction,
        expansion_search: definition.ef_construction,
        multi: false,
    };
    let index = Index::new(&options).map_err(IndexError::library)?;
    index
        .reserve_capacity_and_threads(capacity.max(1), rayon::current_num_threads().max(1))
        .map_err(IndexError::library)?;
    Ok(index)
}

/// Builds the graph of one data file on every core and saves it atomically at `target`.
/// `label` names the file in progress logs.
pub(super) fn build(
    definition: &IndexDefinition,
    batches: &[RecordBatch],
    column: usize,
    target: &Path,
    synchronous: bool,
) -> Result<(), IndexError> {
    let (columns, unindexed) = file_vectors(definition, batches, column)?;
    let rows: usize = columns.iter().map(Vectors::len).sum();
    // `unindexed.rows` ascends, as the positions do: walk both together.
    let mut skipped = unindexed.rows.iter().peekable();
    let mut keyed: Vec<(u64, &[f32])> = Vec::with_capacity(rows - unindexed.rows.len());
    let mut position = 0u64;
    for vectors in &columns {
        for row in 0..vectors.len() {
            if skipped.next_if_eq(&&position).is_none() {
                if let Some(values) = vectors.row(row) {
                    keyed.push((position, values));
                }
            }
            position += 1;
        }
    }
    let index = new_index(definition, keyed.len())?;
    let (started, done, total) = (Instant::now(), AtomicUsize::new(0), keyed.len());
    keyed.par_iter().try_for_each(|(key, values)| {
        index.add(*key, values).map_err(IndexError::library)?;
        let added = done.fetch_add(1, Ordering::Relaxed) + 1;
        if total >= PROGRESS_ROWS && added % (total / 10).max(1) == 0 {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                index = %definition.name,
                "built {added} of {total} vectors ({:.0}/s, {:.0} s left)",
                added as f64 / seconds,
                (total - added) as f64 / (added as f64 / seconds)
            );
        }
        Ok::<(), IndexError>(())
    })?;
    save(&index, target, synchronous)
}

/// Writes `index` to `target` through a temporary file and a rename.
fn save(index: &Index, target: &Path, synchronous: bool) -> Result<(), IndexError> {
    let io_error = |source| IndexError::Io {
        path: target.to_path_buf(),
        source,
    };
    let partial = target.with_extension(format!("usearch{PARTIAL_SUFFIX}"));
    let partial_text = partial.to_string_lossy().to_string();
    index.save(&partial_text).map_err(IndexError::library)?;
    if synchronous {
        sync_path(&partial).map_err(|e| io_error(e.source))?;
    }
    std::fs::rename(&partial, target).map_err(io_error)?;
    if let (true, Some(dir)) = (synchronous, target.parent()) {
        sync_path(dir).map_err(|e| io_error(e.source))?;
    }
    Ok(())
}

/// Searches one graph may run at once. usearch gives each concurrent search a context of
/// its own (a visited-set of one bit per vector) and fails a search when none is free, so
/// the view reserves this many and [`GraphView`] makes further searches wait their turn.
const SEARCH_CONTEXTS: usize = 32;

/// A saved graph, memory-mapped, searching with a fixed `ef_search`.
pub(super) struct GraphView {
    index: Index,
    free: Mutex<usize>,
    freed: Condvar,
}

impl GraphView {
    /// Opens the graph at `path`.
    pub(super) fn open(path: &Path, ef_search: usize) -> Result<Self, IndexError> {
        let index = Index::restore_view(&path.to_string_lossy()).map_err(IndexError::library)?;
        index.change_expansion_search(ef_search);
        index
            .reserve_capacity_and_threads(index.size(), SEARCH_CONTEXTS)
            .map_err(IndexError::library)?;
        Ok(Self {
            index,
            free: Mutex::new(SEARCH_CONTEXTS),
            freed: Condvar::new(),
        })
    }

    /// Vectors in the graph.
    pub(super) fn size(&self) -> usize {
        self.index.size()
    }

    /// The keys of the `k` nearest vectors to `query` (among those `accept` lets through).
    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        accept: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<u64>, IndexError> {
        {
            let mut free = self.free.lock();
            while *free == 0 {
                self.freed.wait(&mut free);
            }
            *free -= 1;
        }
        let matches = match accept {
            Some(accept) => self.index.filtered_search(query, k, accept),
            None => self.index.search(query, k),
        };
        *self.free.lock() += 1;
        self.freed.notify_one();
        Ok(matches.map_err(IndexError::library)?.keys)
    }
}

/// The rows of a file's batches that are not in its graph (see [`Unindexed`]).
pub(super) fn unindexed_rows(
    definition: &IndexDefinition,
    batches: &[RecordBatch],
    column: usize,
) -> Result<Unindexed, IndexError> {
    file_vectors(definition, batches, column).map(|(_, unindexed)| unindexed)
}

/// Whether `path` is a graph file, or a partial one a crash left behind.
pub(super) fn is_partial(path: &Path) -> bool {
    path.to_string_lossy().ends_with(PARTIAL_SUFFIX)
}
