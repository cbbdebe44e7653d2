//! Forcing writes to disk. Why: a write that has returned is only in the operating
//! system's page cache, which survives a crash of rankql but not a power cut or a kernel
//! panic. With synchronous commit on, nothing is acknowledged before the files that hold
//! it, and the directory entries that name them, are on disk — PostgreSQL's
//! `synchronous_commit = on`.
//!
//! A Delta commit is data files first, then one log entry naming them. Writes rankql makes
//! itself are forced in that order ([`sync_paths`] on the data files before the commit,
//! [`sync_commit`] after it), so a power cut can never leave a log entry that names a
//! file the disk does not have. Operations delta-rs runs whole (`CREATE TABLE … AS`,
//! compaction) are forced after they return, before anything depends on them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The Delta log's directory inside a table's directory.
pub(crate) const DELTA_LOG_DIR: &str = "_delta_log";

/// A file or directory that could not be forced to disk.
#[derive(Debug, thiserror::Error)]
#[error("forcing {path} to disk: {source}")]
pub struct SyncError {
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's reason.
    pub source: std::io::Error,
}

/// Forces `path` (a file or a directory) to disk.
pub(crate) fn sync_path(path: &Path) -> Result<(), SyncError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| SyncError {
            path: path.to_path_buf(),
            source,
        })
}

/// Forces every path in `paths` to disk.
pub(crate) fn sync_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<(), SyncError> {
    paths.into_iter().try_for_each(sync_path)
}

/// Forces commit `version` of the table in `table_dir` to disk: the log entry, the log
/// directory and the table directory (the log entry's name is what makes it visible).
pub(crate) fn sync_commit(table_dir: &Path, version: u64) -> Result<(), SyncError> {
    let log_dir = table_dir.join(DELTA_LOG_DIR);
    sync_path(&log_dir.join(commit_file_name(version)))?;
    sync_path(&log_dir)?;
    sync_path(table_dir)
}

/// Forces commit `version` to disk together with every data file it adds (for commits
/// made by delta-rs operations, whose data files rankql does not see being written).
pub(crate) fn sync_commit_and_data(table_dir: &Path, version: u64) -> Result<(), SyncError> {
    let entry = table_dir
        .join(DELTA_LOG_DIR)
        .join(commit_file_name(version));
    let file = File::open(&entry).map_err(|source| SyncError {
        path: entry.clone(),
        source,
    })?;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| SyncError {
            path: entry.clone(),
            source,
        })?;
        if let Some(data_file) = added_file(&line) {
            sync_path(&table_dir.join(data_file))?;
        }
    }
    sync_commit(table_dir, version)
}

/// Whether `table_dir` holds a Delta table with at least one commit: what tells a finished
/// `CREATE TABLE` from the directory a crash in the middle of one leaves.
pub(crate) fn has_commit(table_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(table_dir.join(DELTA_LOG_DIR)) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        is_commit_file_name(&name) || name.ends_with(".checkpoint.parquet")
    })
}

fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
}

fn is_commit_file_name(name: &str) -> bool {
    name.strip_suffix(".json")
        .is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// The data file an `add` action of a Delta log line names, relative to the table.
fn added_file(line: &str) -> Option<PathBuf> {
    let action: serde_json::Value = serde_json::from_str(line).ok()?;
    let path = action.get("add")?.get("path")?.as_str()?;
    let decoded = percent_decode(path)?;
    Some(PathBuf::from(decoded))
}

/// Delta stores data file paths percent-encoded (RFC 3986).
fn percent_decode(path: &str) -> Option<String> {
    let base = url::Url::parse("file:///").ok()?;
    let url = base.join(path).ok()?;
    let absolute = url.to_file_path().ok()?;
    let relative = absolute.strip_prefix("/").ok()?;
    Some(relative.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_files_are_read_from_a_commit_line_and_decoded() {
        let line = r#"{"add":{"path":"part-00000-a%20b.parquet","size":1}}"#;
        assert_eq!(
            added_file(line),
            Some(PathBuf::from("part-00000-a b.parquet"))
        );
        assert_eq!(added_file(r#"{"commitInfo":{}}"#), None);
        assert_eq!(added_file("not json"), None);
    }

    #[test]
    fn a_log_without_a_commit_is_an_unfinished_table() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_commit(dir.path()));
        let log = dir.path().join(DELTA_LOG_DIR);
        std::fs::create_dir(&log).unwrap();
        std::fs::write(log.join("_commit_1234.json.tmp"), "{}").unwrap();
        assert!(!has_commit(dir.path()));
        std::fs::write(log.join(commit_file_name(0)), "{}").unwrap();
        assert!(has_commit(dir.path()));
    }
}
