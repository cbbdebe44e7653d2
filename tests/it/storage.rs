//! Durable tables: restart, DROP, the data-dir lock, Delta compatibility, concurrent
//! INSERTs with freshness and compaction, COPY FROM STDIN through psql, and the crash
//! test (SIGKILL mid-stream; every acknowledged row is there exactly once).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::record_batch::RecordBatch;
use rankql::engine::{Engine, EngineOptions};

use crate::common::{connect, models_dir, options, start_server_with};
use crate::psql::psql;

fn durable_options(dir: &Path) -> EngineOptions {
    EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..options(false)
    }
}

async fn query(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    engine
        .context
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn single_i64(engine: &Engine, sql: &str) -> i64 {
    let batches = query(engine, sql).await;
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap_or_else(|| panic!("{sql}: not a BIGINT"))
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_survive_a_restart_and_drop_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::new(durable_options(dir.path())).await.unwrap();
        query(
            &engine,
            "CREATE TABLE events (id BIGINT NOT NULL, kind TEXT)",
        )
        .await;
        query(
            &engine,
            "INSERT INTO events VALUES (1, 'view'), (2, 'click')",
        )
        .await;
        query(&engine, "INSERT INTO events VALUES (3, NULL)").await;
        query(
            &engine,
            "CREATE TABLE doubled AS SELECT id * 2 AS twice FROM events",
        )
        .await;
        query(&engine, "CREATE TABLE empty_one (x INT)").await;
    }
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    assert_eq!(single_i64(&engine, "SELECT count(*) FROM events").await, 3);
    assert_eq!(
        single_i64(&engine, "SELECT sum(twice) FROM doubled").await,
        12
    );
    assert_eq!(
        single_i64(&engine, "SELECT count(*) FROM empty_one").await,
        0
    );
    assert_eq!(
        single_i64(&engine, "SELECT count(*) FROM events WHERE kind IS NULL").await,
        1
    );
    query(&engine, "DROP TABLE doubled").await;
    assert!(!dir.path().join("tables").join("doubled").exists());
    drop(engine);
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    let error = engine
        .context
        .sql("SELECT * FROM doubled")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("doubled"), "{error}");
    assert_eq!(single_i64(&engine, "SELECT count(*) FROM events").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_data_dir_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    let second = Engine::new(durable_options(dir.path())).await;
    let error = second.err().expect("second open must fail").to_string();
    assert!(error.contains("in use by another rankql"), "{error}");

    let error = engine
        .context
        .sql("CREATE TABLE \"../escape\" (x INT)")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot be stored"), "{error}");
    let error = engine
        .context
        .sql("SELECT * FROM \"../escape\"")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("escape"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_data_dir_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let error = Engine::new(durable_options(&file))
        .await
        .err()
        .expect("must fail");
    assert!(error.to_string().contains("not-a-directory"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_delta_tables_that_a_delta_reader_opens() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    query(
        &engine,
        "CREATE TABLE scores AS SELECT * FROM (VALUES (1, 0.5), (2, 0.25)) AS t(id, score)",
    )
    .await;
    let location = dir.path().join("tables").join("scores");
    assert!(location
        .join("_delta_log")
        .join("00000000000000000000.json")
        .is_file());

    let reader = Engine::new(options(false)).await.unwrap();
    query(
        &reader,
        &format!(
            "CREATE EXTERNAL TABLE copied STORED AS DELTATABLE LOCATION '{}'",
            location.display()
        ),
    )
    .await;
    assert_eq!(single_i64(&reader, "SELECT sum(id) FROM copied").await, 3);
}

/// Active data files of a Delta table, as a Delta reader sees them.
async fn active_files(location: &Path) -> usize {
    let url = url::Url::from_directory_path(location).unwrap();
    let table = deltalake_core::open_table(url).await.unwrap();
    table.get_file_uris().unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_single_row_inserts_are_kept_fresh_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(durable_options(dir.path())).await;
    let port = server.port;
    connect(port)
        .await
        .simple_query("CREATE TABLE clicks (id BIGINT NOT NULL, writer BIGINT)")
        .await
        .unwrap();
    const WRITERS: i64 = 16;
    const ROWS_EACH: i64 = 40;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        tasks.push(tokio::spawn(async move {
            let inserter = connect(port).await;
            let reader = connect(port).await;
            for i in 0..ROWS_EACH {
                let id = writer * 1000 + i;
                inserter
                    .simple_query(&format!("INSERT INTO clicks VALUES ({id}, {writer})"))
                    .await
                    .unwrap();
                let seen = reader
                    .query_one(&format!("SELECT count(*) FROM clicks WHERE id = {id}"), &[])
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
                assert_eq!(
                    seen, 1,
                    "row {id} not visible on another connection after INSERT returned"
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let client = connect(port).await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM clicks", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), WRITERS * ROWS_EACH);
    assert_eq!(row.get::<_, i64>(1), WRITERS * ROWS_EACH);
    let files = active_files(&dir.path().join("tables").join("clicks")).await;
    assert!(
        files <= 70,
        "{files} data files for {} single-row inserts: compaction did not run",
        WRITERS * ROWS_EACH
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_through_psql() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(EngineOptions {
        demo: true,
        ..durable_options(dir.path())
    })
    .await;
    let client = connect(server.port).await;
    client
        .simple_query("CREATE TABLE views (user_id BIGINT NOT NULL, product TEXT, ts TIMESTAMP)")
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let text = files.path().join("views.tsv");
    std::fs::write(&text, "1\tlamp\t2026-11-01 10:00:00\n2\tsofa, blue\t\\N\n").unwrap();
    let csv = files.path().join("views.csv");
    std::fs::write(
        &csv,
        "user_id,product,ts\n3,\"desk \"\"pro\"\"\",2026-11-02T08:00:00\n4,,\n",
    )
    .unwrap();
    let copy_text = format!("\\copy views FROM '{}'", text.display());
    let Some((ok, out, err)) = psql(server.port, &["-c", &copy_text]).await else {
        return;
    };
    assert!(ok && out.contains("COPY 2"), "{out}{err}");
    let copy_csv = format!(
        "\\copy views FROM '{}' WITH (FORMAT csv, HEADER true)",
        csv.display()
    );
    let (ok, out, err) = psql(server.port, &["-c", &copy_csv]).await.unwrap();
    assert!(ok && out.contains("COPY 2"), "{out}{err}");
    let row = client
        .query_one(
            "SELECT count(*), count(ts), max(product) FILTER (WHERE user_id = 3) FROM views",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, String>(2), "desk \"pro\"");

    let bad = files.path().join("bad.tsv");
    std::fs::write(&bad, "5\tok\t\\N\nsix\tbad\t\\N\n").unwrap();
    let copy_bad = format!("\\copy views FROM '{}'", bad.display());
    let (ok, _, err) = psql(server.port, &["-c", &copy_bad]).await.unwrap();
    assert!(
        !ok && err.contains("line 2") && err.contains("user_id"),
        "{err}"
    );
    let (ok, _, err) = psql(server.port, &["-c", "\\copy views (product) FROM STDIN"])
        .await
        .unwrap();
    assert!(!ok && err.contains("NOT NULL"), "{err}");
    let (ok, _, err) = psql(server.port, &["-c", "\\copy nowhere FROM STDIN"])
        .await
        .unwrap();
    assert!(!ok && err.contains("nowhere"), "{err}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM views", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4, "a rejected COPY must leave the table unchanged");

    // In-memory tables (the demo's) take COPY too.
    let events = files.path().join("events.csv");
    std::fs::write(&events, "999001,7,3,view,2026-11-01T00:00:00Z\n").unwrap();
    let copy_events = format!("\\copy events FROM '{}' CSV", events.display());
    let (ok, out, err) = psql(server.port, &["-c", &copy_events]).await.unwrap();
    assert!(ok && out.contains("COPY 1"), "{out}{err}");
}

/// `rankql serve` as a child process on a free port, with its data dir.
pub(crate) struct ServerProcess {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl ServerProcess {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, options: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rankql"))
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(options)
            .env("RANKQL_MODELS", models_dir())
            .env("RANKQL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rankql serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let address = rest.split([';', ' ']).next().unwrap_or_default();
                    let port = address
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(port), Some(found)) = (port, found.take()) {
                        let _ = found.send(port);
                    }
                }
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its address");
        Self { child, port }
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_row_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    connect(server.port)
        .await
        .simple_query("CREATE TABLE acks (id BIGINT NOT NULL, round BIGINT)")
        .await
        .unwrap();
    let mut server = Some(server);
    let acknowledged: Arc<Mutex<Vec<i64>>> = Arc::default();
    for round in 0..3i64 {
        let port = server.as_ref().expect("running").port;
        let mut writers = Vec::new();
        for writer in 0..8i64 {
            let acknowledged = acknowledged.clone();
            writers.push(tokio::spawn(async move {
                let client = connect(port).await;
                for i in 0.. {
                    let id = round * 1_000_000 + writer * 100_000 + i;
                    let sql = format!("INSERT INTO acks VALUES ({id}, {round})");
                    if client.simple_query(&sql).await.is_err() {
                        break;
                    }
                    acknowledged.lock().unwrap().push(id);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.take().expect("running").kill_9();
        for writer in writers {
            writer.await.unwrap();
        }
        server = Some(ServerProcess::start(dir.path()));
    }
    let port = server.as_ref().expect("running").port;
    let client = connect(port).await;
    let rows = client.query("SELECT id FROM acks", &[]).await.unwrap();
    let stored: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let unique: HashSet<i64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "duplicated rows after crashes");
    let acknowledged: Vec<i64> = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "too few inserts to test anything: {}",
        acknowledged.len()
    );
    let lost: Vec<&i64> = acknowledged
        .iter()
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // The table still takes writes after three crashes.
    client
        .simple_query("INSERT INTO acks VALUES (-1, -1)")
        .await
        .unwrap();
}

/// Rows of a Delta table, read by a separate in-memory engine (a Delta reader that is
/// not the server).
pub(crate) async fn delta_rows(location: &Path) -> i64 {
    let reader = Engine::new(options(false)).await.unwrap();
    query(
        &reader,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS DELTATABLE LOCATION '{}'",
            location.display()
        ),
    )
    .await;
    single_i64(&reader, "SELECT count(*) FROM t").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_only_in_the_write_ahead_log_survive_kill_9_and_reach_delta() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("tables").join("events");
    // Ten minutes between commits of logged rows: everything after the first insert
    // stays in the write-ahead log until the kill.
    let server = ServerProcess::start_with(dir.path(), &["--commit-interval-ms", "600000"]);
    let client = connect(server.port).await;
    client
        .simple_query("CREATE TABLE events (id BIGINT NOT NULL, kind TEXT)")
        .await
        .unwrap();
    for id in 0..50 {
        client
            .simple_query(&format!("INSERT INTO events VALUES ({id}, 'view')"))
            .await
            .unwrap();
    }
    let seen: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 50, "acknowledged rows are visible at once");
    assert!(
        delta_rows(&location).await < 50,
        "the rows should still be in the log only"
    );
    server.kill_9();

    let server = ServerProcess::start(dir.path());
    let client = connect(server.port).await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM events", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (50, 50));
    // Replayed rows are committed to Delta at start, once.
    let mut in_delta = 0;
    for _ in 0..100 {
        in_delta = delta_rows(&location).await;
        if in_delta == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        in_delta, 50,
        "logged rows did not reach Delta after restart"
    );
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM events", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_through_psycopg() {
    if !crate::common::runs("python3", &["-c", "import psycopg"]) {
        crate::common::missing_dependency(
            "copy_from_stdin_through_psycopg",
            "the Python package psycopg",
            "pip install 'psycopg[binary]'; .ci/run installs it",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(durable_options(dir.path())).await;
    let script = format!(
        r#"
import psycopg
with psycopg.connect("host=127.0.0.1 port={port} user=rankql dbname=rankql", autocommit=True) as conn:
    conn.execute("CREATE TABLE ratings (user_id BIGINT NOT NULL, item TEXT, score DOUBLE)")
    with conn.cursor() as cur:
        with cur.copy("COPY ratings (user_id, item, score) FROM STDIN") as copy:
            for i in range(5000):
                copy.write_row((i, f"item\t{{i}}", i / 10 if i % 7 else None))
    print(conn.execute("SELECT count(*), count(score), max(item) FROM ratings").fetchone())
"#,
        port = server.port
    );
    let stdout = crate::common::run_python(script).await;
    assert_eq!(stdout.trim(), "(5000, 4285, 'item\\t999')");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_deltalake_reads_rankql_tables() {
    if !crate::common::runs("python3", &["-c", "import deltalake, pyarrow"]) {
        crate::common::missing_dependency(
            "python_deltalake_reads_rankql_tables",
            "the Python packages deltalake and pyarrow",
            "pip install deltalake pyarrow; .ci/run installs them",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    query(
        &engine,
        "CREATE TABLE clicks (id BIGINT NOT NULL, product TEXT)",
    )
    .await;
    query(
        &engine,
        "INSERT INTO clicks VALUES (1, 'lamp'), (2, 'sofa')",
    )
    .await;
    query(&engine, "INSERT INTO clicks VALUES (3, NULL)").await;
    // Closing commits what waits in the write-ahead log, so Delta readers see it all.
    drop(engine);
    let location = dir.path().join("tables").join("clicks");
    let script = format!(
        // os._exit: deltalake 1.6.6 + pyarrow 26 can abort in interpreter shutdown
        // ("terminate called without an active exception") after the read succeeded.
        "import deltalake, os, sys\nt = deltalake.DeltaTable({:?}).to_pyarrow_table()\nprint(t.num_rows, sorted(t.column('id').to_pylist()))\nsys.stdout.flush()\nos._exit(0)",
        location.display().to_string()
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "3 [1, 2, 3]");
}

/// Plain INSERTs of literals (sent with the simple protocol) skip DataFusion's planner;
/// the same rows sent through the extended protocol take DataFusion's INSERT. Both must
/// store the same values, and what the fast path cannot take exactly still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_inserts_store_what_datafusion_would() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(durable_options(dir.path())).await;
    let client = connect(server.port).await;
    client
        .simple_query(
            "CREATE TABLE typed (path TEXT NOT NULL, id BIGINT NOT NULL, n INT, price DOUBLE, \
             amount DECIMAL(10, 2), name TEXT, ts TIMESTAMP, day DATE, flag BOOLEAN)",
        )
        .await
        .unwrap();
    let rows = [
        "(7, 42, 1.5, 2, 'ünï', '2026-11-30 12:00:00', '2026-11-30', true)",
        "(-8, -1, -0.25, 3.25, NULL, NULL, NULL, false)",
        "(9, NULL, 1e3, NULL, 'it''s', '2026-01-01T00:00:01.5', NULL, NULL)",
    ];
    for row in rows {
        let fast = format!("INSERT INTO typed VALUES ('fast', {}", &row[1..]);
        client
            .simple_query(&fast)
            .await
            .unwrap_or_else(|e| panic!("{fast}: {e}"));
        let planned = format!("INSERT INTO typed VALUES ('planned', {}", &row[1..]);
        client
            .execute(&planned, &[])
            .await
            .unwrap_or_else(|e| panic!("{planned}: {e}"));
    }
    // Reordered columns, several rows in one statement.
    client
        .simple_query(
            "INSERT INTO typed (flag, day, ts, name, amount, price, n, id, path) VALUES \
             (NULL, NULL, NULL, 'a', NULL, NULL, NULL, 100, 'both'), \
             (NULL, NULL, NULL, 'b', NULL, NULL, NULL, 101, 'both')",
        )
        .await
        .unwrap();
    let select = |path: &str| {
        format!(
            "SELECT id, n, price, CAST(amount AS TEXT), name, CAST(ts AS TEXT), \
             CAST(day AS TEXT), flag FROM typed WHERE path = '{path}' ORDER BY id"
        )
    };
    let show = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<Vec<Option<String>>> {
        rows.into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    };
    let fast = show(client.simple_query(&select("fast")).await.unwrap());
    let planned = show(client.simple_query(&select("planned")).await.unwrap());
    assert_eq!(fast.len(), 3);
    assert_eq!(
        fast, planned,
        "the fast path stored other values than DataFusion"
    );
    let both = show(client.simple_query(&select("both")).await.unwrap());
    assert_eq!(both.len(), 2);
    // Not literal-only, or not fitting: DataFusion decides (runs it or names the error).
    client
        .simple_query("INSERT INTO typed VALUES ('expr', 1 + 1, 2 * 3, NULL, NULL, upper('x'), now(), NULL, NULL)")
        .await
        .unwrap();
    let null_id = client
        .simple_query(
            "INSERT INTO typed VALUES ('bad', NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .await
        .unwrap_err();
    assert!(null_id.as_db_error().is_some(), "{null_id:?}");
    let bad_time = client
        .simple_query(
            "INSERT INTO typed VALUES ('bad', 1, 1, NULL, NULL, NULL, 'not a time', NULL, NULL)",
        )
        .await
        .unwrap_err();
    assert!(bad_time.as_db_error().is_some(), "{bad_time:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM typed WHERE path = 'bad'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "refused rows were stored");
}

/// INSERTs with bound parameters (extended protocol, as JDBC, node-postgres and
/// tokio-postgres send them) take the fast path too, and store what literals store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_inserts_store_what_literal_inserts_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(durable_options(dir.path())).await;
    let client = connect(server.port).await;
    client
        .simple_query(
            "CREATE TABLE bound (path TEXT NOT NULL, id BIGINT NOT NULL, n INT, price DOUBLE, \
             name TEXT, flag BOOLEAN)",
        )
        .await
        .unwrap();
    client
        .simple_query(
            "INSERT INTO bound VALUES ('literal', 7, 42, 1.5, 'ünï', true), \
             ('literal', -8, NULL, -0.25, NULL, false)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO bound VALUES ('bound', $1, $2, $3, $4, $5)")
        .await
        .unwrap();
    client
        .execute(
            &insert,
            &[&7i64, &Some(42i32), &1.5f64, &Some("ünï"), &Some(true)],
        )
        .await
        .unwrap();
    client
        .execute(
            &insert,
            &[&-8i64, &None::<i32>, &-0.25f64, &None::<&str>, &Some(false)],
        )
        .await
        .unwrap();
    let rows = |path: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT id, n, price, name, flag FROM bound WHERE path = $1 ORDER BY id",
                    &[&path],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    let values: (i64, Option<i32>, Option<f64>, Option<String>, Option<bool>) =
                        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
                    format!("{values:?}")
                })
                .collect::<Vec<_>>()
        }
    };
    let literal = rows("literal").await;
    assert_eq!(literal.len(), 2);
    assert_eq!(literal, rows("bound").await);
    let refused = client
        .execute(
            &insert,
            &[
                &None::<i64>,
                &None::<i32>,
                &0.0f64,
                &None::<&str>,
                &None::<bool>,
            ],
        )
        .await
        .unwrap_err();
    assert!(refused.as_db_error().is_some(), "{refused:?}");
}

/// Prepared `WHERE key = $1` statements on durable tables are answered from the tables'
/// key lists (`point_lookup`): the shapes it takes and leaves, and — over the wire, in
/// binary and text results — the same rows as a scan, including rows still in the
/// write-ahead log, NULL keys, missing keys, text keys and duplicate keys.
#[tokio::test]
async fn prepared_key_lookups_answer_as_a_scan_would() {
    use rankql::server::point_lookup::PointLookup;

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable_options(dir.path())).await.unwrap();
    query(
        &engine,
        "CREATE TABLE items AS SELECT value AS id, 'item ' || value AS name, \
         CAST(value % 7 AS INT) AS shelf FROM range(0, 5000)",
    )
    .await;
    let plan = |sql: &'static str| {
        let state = engine.context.state();
        async move { state.create_logical_plan(sql).await.unwrap() }
    };
    for taken in [
        "SELECT id, name FROM items WHERE id = $1",
        "SELECT * FROM items WHERE $1 = name",
        "SELECT i.name AS n FROM items i WHERE i.shelf = 3",
    ] {
        assert!(PointLookup::of(&plan(taken).await).is_some(), "{taken}");
    }
    for left in [
        "SELECT id FROM items WHERE id + 0 = $1",
        "SELECT upper(name) FROM items WHERE id = $1",
        "SELECT id FROM items WHERE id = $1 AND shelf = 2",
        "SELECT id FROM items WHERE id > $1",
        "SELECT count(*) FROM items WHERE id = $1",
        "SELECT id FROM items WHERE id = $1 LIMIT 1",
    ] {
        assert!(PointLookup::of(&plan(left).await).is_none(), "{left}");
    }
    drop(engine);

    let server = start_server_with(durable_options(dir.path())).await;
    let client = connect(server.port).await;
    // Rows acknowledged after the statement was prepared, still in the write-ahead log.
    let lookup = client
        .prepare("SELECT id, name, shelf FROM items WHERE id = $1")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO items VALUES (9001, 'late', 1), (42, 'second 42', 0)")
        .await
        .unwrap();
    let scan = client
        .prepare("SELECT id, name, shelf FROM items WHERE id + 0 = $1 ORDER BY name")
        .await
        .unwrap();
    let rows = |rows: Vec<tokio_postgres::Row>| -> Vec<(i64, String, i32)> {
        let mut rows: Vec<(i64, String, i32)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        rows
    };
    for key in [0i64, 42, 4999, 9001, 5000, -1] {
        let found = rows(client.query(&lookup, &[&key]).await.unwrap());
        let scanned = rows(client.query(&scan, &[&key]).await.unwrap());
        assert_eq!(found, scanned, "key {key}");
    }
    assert_eq!(
        rows(client.query(&lookup, &[&42i64]).await.unwrap()).len(),
        2,
        "both rows of a duplicate key"
    );
    let none: Option<i64> = None;
    assert!(client.query(&lookup, &[&none]).await.unwrap().is_empty());
    let by_name = client
        .prepare("SELECT id FROM items WHERE name = $1")
        .await
        .unwrap();
    let ids: Vec<i64> = client
        .query(&by_name, &[&"item 77"])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [77]);
    // The text protocol (what psql and pgbench read) with a literal key.
    let text = client
        .simple_query("SELECT name FROM items WHERE id = 9001")
        .await
        .unwrap();
    assert!(format!("{text:?}").contains("late"), "{text:?}");
}
