//! The real `psql` binary against the server: queries, `\d`, `\dt`, a BI-style query.

use std::process::Command;

use crate::common::{options, start_server, start_server_with};

/// Runs psql with `args`; `None` (and a message) when psql is not installed.
pub(crate) async fn psql(port: u16, args: &[&str]) -> Option<(bool, String, String)> {
    if !crate::common::runs("psql", &["--version"]) {
        crate::common::missing_dependency(
            "psql",
            "the psql client",
            "apt-get install postgresql-client; .ci/run installs it",
        );
        return None;
    }
    let mut command = Command::new("psql");
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "rankql",
            "-d",
            "rankql",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10");
    // psql blocks; run it off the runtime's threads, which serve the server under test.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("psql task")
        .expect("psql runs");
    Some((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_queries_and_describes() {
    let server = start_server().await;
    let Some((ok, out, err)) =
        psql(server.port, &["-c", "SELECT count(*) AS n FROM products"]).await
    else {
        return;
    };
    assert!(ok && out.contains("300"), "{out}{err}");

    let (ok, out, err) = psql(server.port, &["-c", "\\dt"]).await.unwrap();
    assert!(ok, "{err}");
    for table in ["products", "users", "events"] {
        assert!(out.contains(table), "\\dt lacks {table}: {out}");
    }

    let (ok, out, err) = psql(server.port, &["-c", "\\d products"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("title") && out.contains("price"), "{out}");

    let (ok, out, err) = psql(server.port, &["-c", "\\d+ products"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("Storage") && out.contains("extended"), "{out}");

    // A vector column is pgvector's `vector(d)`, a list of floats an array, as on the wire.
    let (ok, out, err) = psql(
        server.port,
        &[
            "-c",
            "CREATE TABLE described AS SELECT embed(title) AS v, make_array(1.0, 2.0) AS f \
             FROM products LIMIT 2",
            "-c",
            "\\d described",
        ],
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("vector(384)") && out.contains("double precision[]"),
        "{out}"
    );

    // rankql's functions are listed with their arguments, and `+` forms run.
    let (ok, out, err) = psql(server.port, &["-c", "\\df", "-c", "\\df+ embed"])
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("cosine")
            && out.contains("[model,] text")
            && out.contains("Sentence embedding"),
        "{out}"
    );
    for command in ["\\dt+", "\\dn+", "\\l+"] {
        let (ok, out, err) = psql(server.port, &["-c", command]).await.unwrap();
        assert!(ok, "{command}: {err}");
        assert!(
            out.contains("public") || out.contains("rankql"),
            "{command}: {out}"
        );
    }

    // No user exists: the trusted superuser is listed, as PostgreSQL lists its own.
    let (ok, out, err) = psql(server.port, &["-c", "\\du"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("rankql") && out.contains("Superuser"), "{out}");

    let (ok, out, err) = psql(
        server.port,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT embed('shoes') <=> embed('sneakers') < 0.5",
        ],
    )
    .await
    .unwrap();
    assert!(ok && out.trim() == "t", "{out}{err}");

    // An error is reported with its SQLSTATE and psql can carry on.
    let (ok, _, err) = psql(
        server.port,
        &["-v", "VERBOSITY=verbose", "-c", "SELECT * FROM nope"],
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("42P01"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_a_tables_vector_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(rankql::engine::EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..options(false)
    })
    .await;
    let setup = [
        "-c",
        "CREATE TABLE items AS SELECT value AS id, make_array(CAST(value AS REAL), 1.0) AS v \
         FROM range(0, 10)",
        "-c",
        "CREATE INDEX ON items USING hnsw (v vector_l2_ops)",
    ];
    let Some((ok, _, err)) = psql(server.port, &setup).await else {
        return;
    };
    assert!(ok, "{err}");
    let (ok, out, err) = psql(server.port, &["-c", "\\d items"]).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("Indexes:")
            && out.contains("\"items_v_idx\" hnsw (v vector_l2_ops) WITH (m = 16"),
        "{out}"
    );
    let (ok, out, err) = psql(server.port, &["-c", "\\di"]).await.unwrap();
    assert!(
        ok && out.contains("items_v_idx") && out.contains("index"),
        "{out}{err}"
    );
    let (ok, out, err) = psql(server.port, &["-c", "\\d items_v_idx"]).await.unwrap();
    assert!(
        ok && out.contains("hnsw, for table \"public.items\""),
        "{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tool_introspection_query() {
    let server = start_server().await;
    // Metabase-style column listing.
    let sql = "SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
               WHERE n.nspname = 'public' AND c.relname = 'products' AND a.attnum > 0 ORDER BY a.attnum";
    let Some((ok, out, err)) = psql(server.port, &["-A", "-t", "-c", sql]).await else {
        return;
    };
    assert!(ok, "{err}");
    assert!(
        out.contains("products|title|text") || out.contains("products|title|character varying"),
        "{out}"
    );
    // Metabase's and Grafana's column listing: PostgreSQL's types and positions from 1.
    let sql = "SELECT ordinal_position, column_name, data_type, udt_name, is_nullable \
               FROM information_schema.columns \
               WHERE table_schema = 'public' AND table_name = 'products' ORDER BY 1 LIMIT 2";
    let (ok, out, err) = psql(server.port, &["-A", "-t", "-c", sql]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "1|product_id|bigint|int8|NO\n2|title|text|text|NO",
        "{out}"
    );
}
