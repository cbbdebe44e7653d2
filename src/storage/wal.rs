//! A table's write-ahead log. Why: a Delta commit costs tens of milliseconds of CPU
//! (log replay, listing, snapshot update), far too much to pay once per single-row
//! `INSERT`. So a small append is acknowledged as soon as it is in this log, and the
//! table's writer moves the logged rows into Delta a few times a second, many appends
//! per commit. Each such commit records the highest log sequence number it holds as a
//! Delta application transaction (`txn` action), so after a crash the log is replayed
//! from exactly there: no acknowledged row is lost and none is stored twice.
//!
//! The log is a directory of segment files (`_rankql_wal/NNNNNNNNNNNNNNNN.wal` inside the
//! table's directory; Delta readers and `VACUUM` ignore names starting with `_`). Each
//! record is one append:
//! `payload length (u32) | sequence number (u64) | Arrow IPC stream | XXH3-64 (u64)`,
//! little-endian, the checksum covering sequence number and payload. A record cut short
//! by a crash (the writer died inside `write`, before anyone was acknowledged) fails its
//! checksum and ends the replay of its segment. The writer seals the active segment
//! before each Delta commit and deletes sealed segments once a commit covers them.
//!
//! With synchronous commit on, an append is acknowledged only once an `fdatasync` covers
//! it. The log does not sync per append: [`WriteAheadLog::take_unsynced`] hands the
//! caller every file written since the last sync, and one sync covers all the appends
//! that arrived meanwhile (group commit, as PostgreSQL's WAL writer does).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use xxhash_rust::xxh3::xxh3_64;

/// The log's directory inside a table's directory.
pub(crate) const WAL_DIR: &str = "_rankql_wal";
/// The Delta application id under which commits record the log position they cover.
pub(crate) const WAL_APP_ID: &str = "rankql-wal";
const SEGMENT_EXTENSION: &str = "wal";
/// Bytes before the payload: length (4) and sequence number (8).
const HEADER_BYTES: usize = 12;
/// Bytes after the payload: the checksum.
const CHECKSUM_BYTES: usize = 8;

/// One logged append: its sequence number and its rows.
#[derive(Debug)]
pub(crate) struct LoggedAppend {
    /// Position in the log; increases by one per append, across restarts.
    pub seq: u64,
    /// The rows, in the table's schema.
    pub batches: Vec<RecordBatch>,
}

/// A failure to write or read the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The rows could not be encoded or a stored record could not be decoded.
    #[error("write-ahead log {path}: {source}")]
    Encoding {
        /// The segment.
        path: PathBuf,
        /// Arrow IPC's reason.
        source: ArrowError,
    },
}

/// What [`WriteAheadLog::open`] found: the log, ready for appends, and the appends that
/// no Delta commit covers yet.
pub(crate) struct Recovered {
    pub log: WriteAheadLog,
    pub uncommitted: Vec<LoggedAppend>,
    /// The sequence number the next append takes.
    pub next_seq: u64,
}

/// The open log of one table.
#[derive(Debug)]
pub(crate) struct WriteAheadLog {
    dir: PathBuf,
    active: Segment,
    /// Segments no longer appended to, each with the highest sequence number it holds.
    sealed: Vec<(PathBuf, u64)>,
    /// Sealed segments written since the last [`WriteAheadLog::take_unsynced`].
    sealed_unsynced: Vec<Arc<File>>,
    next_segment: u64,
    /// The sequence number of the last append.
    last_seq: u64,
    /// Whether new segments' directory entries are forced to disk (synchronous commit).
    synchronous: bool,
}

/// The segment appends go to.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    bytes: u64,
    /// Bytes already handed out by [`WriteAheadLog::take_unsynced`].
    handed_for_sync: u64,
    last_seq: u64,
}

/// Appends written but not yet forced to disk: sync `files`, and every append through
/// `through` is durable.
pub(crate) struct Unsynced {
    /// The last sequence number the files hold.
    pub through: u64,
    /// The segments to `fdatasync`.
    pub files: Vec<Arc<File>>,
}

impl Unsynced {
    /// Forces the files to disk (blocking).
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.files.iter().try_for_each(|file| file.sync_data())
    }
}

impl WriteAheadLog {
    /// Opens the log in `dir` (creating it), reads every segment, and keeps the appends
    /// after `committed_through`, the position the table's last log-covering commit holds.
    /// `synchronous`: new segments are forced into the directory at once.
    pub(crate) fn open(
        dir: &Path,
        committed_through: u64,
        synchronous: bool,
    ) -> Result<Recovered, WalError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter_map(|path| segment_number(&path).map(|n| (n, path)))
            .collect();
        segments.sort();
        let mut uncommitted = Vec::new();
        let mut sealed = Vec::new();
        let mut last_seen = committed_through;
        for (_, path) in &segments {
            let appends = read_segment(path)?;
            let last = appends.last().map_or(0, |a| a.seq);
            last_seen = last_seen.max(last);
            uncommitted.extend(appends.into_iter().filter(|a| a.seq > committed_through));
            sealed.push((path.clone(), last));
        }
        let next_segment = segments.last().map_or(1, |(n, _)| n + 1);
        let active = Segment::create(dir, next_segment, synchronous)?;
        let mut log = Self {
            dir: dir.to_path_buf(),
            active,
            sealed,
            sealed_unsynced: Vec::new(),
            next_segment: next_segment + 1,
            last_seq: last_seen,
            synchronous,
        };
        log.release_through(committed_through);
        Ok(Recovered {
            log,
            uncommitted,
            next_seq: last_seen + 1,
        })
    }

    /// Appends one record. When this returns `Ok`, a process crash cannot lose it (it is
    /// in the operating system's cache); a power cut can until a sync of
    /// [`WriteAheadLog::take_unsynced`]'s files returns. On failure the segment is cut
    /// back to its last whole record, so a half-written record never precedes good ones.
    pub(crate) fn append(&mut self, seq: u64, batches: &[RecordBatch]) -> Result<(), WalError> {
        let record = encode_record(seq, batches).map_err(|source| WalError::Encoding {
            path: self.active.path.clone(),
            source,
        })?;
        if let Err(source) = (&*self.active.file).write_all(&record) {
            if let Err(cut) = self.active.file.set_len(self.active.bytes) {
                tracing::error!(path = %self.active.path.display(), "cutting a failed append back: {cut}");
            }
            return Err(WalError::Io {
                path: self.active.path.clone(),
                source,
            });
        }
        self.active.bytes += record.len() as u64;
        self.active.last_seq = seq;
        self.last_seq = seq;
        Ok(())
    }

    /// The files written since the last call, and the last sequence number they hold.
    pub(crate) fn take_unsynced(&mut self) -> Unsynced {
        let mut files = std::mem::take(&mut self.sealed_unsynced);
        if self.active.bytes > self.active.handed_for_sync {
            files.push(self.active.file.clone());
            self.active.handed_for_sync = self.active.bytes;
        }
        Unsynced {
            through: self.last_seq,
            files,
        }
    }

    /// Starts a new segment for the appends that follow, so the current one can be deleted
    /// once a commit covers it. Does nothing when the current segment is empty.
    pub(crate) fn seal(&mut self) -> Result<(), WalError> {
        if self.active.bytes == 0 {
            return Ok(());
        }
        let next = Segment::create(&self.dir, self.next_segment, self.synchronous)?;
        self.next_segment += 1;
        let done = std::mem::replace(&mut self.active, next);
        if done.bytes > done.handed_for_sync {
            self.sealed_unsynced.push(done.file.clone());
        }
        self.sealed.push((done.path, done.last_seq));
        Ok(())
    }

    /// Deletes the sealed segments whose appends are all at or before `seq` (in Delta now).
    pub(crate) fn release_through(&mut self, seq: u64) {
        self.sealed.retain(|(path, last)| {
            if *last > seq {
                return true;
            }
            match std::fs::remove_file(path) {
                Ok(()) => false,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
                Err(error) => {
                    tracing::warn!(path = %path.display(), "deleting a committed log segment: {error}");
                    true
                }
            }
        });
    }
}

impl Segment {
    /// Creates segment `number` in `dir`; `synchronous`: its directory entry is forced
    /// to disk, so a later sync of the file alone makes its records durable.
    fn create(dir: &Path, number: u64, synchronous: bool) -> Result<Self, WalError> {
        let path = dir.join(format!("{number:016}.{SEGMENT_EXTENSION}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|source| WalError::Io {
                path: path.clone(),
                source,
            })?;
        if synchronous {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| WalError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        Ok(Self {
            path,
            file: Arc::new(file),
            bytes: 0,
            handed_for_sync: 0,
            last_seq: 0,
        })
    }
}

/// The segment number of a log file name, `None` for anything else in the directory.
fn segment_number(path: &Path) -> Option<u64> {
    if path.extension()? != SEGMENT_EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn encode_record(seq: u64, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut record = vec![0u8; HEADER_BYTES];
    if let Some(first) = batches.first() {
        let mut writer = StreamWriter::try_new(&mut record, &first.schema())?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    let payload_bytes = u32::try_from(record.len() - HEADER_BYTES).map_err(|_| {
        ArrowError::InvalidArgumentError(
            "one append is larger than 4 GiB; split it into several statements".to_string(),
        )
    })?;
    record[..4].copy_from_slice(&payload_bytes.to_le_bytes());
    record[4..HEADER_BYTES].copy_from_slice(&seq.to_le_bytes());
    let checksum = xxh3_64(&record[4..]);
    record.extend_from_slice(&checksum.to_le_bytes());
    Ok(record)
}

/// Every whole record of a segment, in order; stops at the first torn or corrupt one.
fn read_segment(path: &Path) -> Result<Vec<LoggedAppend>, WalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| WalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut appends = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= HEADER_BYTES + CHECKSUM_BYTES {
        let (length, tail) = rest.split_at(4);
        let payload_bytes = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
        let body_bytes = 8 + payload_bytes as usize;
        if tail.len() < body_bytes + CHECKSUM_BYTES {
            break;
        }
        let (body, tail) = tail.split_at(body_bytes);
        let (checksum, tail) = tail.split_at(CHECKSUM_BYTES);
        let mut expected = [0u8; 8];
        expected.copy_from_slice(checksum);
        if xxh3_64(body) != u64::from_le_bytes(expected) {
            break;
        }
        let (seq, payload) = body.split_at(8);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(seq);
        let batches = decode_batches(payload).map_err(|source| WalError::Encoding {
            path: path.to_path_buf(),
            source,
        })?;
        appends.push(LoggedAppend {
            seq: u64::from_le_bytes(seq_bytes),
            batches,
        });
        rest = tail;
    }
    if !rest.is_empty() {
        tracing::warn!(
            path = %path.display(),
            bytes = rest.len(),
            "ignoring the torn end of a log segment (an append cut short by a crash, never acknowledged)"
        );
    }
    Ok(appends)
}

fn decode_batches(payload: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    StreamReader::try_new(payload, None)?.collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(ids: &[i64]) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<Option<String>> = ids.iter().map(|i| Some(format!("row {i}"))).collect();
        vec![RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()]
    }

    fn ids(appends: &[LoggedAppend]) -> Vec<(u64, i64)> {
        appends
            .iter()
            .flat_map(|a| {
                a.batches.iter().flat_map(move |b| {
                    let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    column.values().iter().map(move |id| (a.seq, *id))
                })
            })
            .collect()
    }

    #[test]
    fn appends_are_replayed_after_reopening_from_the_committed_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = WriteAheadLog::open(dir.path(), 0, false).unwrap().log;
        log.append(1, &rows(&[10, 11])).unwrap();
        log.seal().unwrap();
        log.append(2, &rows(&[20])).unwrap();
        log.append(3, &rows(&[30])).unwrap();
        drop(log);

        let recovered = WriteAheadLog::open(dir.path(), 1, false).unwrap();
        assert_eq!(ids(&recovered.uncommitted), vec![(2, 20), (3, 30)]);
        assert_eq!(recovered.next_seq, 4);
        // The first segment held only committed appends: deleted at open.
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(
            segments, 2,
            "one segment with 2 and 3, one new active segment"
        );
    }

    #[test]
    fn released_segments_are_deleted_and_the_sequence_continues_past_delta() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = WriteAheadLog::open(dir.path(), 0, false).unwrap().log;
        log.append(1, &rows(&[1])).unwrap();
        log.seal().unwrap();
        log.release_through(1);
        drop(log);
        // The log is empty, but Delta says appends up to 7 are committed.
        let recovered = WriteAheadLog::open(dir.path(), 7, false).unwrap();
        assert!(recovered.uncommitted.is_empty());
        assert_eq!(recovered.next_seq, 8);
    }

    #[test]
    fn a_torn_record_ends_the_replay_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = WriteAheadLog::open(dir.path(), 0, false).unwrap().log;
        log.append(1, &rows(&[1])).unwrap();
        log.append(2, &rows(&[2, 3])).unwrap();
        let path = log.active.path.clone();
        drop(log);
        let length = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(length - 5).unwrap();
        drop(file);

        let recovered = WriteAheadLog::open(dir.path(), 0, false).unwrap();
        assert_eq!(ids(&recovered.uncommitted), vec![(1, 1)]);
    }

    #[test]
    fn a_corrupt_record_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = WriteAheadLog::open(dir.path(), 0, false).unwrap().log;
        log.append(1, &rows(&[1])).unwrap();
        let path = log.active.path.clone();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(WriteAheadLog::open(dir.path(), 0, false)
            .unwrap()
            .uncommitted
            .is_empty());
    }

    #[test]
    fn unsynced_files_cover_every_append_since_the_last_hand_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = WriteAheadLog::open(dir.path(), 0, true).unwrap().log;
        assert!(log.take_unsynced().files.is_empty());
        log.append(1, &rows(&[1])).unwrap();
        log.seal().unwrap();
        log.append(2, &rows(&[2])).unwrap();
        let unsynced = log.take_unsynced();
        assert_eq!(unsynced.through, 2);
        assert_eq!(
            unsynced.files.len(),
            2,
            "the sealed segment and the active one"
        );
        unsynced.sync().unwrap();
        let again = log.take_unsynced();
        assert!(again.files.is_empty());
        assert_eq!(again.through, 2);
    }
}
