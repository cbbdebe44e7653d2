//! The server through a real driver (tokio-postgres) and raw sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::common::{connect, start_server};

fn first_value(messages: &[SimpleQueryMessage]) -> String {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_protocol() {
    let server = start_server().await;
    let client = connect(server.port).await;

    let rows = client
        .simple_query("SELECT count(*) FROM products")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), "300");

    let row = client
        .query_one(
            "SELECT title, price FROM products WHERE product_id = $1",
            &[&7i64],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, String>(0).is_empty());
    assert!(row.get::<_, f64>(1) > 0.0);

    // One prepared statement, executed many times with different parameters.
    let statement = client
        .prepare("SELECT count(*) FROM events WHERE user_id = $1 AND event_type = $2")
        .await
        .unwrap();
    let mut total = 0i64;
    for user in 1..=200i64 {
        let row = client
            .query_one(&statement, &[&user, &"purchase"])
            .await
            .unwrap();
        total += row.get::<_, i64>(0);
    }
    let expected = client
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'purchase'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(total, expected);
}

/// A correlated scalar subquery in a `SELECT` list gives its values, over both protocols
/// (datafusion-postgres' parser used to answer NULL), and one of several rows is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalar_subqueries_in_select_lists_are_computed() {
    let server = start_server().await;
    let client = connect(server.port).await;
    let sql = "SELECT u.user_id, (SELECT count(*) FROM events e WHERE e.user_id = u.user_id) AS n \
               FROM users u ORDER BY u.user_id LIMIT 3";
    let joined = "SELECT u.user_id, count(e.user_id) AS n FROM users u \
                  LEFT JOIN events e ON e.user_id = u.user_id \
                  GROUP BY u.user_id ORDER BY u.user_id LIMIT 3";
    let expected: Vec<(i64, i64)> = client
        .query(joined, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(expected.iter().any(|(_, n)| *n > 0), "{expected:?}");
    let prepared: Vec<(i64, i64)> = client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(prepared, expected);
    let simple = client.simple_query(sql).await.unwrap();
    assert_eq!(first_value(&simple), expected[0].0.to_string());
    let counts: Vec<String> = simple
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(1).map(str::to_string),
            _ => None,
        })
        .collect();
    let expected_counts: Vec<String> = expected.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(counts, expected_counts);
    let error = client
        .simple_query("SELECT (SELECT user_id FROM users) AS x")
        .await
        .unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("more than one row")),
        "{message:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_and_vectors_over_the_wire() {
    let server = start_server().await;
    let client = connect(server.port).await;

    // An untyped text parameter, as drivers send it.
    let row = client
        .query_one("SELECT vector_dims(embed($1))", &[&"trail running shoes"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 384);

    // Vectors arrive as pgvector text.
    let rows = client
        .simple_query("SELECT embed('hello') AS v")
        .await
        .unwrap();
    let text = first_value(&rows);
    assert!(
        text.starts_with('[') && text.ends_with(']') && text.split(',').count() == 384,
        "{text}"
    );

    // A query vector as a text parameter.
    let row = client
        .query_one("SELECT round(cosine('[1, 0]', $1), 3)", &[&"[1, 1]"])
        .await
        .unwrap();
    assert!((row.get::<_, f64>(0) - 0.707).abs() < 1e-9);

    // Semantic search, top 3.
    let rows = client
        .query(
            "SELECT category FROM products ORDER BY embed(title) <=> embed($1) LIMIT 3",
            &[&"yoga mat for hot yoga"],
        )
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.get::<_, String>(0) == "yoga"));
}

async fn expect_error(
    client: &tokio_postgres::Client,
    sql: &str,
    state: &SqlState,
    fragment: &str,
) {
    let error = client.simple_query(sql).await.expect_err(sql);
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {error}"));
    assert_eq!(db.code(), state, "{sql}: {}", db.message());
    assert!(db.message().contains(fragment), "{sql}: {}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_sqlstate_and_the_connection_survives() {
    let server = start_server().await;
    let client = connect(server.port).await;

    expect_error(&client, "SELEC 1", &SqlState::SYNTAX_ERROR, "SELEC").await;
    expect_error(
        &client,
        "SELECT * FROM no_such_table",
        &SqlState::UNDEFINED_TABLE,
        "no_such_table",
    )
    .await;
    expect_error(
        &client,
        "SELECT no_such_function(1)",
        &SqlState::UNDEFINED_FUNCTION,
        "no_such_function",
    )
    .await;
    expect_error(
        &client,
        "SELECT cosine(1, 2)",
        &SqlState::DATATYPE_MISMATCH,
        "must be a vector",
    )
    .await;
    expect_error(
        &client,
        "SELECT cosine('[1,2]', '[1,2,3]')",
        &SqlState::INVALID_PARAMETER_VALUE,
        "2 vs 3",
    )
    .await;
    expect_error(
        &client,
        "SELECT embed('nope', 'x')",
        &SqlState::UNDEFINED_FILE,
        "not installed",
    )
    .await;

    // Same errors through the extended protocol.
    let error = client
        .query("SELECT * FROM no_such_table WHERE x = $1", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(
        error.as_db_error().unwrap().code(),
        &SqlState::UNDEFINED_TABLE
    );

    // The connection is still usable.
    let rows = client.simple_query("SELECT 1 + 1").await.unwrap();
    assert_eq!(first_value(&rows), "2");
}

async fn server_still_answers(port: u16) {
    let client = connect(port).await;
    let rows = client
        .simple_query("SELECT count(*) FROM users")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_do_not_hurt_the_server() {
    let server = start_server().await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage")
        .await
        .unwrap();
    let mut buffer = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await;
    drop(socket);
    server_still_answers(server.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused() {
    let server = start_server().await;
    let client = connect(server.port).await;
    // A 20 MiB statement: beyond rankql's 16 MiB limit.
    let huge = format!("SELECT '{}'", "x".repeat(20 << 20));
    let error = client
        .simple_query(&huge)
        .await
        .expect_err("an oversized statement is refused");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::PROGRAM_LIMIT_EXCEEDED);
    assert!(
        db.message().contains("exceeds rankql's limit"),
        "{}",
        db.message()
    );
    assert_eq!(
        first_value(&client.simple_query("SELECT 'still here'").await.unwrap()),
        "still here"
    );
    server_still_answers(server.port).await;

    // A message header claiming 1 GiB after a valid startup.
    let mut socket = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut startup = Vec::new();
    let params = b"user\0rankql\0database\0rankql\0\0";
    startup.extend_from_slice(&((8 + params.len()) as i32).to_be_bytes());
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(params);
    socket.write_all(&startup).await.unwrap();
    socket.write_all(b"Q").await.unwrap();
    socket.write_all(&(1i32 << 30).to_be_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await;
    drop(socket);
    server_still_answers(server.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_query_leaves_the_server_up() {
    use tokio::io::AsyncWriteExt;
    let server = start_server().await;
    // A raw client: start up (trusted loopback), send a long query, close the socket.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut startup = 196_608u32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0rankql\0database\0rankql\0\0");
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    let query = b"SELECT count(*) FROM generate_series(1, 20000000000) t WHERE value % 7 = 3\0";
    packet.push(b'Q');
    packet.extend_from_slice(&((query.len() + 4) as u32).to_be_bytes());
    packet.extend_from_slice(query);
    socket.write_all(&packet).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);
    // Others are served while (and after) the abandoned statement is stopped.
    let started = std::time::Instant::now();
    server_still_answers(server.port).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tables_and_copy_to_over_the_wire() {
    let server = start_server().await;
    let client = connect(server.port).await;
    let dir = tempfile::tempdir().unwrap();
    // Postgres-style COPY (format from the extension) and DataFusion's STORED AS.
    let file = dir.path().join("running.parquet");
    client
        .simple_query(&format!(
            "COPY (SELECT product_id, title, price FROM products WHERE category = 'running') TO '{}'",
            file.display()
        ))
        .await
        .unwrap();
    let messages = client
        .simple_query(&format!(
            "COPY (SELECT product_id FROM products WHERE category = 'yoga') TO '{}' STORED AS PARQUET",
            dir.path().join("yoga.parquet").display()
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(30))
        ),
        "{messages:?}"
    );
    client
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE running STORED AS PARQUET LOCATION '{}'",
            file.display()
        ))
        .await
        .unwrap();
    let rows = client
        .simple_query("SELECT count(*) FROM running")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), "30");

    let csv = dir.path().join("brands.csv");
    std::fs::write(&csv, "brand,country\nStride,DE\nLotus,IN\n").unwrap();
    client
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE brands STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            csv.display()
        ))
        .await
        .unwrap();
    let rows = client
        .simple_query("SELECT country FROM brands WHERE brand = 'Lotus'")
        .await
        .unwrap();
    assert_eq!(first_value(&rows), "IN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifies_as_postgresql_16_the_way_drivers_parse_it() {
    let server = start_server().await;
    let client = connect(server.port).await;
    let version = first_value(&client.simple_query("SELECT version()").await.unwrap());
    assert!(version.starts_with("PostgreSQL 16.6 (rankql "), "{version}");
    assert!(version.contains("Apache DataFusion"), "{version}");
    let shown = first_value(&client.simple_query("SHOW server_version").await.unwrap());
    assert!(shown.starts_with("16.6 (rankql "), "{shown}");
    let setting = first_value(
        &client
            .simple_query("SELECT current_setting('server_version')")
            .await
            .unwrap(),
    );
    assert_eq!(setting, shown);
    let number = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(number, "160006");
    // One database, named rankql, found by name as DBeaver looks it up.
    let database = first_value(
        &client
            .simple_query("SELECT current_database()")
            .await
            .unwrap(),
    );
    assert_eq!(database, "rankql");
    let found = first_value(
        &client
            .simple_query("SELECT count(*) FROM pg_catalog.pg_database WHERE datname = 'rankql'")
            .await
            .unwrap(),
    );
    assert_eq!(found, "1");
    // Drivers (psycopg, SQLAlchemy) issue savepoints while connecting.
    client
        .batch_execute("BEGIN; SAVEPOINT sp1; RELEASE SAVEPOINT sp1; COMMIT")
        .await
        .unwrap();
    // psycopg resets its prepared statements with DEALLOCATE ALL and poolers send
    // DISCARD ALL; the client then prepares again.
    let statement = client.prepare("SELECT 1 + $1::BIGINT").await.unwrap();
    client
        .batch_execute("DEALLOCATE ALL; DEALLOCATE PREPARE ALL; DISCARD ALL")
        .await
        .unwrap();
    // Constant statements are answered from the connection's fast path the second time,
    // with the same rows and column names.
    for _ in 0..2 {
        let rows = client
            .simple_query("SELECT 40 + 2 AS x, 'a' || 'b'")
            .await
            .unwrap();
        let tokio_postgres::SimpleQueryMessage::Row(row) = &rows[1] else {
            panic!("a row: {rows:?}")
        };
        assert_eq!((row.get("x"), row.get(1)), (Some("42"), Some("ab")));
    }
    let statement_again = client.prepare("SELECT 2 + $1::BIGINT").await.unwrap();
    let row = client.query_one(&statement_again, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    drop(statement);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_literals_are_int4_and_counts_int8_as_in_postgresql() {
    let server = start_server().await;
    let client = connect(server.port).await;
    let types = |statement: &tokio_postgres::Statement| -> Vec<String> {
        statement
            .columns()
            .iter()
            .map(|c| format!("{} {}", c.name(), c.type_().name()))
            .collect()
    };
    let statement = client
        .prepare("SELECT 1, -2 AS n, 3000000000 AS big, count(*) AS c FROM users")
        .await
        .unwrap();
    assert_eq!(
        types(&statement),
        ["?column? int4", "n int4", "big int8", "c int8"]
    );
    let row = client.query_one(&statement, &[]).await.unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i64>(3)
        ),
        (1, -2, 200)
    );
    // The simple protocol, the constant fast path (twice) and a UNION agree.
    for _ in 0..2 {
        let rows = client.simple_query("SELECT 1").await.unwrap();
        let tokio_postgres::SimpleQueryMessage::RowDescription(columns) = &rows[0] else {
            panic!("a description: {rows:?}")
        };
        assert_eq!(columns[0].name(), "?column?");
    }
    let union = client
        .prepare("SELECT 1 AS x UNION ALL SELECT 2")
        .await
        .unwrap();
    assert_eq!(types(&union), ["x int4"]);
    // Two unnamed literals get two names (PostgreSQL repeats `?column?`).
    let two = client.prepare("SELECT 1, 2").await.unwrap();
    assert_eq!(types(&two), ["?column? int4", "?column?_2 int4"]);
}

/// `FROM f(…) alias` names the one column of Postgres' one-column functions after the
/// alias (BI tools rely on it), and leaves multi-column table functions alone, so the
/// `sql/` pipelines run over the wire as they do in `rankql run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_aliases_name_one_column_functions_only() {
    let server = start_server().await;
    let client = connect(server.port).await;
    let rows = client
        .query("SELECT sum(g) FROM generate_series(1, 3) g", &[])
        .await
        .expect("one-column function under an alias");
    assert_eq!(rows[0].get::<_, i64>(0), 6);
    let rows = client
        .query("SELECT m.name FROM models() m WHERE m.name = 'minilm'", &[])
        .await
        .expect("multi-column table function under an alias");
    assert_eq!(rows.len(), 1);
}
