//! Durable tables. Every table made with `CREATE TABLE` (or `CREATE TABLE … AS SELECT`)
//! is a Delta Lake table under `DATA_DIR/tables/NAME`, so Spark, DuckDB, Polars or any
//! other Delta reader can open it, and a crash never leaves it half-written: a commit is
//! one atomically created log file, and a row is acknowledged only after its commit.
//!
//! - [`DurableSchema`] is the `public` schema: it turns the in-memory table DataFusion
//!   builds for `CREATE TABLE` into a Delta table, and deletes it on `DROP TABLE`.
//! - [`DurableTable`] reads the newest committed snapshot and sends `INSERT`s and `COPY`
//!   rows to its table's writer.
//! - The writer (`committer`) is one task per table. Small appends (single-row
//!   `INSERT`s) are acknowledged once they are in the table's write-ahead log (`wal`) and
//!   visible to the next query at once; the writer moves them into Delta a few times a
//!   second, many appends per commit. Large appends (`COPY`, `INSERT … SELECT`) are
//!   committed to Delta directly. The writer also compacts small files.
//! - [`TableCache`] keeps decoded data files in memory, so scans of durable tables run
//!   at in-memory speed.
//! - `vector_index` holds HNSW indexes on vector columns and the optimizer rule that
//!   uses them for `ORDER BY distance LIMIT k`.
//! - `key_lookup` answers `WHERE key = value` from per-file sorted key lists, without a
//!   scan.
//! - `durability` forces writes to disk when synchronous commit is on; `replace` makes
//!   `CREATE OR REPLACE TABLE` swap a durable table in one step.

mod committer;
mod durability;
mod error;
mod key_lookup;
mod replace;
mod schema;
mod table;
mod table_cache;
pub mod vector_index;
mod wal;

pub use committer::WriterPolicy;
pub use durability::SyncError;
pub use error::StorageError;
pub use key_lookup::{LookupError, Probe};
pub use replace::create_or_replace;
pub use schema::{DurableSchema, LOCK_FILE, TABLES_DIR};
pub use table::DurableTable;
pub use table_cache::{CacheLoadError, TableCache};
pub use wal::WalError;
