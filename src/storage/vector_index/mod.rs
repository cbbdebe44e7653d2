//! HNSW indexes on vector columns of durable tables, with pgvector's syntax:
//! `CREATE INDEX [IF NOT EXISTS] [name] ON t USING hnsw (col vector_cosine_ops)
//! [WITH (m = 16, ef_construction = 64)]`, `DROP INDEX`, `SET hnsw.ef_search = N`.
//!
//! - `definition`: what an index is, parsed from the statement and stored with the table.
//! - `file_index`: one usearch graph per immutable Delta data file, saved atomically.
//! - `table_indexes`: a table's definitions, its graphs, background builds for new files.
//! - `statements`: `CREATE INDEX` / `DROP INDEX`, for the server and `rankql run`.
//! - `search`: the plan node that turns an index search into candidate rows.
//! - `rule`: the optimizer rule that puts that node under `ORDER BY distance LIMIT k`.
//! - `nearest`: the `nearest(…)` table function, top-k for every row of another table.
//!
//! Why it is always correct: the search node only chooses *which* rows go on to the
//! query's own `ORDER BY … LIMIT` (and `WHERE`), which rank them exactly. Data files with
//! no graph yet and rows still in the write-ahead log are passed on whole, so a fresh
//! `INSERT` is found at once; a graph belongs to one immutable data file, so it can
//! never name a row the table does not have.

mod definition;
mod file_index;
mod nearest;
mod rule;
mod search;
mod statements;
mod table_indexes;

use std::path::PathBuf;

pub use definition::{IndexDefinition, Metric};
pub use nearest::Nearest;
pub use rule::{HnswOptions, VectorTopKRule};
pub use search::IndexedScanExec;
pub(crate) use search::ScanSource;
pub use statements::{
    execute_index_statement, index_owner, indexed_tables, is_index_statement, parse_index_statement,
};
pub use table_indexes::{TableIndexes, INDEX_DIR};

/// What can go wrong with a vector index; the message names the index, table or file.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A form of `CREATE INDEX` that rankql does not build.
    #[error("{0}")]
    Unsupported(String),
    /// A `WITH (…)` parameter out of its range.
    #[error("{0}")]
    BadParameter(String),
    /// The table to index is not a durable table.
    #[error(
        "table {0} cannot be indexed: indexes are built on durable tables (CREATE TABLE in a \
         server started with --data-dir)"
    )]
    NotDurable(String),
    /// The table does not exist.
    #[error("table {0} does not exist")]
    NoTable(String),
    /// The column does not exist.
    #[error("column {column} does not exist in table {table}")]
    NoColumn {
        /// The table.
        table: String,
        /// The column asked for.
        column: String,
    },
    /// An index of that name exists already.
    #[error("index {0} already exists")]
    Exists(String),
    /// No index of that name exists.
    #[error("index {0} does not exist")]
    NoIndex(String),
    /// A vector of another dimension than the index's.
    #[error(
        "column {column} holds a vector of dimension {found}, but the index is for \
         dimension {expected}: every vector of an indexed column must have one dimension"
    )]
    Dimension {
        /// The column.
        column: String,
        /// The index's dimension.
        expected: usize,
        /// The vector's.
        found: usize,
    },
    /// The column holds no non-NULL vector to take the dimension from.
    #[error(
        "column {0} has no vectors yet, so the index's dimension is unknown: insert rows \
         first, then CREATE INDEX"
    )]
    NoVectors(String),
    /// The column is not a vector column.
    #[error("column {column} cannot be indexed: {reason}")]
    Vectors {
        /// The column.
        column: String,
        /// Why its values are not vectors.
        reason: String,
    },
    /// A data file could not be read.
    #[error("{0}")]
    Read(String),
    /// An index file could not be written or read.
    #[error("index file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// usearch refused an operation.
    #[error("vector index library: {0}")]
    Library(String),
}

impl IndexError {
    fn library(error: impl std::fmt::Display) -> Self {
        Self::Library(error.to_string())
    }

    /// The SQLSTATE a client sees for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "0A000",
            Self::BadParameter(_) => "22023",
            Self::NotDurable(_) => "42809",
            Self::NoTable(_) => "42P01",
            Self::NoColumn { .. } => "42703",
            Self::Exists(_) => "42P07",
            Self::NoIndex(_) => "42704",
            Self::Dimension { .. } => "22000",
            Self::NoVectors(_) => "22004",
            Self::Vectors { .. } => "42804",
            Self::Read(_) | Self::Io { .. } | Self::Library(_) => "58030",
        }
    }
}

impl From<IndexError> for datafusion::error::DataFusionError {
    fn from(error: IndexError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
