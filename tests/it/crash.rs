//! "A kill -9 at any moment loses nothing acknowledged and half-applies nothing", for
//! every write path at once: single-row INSERTs (write-ahead log, commits every 20 ms,
//! compaction every 4 commits, so kills land all over compaction cycles), COPY and
//! `INSERT … SELECT` (committed straight to Delta), `CREATE TABLE AS`, `DROP TABLE` and
//! `CREATE OR REPLACE TABLE` (the DROP writer creates each table it drops). Each round starts the server, runs one writer per path, kills
//! the server at a random moment (seed printed; `RANKQL_CRASH_SEED` replays it), checks
//! that every table left on disk opens in a second Delta reader, restarts, and checks the
//! round's own writes: every acknowledged one exactly once and whole, the one in flight
//! at the kill whole or absent. Rounds alternate `--synchronous-commit on` and `off`.
//! Writers stop only when their connection is lost; any SQL error is a failure.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;

use crate::common::connect;
use crate::storage::{delta_rows, ServerProcess};

const ROUNDS: i64 = 4;
const COPY_ROWS: i64 = 5_000;
const BULK_ROWS: i64 = 5_000;
const CTAS_ROWS: i64 = 3_000;
const REPLACE_ROWS: i64 = 2_000;

/// The write paths, one writer each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WritePath {
    SingleRow,
    Copy,
    InsertSelect,
    CreateAs,
    Drop,
    Replace,
}

const PATHS: [WritePath; 6] = [
    WritePath::SingleRow,
    WritePath::Copy,
    WritePath::InsertSelect,
    WritePath::CreateAs,
    WritePath::Drop,
    WritePath::Replace,
];

/// What one writer did in one round.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Keys of the writes the server acknowledged.
    acknowledged: Vec<i64>,
    /// The write that was sent when the connection died, if any.
    in_flight: Option<i64>,
    /// SQL errors (writers never expect one).
    errors: Vec<String>,
}

/// A small deterministic generator (SplitMix64), so a failing round can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn server_options(round: i64) -> Vec<&'static str> {
    let synchronous = if round % 2 == 0 { "on" } else { "off" };
    vec![
        "--commit-interval-ms",
        "20",
        "--compact-after-commits",
        "4",
        "--synchronous-commit",
        synchronous,
    ]
}

fn ctas_table(round: i64, key: i64) -> String {
    format!("ctas_{round}_{key}")
}

/// A table the DROP writer creates and then drops.
fn drop_table(round: i64, key: i64) -> String {
    format!("dropped_{round}_{key}")
}

/// Performs write `key` of `path` in `round`.
async fn perform(
    client: &Client,
    path: WritePath,
    round: i64,
    key: i64,
) -> Result<(), tokio_postgres::Error> {
    match path {
        WritePath::SingleRow => {
            let sql = format!("INSERT INTO singles VALUES ({key}, {round})");
            client.simple_query(&sql).await.map(drop)
        }
        WritePath::Copy => {
            let sink = client.copy_in("COPY copies FROM STDIN").await?;
            let mut sink = Box::pin(sink);
            let rows: String = (0..COPY_ROWS).map(|id| format!("{key}\t{id}\n")).collect();
            sink.send(Bytes::from(rows)).await?;
            sink.as_mut().finish().await.map(drop)
        }
        WritePath::InsertSelect => {
            let sql = format!(
                "INSERT INTO bulk SELECT {key}, value FROM generate_series(1, {BULK_ROWS})"
            );
            client.simple_query(&sql).await.map(drop)
        }
        WritePath::CreateAs => {
            let sql = format!(
                "CREATE TABLE {} AS SELECT value AS id FROM generate_series(1, {CTAS_ROWS})",
                ctas_table(round, key)
            );
            client.simple_query(&sql).await.map(drop)
        }
        WritePath::Drop => {
            let name = drop_table(round, key);
            let create = format!(
                "CREATE TABLE {name} AS SELECT value AS id FROM generate_series(1, {CTAS_ROWS})"
            );
            client.simple_query(&create).await?;
            client
                .simple_query(&format!("DROP TABLE {name}"))
                .await
                .map(drop)
        }
        WritePath::Replace => {
            let sql = format!(
                "CREATE OR REPLACE TABLE rep AS \
                 SELECT CAST({key} AS BIGINT) AS generation, value AS id \
                 FROM generate_series(1, {REPLACE_ROWS})"
            );
            client.simple_query(&sql).await.map(drop)
        }
    }
}

/// Runs `keys` of `path` one after the other until the connection is lost.
async fn write_until_killed(
    port: u16,
    path: WritePath,
    round: i64,
    keys: Vec<i64>,
    outcome: Arc<Mutex<Outcome>>,
) {
    let client = connect(port).await;
    for key in keys {
        match perform(&client, path, round, key).await {
            Ok(()) => outcome.lock().unwrap().acknowledged.push(key),
            Err(error) if error.as_db_error().is_some() => {
                let message = format!("{path:?} {key}: {error:?}");
                outcome.lock().unwrap().errors.push(message);
            }
            Err(_lost) => {
                outcome.lock().unwrap().in_flight = Some(key);
                return;
            }
        }
    }
}

/// The keys each path writes in `round`: row or batch numbers unique across rounds,
/// table numbers within the round (the round is in the table's name).
fn keys_of(path: WritePath, round: i64) -> Vec<i64> {
    let base = round * 1_000_000;
    match path {
        WritePath::CreateAs | WritePath::Drop => (0..10_000).collect(),
        _ => (base..base + 100_000).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_path_survives_kill_9_at_any_moment() {
    let seed = std::env::var("RANKQL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("crash test seed {seed} (RANKQL_CRASH_SEED={seed} replays the kill times)");
    let mut random = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    {
        let server = ServerProcess::start_with(dir.path(), &server_options(0));
        let client = connect(server.port).await;
        for sql in [
            "CREATE TABLE singles (id BIGINT NOT NULL, round BIGINT)",
            "CREATE TABLE copies (batch BIGINT, id BIGINT)",
            "CREATE TABLE bulk (batch BIGINT, id BIGINT)",
            "CREATE TABLE rep AS SELECT CAST(-1 AS BIGINT) AS generation, value AS id \
             FROM generate_series(1, 2000)",
        ] {
            client.simple_query(sql).await.expect(sql);
        }
        server.kill_9();
    }
    let mut last_generation = -1;
    for round in 1..=ROUNDS {
        let server = ServerProcess::start_with(dir.path(), &server_options(round));
        let outcomes: HashMap<WritePath, Arc<Mutex<Outcome>>> =
            PATHS.iter().map(|path| (*path, Arc::default())).collect();
        let writers: Vec<_> = PATHS
            .iter()
            .map(|path| {
                let keys = keys_of(*path, round);
                let outcome = outcomes[path].clone();
                tokio::spawn(write_until_killed(server.port, *path, round, keys, outcome))
            })
            .collect();
        let kill_after = Duration::from_millis(random.between(300, 2_500));
        tokio::time::sleep(kill_after).await;
        server.kill_9();
        for writer in writers {
            writer.await.unwrap();
        }
        let outcomes: HashMap<WritePath, Outcome> = outcomes
            .into_iter()
            .map(|(path, outcome)| (path, outcome.lock().unwrap().clone()))
            .collect();
        let summary: Vec<String> = PATHS
            .iter()
            .map(|path| {
                let outcome = &outcomes[path];
                format!(
                    "{path:?}: {} acknowledged, in flight {:?}",
                    outcome.acknowledged.len(),
                    outcome.in_flight
                )
            })
            .collect();
        eprintln!(
            "round {round}: killed after {} ms; {}",
            kill_after.as_millis(),
            summary.join("; ")
        );
        for (path, outcome) in &outcomes {
            assert!(
                outcome.errors.is_empty(),
                "round {round}, {path:?}: SQL errors: {:?}",
                outcome.errors
            );
        }
        every_table_opens_in_a_second_delta_reader(&dir.path().join("tables")).await;

        let server = ServerProcess::start_with(dir.path(), &server_options(round));
        let client = connect(server.port).await;
        check_single_rows(&client, round, &outcomes[&WritePath::SingleRow]).await;
        check_batches(
            &client,
            "copies",
            round,
            COPY_ROWS,
            &outcomes[&WritePath::Copy],
        )
        .await;
        check_batches(
            &client,
            "bulk",
            round,
            BULK_ROWS,
            &outcomes[&WritePath::InsertSelect],
        )
        .await;
        check_created_tables(&client, round, &outcomes[&WritePath::CreateAs]).await;
        check_dropped_tables(&client, round, &outcomes[&WritePath::Drop]).await;
        last_generation =
            check_replaced_table(&client, last_generation, &outcomes[&WritePath::Replace]).await;
        server.kill_9();
    }
    let server = ServerProcess::start(dir.path());
    let client = connect(server.port).await;
    client
        .simple_query("INSERT INTO singles VALUES (-1, -1)")
        .await
        .expect("the table takes writes after the crashes");
}

/// Every committed table under `tables/` opens in an engine that is not the server, and
/// its row count is whole for the tables written in whole statements.
async fn every_table_opens_in_a_second_delta_reader(tables: &Path) {
    let entries = std::fs::read_dir(tables).expect("tables dir");
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let committed = std::fs::read_dir(path.join("_delta_log"))
            .map(|log| {
                log.filter_map(Result::ok)
                    .any(|f| f.file_name().to_string_lossy().ends_with(".json"))
            })
            .unwrap_or(false);
        if name.starts_with('.') || !committed {
            continue;
        }
        let rows = delta_rows(&path).await;
        let whole = match name.as_str() {
            "copies" => rows % COPY_ROWS == 0,
            "bulk" => rows % BULK_ROWS == 0,
            "rep" => rows == REPLACE_ROWS,
            created if created.starts_with("ctas_") || created.starts_with("dropped_") => {
                rows == CTAS_ROWS
            }
            _ => true,
        };
        assert!(
            whole,
            "{name}: a Delta reader sees {rows} rows, not whole statements"
        );
    }
}

async fn check_single_rows(client: &Client, round: i64, outcome: &Outcome) {
    let rows = client
        .query("SELECT id FROM singles WHERE round = $1", &[&round])
        .await
        .unwrap();
    let stored: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let unique: HashSet<i64> = stored.iter().copied().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "round {round}: duplicated single rows"
    );
    let lost: Vec<&i64> = outcome
        .acknowledged
        .iter()
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "round {round}: acknowledged rows lost: {lost:?}"
    );
    let allowed: HashSet<i64> = outcome
        .acknowledged
        .iter()
        .copied()
        .chain(outcome.in_flight)
        .collect();
    assert!(
        unique.is_subset(&allowed),
        "round {round}: rows nobody wrote"
    );
}

/// Tables filled by whole statements (COPY, INSERT … SELECT): each acknowledged batch is
/// there once with all its rows; the one in flight is whole or absent.
async fn check_batches(client: &Client, table: &str, round: i64, size: i64, outcome: &Outcome) {
    let low = round * 1_000_000;
    let sql = format!(
        "SELECT batch, count(*), count(DISTINCT id) FROM {table} \
         WHERE batch >= $1 AND batch < $2 GROUP BY batch"
    );
    let rows = client
        .query(&sql, &[&low, &(low + 1_000_000)])
        .await
        .unwrap();
    let stored: HashMap<i64, (i64, i64)> = rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    for key in &outcome.acknowledged {
        assert_eq!(
            stored.get(key),
            Some(&(size, size)),
            "round {round}, {table}: acknowledged batch {key} not there exactly once"
        );
    }
    for (key, counts) in &stored {
        let known = outcome.acknowledged.contains(key) || outcome.in_flight == Some(*key);
        assert!(known, "round {round}, {table}: batch {key} nobody wrote");
        assert_eq!(
            *counts,
            (size, size),
            "round {round}, {table}: batch {key} is partial"
        );
    }
}

async fn table_names(client: &Client, prefix: &str) -> HashSet<String> {
    client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE $1",
            &[&format!("{prefix}%")],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn row_count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{table}: {e:?}"))
        .get(0)
}

/// Every acknowledged table exists and is whole; the one in flight is whole or absent.
async fn check_created_tables(client: &Client, round: i64, outcome: &Outcome) {
    let names = table_names(client, &format!("ctas_{round}_")).await;
    let mut created = Vec::new();
    for key in outcome
        .acknowledged
        .iter()
        .copied()
        .chain(outcome.in_flight)
    {
        let name = ctas_table(round, key);
        if names.contains(&name) {
            assert_eq!(
                row_count(client, &name).await,
                CTAS_ROWS,
                "{name} is partial"
            );
            created.push(key);
        } else {
            assert_eq!(
                outcome.in_flight,
                Some(key),
                "acknowledged CREATE TABLE {name} is gone"
            );
        }
    }
    assert_eq!(
        names.len(),
        created.len(),
        "tables nobody created: {names:?}"
    );
}

/// Every acknowledged DROP stays done; the table in flight (being created or dropped at
/// the kill) is whole or absent; no other table of the DROP writer is left.
async fn check_dropped_tables(client: &Client, round: i64, outcome: &Outcome) {
    let names = table_names(client, &format!("dropped_{round}_")).await;
    let in_flight = outcome.in_flight.map(|key| drop_table(round, key));
    for name in &names {
        assert_eq!(
            Some(name),
            in_flight.as_ref(),
            "acknowledged DROP TABLE {name} is undone"
        );
        assert_eq!(
            row_count(client, name).await,
            CTAS_ROWS,
            "{name} half dropped"
        );
    }
}

/// The replaced table holds exactly one whole generation: the last acknowledged, the one
/// in flight, or (nothing acknowledged) the one before the round. Returns it.
async fn check_replaced_table(client: &Client, before: i64, outcome: &Outcome) -> i64 {
    let rows = client
        .query(
            "SELECT generation, count(*), count(DISTINCT id) FROM rep GROUP BY generation",
            &[],
        )
        .await
        .expect("the replaced table exists");
    assert_eq!(rows.len(), 1, "rep mixes generations");
    let (generation, count, distinct): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(
        (count, distinct),
        (REPLACE_ROWS, REPLACE_ROWS),
        "rep is partial"
    );
    let last_acknowledged = outcome.acknowledged.last().copied().unwrap_or(before);
    assert!(
        generation == last_acknowledged || Some(generation) == outcome.in_flight,
        "rep holds generation {generation}; last acknowledged {last_acknowledged}, in flight {:?}",
        outcome.in_flight
    );
    generation
}
