//! A durable table as DataFusion sees it: a scan reads the newest Delta snapshot plus the
//! acknowledged rows still waiting in the write-ahead log; `INSERT` sends its rows to the
//! table's writer and returns once they are durable. The snapshot's data files are read
//! through the shared [`TableCache`] when the table fits in it (decoded once, then served
//! from memory), through Delta's own scan otherwise.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use rayon::prelude::*;

use super::committer::{Committer, Published, Snapshot};
use super::key_lookup::{KeyIndexes, LookupError, Probe};
use super::table_cache::{FileBatches, TableCache};
use super::vector_index::{IndexedScanExec, ScanSource, TableIndexes};
use super::StorageError;

/// A Delta table in the data directory, readable and appendable through SQL.
#[derive(Debug)]
pub struct DurableTable {
    name: String,
    schema: SchemaRef,
    committer: Committer,
    cache: Arc<TableCache>,
    indexes: Arc<TableIndexes>,
    keys: Arc<KeyIndexes>,
}

impl DurableTable {
    pub(crate) fn new(
        name: &str,
        committer: Committer,
        cache: Arc<TableCache>,
        indexes: Arc<TableIndexes>,
    ) -> Self {
        Self {
            name: name.to_string(),
            schema: committer.schema(),
            committer,
            cache,
            indexes,
            keys: Arc::default(),
        }
    }

    /// The table's vector indexes.
    pub fn indexes(&self) -> &Arc<TableIndexes> {
        &self.indexes
    }

    /// What a scan would read now: the published Delta files and the logged rows.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.committer.snapshot()
    }

    /// A scan of `delta`'s data files from the table cache, or `None` when the table does
    /// not fit in it. Files not cached yet are decoded now, in parallel.
    async fn cached_scan(
        &self,
        state: &dyn Session,
        delta: &Published,
        projection: Option<&Vec<usize>>,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let bytes: u64 = delta.files.iter().map(|file| file.bytes).sum();
        if delta.files.is_empty() || !self.cache.fits(bytes) {
            return Ok(None);
        }
        let (cache, files, schema) = (self.cache.clone(), delta.files.clone(), self.schema.clone());
        let loaded: Vec<FileBatches> = tokio::task::spawn_blocking(move || {
            files
                .par_iter()
                .map(|file| cache.get_or_load(&file.path, &schema))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
        .map_err(|source| StorageError::Read {
            table: self.name.clone(),
            source,
        })?;
        let batches: Vec<&RecordBatch> = loaded.iter().flat_map(|file| file.iter()).collect();
        let width = state
            .config()
            .target_partitions()
            .clamp(1, batches.len().max(1));
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); width];
        for (index, batch) in batches.into_iter().enumerate() {
            partitions[index % width].push(batch.clone());
        }
        let plan = MemorySourceConfig::try_new_exec(
            &partitions,
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(Some(plan))
    }

    /// The rows whose column `column` equals `probe`, with the columns of `projection`,
    /// found through per-file key lists instead of a scan (`key_lookup`); `None` when the
    /// table cannot be looked up that way (it does not fit in the table cache, or the
    /// column is neither integer nor text).
    pub async fn lookup(
        &self,
        column: usize,
        probe: &Probe,
        projection: &[usize],
    ) -> Result<Option<Vec<RecordBatch>>, StorageError> {
        let failed = |source| StorageError::Lookup {
            table: self.name.clone(),
            source,
        };
        let Snapshot { delta, pending } = self.committer.snapshot();
        let lists = match self.keys.ready(&delta.files, column) {
            Some(lists) => lists,
            None => {
                let (keys, cache, schema, files) = (
                    self.keys.clone(),
                    self.cache.clone(),
                    self.schema.clone(),
                    delta.files.clone(),
                );
                let built = tokio::task::spawn_blocking(move || {
                    keys.build(&cache, &schema, &files, column)
                })
                .await
                .map_err(|e| failed(LookupError::Stopped(e.to_string())))?
                .map_err(failed)?;
                match built {
                    Some(lists) => lists,
                    None => return Ok(None),
                }
            }
        };
        let rows = lists
            .find(&pending, column, probe, projection)
            .map_err(|e| failed(e.into()))?;
        Ok(Some(rows))
    }

    /// The data files of the newest Delta version, once every row acknowledged so far
    /// is committed there (waiting at most `timeout` for the write-ahead log to be
    /// committed); `None` while rows are still only in the log. Another engine (a
    /// cluster's executors) reading these files sees the table as a scan here does.
    pub async fn committed_files(&self, timeout: std::time::Duration) -> Option<Vec<PathBuf>> {
        let logged = |pending: &[RecordBatch]| pending.iter().any(|batch| batch.num_rows() > 0);
        if logged(&self.committer.snapshot().pending) {
            self.flush(timeout).await;
        }
        let Snapshot { delta, pending } = self.committer.snapshot();
        (!logged(&pending)).then(|| delta.files.iter().map(|file| file.path.clone()).collect())
    }

    /// The table's name (also its directory under `DATA_DIR/tables`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the table's writer once no commit is in flight (before its directory is
    /// removed by `DROP TABLE`).
    pub(crate) async fn stop_writer(&self) {
        self.committer.stop().await
    }

    /// Appends `batch` (in the table's schema) and returns once it is acknowledged: in
    /// the write-ahead log (forced to disk under synchronous commit) and visible to scans.
    pub async fn append(&self, batch: RecordBatch) -> Result<(), StorageError> {
        self.committer.append(vec![batch]).await
    }

    /// Commits the rows waiting in the write-ahead log to Delta, so that other Delta
    /// readers see every acknowledged row; waits at most `timeout`.
    pub async fn flush(&self, timeout: std::time::Duration) {
        self.committer.flush(timeout).await
    }
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Snapshot { delta, pending } = self.committer.snapshot();
        let cached = self.cached_scan(state, &delta, projection).await?;
        let indexable = cached.is_some() && !self.indexes.is_empty();
        let stored = match cached {
            Some(cached) => cached,
            None => {
                delta
                    .provider
                    .scan(state, projection, filters, limit)
                    .await?
            }
        };
        let scan = match pending.is_empty() {
            true => stored,
            false => {
                let logged = MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&pending),
                    self.schema.clone(),
                    projection.cloned(),
                )?;
                UnionExec::try_new(vec![stored, logged])?
            }
        };
        if !indexable {
            return Ok(scan);
        }
        // Served from the cache, so an index search can read the same files.
        let source = ScanSource {
            indexes: self.indexes.clone(),
            files: delta.files.clone(),
            pending,
            projection: projection.cloned(),
        };
        Ok(Arc::new(IndexedScanExec::new(scan, source)))
    }

    /// Delta's answer, except that no filter is `Exact`: the logged rows are not
    /// filtered by the Delta scan, so DataFusion must still apply every filter.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .committer
            .delta()
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|pushdown| match pushdown {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(StorageError::NotAppend(self.name.clone()).into());
        }
        let sink = AppendSink {
            table: self.name.clone(),
            schema: self.schema.clone(),
            committer: self.committer.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// The end of an `INSERT` plan: gathers the rows and hands them to the writer.
#[derive(Debug)]
struct AppendSink {
    table: String,
    schema: SchemaRef,
    committer: Committer,
}

impl DisplayAs for AppendSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "DurableAppend: table={}", self.table)
    }
}

#[async_trait]
impl DataSink for AppendSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows > 0 {
            self.committer.append(batches).await?;
        }
        Ok(rows)
    }
}
