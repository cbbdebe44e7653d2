//! HNSW indexes: the plans the optimizer rule makes (and the ones it must leave alone),
//! property tests against the exact scan on clustered data spread over several data
//! files plus logged rows, a restart and a kill -9 mid-build, 16 concurrent clients
//! over the wire, `pg_indexes`, and owners-only `CREATE INDEX`.

use std::path::Path;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use rand::{Rng, SeedableRng};
use rankql::engine::{Engine, EngineOptions};
use rankql::storage::create_or_replace;
use rankql::storage::vector_index::{execute_index_statement, parse_index_statement};

use crate::common::{connect, options};
use crate::storage::ServerProcess;

fn durable(dir: &Path) -> EngineOptions {
    EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..options(false)
    }
}

/// Runs one statement as `rankql run` does (index statements included).
async fn run(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    let sql_start: String = sql.chars().take(160).collect();
    let sql_start = sql_start.as_str();
    if let Some(statement) = parse_index_statement(sql) {
        execute_index_statement(&engine.context, &statement)
            .await
            .expect("an index statement")
            .unwrap_or_else(|e| panic!("{sql_start}: {e}"));
        return Vec::new();
    }
    let plan = engine
        .context
        .state()
        .create_logical_plan(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql_start}: {e}"));
    if let Some(replaced) = create_or_replace(&engine.context, &plan).await {
        replaced.unwrap_or_else(|e| panic!("{sql_start}: {e}"));
        return Vec::new();
    }
    engine
        .context
        .execute_logical_plan(plan)
        .await
        .unwrap_or_else(|e| panic!("{sql_start}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql_start}: {e}"))
}

async fn explain(engine: &Engine, sql: &str) -> String {
    let batches = run(engine, &format!("EXPLAIN {sql}")).await;
    pretty_format_batches(&batches).unwrap().to_string()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// Clustered 16-dimensional vectors (as real embeddings are), as a pgvector literal.
fn clustered(rng: &mut rand_chacha::ChaCha8Rng, centres: &[Vec<f32>]) -> String {
    let centre = &centres[rng.random_range(0..centres.len())];
    let values: Vec<String> = centre
        .iter()
        .map(|c| format!("{:.4}", c + rng.random_range(-0.15f32..0.15)))
        .collect();
    format!("[{}]", values.join(","))
}

fn centres(rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Vec<f32>> {
    (0..12)
        .map(|_| (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

/// Inserts `rows` vectors with ids from `first` in one statement (one data file when it
/// is large enough to skip the write-ahead log, logged rows otherwise).
async fn insert(engine: &Engine, first: i64, rows: i64, rng: &mut rand_chacha::ChaCha8Rng) {
    let centres = centres(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let values: Vec<String> = (first..first + rows)
        .map(|id| format!("({id}, {}, {})", id % 10, clustered(rng, &centres)))
        .collect();
    run(
        engine,
        &format!("INSERT INTO vecs VALUES {}", values.join(",")),
    )
    .await;
}

/// Rows per data file of [`vecs`].
const FILE_ROWS: i64 = 4100;

/// A table `vecs(id, bucket, v)` of 16-d clustered vectors: three data files of 4,100
/// rows and a few logged rows.
async fn vecs(engine: &Engine, rng: &mut rand_chacha::ChaCha8Rng) {
    run(
        engine,
        "CREATE TABLE vecs (id BIGINT NOT NULL, bucket BIGINT, v REAL[])",
    )
    .await;
    for file in 0..3 {
        insert(engine, file * FILE_ROWS, FILE_ROWS, rng).await;
    }
    insert(engine, 3 * FILE_ROWS, 5, rng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_rewrites_only_indexed_top_k_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable(dir.path())).await.unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    vecs(&engine, &mut rng).await;
    let q = "'[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]'";
    let before = explain(
        &engine,
        &format!("SELECT id FROM vecs ORDER BY v <=> {q} LIMIT 5"),
    )
    .await;
    assert!(
        !before.contains("IndexedScanExec"),
        "no index, no change:\n{before}"
    );
    run(
        &engine,
        "CREATE INDEX vecs_cos ON vecs USING hnsw (v vector_cosine_ops)",
    )
    .await;
    run(&engine, "SET hnsw.ef_search = 77").await;
    for sql in [
        format!("SELECT id FROM vecs ORDER BY v <=> {q} LIMIT 5"),
        format!("SELECT id, cosine(v, {q}) AS score FROM vecs ORDER BY score DESC LIMIT 5"),
        format!("SELECT id FROM vecs WHERE bucket = 3 ORDER BY cosine({q}, v) DESC LIMIT 5"),
        format!("SELECT id FROM vecs ORDER BY 1 - cosine(v, {q}) LIMIT 5 OFFSET 2"),
        "SELECT id FROM vecs ORDER BY v <=> (SELECT v FROM vecs WHERE id = 7) LIMIT 5".into(),
    ] {
        let plan = explain(&engine, &sql).await;
        assert!(
            plan.contains("VectorSearchExec: table=vecs, index=vecs_cos (hnsw, vector_cosine_ops)")
                && plan.contains("ef_search=77"),
            "{sql}\n{plan}"
        );
    }
    for sql in [
        format!("SELECT id FROM vecs ORDER BY v <=> {q}"),
        format!("SELECT id FROM vecs ORDER BY cosine(v, {q}) LIMIT 5"),
        format!("SELECT id FROM vecs ORDER BY v <-> {q} LIMIT 5"),
        format!("SELECT id FROM vecs ORDER BY dot(v, {q}) DESC LIMIT 5"),
        "SELECT a.id FROM vecs a ORDER BY cosine(a.v, a.v) DESC LIMIT 5".to_string(),
        format!("SELECT id FROM vecs ORDER BY cosine(v, {q}) + 0 DESC LIMIT 5"),
    ] {
        let plan = explain(&engine, &sql).await;
        assert!(!plan.contains("VectorSearchExec"), "{sql}\n{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_results_match_the_exact_scan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable(dir.path())).await.unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    vecs(&engine, &mut rng).await;
    run(
        &engine,
        "CREATE INDEX ON vecs USING hnsw (v vector_cosine_ops)",
    )
    .await;
    run(&engine, "CREATE INDEX ON vecs USING hnsw (v vector_l2_ops)").await;
    run(&engine, "CREATE INDEX ON vecs USING hnsw (v vector_ip_ops)").await;
    let centres = centres(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    // Per metric: (true neighbours found at ef_search 40, asked for).
    let mut recall = [(0usize, 0usize); 3];
    for round in 0..24 {
        let q = clustered(&mut rng, &centres);
        let (order, exact) = match round % 3 {
            0 => (format!("v <=> '{q}'"), format!("(v <=> '{q}') + 0")),
            1 => (format!("v <-> '{q}'"), format!("(v <-> '{q}') + 0")),
            _ => (format!("v <#> '{q}'"), format!("(v <#> '{q}') + 0")),
        };
        let filter = if round % 2 == 0 {
            ""
        } else {
            "WHERE bucket = 4"
        };
        let k = 10;
        run(&engine, "SET hnsw.ef_search = 40").await;
        let approximate = ids(&run(
            &engine,
            &format!("SELECT id FROM vecs {filter} ORDER BY {order} LIMIT {k}"),
        )
        .await);
        let truth = ids(&run(
            &engine,
            &format!("SELECT id FROM vecs {filter} ORDER BY {exact} LIMIT {k}"),
        )
        .await);
        assert_eq!(approximate.len(), k, "k rows come back, filter or not");
        if filter.contains("bucket") {
            assert!(approximate.iter().all(|id| id % 10 == 4), "{approximate:?}");
        }
        recall[round % 3].0 += approximate.iter().filter(|id| truth.contains(id)).count();
        recall[round % 3].1 += k;
        // With ef_search at least a data file's size the search is exhaustive: equal sets.
        run(&engine, "SET hnsw.ef_search = 5000").await;
        let mut wide = ids(&run(
            &engine,
            &format!("SELECT id FROM vecs {filter} ORDER BY {order} LIMIT {k}"),
        )
        .await);
        let mut truth_sorted = truth.clone();
        wide.sort();
        truth_sorted.sort();
        if round % 3 == 2 {
            // Inner product is no metric: HNSW's search may stop early even then (as
            // in pgvector); on these vectors of unequal lengths it finds most.
            let overlap = wide.iter().filter(|id| truth_sorted.contains(id)).count();
            assert!(
                overlap >= k * 7 / 10,
                "{order} {filter}: {wide:?} vs {truth_sorted:?}"
            );
        } else {
            assert_eq!(wide, truth_sorted, "{order} {filter}");
        }
    }
    for (metric, (found, wanted)) in ["cosine", "l2"].iter().zip(recall) {
        let recall = found as f64 / wanted as f64;
        assert!(
            recall >= 0.9,
            "{metric}: recall@10 at ef_search 40 was {recall:.3}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_rows_are_found_and_indexes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let q = "[0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9,0.9]";
    {
        let engine = Engine::new(durable(dir.path())).await.unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        vecs(&engine, &mut rng).await;
        run(
            &engine,
            "CREATE INDEX vecs_cos ON vecs USING hnsw (v vector_cosine_ops)",
        )
        .await;
        run(&engine, &format!("INSERT INTO vecs VALUES (-1, 0, {q})")).await;
        let top = ids(&run(
            &engine,
            &format!("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 1"),
        )
        .await);
        assert_eq!(top, vec![-1], "a logged row is found at once");
        let listed = run(
            &engine,
            "SELECT indexname, indexdef FROM pg_catalog.pg_indexes WHERE tablename = 'vecs'",
        )
        .await;
        let listed = pretty_format_batches(&listed).unwrap().to_string();
        assert!(
            listed.contains("vecs_cos")
                && listed.contains("USING hnsw (v vector_cosine_ops) WITH (m = 16"),
            "{listed}"
        );
    }
    let graphs = dir.path().join("tables/vecs/_rankql_index/vecs_cos");
    let count = std::fs::read_dir(&graphs).unwrap().count();
    assert!(count >= 1, "graph files are stored beside the table");
    let engine = Engine::new(durable(dir.path())).await.unwrap();
    let top = ids(&run(
        &engine,
        &format!("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 1"),
    )
    .await);
    assert_eq!(top, vec![-1], "after a restart");
    let plan = explain(
        &engine,
        &format!("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 1"),
    )
    .await;
    assert!(plan.contains("VectorSearchExec"), "{plan}");
    // CREATE OR REPLACE keeps the index, its graphs built again before it returns.
    run(
        &engine,
        "CREATE OR REPLACE TABLE vecs AS SELECT * FROM vecs WHERE id >= 0",
    )
    .await;
    let count = std::fs::read_dir(&graphs).unwrap().count();
    assert!(count >= 1, "the replaced table's graphs are built");
    let plan = explain(
        &engine,
        &format!("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 1"),
    )
    .await;
    assert!(plan.contains("VectorSearchExec"), "{plan}");
    // Dropping the table drops its indexes with it.
    run(&engine, "DROP TABLE vecs").await;
    assert!(!graphs.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_and_a_kill_mid_build() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::new(durable(dir.path())).await.unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        vecs(&engine, &mut rng).await;
    }
    let q = "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]";
    let exact_sql = format!("SELECT id FROM vecs ORDER BY (v <=> '{q}') + 0 LIMIT 10");
    let index_sql = format!("SELECT id FROM vecs ORDER BY v <=> '{q}' LIMIT 10");
    // A server killed while CREATE INDEX builds leaves no index (or a whole one). The
    // index is made again with the same parameters, so the recall checked below is the
    // same whether the kill came before or after the build's commit (with the default
    // ef_construction = 64 these 12 tight clusters sometimes leave a graph a neighbour
    // short; recall itself is the property test's subject).

    {
        let server = ServerProcess::start(dir.path());
        let client = connect(server.port).await;
        let build = tokio::spawn(async move {
            let _ = client
                .simple_query("CREATE INDEX vecs_cos ON vecs USING hnsw (v vector_cosine_ops) WITH (ef_construction = 400)")
                .await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        drop(server);
        let _ = build.await;
    }
    let server = ServerProcess::start(dir.path());
    let client = connect(server.port).await;
    client
        .simple_query(
            "CREATE INDEX IF NOT EXISTS vecs_cos ON vecs USING hnsw (v vector_cosine_ops) \
             WITH (ef_construction = 400)",
        )
        .await
        .expect("the index can be created after the kill");
    let rows_of =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    let mut truth = rows_of(client.query(exact_sql.as_str(), &[]).await.unwrap());
    truth.sort();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let port = server.port;
        let sql = index_sql.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(port).await;
            client
                .simple_query("SET hnsw.ef_search = 200")
                .await
                .unwrap();
            let mut all = Vec::new();
            for _ in 0..5 {
                let rows = client.query(sql.as_str(), &[]).await.unwrap();
                let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                ids.sort();
                all.push(ids);
            }
            all
        }));
    }
    // The graphs are read-only: every concurrent search gives the same answer, and it
    // holds nearly all of the exact one.
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    for ids in &answers {
        assert_eq!(ids, &answers[0], "concurrent searches agree");
    }
    let found = answers[0].iter().filter(|id| truth.contains(id)).count();
    assert!(found >= 9, "{:?} vs exact {truth:?}", answers[0]);
    let dims = client
        .simple_query("CREATE INDEX ON vecs USING hnsw (bucket vector_cosine_ops)")
        .await
        .unwrap_err();
    assert_eq!(dims.code().map(|c| c.code()), Some("42804"), "{dims}");
}

/// `(query_id, neighbour_id)` pairs of a `nearest(…)` or exact per-row top-k query.
async fn pairs(engine: &Engine, sql: &str) -> std::collections::BTreeSet<(i64, i64)> {
    run(engine, sql)
        .await
        .iter()
        .flat_map(|b| {
            let q = b.column(0).as_primitive::<Int64Type>().values().to_vec();
            let n = b.column(1).as_primitive::<Int64Type>().values().to_vec();
            q.into_iter().zip(n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_gives_every_row_its_top_k() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(durable(dir.path())).await.unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    vecs(&engine, &mut rng).await;
    run(
        &engine,
        "CREATE TABLE queries AS SELECT id, v FROM vecs WHERE id % 400 = 0",
    )
    .await;
    let exact = |order: &str| {
        format!(
            "SELECT query_id, neighbour_id FROM (SELECT q.id AS query_id, t.id AS neighbour_id, \
             row_number() OVER (PARTITION BY q.id ORDER BY {order}, t.id) AS r \
             FROM queries q CROSS JOIN vecs t) WHERE r <= 5"
        )
    };
    let cosine_truth = pairs(&engine, &exact("cosine(q.v, t.v) DESC")).await;
    let l2_truth = pairs(&engine, &exact("l2_distance(q.v, t.v)")).await;
    let nearest = |metric: &str| {
        format!("SELECT * FROM nearest('queries', 'id', 'v', 'vecs', 'id', 'v', 5, '{metric}')")
    };
    // Without an index: exact.
    assert_eq!(pairs(&engine, &nearest("cosine")).await, cosine_truth);
    assert_eq!(pairs(&engine, &nearest("l2")).await, l2_truth);
    assert_eq!(cosine_truth.len(), 31 * 5);
    // With one: approximate at ef_search 40, exact when a search would visit every vector.
    run(
        &engine,
        "CREATE INDEX ON vecs USING hnsw (v vector_cosine_ops)",
    )
    .await;
    run(&engine, "SET hnsw.ef_search = 40").await;
    let found = pairs(&engine, &nearest("cosine")).await;
    let recall = found.intersection(&cosine_truth).count() as f64 / cosine_truth.len() as f64;
    assert!(recall >= 0.9, "recall@5 {recall:.3}");
    run(&engine, "SET hnsw.ef_search = 5000").await;
    assert_eq!(pairs(&engine, &nearest("cosine")).await, cosine_truth);
    let ranks = run(
        &engine,
        "SELECT min(rank), max(rank), count(DISTINCT query_id) FROM nearest('queries', 'id', 'v', 'vecs', 'id', 'v', 5)",
    )
    .await;
    let ranks = pretty_format_batches(&ranks).unwrap().to_string();
    assert!(
        ranks.contains("| 1 ") && ranks.contains("| 5 ") && ranks.contains("| 31 "),
        "{ranks}"
    );
    for (sql, error) in [
        (
            "SELECT * FROM nearest('queries', 'id', 'v', 'vecs', 'id', 'v')",
            "got 6 arguments",
        ),
        (
            "SELECT * FROM nearest('nope', 'id', 'v', 'vecs', 'id', 'v', 5)",
            "table nope does not exist",
        ),
        (
            "SELECT * FROM nearest('queries', 'id', 'w', 'vecs', 'id', 'v', 5)",
            "queries has no column w",
        ),
        (
            "SELECT * FROM nearest('queries', 'id', 'v', 'vecs', 'id', 'v', 0)",
            "k must be",
        ),
        (
            "SELECT * FROM nearest('queries', 'id', 'v', 'vecs', 'id', 'v', 5, 'l1')",
            "unknown metric",
        ),
    ] {
        let message = match engine.context.sql(sql).await {
            Ok(frame) => frame.collect().await.err().map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        assert!(
            message.as_deref().is_some_and(|m| m.contains(error)),
            "{sql}: {message:?}"
        );
    }
}
