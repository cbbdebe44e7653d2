//! The `public` schema of a server with a data directory. DataFusion runs `CREATE TABLE`
//! (with or without `AS SELECT`) by building an in-memory table and registering it here;
//! this schema writes it out as a Delta table in one atomic commit and registers the
//! durable table instead. `DROP TABLE` deletes the table's directory. Other tables
//! (views, external files, the demo) stay in memory, as before.
//!
//! Every change of `tables/` is one rename, so a crash at any moment leaves each table
//! whole, before or after: `DROP` renames the table into `.trash/` before deleting it;
//! `CREATE` writes into a directory whose first Delta commit is what makes it a table (a
//! directory without one is an unfinished `CREATE`, cleared at start);
//! `CREATE OR REPLACE` ([`DurableSchema::replace`]) writes the new table beside the old
//! one under a staging name and renames it into place, and a start that finds a complete
//! staged table with no table in place finishes that rename.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableBuilder};

use super::committer::{cast_batch, Committer, WriterPolicy};
use super::durability::{has_commit, sync_commit_and_data, sync_path};
use super::vector_index::TableIndexes;
use super::{DurableTable, StorageError, TableCache};

/// Where durable tables live inside the data directory.
pub const TABLES_DIR: &str = "tables";
/// Where dropped tables are moved before they are deleted, so a crash mid-delete never
/// leaves half a table under `tables/`.
const TRASH_DIR: &str = ".trash";
/// Prefix of the directory `CREATE OR REPLACE` writes the new table into (under
/// `tables/`; not a storable table name, so never loaded as a table).
const STAGING_PREFIX: &str = ".replacing-";
/// Delta properties of the tables rankql creates. A stream of small commits must not
/// make each commit slower than the last: every commit re-reads the log written since
/// the last checkpoint and lists the log directory, so checkpoint every 10 commits and
/// delete log entries older than a minute (once a checkpoint covers them). The price is
/// time travel beyond a minute, which rankql does not offer.
const TABLE_PROPERTIES: [(&str, &str); 2] = [
    ("delta.checkpointInterval", "10"),
    ("delta.logRetentionDuration", "interval 1 minute"),
];
/// How long closing waits for each table's logged rows to reach Delta; whatever is
/// still in a log then is committed at the next start.
const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The lock file that keeps a second rankql process off the same data directory.
pub const LOCK_FILE: &str = ".lock";

/// The schema whose base tables are durable Delta tables in the data directory.
pub struct DurableSchema {
    tables_dir: PathBuf,
    trash_dir: PathBuf,
    tables: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    policy: WriterPolicy,
    /// Decoded data files, shared by every table of the directory.
    cache: Arc<TableCache>,
    /// The writers' runtime; taken (and shut down) by [`DurableSchema::close`].
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    lock: File,
}

impl std::fmt::Debug for DurableSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSchema")
            .field("tables_dir", &self.tables_dir)
            .finish_non_exhaustive()
    }
}

impl DurableSchema {
    /// Opens (creating if needed) the data directory `root`, takes its lock, and loads
    /// every Delta table under `root/tables`; their scans read through `cache`.
    pub async fn open(
        root: &Path,
        policy: WriterPolicy,
        cache: Arc<TableCache>,
    ) -> Result<Self, StorageError> {
        let io_error = |dir: &Path| {
            let dir = dir.to_path_buf();
            move |source| StorageError::DataDir { dir, source }
        };
        let tables_dir = root.join(TABLES_DIR);
        let trash_dir = root.join(TRASH_DIR);
        std::fs::create_dir_all(&tables_dir).map_err(io_error(&tables_dir))?;
        let lock = File::create(root.join(LOCK_FILE)).map_err(io_error(root))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked(root.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(io_error(root)(source));
            }
        }
        if trash_dir.exists() {
            std::fs::remove_dir_all(&trash_dir).map_err(io_error(&trash_dir))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rankql-writer")
            .enable_all()
            .build()
            .map_err(io_error(root))?;
        let schema = Self {
            tables_dir,
            trash_dir,
            tables: RwLock::new(HashMap::new()),
            policy,
            cache,
            handle: runtime.handle().clone(),
            runtime: std::sync::Mutex::new(Some(runtime)),
            lock,
        };
        schema.load_tables().await?;
        Ok(schema)
    }

    /// Registers a table that is not to be stored (the demo's generated tables).
    pub fn register_transient(&self, name: &str, table: Arc<dyn TableProvider>) -> DfResult<()> {
        let mut tables = self.write_tables();
        if tables.contains_key(name) {
            return Err(DataFusionError::Execution(format!(
                "table {name} already exists in the data directory; the demo table of that \
                 name is not loaded"
            )));
        }
        tables.insert(name.to_string(), table);
        Ok(())
    }

    async fn load_tables(&self) -> Result<(), StorageError> {
        let entries =
            std::fs::read_dir(&self.tables_dir).map_err(|source| StorageError::DataDir {
                dir: self.tables_dir.clone(),
                source,
            })?;
        let mut directories: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_dir())
            .collect();
        directories.sort();
        for staged in directories
            .iter()
            .filter(|path| staged_table(path).is_some())
        {
            self.finish_replace(staged)?;
        }
        for path in directories {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|name| is_storable_name(name))
                .map(str::to_string)
            else {
                continue;
            };
            if !path.exists() {
                continue;
            }
            if !has_commit(&path) {
                tracing::warn!(
                    path = %path.display(),
                    "no Delta commit: a CREATE TABLE cut short by a crash (never acknowledged); removed"
                );
                let trashed = self.move_to_trash(&path)?;
                self.delete_trash(&trashed);
                continue;
            }
            let table = self.run(open_table(path.clone(), name.clone())).await?;
            let durable = durable_table(
                &name,
                &path,
                table,
                self.policy,
                self.cache.clone(),
                self.handle(),
            )
            .await?;
            tracing::info!(table = %name, "durable table loaded");
            self.write_tables().insert(name, Arc::new(durable));
        }
        Ok(())
    }

    /// At start, for a staged `CREATE OR REPLACE` table at `staged`: if it is complete and
    /// the old table is already gone (the crash came between the two renames), it becomes
    /// the table; otherwise the replace never happened and it is removed.
    fn finish_replace(&self, staged: &Path) -> Result<(), StorageError> {
        let Some(name) = staged_table(staged) else {
            return Ok(());
        };
        let target = self.tables_dir.join(name);
        if has_commit(staged) && !target.exists() {
            tracing::info!(table = %name, "finishing a CREATE OR REPLACE cut short by a crash");
            std::fs::rename(staged, &target).map_err(|source| StorageError::DataDir {
                dir: target.clone(),
                source,
            })?;
            return self.sync_dir(&self.tables_dir);
        }
        let trashed = self.move_to_trash(staged)?;
        self.delete_trash(&trashed);
        Ok(())
    }

    /// Writes a new table with its first rows in one commit.
    fn create_durable(&self, name: &str, memory: &MemTable) -> Result<DurableTable, StorageError> {
        if !is_storable_name(name) {
            return Err(StorageError::BadTableName(name.to_string()));
        }
        let path = self.tables_dir.join(name);
        if path.exists() {
            // A directory without a table entry is what a crash during CREATE leaves.
            self.move_to_trash(&path)?;
        }
        let table = self.write_new_table(name, &path, memory)?;
        self.sync_dir(&self.tables_dir)?;
        self.start_table(name, table)
    }

    /// `CREATE OR REPLACE TABLE name …` for a durable table: the new rows are written to a
    /// staging directory, the old table is stopped and renamed into the trash, the staged
    /// one renamed into its place. Readers and a crash see the old table or the new one,
    /// never neither; a failure before the swap leaves the old table as it was.
    pub fn replace(&self, name: &str, memory: &MemTable) -> Result<(), StorageError> {
        if !is_storable_name(name) {
            return Err(StorageError::BadTableName(name.to_string()));
        }
        let staged = self.tables_dir.join(format!("{STAGING_PREFIX}{name}"));
        if staged.exists() {
            self.move_to_trash(&staged)?;
        }
        self.write_new_table(name, &staged, memory)?;
        let old = self.read_tables().get(name).cloned();
        if let Some(old) = old.as_ref().and_then(|t| t.downcast_ref::<DurableTable>()) {
            let dropped = old
                .indexes()
                .carry_over(&staged, &delta_schema(&memory.schema()))
                .map_err(|source| StorageError::Index {
                    table: name.to_string(),
                    source: Box::new(source),
                })?;
            for index in dropped {
                tracing::warn!(
                    table = name,
                    index,
                    "CREATE OR REPLACE TABLE dropped the \
                    index: its column is gone or has another dimension"
                );
            }
        }
        if let Some(old) = old {
            self.block_on(name, async move {
                if let Some(durable) = old.downcast_ref::<DurableTable>() {
                    durable.stop_writer().await;
                }
            })?;
        }
        let target = self.tables_dir.join(name);
        let trashed = match target.exists() {
            true => Some(self.move_to_trash(&target)?),
            false => None,
        };
        std::fs::rename(&staged, &target).map_err(|source| StorageError::DataDir {
            dir: target.clone(),
            source,
        })?;
        self.sync_dir(&self.tables_dir)?;
        // The table written under the staging name is opened again where it now lives.
        let table = self.block_on(name, open_table(target, name.to_string()))??;
        let replacement = self.start_table(name, table)?;
        self.write_tables()
            .insert(name.to_string(), Arc::new(replacement));
        if let Some(trashed) = trashed {
            self.delete_trash(&trashed);
        }
        Ok(())
    }

    /// Bytes of decoded data files held by the table cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Every durable table's vector indexes, by table name (for `pg_indexes`).
    pub fn indexes(&self) -> Vec<Arc<TableIndexes>> {
        let mut indexes: Vec<Arc<TableIndexes>> = self
            .read_tables()
            .values()
            .filter_map(|table| table.downcast_ref::<DurableTable>())
            .map(|durable| durable.indexes().clone())
            .filter(|indexes| !indexes.is_empty())
            .collect();
        indexes.sort_by(|a, b| a.table().cmp(b.table()));
        indexes
    }

    /// Whether `name` is a durable table of this schema (not a view, file or demo table).
    pub fn is_durable(&self, name: &str) -> bool {
        self.read_tables()
            .get(name)
            .is_some_and(|table| table.downcast_ref::<DurableTable>().is_some())
    }

    /// Writes `memory`'s rows as a new Delta table at `path`, in one commit.
    fn write_new_table(
        &self,
        name: &str,
        path: &Path,
        memory: &MemTable,
    ) -> Result<DeltaTable, StorageError> {
        let path = path.to_path_buf();
        // Delta stores timestamps in microseconds: convert up front (DataFusion's
        // TIMESTAMP is nanoseconds), so the table's schema says what it holds.
        let schema = delta_schema(&memory.schema());
        let mut batches: Vec<RecordBatch> = Vec::new();
        for partition in &memory.batches {
            // The table was built a moment ago by this statement: nothing else holds it.
            let rows = partition
                .try_read()
                .map_err(|_| StorageError::WriterGone(name.to_string()))?;
            for batch in rows.iter() {
                batches.push(cast_batch(batch, &schema).map_err(|e| StorageError::Delta {
                    table: name.to_string(),
                    source: Box::new(e.into()),
                })?);
            }
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema.clone()));
        }
        let name_owned = name.to_string();
        let synchronous = self.policy.synchronous_commit;
        self.block_on(name, async move {
            std::fs::create_dir_all(&path).map_err(|source| StorageError::DataDir {
                dir: path.clone(),
                source,
            })?;
            let table = DeltaTableBuilder::from_url(table_url(&path, &name_owned)?)
                .and_then(|builder| builder.build())
                .map_err(|e| StorageError::delta(&name_owned, e))?;
            let table = table
                .write(batches)
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_table_name(name_owned.clone())
                .with_configuration(TABLE_PROPERTIES.map(|(key, value)| (key, Some(value))))
                .await
                .map_err(|e| StorageError::delta(&name_owned, e))?;
            if synchronous {
                let version = table.version().unwrap_or_default();
                let dir = path.clone();
                tokio::task::spawn_blocking(move || sync_commit_and_data(&dir, version))
                    .await
                    .map_err(|e| StorageError::DataDir {
                        dir: path.clone(),
                        source: std::io::Error::other(e),
                    })?
                    .map_err(|source| StorageError::Sync {
                        table: name_owned.clone(),
                        source,
                    })?;
            }
            Ok(table)
        })?
    }

    /// Starts the writer of the table `name` just written at `tables/name`.
    fn start_table(&self, name: &str, table: DeltaTable) -> Result<DurableTable, StorageError> {
        let handle = self.handle().clone();
        let (policy, cache) = (self.policy, self.cache.clone());
        let name_owned = name.to_string();
        let dir = self.tables_dir.join(name);
        self.block_on(name, async move {
            durable_table(&name_owned, &dir, table, policy, cache, &handle).await
        })?
    }

    /// Forces a directory's entries to disk when commits are synchronous.
    fn sync_dir(&self, dir: &Path) -> Result<(), StorageError> {
        if !self.policy.synchronous_commit {
            return Ok(());
        }
        sync_path(dir).map_err(|source| StorageError::DataDir {
            dir: dir.to_path_buf(),
            source: source.source,
        })
    }

    /// Deletes a trashed table; a failure is logged (the trash is emptied at next start).
    fn delete_trash(&self, trashed: &Path) {
        if let Err(error) = std::fs::remove_dir_all(trashed) {
            tracing::warn!(path = %trashed.display(), "deleting a dropped table: {error}");
        }
    }

    fn drop_durable(&self, table: Arc<dyn TableProvider>) -> Result<(), StorageError> {
        let Some(durable) = table.downcast_ref::<DurableTable>() else {
            return Ok(());
        };
        let path = self.tables_dir.join(durable.name());
        let name = durable.name().to_string();
        self.block_on(&name, async move {
            if let Some(durable) = table.downcast_ref::<DurableTable>() {
                durable.stop_writer().await;
            }
        })?;
        let trashed = self.move_to_trash(&path)?;
        self.sync_dir(&self.tables_dir)?;
        self.delete_trash(&trashed);
        Ok(())
    }

    fn move_to_trash(&self, path: &Path) -> Result<PathBuf, StorageError> {
        let io_error = |source| StorageError::DataDir {
            dir: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.trash_dir).map_err(io_error)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("table");
        let trashed = self.trash_dir.join(format!("{name}-{stamp}"));
        std::fs::rename(path, &trashed).map_err(io_error)?;
        Ok(trashed)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Commits what waits in the write-ahead logs (so other Delta readers see every
    /// acknowledged row), stops the writers and releases the data directory's lock; the
    /// tables are gone from the schema afterwards. Nothing acknowledged can be lost here:
    /// rows a slow commit leaves in a log are committed at the next start. Called when
    /// the engine is dropped: DataFusion's catalog can be kept alive by reference cycles,
    /// so the lock must not wait for this value's drop.
    pub fn close(&self) {
        let durable: Vec<Arc<dyn TableProvider>> = self
            .write_tables()
            .drain()
            .map(|(_, table)| table)
            .filter(|table| table.downcast_ref::<DurableTable>().is_some())
            .collect();
        if !durable.is_empty() {
            let flushes = async move {
                for table in &durable {
                    if let Some(table) = table.downcast_ref::<DurableTable>() {
                        table.flush(CLOSE_FLUSH_TIMEOUT).await;
                    }
                }
            };
            if let Err(error) = self.block_on("(closing)", flushes) {
                tracing::warn!("committing the write-ahead logs at close: {error}");
            }
        }
        let runtime = match self.runtime.lock() {
            Ok(mut runtime) => runtime.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
        if let Err(error) = self.lock.unlock() {
            tracing::warn!("releasing the data directory lock: {error}");
        }
    }

    /// Runs storage work on the writer runtime from async code.
    async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.handle()
            .spawn(work)
            .await
            .map_err(|e| StorageError::DataDir {
                dir: self.tables_dir.clone(),
                source: std::io::Error::other(e),
            })?
    }

    /// Runs storage work on the writer runtime and waits for it from synchronous code
    /// (DataFusion's catalog calls are synchronous). It works from inside any runtime
    /// because the work runs on the writer runtime's threads, not the caller's.
    fn block_on<T: Send + 'static>(
        &self,
        table: &str,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (done, outcome) = std::sync::mpsc::channel();
        self.handle().spawn(async move {
            let _ = done.send(work.await);
        });
        outcome
            .recv()
            .map_err(|_| StorageError::WriterGone(table.to_string()))
    }

    fn write_tables(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<dyn TableProvider>>> {
        match self.tables.write() {
            Ok(tables) => tables,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn read_tables(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn TableProvider>>> {
        match self.tables.read() {
            Ok(tables) => tables,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Drop for DurableSchema {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl SchemaProvider for DurableSchema {
    fn table_names(&self) -> Vec<String> {
        self.read_tables().keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.read_tables().get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.table_exist(&name) {
            return Err(DataFusionError::Execution(format!(
                "table {name} already exists"
            )));
        }
        let table: Arc<dyn TableProvider> = match table.downcast_ref::<MemTable>() {
            Some(memory) => Arc::new(self.create_durable(&name, memory)?),
            None => table,
        };
        self.write_tables().insert(name, table);
        Ok(None)
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let removed = self.write_tables().remove(name);
        if let Some(table) = &removed {
            self.drop_durable(table.clone())?;
        }
        Ok(removed)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.read_tables().contains_key(name)
    }
}

/// Wraps an opened Delta table (directory `dir`) with its writer.
async fn durable_table(
    name: &str,
    dir: &Path,
    table: DeltaTable,
    policy: WriterPolicy,
    cache: Arc<TableCache>,
    runtime: &tokio::runtime::Handle,
) -> Result<DurableTable, StorageError> {
    let committer = Committer::start(name, dir, table, policy, runtime).await?;
    let indexes = TableIndexes::load(
        name,
        dir,
        committer.schema(),
        cache.clone(),
        policy.synchronous_commit,
    )
    .map_err(|source| StorageError::Index {
        table: name.to_string(),
        source: Box::new(source),
    })?;
    let indexes = Arc::new(indexes);
    if !indexes.is_empty() {
        // What a crash or compaction left without a graph is built again, in the
        // background; queries scan such files exactly meanwhile.
        let files = committer.snapshot().delta.files;
        indexes.remove_dead_graphs(&files);
        indexes.catch_up(&files);
    }
    Ok(DurableTable::new(name, committer, cache, indexes))
}

/// `schema` with nanosecond timestamps as microseconds, the finest unit Delta stores.
fn delta_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, zone) => field
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, zone.clone())),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Loads the Delta table at `path`.
async fn open_table(path: PathBuf, name: String) -> Result<DeltaTable, StorageError> {
    deltalake_core::open_table(table_url(&path, &name)?)
        .await
        .map_err(|e| StorageError::delta(&name, e))
}

/// The table a staging directory of `CREATE OR REPLACE` is for, `None` for other paths.
fn staged_table(path: &Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix(STAGING_PREFIX)
        .filter(|name| is_storable_name(name))
}

fn table_url(path: &Path, name: &str) -> Result<url::Url, StorageError> {
    let absolute = std::path::absolute(path).map_err(|source| StorageError::DataDir {
        dir: path.to_path_buf(),
        source,
    })?;
    url::Url::from_directory_path(&absolute)
        .map_err(|()| StorageError::BadTableName(name.to_string()))
}

/// Table names become directory names: keep them to what every file system accepts.
fn is_storable_name(name: &str) -> bool {
    name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::is_storable_name;

    #[test]
    fn storable_names_are_plain_identifiers() {
        assert!(is_storable_name("events"));
        assert!(is_storable_name("_user_vectors_2"));
        assert!(!is_storable_name("../etc"));
        assert!(!is_storable_name("2fast"));
        assert!(!is_storable_name("a b"));
        assert!(!is_storable_name(&"x".repeat(64)));
    }
}
