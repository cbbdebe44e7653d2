//! One writer per durable table, and the state its readers scan.
//!
//! Small appends (single-row `INSERT`s from many connections) go to the table's
//! write-ahead log and are acknowledged as soon as the log has them; from that moment
//! they are also part of what every scan reads ([`Snapshot::pending`]). The writer task
//! moves the logged rows into Delta at most every [`WriterPolicy::commit_interval`], all
//! of them in one commit that also records the log position it covers, then publishes
//! the new Delta snapshot and forgets those rows in one step, so a scan sees every row
//! exactly once.
//! Large appends (`COPY`, `INSERT … SELECT`) skip the log: they are committed to Delta
//! directly, grouped when several arrive while a commit is in flight, and acknowledged
//! once the commit is in the Delta log. Every `commits_between_compactions` commits the
//! small files are compacted (Delta's `OPTIMIZE`).
//!
//! With [`WriterPolicy::synchronous_commit`] on, "in the log" and "in Delta" mean forced to
//! disk (`durability`): a logged append waits for a sync that covers it, shared with every
//! append that arrived meanwhile (group commit).

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::operations::optimize::OptimizeType;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::DeltaTable;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::durability::{sync_commit, sync_commit_and_data, sync_paths, SyncError};
use super::wal::{LoggedAppend, WriteAheadLog, WAL_APP_ID, WAL_DIR};
use super::StorageError;

/// How a table's writer batches and compacts.
#[derive(Debug, Clone, Copy)]
pub struct WriterPolicy {
    /// Shortest time between two commits of logged rows to Delta. It bounds the CPU spent
    /// on Delta commits (tens of milliseconds each) and how far other Delta readers lag
    /// behind; rankql's own queries see logged rows at once either way.
    pub commit_interval: Duration,
    /// Compact after this many commits since the last compaction.
    pub commits_between_compactions: usize,
    /// Files are packed up to this size; larger files are left alone.
    pub target_file_bytes: u64,
    /// Force every write to disk before acknowledging it (PostgreSQL's
    /// `synchronous_commit = on`): what is acknowledged survives a power cut, not only a
    /// crash of rankql. Off, a power cut can lose the last moments of acknowledged writes.
    pub synchronous_commit: bool,
}

impl Default for WriterPolicy {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_millis(100),
            commits_between_compactions: 64,
            target_file_bytes: 32 << 20,
            synchronous_commit: true,
        }
    }
}
/// Longest wait before retrying a failed commit of logged rows.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Appends of at least this many rows are committed to Delta directly: the log would
/// only write them twice.
const DIRECT_COMMIT_ROWS: usize = 4096;
/// Most logged rows kept waiting while Delta commits fail; beyond it appends are
/// refused, so a broken disk cannot grow memory without bound.
const MAX_PENDING_ROWS: usize = 1_000_000;
/// Most direct appends folded into one commit, so one commit's memory stays bounded.
const MAX_APPENDS_PER_COMMIT: usize = 4096;

/// What a scan of the table reads.
pub(crate) struct Snapshot {
    /// The newest published Delta snapshot.
    pub delta: Published,
    /// Acknowledged rows that are in the write-ahead log but not yet in `delta`.
    pub pending: Vec<RecordBatch>,
}

/// A committed version of the table, as scans read it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Delta's own provider for the version.
    pub provider: Arc<dyn TableProvider>,
    /// The version's data files (what the table cache reads instead).
    pub files: Arc<Vec<DataFile>>,
}

/// One Parquet data file of a published version.
#[derive(Debug, Clone)]
pub(crate) struct DataFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
}

impl Published {
    /// The version `table` holds now; its files live under `dir`.
    async fn of(table: &DeltaTable, dir: &Path) -> Result<Self, deltalake_core::DeltaTableError> {
        let provider = table.table_provider().await?;
        let files = table
            .snapshot()?
            .log_data()
            .into_iter()
            .map(|file| DataFile {
                path: dir.join(file.path().as_ref()),
                bytes: u64::try_from(file.size()).unwrap_or_default(),
            })
            .collect();
        Ok(Self {
            provider,
            files: Arc::new(files),
        })
    }
}

/// The handle through which a table is read and appended to.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
}

/// State shared by the handles and the writer task.
#[derive(Debug)]
struct Shared {
    table: String,
    /// The table's schema as scans produce it; logged rows are kept in it.
    schema: SchemaRef,
    state: Mutex<State>,
    /// Woken when logged rows wait for a commit.
    flush_wanted: Notify,
    /// Whether appends wait for the log to be forced to disk.
    synchronous: bool,
    /// Set while one task syncs the log (the others wait for its result).
    syncing: AtomicBool,
    /// Every append through this sequence number is forced to disk; every waiting
    /// append is woken at once when it moves.
    synced: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    delta: Published,
    pending: Vec<LoggedAppend>,
    pending_rows: usize,
    log: WriteAheadLog,
    next_seq: u64,
    /// Why the last commit of logged rows failed, until one succeeds.
    last_error: Option<String>,
    /// Set when the table is dropped: no more appends.
    stopped: bool,
    /// Why a sync of the log failed, if one did: appends are refused from then on.
    sync_failed: Option<String>,
}

enum Request {
    /// A large append, committed directly; answered once durable.
    Commit(DirectAppend),
    /// Commit the logged rows now; answered when done (used when the server stops).
    Flush(oneshot::Sender<()>),
    /// Stop for good, answered once no commit is in flight (the table is being dropped).
    Stop(oneshot::Sender<()>),
}

struct DirectAppend {
    batches: Vec<RecordBatch>,
    acknowledged: oneshot::Sender<Result<(), StorageError>>,
}

impl Committer {
    /// Opens the write-ahead log in the table's directory `dir`, takes back the rows
    /// that a crash left there, and starts the writer task of `table` on `runtime`.
    /// The task runs until every handle is dropped.
    pub(crate) async fn start(
        name: &str,
        dir: &Path,
        table: DeltaTable,
        policy: WriterPolicy,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, StorageError> {
        let failed = |e| StorageError::delta(name, e);
        let delta = Published::of(&table, dir).await.map_err(failed)?;
        let committed = committed_log_position(&table)
            .await
            .map_err(failed)?
            .unwrap_or(0);
        let recovered =
            WriteAheadLog::open(&dir.join(WAL_DIR), committed, policy.synchronous_commit).map_err(
                |source| StorageError::Log {
                    table: name.to_string(),
                    source,
                },
            )?;
        let pending_rows = rows_of(&recovered.uncommitted);
        let shared = Arc::new(Shared {
            table: name.to_string(),
            schema: delta.provider.schema(),
            state: Mutex::new(State {
                delta,
                pending: recovered.uncommitted,
                pending_rows,
                log: recovered.log,
                next_seq: recovered.next_seq,
                last_error: None,
                stopped: false,
                sync_failed: None,
            }),
            flush_wanted: Notify::new(),
            synchronous: policy.synchronous_commit,
            syncing: AtomicBool::new(false),
            synced: watch::Sender::new(0),
        });
        if pending_rows > 0 {
            tracing::info!(table = %name, rows = pending_rows, "rows from the write-ahead log are being committed");
            shared.flush_wanted.notify_one();
        }
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            shared: shared.clone(),
            table,
            policy,
            session: Arc::new(deltalake_core::delta_datafusion::create_session().state()),
            commits_since_compaction: 0,
            dir: dir.to_path_buf(),
        };
        runtime.spawn(writer.run(queue));
        Ok(Self { shared, requests })
    }

    /// The table's schema as scans produce it.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.shared.schema.clone()
    }

    /// What a scan starting now reads.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.shared.lock();
        Snapshot {
            delta: state.delta.clone(),
            pending: state
                .pending
                .iter()
                .flat_map(|append| append.batches.iter().cloned())
                .collect(),
        }
    }

    /// The newest published Delta snapshot's provider alone (planning needs no rows).
    pub(crate) fn delta(&self) -> Arc<dyn TableProvider> {
        self.shared.lock().delta.provider.clone()
    }

    /// Appends `batches` and returns once they are durable and visible to new scans.
    pub(crate) async fn append(&self, batches: Vec<RecordBatch>) -> Result<(), StorageError> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows >= DIRECT_COMMIT_ROWS {
            return self.commit_directly(batches).await;
        }
        let batches = batches
            .iter()
            .map(|batch| cast_batch(batch, &self.shared.schema))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StorageError::Rows {
                table: self.shared.table.clone(),
                source,
            })?;
        let seq = {
            let mut state = self.shared.lock();
            if state.stopped {
                return Err(StorageError::WriterGone(self.shared.table.clone()));
            }
            if let Some(reason) = &state.sync_failed {
                return Err(StorageError::LogNotDurable {
                    table: self.shared.table.clone(),
                    reason: reason.clone(),
                });
            }
            if let Some(last_error) = &state.last_error {
                if state.pending_rows + rows > MAX_PENDING_ROWS {
                    return Err(StorageError::Backlog {
                        table: self.shared.table.clone(),
                        rows: state.pending_rows,
                        last_error: last_error.clone(),
                    });
                }
            }
            let seq = state.next_seq;
            state
                .log
                .append(seq, &batches)
                .map_err(|source| StorageError::Log {
                    table: self.shared.table.clone(),
                    source,
                })?;
            state.next_seq += 1;
            state.pending_rows += rows;
            state.pending.push(LoggedAppend { seq, batches });
            seq
        };
        self.shared.flush_wanted.notify_one();
        if self.shared.synchronous {
            self.shared.make_durable(seq).await?;
        }
        Ok(())
    }

    /// Commits the logged rows to Delta now, so Delta readers see everything
    /// acknowledged so far. Waits at most `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(timeout, finished).await;
        }
    }

    /// Stops the writer and waits until no commit is in flight, so the table's directory
    /// can be removed: a late commit would otherwise recreate files in it. Rows still in
    /// the log are discarded with the table.
    pub(crate) async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
    }

    async fn commit_directly(&self, batches: Vec<RecordBatch>) -> Result<(), StorageError> {
        let gone = || StorageError::WriterGone(self.shared.table.clone());
        let (acknowledged, outcome) = oneshot::channel();
        self.requests
            .send(Request::Commit(DirectAppend {
                batches,
                acknowledged,
            }))
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Returns once append `seq` is forced to disk. At most one task syncs at a time,
    /// covering every append written before it started; appends that arrive meanwhile
    /// wait for its result, all woken at once, and one of those still uncovered syncs
    /// next (group commit: a sync per round trip of the disk, not per append).
    async fn make_durable(self: &Arc<Self>, seq: u64) -> Result<(), StorageError> {
        let mut synced = self.synced.subscribe();
        loop {
            if *synced.borrow_and_update() >= seq {
                return Ok(());
            }
            if let Some(reason) = &self.lock().sync_failed {
                return Err(StorageError::LogNotDurable {
                    table: self.table.clone(),
                    reason: reason.clone(),
                });
            }
            let elected = self
                .syncing
                .compare_exchange(false, true, AtomicOrdering::AcqRel, AtomicOrdering::Acquire)
                .is_ok();
            if elected {
                // Its own task: a caller that goes away (its client disconnected) must not
                // leave the flag set with no sync running.
                let shared = self.clone();
                tokio::spawn(async move { shared.sync_log().await });
            }
            if synced.changed().await.is_err() {
                return Err(StorageError::WriterGone(self.table.clone()));
            }
        }
    }

    /// One sync of everything logged so far, by the elected task: publishes the new
    /// durable position (or the failure), then lets the next task be elected.
    async fn sync_log(&self) {
        let unsynced = self.lock().log.take_unsynced();
        let through = unsynced.through;
        let outcome = tokio::task::spawn_blocking(move || unsynced.sync())
            .await
            .unwrap_or_else(|panicked| Err(std::io::Error::other(panicked.to_string())));
        let durable = match outcome {
            Ok(()) => through,
            Err(error) => {
                tracing::error!(table = %self.table, "syncing the write-ahead log failed: {error}");
                self.lock().sync_failed = Some(error.to_string());
                0
            }
        };
        // Clear the flag before publishing: a waiter woken by the publication that finds
        // its append still uncovered must be able to become the next syncer. A failure
        // publishes no new position but still wakes the waiters, who then see it.
        self.syncing.store(false, AtomicOrdering::Release);
        self.synced
            .send_modify(|position| *position = (*position).max(durable));
    }
}

/// The writer task's state: the table as of its last commit.
struct Writer {
    shared: Arc<Shared>,
    table: DeltaTable,
    policy: WriterPolicy,
    session: Arc<dyn Session>,
    commits_since_compaction: usize,
    /// The table's directory, whose files synchronous commit forces to disk.
    dir: PathBuf,
}

impl Writer {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        // When the logged rows are to be committed (`None`: nothing waits), and the
        // earliest time the next such commit may start.
        let mut due: Option<Instant> = None;
        let mut earliest = Instant::now();
        let mut retry_interval = self.policy.commit_interval;
        loop {
            let timer = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Commit(first)) => {
                        if let Some(done) = self.commit_requests(first, &mut requests).await {
                            self.stop(done);
                            break;
                        }
                    }
                    Some(Request::Flush(done)) => {
                        self.commit_log().await;
                        let _ = done.send(());
                    }
                    Some(Request::Stop(done)) => {
                        self.stop(done);
                        break;
                    }
                    None => break,
                },
                () = self.shared.flush_wanted.notified(), if due.is_none() => {
                    due = Some(earliest.max(Instant::now()));
                }
                () = timer => {
                    if self.commit_log().await {
                        retry_interval = self.policy.commit_interval;
                        due = None;
                    } else {
                        retry_interval = (retry_interval * 2)
                            .min(MAX_RETRY_INTERVAL)
                            .max(self.policy.commit_interval);
                        due = Some(Instant::now() + retry_interval);
                    }
                    earliest = Instant::now() + self.policy.commit_interval;
                }
            }
            if self.commits_since_compaction >= self.policy.commits_between_compactions {
                self.compact().await;
            }
        }
        tracing::debug!(table = %self.shared.table, "writer stopped");
    }

    /// Commits `first` with the direct appends queued behind it, in one group. Flush
    /// requests found in the queue are answered after it; a stop request found there is
    /// returned, for the writer loop to honour.
    async fn commit_requests(
        &mut self,
        first: DirectAppend,
        requests: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Option<oneshot::Sender<()>> {
        let mut group = vec![first];
        let mut flushes = Vec::new();
        let mut stop = None;
        while group.len() < MAX_APPENDS_PER_COMMIT && stop.is_none() {
            match requests.try_recv() {
                Ok(Request::Commit(next)) => group.push(next),
                Ok(Request::Flush(done)) => flushes.push(done),
                Ok(Request::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        self.commit_group(group).await;
        if !flushes.is_empty() {
            self.commit_log().await;
            for done in flushes {
                let _ = done.send(());
            }
        }
        stop
    }

    /// Refuses further appends and answers the stop request.
    fn stop(&self, done: oneshot::Sender<()>) {
        self.shared.lock().stopped = true;
        let _ = done.send(());
    }

    /// Moves every logged row into Delta in one commit that records the log position it
    /// covers; then, in one step, publishes the snapshot and drops those rows from the
    /// pending set. Returns false (rows kept, to retry) if the commit failed.
    async fn commit_log(&mut self) -> bool {
        let retrying = self.shared.lock().last_error.is_some();
        if retrying {
            self.forget_committed_log().await;
        }
        let (through, batches) = {
            let mut state = self.shared.lock();
            let Some(through) = state.pending.last().map(|append| append.seq) else {
                return true;
            };
            if let Err(error) = state.log.seal() {
                // Appends keep going to the current segment; it is deleted later.
                tracing::warn!(table = %self.shared.table, "{error}");
            }
            let batches: Vec<RecordBatch> = state
                .pending
                .iter()
                .flat_map(|append| append.batches.iter().cloned())
                .collect();
            (through, batches)
        };
        match self.commit(batches, Some(through)).await {
            Ok(()) => {
                let delta = self.current_snapshot().await;
                self.settle_log(delta, through);
                self.shared.lock().last_error = None;
                true
            }
            Err(error) => {
                tracing::warn!(table = %self.shared.table, "committing logged rows failed, will retry: {error}");
                self.shared.lock().last_error = Some(error.to_string());
                false
            }
        }
    }

    /// Publishes `delta` and forgets the logged rows through `through` in one step, so a
    /// scan sees them either pending or in Delta, never both. The rows are forgotten even
    /// when no snapshot could be built (`None`): they are in Delta, and committing them
    /// again would store them twice.
    fn settle_log(&self, delta: Option<Published>, through: u64) {
        let mut state = self.shared.lock();
        if let Some(delta) = delta {
            state.delta = delta;
        }
        state.pending.retain(|append| append.seq > through);
        state.pending_rows = rows_of(&state.pending);
        state.log.release_through(through);
    }

    /// After a failed commit of logged rows: reloads the table and drops the pending rows
    /// that Delta holds after all (a commit can land and still report an error, for
    /// instance when writing the checkpoint after it fails), so a retry never stores them
    /// twice.
    async fn forget_committed_log(&mut self) {
        let position = match self.table.update_state().await {
            Ok(()) => committed_log_position(&self.table).await,
            Err(error) => Err(error),
        };
        match position {
            Ok(Some(through)) => {
                let delta = self.current_snapshot().await;
                self.settle_log(delta, through);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(table = %self.shared.table, "reloading the table after a failed commit: {error}")
            }
        }
    }

    /// Commits a group of direct appends together. If that fails and the group has
    /// several appends, each is retried alone, so one bad request cannot fail the others.
    async fn commit_group(&mut self, group: Vec<DirectAppend>) {
        let batches: Vec<RecordBatch> = group
            .iter()
            .flat_map(|append| append.batches.iter().cloned())
            .collect();
        match self.commit_and_publish(batches).await {
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
                tracing::warn!(table = %self.shared.table, "group commit failed ({error}); retrying its appends one by one");
                for append in group {
                    let outcome = self.commit_and_publish(append.batches).await;
                    let _ = append.acknowledged.send(outcome);
                }
            }
        }
    }

    async fn commit_and_publish(&mut self, batches: Vec<RecordBatch>) -> Result<(), StorageError> {
        self.commit(batches, None).await?;
        if let Some(delta) = self.current_snapshot().await {
            self.shared.lock().delta = delta;
        }
        Ok(())
    }

    /// The table as of the writer's last commit, for scans; `None` (logged) if it cannot
    /// be built, in which case scans keep reading the previous snapshot.
    async fn current_snapshot(&self) -> Option<Published> {
        match Published::of(&self.table, &self.dir).await {
            Ok(delta) => Some(delta),
            Err(error) => {
                tracing::error!(
                    table = %self.shared.table,
                    "committed, but the new snapshot cannot be read yet: {error}"
                );
                None
            }
        }
    }

    /// One Delta commit of `batches`: Parquet files first, then the log entry that makes
    /// them part of the table; `log_through` is recorded with it when the rows come from
    /// the write-ahead log. Delta's streaming writer, not its planned `write` operation:
    /// for a few rows the planning would cost more than the I/O.
    async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        log_through: Option<u64>,
    ) -> Result<(), StorageError> {
        let table_name = self.shared.table.clone();
        let failed = |e| StorageError::delta(&table_name, e);
        let mut writer = RecordBatchWriter::for_table(&self.table).map_err(failed)?;
        // Scans see strings as Utf8View; the writer takes the table's stored types.
        let stored = writer.arrow_schema();
        for batch in batches {
            let batch = cast_batch(&batch, &stored).map_err(|e| failed(e.into()))?;
            writer.write(batch).await.map_err(failed)?;
        }
        let properties = match log_through {
            Some(seq) => CommitProperties::default().with_application_transaction(
                Transaction::new(WAL_APP_ID, i64::try_from(seq).unwrap_or(i64::MAX)),
            ),
            None => CommitProperties::default(),
        };
        let adds = writer.flush().await.map_err(failed)?;
        if self.shared.synchronous {
            let files: Vec<PathBuf> = adds.iter().map(|add| self.dir.join(&add.path)).collect();
            self.sync(move || sync_paths(files.iter().map(PathBuf::as_path)))
                .await?;
        }
        let committed = CommitBuilder::from(properties)
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(
                Some(self.table.snapshot().map_err(failed)?),
                self.table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .map_err(failed)?;
        let version = committed.version();
        self.table.state = Some(committed.snapshot());
        self.commits_since_compaction += 1;
        if self.shared.synchronous {
            let dir = self.dir.clone();
            self.sync(move || sync_commit(&dir, version)).await?;
        }
        Ok(())
    }

    /// Runs a blocking sync off the async workers.
    async fn sync(
        &self,
        work: impl FnOnce() -> Result<(), SyncError> + Send + 'static,
    ) -> Result<(), StorageError> {
        let table = self.shared.table.clone();
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|panicked| {
                Err(SyncError {
                    path: self.dir.clone(),
                    source: std::io::Error::other(panicked.to_string()),
                })
            })
            .map_err(|source| StorageError::Sync { table, source })
    }

    /// Packs small files into larger ones. Failure is logged and leaves the table as it
    /// was: compaction is an optimisation, never a correctness step.
    async fn compact(&mut self) {
        self.commits_since_compaction = 0;
        let mut optimize = self
            .table
            .clone()
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_session_state(self.session.clone());
        if let Some(target) = NonZeroU64::new(self.policy.target_file_bytes.max(1)) {
            optimize = optimize.with_target_size(target);
        }
        match optimize.await {
            Ok((table, metrics)) => {
                tracing::info!(
                    table = %self.shared.table,
                    files_removed = metrics.num_files_removed,
                    files_added = metrics.num_files_added,
                    "compacted"
                );
                if self.shared.synchronous && metrics.num_files_added > 0 {
                    let dir = self.dir.clone();
                    let version = table.version().unwrap_or_default();
                    if let Err(error) = self.sync(move || sync_commit_and_data(&dir, version)).await
                    {
                        tracing::warn!(table = %self.shared.table, "{error}");
                    }
                }
                self.table = table;
                if let Some(delta) = self.current_snapshot().await {
                    self.shared.lock().delta = delta;
                }
            }
            Err(error) => {
                tracing::warn!(table = %self.shared.table, "compaction failed: {error}")
            }
        }
    }
}

/// The last log sequence number a commit of `table` recorded (its `txn` action), if any.
async fn committed_log_position(
    table: &DeltaTable,
) -> Result<Option<u64>, deltalake_core::DeltaTableError> {
    let version = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), WAL_APP_ID)
        .await?;
    Ok(version.and_then(|version| u64::try_from(version).ok()))
}

fn rows_of(appends: &[LoggedAppend]) -> usize {
    appends
        .iter()
        .flat_map(|append| &append.batches)
        .map(RecordBatch::num_rows)
        .sum()
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
