//! One writer per durable table. Appends queue up while a commit is in flight and go
//! into the next commit together (group commit), so 16 connections sending single-row
//! INSERTs cost one Delta commit per round trip of the disk, not one per row. A request
//! is acknowledged only once the commit holding its rows is in the log, and readers get
//! the new snapshot before anyone is told. Every `small_files` commits, the small files
//! are compacted into larger ones (Delta's `OPTIMIZE`), so the table does not degrade
//! into thousands of tiny files.

use std::num::NonZeroU64;
use std::sync::{Arc, RwLock};

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use deltalake_core::operations::optimize::OptimizeType;
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::DeltaTable;
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// When the writer compacts a table's small files.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// Compact after this many commits since the last compaction.
    pub commits_between_compactions: usize,
    /// Files are packed up to this size; larger files are left alone.
    pub target_file_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            commits_between_compactions: 64,
            target_file_bytes: 32 << 20,
        }
    }
}

/// The newest committed snapshot, as the table readers scan. Swapped by the writer after
/// each commit.
pub(crate) type Published = Arc<RwLock<Arc<dyn TableProvider>>>;

/// Most appends folded into one commit, so one commit's memory stays bounded.
const MAX_APPENDS_PER_COMMIT: usize = 4096;

/// The handle through which a table's rows reach its writer task.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    table: String,
    requests: mpsc::UnboundedSender<Append>,
}

/// Rows waiting for a commit, and where to say it happened.
struct Append {
    batches: Vec<RecordBatch>,
    acknowledged: oneshot::Sender<Result<(), StorageError>>,
}

impl Committer {
    /// Starts the writer task of `table` on `runtime`. It runs until every handle is dropped.
    pub(crate) fn start(
        name: &str,
        table: DeltaTable,
        published: Published,
        policy: CompactionPolicy,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            name: name.to_string(),
            table,
            published,
            policy,
            session: Arc::new(deltalake_core::delta_datafusion::create_session().state()),
            commits_since_compaction: 0,
        };
        runtime.spawn(writer.run(queue));
        Self {
            table: name.to_string(),
            requests,
        }
    }

    /// Appends `batches` in one commit (possibly shared with other appends) and returns
    /// once that commit is durable.
    pub(crate) async fn append(&self, batches: Vec<RecordBatch>) -> Result<(), StorageError> {
        let (acknowledged, outcome) = oneshot::channel();
        self.requests
            .send(Append {
                batches,
                acknowledged,
            })
            .map_err(|_| StorageError::WriterGone(self.table.clone()))?;
        outcome
            .await
            .map_err(|_| StorageError::WriterGone(self.table.clone()))?
    }
}

/// The writer task's state: the table as of its last commit.
struct Writer {
    name: String,
    table: DeltaTable,
    published: Published,
    policy: CompactionPolicy,
    session: Arc<dyn Session>,
    commits_since_compaction: usize,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Append>) {
        while let Some(first) = queue.recv().await {
            let mut group = vec![first];
            while group.len() < MAX_APPENDS_PER_COMMIT {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
            if self.commits_since_compaction >= self.policy.commits_between_compactions {
                self.compact().await;
            }
        }
        tracing::debug!(table = %self.name, "writer stopped");
    }

    /// Commits a group of appends together. If that fails and the group has several
    /// appends, each is retried alone, so one bad request cannot fail the others.
    async fn commit_group(&mut self, group: Vec<Append>) {
        let batches: Vec<RecordBatch> = group
            .iter()
            .flat_map(|append| append.batches.iter().cloned())
            .collect();
        match self.commit(batches).await {
            Ok(()) => {
                for append in group {
                    let _ = append.acknowledged.send(Ok(()));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(append) = group.into_iter().next() {
                    let _ = append.acknowledged.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(table = %self.name, "group commit failed ({error}); retrying its appends one by one");
                for append in group {
                    let outcome = self.commit(append.batches).await;
                    let _ = append.acknowledged.send(outcome);
                }
            }
        }
    }

    /// One Delta commit of `batches`: Parquet files first, then the log entry that makes
    /// them part of the table. Delta's streaming writer, not its planned `write`
    /// operation: for a handful of rows the planning would cost more than the I/O.
    async fn commit(&mut self, batches: Vec<RecordBatch>) -> Result<(), StorageError> {
        let failed = |e| StorageError::delta(&self.name, e);
        let mut writer = RecordBatchWriter::for_table(&self.table).map_err(failed)?;
        // Readers see strings as Utf8View; the writer takes the table's stored types.
        let stored = writer.arrow_schema();
        for batch in batches {
            let batch = cast_batch(&batch, &stored).map_err(|e| failed(e.into()))?;
            writer.write(batch).await.map_err(failed)?;
        }
        let mut table = self.table.clone();
        writer.flush_and_commit(&mut table).await.map_err(failed)?;
        self.table = table;
        self.commits_since_compaction += 1;
        self.publish().await;
        Ok(())
    }

    /// Packs small files into larger ones. Failure is logged and leaves the table as it
    /// was: compaction is an optimisation, never a correctness step.
    async fn compact(&mut self) {
        self.commits_since_compaction = 0;
        let target = NonZeroU64::new(self.policy.target_file_bytes.max(1));
        let mut optimize = self
            .table
            .clone()
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_session_state(self.session.clone());
        if let Some(target) = target {
            optimize = optimize.with_target_size(target);
        }
        match optimize.await {
            Ok((table, metrics)) => {
                tracing::info!(
                    table = %self.name,
                    files_removed = metrics.num_files_removed,
                    files_added = metrics.num_files_added,
                    "compacted"
                );
                self.table = table;
                self.publish().await;
            }
            Err(error) => tracing::warn!(table = %self.name, "compaction failed: {error}"),
        }
    }

    /// Makes the current snapshot the one readers scan.
    async fn publish(&self) {
        match self.table.table_provider().await {
            Ok(provider) => match self.published.write() {
                Ok(mut current) => *current = provider,
                Err(poisoned) => *poisoned.into_inner() = provider,
            },
            Err(error) => tracing::error!(
                table = %self.name,
                "committed, but the new snapshot cannot be read yet: {error}"
            ),
        }
    }
}

/// `batch` with its columns cast to `schema`'s types.
pub(crate) fn cast_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}
