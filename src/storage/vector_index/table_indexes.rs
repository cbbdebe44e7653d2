//! The indexes of one durable table: their definitions (`_rankql_index/indexes.json`, the
//! commit point of `CREATE INDEX` and `DROP INDEX`), the graphs of its data files, and
//! the background builds that give new files (from `COPY`, compaction, or files a crash
//! left without a graph) their graph. A file without a graph is simply scanned exactly
//! by index searches until its graph is saved, so results are never stale or missing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Condvar, Mutex, RwLock};
use rankql_udfs::vector::args::declared_dimension;

use super::definition::IndexDefinition;
use super::file_index::{self, graph_path, GraphView, Unindexed};
use super::IndexError;
use crate::storage::committer::DataFile;
use crate::storage::durability::sync_path;
use crate::storage::table_cache::{FileBatches, TableCache};

/// The folder under a table's directory that holds its indexes (Delta readers and
/// `VACUUM` leave folders starting with `_` alone).
pub const INDEX_DIR: &str = "_rankql_index";
/// The file listing a table's index definitions.
const DEFINITIONS_FILE: &str = "indexes.json";
/// Files with fewer rows are not worth a graph: searches scan them exactly (the stream of
/// small commits of single-row inserts makes such files until compaction merges them).
pub const MIN_GRAPH_ROWS: usize = 1024;

/// A data file's graph, opened once per `ef_search` (usearch keeps the search breadth in
/// the index object, and a memory-mapped view costs no memory of its own).
#[derive(Default)]
struct FileGraph {
    views: Mutex<HashMap<usize, Arc<GraphView>>>,
    unindexed: OnceLock<Arc<Unindexed>>,
}

/// Everything about one table's indexes.
pub struct TableIndexes {
    table: String,
    root: PathBuf,
    schema: SchemaRef,
    cache: Arc<TableCache>,
    synchronous: bool,
    definitions: RwLock<Vec<Arc<IndexDefinition>>>,
    graphs: Mutex<HashMap<PathBuf, Arc<FileGraph>>>,
    /// Graph files being built now, so each is built once.
    building: Arc<Mutex<HashSet<PathBuf>>>,
    /// Signalled each time a background build ends.
    built: Arc<Condvar>,
}

impl std::fmt::Debug for TableIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableIndexes")
            .field("table", &self.table)
            .field("definitions", &self.definitions.read())
            .finish_non_exhaustive()
    }
}

impl TableIndexes {
    /// Reads the index definitions of the table in `table_dir` and clears partial graph
    /// files a crash left behind.
    pub fn load(
        table: &str,
        table_dir: &Path,
        schema: SchemaRef,
        cache: Arc<TableCache>,
        synchronous: bool,
    ) -> Result<Self, IndexError> {
        let root = table_dir.join(INDEX_DIR);
        let definitions = read_definitions(&root)?;
        for definition in &definitions {
            remove_partial_graphs(&root.join(&definition.name));
        }
        Ok(Self {
            table: table.to_string(),
            root,
            schema,
            cache,
            synchronous,
            definitions: RwLock::new(definitions.into_iter().map(Arc::new).collect()),
            graphs: Mutex::default(),
            building: Arc::default(),
            built: Arc::default(),
        })
    }

    /// Writes the definitions that still fit a table of `schema` (the indexed column is
    /// there, with the same dimension where its type declares one) as the indexes of the
    /// new table in `table_dir`, and returns the names of those that no longer fit.
    /// `CREATE OR REPLACE TABLE` keeps a table's indexes this way, as a job that rebuilds
    /// a table every night expects; the new table builds their graphs when it opens.
    pub(crate) fn carry_over(
        &self,
        table_dir: &Path,
        schema: &SchemaRef,
    ) -> Result<Vec<String>, IndexError> {
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for definition in self.definitions() {
            let fits = schema
                .field_with_name(&definition.column)
                .is_ok_and(|field| match declared_dimension(field.data_type()) {
                    Some(dimension) => dimension == definition.dimension,
                    None => true,
                });
            match fits {
                true => kept.push(definition.as_ref().clone()),
                false => dropped.push(definition.name.clone()),
            }
        }
        if !kept.is_empty() {
            write_definitions(&table_dir.join(INDEX_DIR), &kept, self.synchronous)?;
        }
        Ok(dropped)
    }

    /// Waits until the graphs being built in the background are saved.
    pub fn wait_for_builds(&self) {
        let mut building = self.building.lock();
        while !building.is_empty() {
            self.built.wait(&mut building);
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's index definitions.
    pub fn definitions(&self) -> Vec<Arc<IndexDefinition>> {
        self.definitions.read().clone()
    }

    /// Whether the table has any index.
    pub fn is_empty(&self) -> bool {
        self.definitions.read().is_empty()
    }

    /// The definition named `name`, if the table has it.
    pub fn get(&self, name: &str) -> Option<Arc<IndexDefinition>> {
        self.definitions
            .read()
            .iter()
            .find(|definition| definition.name == name)
            .cloned()
    }

    /// The table's columns, as its data files are decoded.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn index_dir(&self, definition: &IndexDefinition) -> PathBuf {
        self.root.join(&definition.name)
    }

    /// The decoded rows of a data file.
    pub fn batches(&self, file: &Path) -> Result<FileBatches, IndexError> {
        self.cache
            .get_or_load(file, &self.schema)
            .map_err(|e| IndexError::Read(e.to_string()))
    }

    /// Adds `definition` with a graph for every data file in `files` that is large
    /// enough, built now on every core; the definition is saved last, so a crash before
    /// that leaves no index (and graph files nothing refers to).
    pub(crate) fn create(
        &self,
        definition: IndexDefinition,
        files: &[DataFile],
    ) -> Result<(), IndexError> {
        let column = self.column(&definition)?;
        let dir = self.index_dir(&definition);
        std::fs::create_dir_all(&dir).map_err(|source| IndexError::Io {
            path: dir.clone(),
            source,
        })?;
        let (started, total_bytes) = (
            std::time::Instant::now(),
            files.iter().map(|f| f.bytes).sum(),
        );
        let (mut done_bytes, mut vectors) = (0u64, 0usize);
        for (number, file) in files.iter().enumerate() {
            let batches = self.batches(&file.path)?;
            if rows(&batches) >= MIN_GRAPH_ROWS {
                let target = graph_path(&dir, &file.path);
                file_index::build(&definition, &batches, column, &target, self.synchronous)?;
            }
            done_bytes += file.bytes;
            vectors += rows(&batches);
            log_progress(
                &definition.name,
                number + 1,
                files.len(),
                vectors,
                started,
                done_bytes,
                total_bytes,
            );
        }
        let mut definitions = self.definitions.write();
        let mut saved: Vec<IndexDefinition> =
            definitions.iter().map(|d| d.as_ref().clone()).collect();
        saved.push(definition.clone());
        write_definitions(&self.root, &saved, self.synchronous)?;
        definitions.push(Arc::new(definition));
        Ok(())
    }

    /// Removes the index `name`: the definition first (the commit point), then its files.
    pub fn drop_index(&self, name: &str) -> Result<(), IndexError> {
        let mut definitions = self.definitions.write();
        let saved: Vec<IndexDefinition> = definitions
            .iter()
            .filter(|d| d.name != name)
            .map(|d| d.as_ref().clone())
            .collect();
        write_definitions(&self.root, &saved, self.synchronous)?;
        definitions.retain(|d| d.name != name);
        let dir = self.root.join(name);
        self.graphs.lock().retain(|path, _| !path.starts_with(&dir));
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(index = name, "removing a dropped index's files: {error}");
        }
        Ok(())
    }

    /// The position of the indexed column in the table's schema.
    pub fn column(&self, definition: &IndexDefinition) -> Result<usize, IndexError> {
        self.schema
            .index_of(&definition.column)
            .map_err(|_| IndexError::NoColumn {
                table: self.table.clone(),
                column: definition.column.clone(),
            })
    }

    /// The graph of `file` for `definition`, searching `ef_search` candidates, or `None`
    /// while the file has none yet (it is then scheduled for a background build).
    pub(super) fn graph(
        &self,
        definition: &IndexDefinition,
        file: &Path,
        ef_search: usize,
    ) -> Option<Arc<GraphView>> {
        let path = graph_path(&self.index_dir(definition), file);
        let graph = self.graphs.lock().get(&path).cloned();
        let graph = match graph {
            Some(graph) => graph,
            None if path.exists() => {
                let graph = Arc::new(FileGraph::default());
                self.graphs.lock().insert(path.clone(), graph.clone());
                graph
            }
            None => return None,
        };
        let mut views = graph.views.lock();
        if let Some(view) = views.get(&ef_search) {
            return Some(view.clone());
        }
        match GraphView::open(&path, ef_search) {
            Ok(view) => {
                let view = Arc::new(view);
                views.insert(ef_search, view.clone());
                Some(view)
            }
            Err(error) => {
                tracing::warn!(graph = %path.display(), "opening a graph failed, scanning \
                    its data file exactly: {error}");
                None
            }
        }
    }

    /// The rows of `file` that `definition`'s graph leaves out (NULL or zero vectors),
    /// computed once per file.
    pub(super) fn unindexed(
        &self,
        definition: &IndexDefinition,
        file: &Path,
        batches: &[RecordBatch],
    ) -> Result<Arc<Unindexed>, IndexError> {
        let path = graph_path(&self.index_dir(definition), file);
        let graph = self.graphs.lock().entry(path).or_default().clone();
        if let Some(rows) = graph.unindexed.get() {
            return Ok(rows.clone());
        }
        let rows = Arc::new(file_index::unindexed_rows(
            definition,
            batches,
            self.column(definition)?,
        )?);
        Ok(graph.unindexed.get_or_init(|| rows).clone())
    }

    /// Builds, in the background, the graphs that `files` (the table's current data
    /// files) are missing for every index, one file at a time, and closes graphs of files
    /// no longer among them.
    pub(crate) fn catch_up(self: &Arc<Self>, files: &Arc<Vec<DataFile>>) {
        let live: HashSet<std::ffi::OsString> = files
            .iter()
            .map(|file| graph_path(Path::new(""), &file.path).into_os_string())
            .collect();
        self.graphs
            .lock()
            .retain(|path, _| path.file_name().is_some_and(|name| live.contains(name)));
        let mut missing = Vec::new();
        for definition in self.definitions() {
            let dir = self.index_dir(&definition);
            for file in files.iter() {
                let target = graph_path(&dir, &file.path);
                // Graphs already opened need no look at the disk (this runs per query).
                if self.graphs.lock().contains_key(&target) {
                    continue;
                }
                if !target.exists() && self.building.lock().insert(target.clone()) {
                    missing.push((definition.clone(), file.path.clone(), target));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let indexes = self.clone();
        std::thread::spawn(move || {
            for (definition, file, target) in missing {
                let outcome = indexes.build_missing(&definition, &file, &target);
                indexes.building.lock().remove(&target);
                indexes.built.notify_all();
                if let Err(error) = outcome {
                    tracing::warn!(index = %definition.name, file = %file.display(),
                        "building a graph failed; the file is scanned exactly: {error}");
                }
            }
        });
    }

    /// Deletes graph files of data files that are no longer part of the table (replaced
    /// by compaction). Only at start: a running query may still search an older snapshot.
    pub(crate) fn remove_dead_graphs(&self, files: &[DataFile]) {
        let live: HashSet<std::ffi::OsString> = files
            .iter()
            .map(|file| graph_path(Path::new(""), &file.path).into_os_string())
            .collect();
        for definition in self.definitions() {
            let Ok(entries) = std::fs::read_dir(self.index_dir(&definition)) else {
                continue;
            };
            for entry in entries.flatten() {
                if !live.contains(&entry.file_name()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    fn build_missing(
        &self,
        definition: &IndexDefinition,
        file: &Path,
        target: &Path,
    ) -> Result<(), IndexError> {
        if self.get(&definition.name).is_none() || !file.exists() {
            return Ok(());
        }
        let batches = self.batches(file)?;
        if rows(&batches) < MIN_GRAPH_ROWS {
            return Ok(());
        }
        let column = self.column(definition)?;
        let dir = self.index_dir(definition);
        std::fs::create_dir_all(&dir).map_err(|source| IndexError::Io { path: dir, source })?;
        file_index::build(definition, &batches, column, target, self.synchronous)?;
        tracing::info!(index = %definition.name, file = %file.display(), rows = rows(&batches),
            "graph built");
        Ok(())
    }

    /// Bytes the graphs of `definition` take on disk (for `\di+`-style reporting and the
    /// benchmark).
    pub fn disk_bytes(&self, definition: &IndexDefinition) -> u64 {
        std::fs::read_dir(self.index_dir(definition))
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or_default()
    }
}

/// Logs how far `CREATE INDEX` is, per data file: files and vectors done, rate, time left
/// (estimated from the bytes of data files still to do).
fn log_progress(
    index: &str,
    files_done: usize,
    files: usize,
    vectors: usize,
    started: std::time::Instant,
    done_bytes: u64,
    total_bytes: u64,
) {
    let seconds = started.elapsed().as_secs_f64();
    let left = seconds * (total_bytes.saturating_sub(done_bytes)) as f64 / done_bytes.max(1) as f64;
    tracing::info!(
        index,
        "CREATE INDEX: {files_done} of {files} data files, {vectors} vectors ({:.0}/s), \
         about {left:.0} s left",
        vectors as f64 / seconds.max(1e-9)
    );
}

/// Rows in a file's batches.
pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn read_definitions(root: &Path) -> Result<Vec<IndexDefinition>, IndexError> {
    let path = root.join(DEFINITIONS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| IndexError::Io {
            path,
            source: std::io::Error::other(e),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(IndexError::Io { path, source }),
    }
}

/// Replaces the definitions file in one rename.
fn write_definitions(
    root: &Path,
    definitions: &[IndexDefinition],
    synchronous: bool,
) -> Result<(), IndexError> {
    let path = root.join(DEFINITIONS_FILE);
    let io_error = |source| IndexError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io_error)?;
    let partial = root.join(format!("{DEFINITIONS_FILE}.partial"));
    let json = serde_json::to_vec_pretty(definitions).map_err(|e| io_error(e.into()))?;
    std::fs::write(&partial, json).map_err(io_error)?;
    if synchronous {
        sync_path(&partial).map_err(|e| io_error(e.source))?;
    }
    std::fs::rename(&partial, &path).map_err(io_error)?;
    if synchronous {
        sync_path(root).map_err(|e| io_error(e.source))?;
    }
    Ok(())
}

fn remove_partial_graphs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if file_index::is_partial(&entry.path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
