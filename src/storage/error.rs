//! What can go wrong with the data directory and its tables.

use std::path::PathBuf;

/// A failure of durable storage; the message names the table or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created, read or written.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another rankql process holds the data directory.
    #[error(
        "data directory {0} is in use by another rankql process; stop it, or send this work \
         to that server (psql -f FILE.sql), or pick another --data-dir"
    )]
    Locked(PathBuf),
    /// A table name that cannot be a directory name.
    #[error(
        "table name {0:?} cannot be stored: durable table names are letters, digits and _ \
         (start with a letter or _), at most 63 characters"
    )]
    BadTableName(String),
    /// Delta Lake refused or failed an operation on a table.
    #[error("table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// Delta Lake's reason.
        source: Box<deltalake_core::DeltaTableError>,
    },
    /// The table's writer has stopped (the table was dropped, or the server is stopping).
    #[error("table {0} is no longer accepting writes (dropped, or the server is stopping)")]
    WriterGone(String),
    /// The write-ahead log could not take an append, or could not be read at start.
    #[error("table {table}: {source}")]
    Log {
        /// The table.
        table: String,
        /// The log's reason.
        source: super::WalError,
    },
    /// Rows that do not fit the table's columns.
    #[error("table {table}: rows do not match the table's columns: {source}")]
    Rows {
        /// The table.
        table: String,
        /// Arrow's reason.
        source: datafusion::arrow::error::ArrowError,
    },
    /// Too many acknowledged rows wait for Delta commits that keep failing; new appends
    /// are refused until the cause (named) is fixed, so memory stays bounded.
    #[error(
        "table {table}: {rows} acknowledged rows are waiting for Delta commits that keep \
         failing ({last_error}); new rows are refused until that is fixed"
    )]
    Backlog {
        /// The table.
        table: String,
        /// Rows logged but not yet in Delta.
        rows: usize,
        /// Why the last commit failed.
        last_error: String,
    },
    /// A commit could not be forced to disk (synchronous commit): it may be lost in a power
    /// cut, so it is not acknowledged.
    #[error("table {table}: {source}")]
    Sync {
        /// The table.
        table: String,
        /// The file and the operating system's reason.
        source: super::SyncError,
    },
    /// An earlier sync of the write-ahead log failed; after a failed fsync the operating
    /// system may have dropped the unwritten pages, so nothing logged since can be
    /// promised durable. Appends are refused until the server restarts and replays the
    /// log (PostgreSQL stops the server in this case).
    #[error(
        "table {table}: the write-ahead log could not be forced to disk ({reason}); appends \
         are refused until the server is restarted"
    )]
    LogNotDurable {
        /// The table.
        table: String,
        /// Why the sync failed.
        reason: String,
    },
    /// A data file could not be read into the table cache.
    #[error("table {table}: {source}")]
    Read {
        /// The table.
        table: String,
        /// The file and the reason.
        source: super::CacheLoadError,
    },
    /// A table's vector index definitions could not be read.
    #[error("table {table}: {source}")]
    Index {
        /// The table.
        table: String,
        /// The index's reason.
        source: Box<super::vector_index::IndexError>,
    },
    /// A lookup by key failed.
    #[error("table {table}: {source}")]
    Lookup {
        /// The table.
        table: String,
        /// The lookup's reason.
        source: super::LookupError,
    },
    /// An append that is not a plain append.
    #[error("table {0}: only INSERT INTO … (append) is supported on durable tables")]
    NotAppend(String),
}

impl StorageError {
    /// Wraps a Delta Lake error with the table it concerns.
    pub(crate) fn delta(table: &str, source: deltalake_core::DeltaTableError) -> Self {
        Self::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

impl From<StorageError> for datafusion::error::DataFusionError {
    fn from(error: StorageError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
