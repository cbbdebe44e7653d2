//! Durable tables. Every table made with `CREATE TABLE` (or `CREATE TABLE … AS SELECT`)
//! is a Delta Lake table under `DATA_DIR/tables/NAME`, so Spark, DuckDB, Polars or any
//! other Delta reader can open it, and a crash never leaves it half-written: a commit is
//! one atomically created log file, and a row is acknowledged only after its commit.
//!
//! - [`DurableSchema`] is the `public` schema: it turns the in-memory table DataFusion
//!   builds for `CREATE TABLE` into a Delta table, and deletes it on `DROP TABLE`.
//! - [`DurableTable`] reads the newest committed snapshot and sends `INSERT`s and `COPY`
//!   rows to its table's writer.
//! - The writer (`committer`) is one task per table that groups the appends arriving
//!   while a commit is in flight into the next commit, and compacts small files.

mod committer;
mod error;
mod schema;
mod table;

pub use committer::CompactionPolicy;
pub use error::StorageError;
pub use schema::{DurableSchema, TABLES_DIR};
pub use table::DurableTable;
