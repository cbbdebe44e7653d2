//! The team server: passwords (SCRAM-SHA-256), the loopback rule, roles and privileges
//! on every statement kind, server files, a session per connection, statement_timeout,
//! cancel requests and the connection limit — through real clients.

use std::path::Path;
use std::time::{Duration, Instant};

use rankql::engine::EngineOptions;
use rankql::server::privileges::FileAccess;
use rankql::server::ServerOptions;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::common::{
    add_user, connect, connect_as, login, options, start_server_on, start_server_with, TestServer,
};

fn code(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// A data directory with `admin` (superuser, password `admin-pw`), `reader` and
/// `writer` (passwords `reader-pw`, `writer-pw`).
fn users(dir: &Path) {
    add_user(dir, "admin", "admin-pw", true);
    add_user(dir, "reader", "reader-pw", false);
    add_user(dir, "writer", "writer-pw", false);
}

fn durable_demo(dir: &Path) -> EngineOptions {
    EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..options(true)
    }
}

async fn team_server(dir: &Path, server: ServerOptions) -> TestServer {
    users(dir);
    start_server_on("127.0.0.1", durable_demo(dir), server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_and_users_cannot_be_probed() {
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(dir.path(), ServerOptions::default()).await;
    let admin = connect_as("127.0.0.1", server.port, "admin", "admin-pw")
        .await
        .expect("the right password logs in");
    admin.simple_query("SELECT 1").await.unwrap();
    let wrong = connect_as("127.0.0.1", server.port, "admin", "nope")
        .await
        .unwrap_err();
    let unknown = connect_as("127.0.0.1", server.port, "mallory", "nope")
        .await
        .unwrap_err();
    assert_eq!(code(&wrong), "28P01");
    assert_eq!(code(&unknown), "28P01");
    let strip = |e: &tokio_postgres::Error| e.to_string().replace("mallory", "admin");
    assert_eq!(strip(&wrong), strip(&unknown), "same answer for both");
    // Once a user exists, loopback is not trusted either.
    let (_, no_password) = (
        (),
        tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=admin dbname=rankql",
                server.port
            ),
            NoTls,
        )
        .await
        .err()
        .expect("no password, no login"),
    );
    assert!(
        format!("{no_password:?}").contains("password"),
        "{no_password:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_in_sql_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = team_server(dir.path(), ServerOptions::default()).await;
        let admin = login(server.port, "admin", "admin-pw").await;
        admin
            .batch_execute("CREATE USER analyst WITH PASSWORD 'first'; ALTER USER analyst WITH PASSWORD 'second'")
            .await
            .unwrap();
        for catalog_query in [
            "SELECT rolname FROM pg_catalog.pg_roles ORDER BY rolname",
            "SELECT usename FROM pg_catalog.pg_user WHERE NOT usesuper ORDER BY usename",
            "SELECT usename FROM pg_catalog.pg_user WHERE passwd = '********'",
        ] {
            let rows = admin.simple_query(catalog_query).await.unwrap();
            let names: Vec<String> = rows
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect();
            assert!(
                names.contains(&"analyst".to_string()),
                "{catalog_query}: {names:?}"
            );
        }
        let duplicate = admin
            .simple_query("CREATE USER analyst PASSWORD 'x'")
            .await
            .unwrap_err();
        assert_eq!(code(&duplicate), "42710");
        let reader = login(server.port, "reader", "reader-pw").await;
        let refused = reader
            .simple_query("CREATE USER sneaky PASSWORD 'x'")
            .await
            .unwrap_err();
        assert_eq!(code(&refused), "42501");
        reader
            .simple_query("ALTER USER reader PASSWORD 'reader-new'")
            .await
            .expect("a user may change their own password");
    }
    let server = start_server_on(
        "127.0.0.1",
        durable_demo(dir.path()),
        ServerOptions::default(),
    )
    .await;
    assert!(connect_as("127.0.0.1", server.port, "analyst", "first")
        .await
        .is_err());
    connect_as("127.0.0.1", server.port, "analyst", "second")
        .await
        .expect("the altered password survives a restart");
    connect_as("127.0.0.1", server.port, "reader", "reader-new")
        .await
        .expect("the user's own change survives a restart");
    let admin = login(server.port, "admin", "admin-pw").await;
    admin.simple_query("DROP USER analyst").await.unwrap();
    assert!(connect_as("127.0.0.1", server.port, "analyst", "second")
        .await
        .is_err());
}

/// Each role × statement kind: allowed, or refused with 42501 naming the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(dir.path(), ServerOptions::default()).await;
    let admin = login(server.port, "admin", "admin-pw").await;
    admin
        .batch_execute(
            "CREATE TABLE clicks (user_id BIGINT, product_id BIGINT);
             CREATE TABLE admin_vecs AS SELECT 1 AS id, [1.0, 0.0] AS v;
             CREATE INDEX admin_vecs_idx ON admin_vecs USING hnsw (v vector_cosine_ops);
             GRANT SELECT ON products TO reader;
             GRANT SELECT, INSERT ON clicks TO writer;
             GRANT SELECT ON products TO writer;
             GRANT CREATE ON SCHEMA public TO writer",
        )
        .await
        .unwrap();
    let reader = login(server.port, "reader", "reader-pw").await;
    let writer = login(server.port, "writer", "writer-pw").await;

    let allowed: &[(&Client, &str)] = &[
        (&reader, "SELECT count(*) FROM products"),
        (
            &reader,
            "SELECT vector_dims(embed(title)) FROM products LIMIT 2",
        ),
        (&reader, "EXPLAIN SELECT * FROM products"),
        (&reader, "SELECT count(*) FROM pg_catalog.pg_class"),
        (&reader, "SET statement_timeout = '10s'"),
        (&writer, "INSERT INTO clicks VALUES (1, 2)"),
        (
            &writer,
            "INSERT INTO clicks SELECT 3, product_id FROM products LIMIT 1",
        ),
        (
            &writer,
            "CREATE TABLE mine AS SELECT product_id FROM products LIMIT 3",
        ),
        (&writer, "CREATE VIEW my_view AS SELECT * FROM clicks"),
        (&writer, "GRANT SELECT ON mine TO reader"),
        (&reader, "SELECT count(*) FROM mine"),
        (&writer, "DROP TABLE mine"),
    ];
    for (client, sql) in allowed {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql} should be allowed: {e}"));
    }
    let denied: &[(&Client, &str, &str)] = &[
        (&reader, "SELECT * FROM events", "events"),
        (
            &reader,
            "SELECT * FROM products WHERE product_id IN (SELECT product_id FROM events)",
            "events",
        ),
        (
            &reader,
            "WITH e AS (SELECT * FROM events) SELECT count(*) FROM e",
            "events",
        ),
        (
            &reader,
            "SELECT product_id FROM products UNION SELECT product_id FROM events",
            "events",
        ),
        (&reader, "EXPLAIN SELECT * FROM events", "events"),
        (&reader, "INSERT INTO clicks VALUES (1, 1)", "clicks"),
        (
            &reader,
            "CREATE TABLE t AS SELECT * FROM products",
            "public",
        ),
        (&reader, "CREATE VIEW v AS SELECT * FROM products", "public"),
        (&reader, "DROP TABLE products", "products"),
        (&writer, "DROP TABLE clicks", "clicks"),
        (
            &writer,
            "CREATE INDEX ON clicks USING hnsw (product_id vector_cosine_ops)",
            "clicks",
        ),
        (&writer, "DROP INDEX admin_vecs_idx", "admin_vecs"),
        (
            &writer,
            "CREATE OR REPLACE TABLE clicks AS SELECT 1 AS x",
            "clicks",
        ),
        (
            &writer,
            "INSERT INTO products SELECT * FROM products LIMIT 1",
            "products",
        ),
        (
            &reader,
            "SET datafusion.execution.batch_size = 10",
            "datafusion",
        ),
        (&reader, "GRANT SELECT ON events TO reader", "events"),
        (
            &reader,
            "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
            "/etc/passwd",
        ),
        (
            &reader,
            "COPY (SELECT 1) TO '/tmp/rankql-should-not-exist.csv'",
            "/tmp/rankql-should-not-exist.csv",
        ),
    ];
    for (client, sql, named) in denied {
        let error = client
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} should be refused"));
        assert_eq!(code(&error), "42501", "{sql}: {error}");
        let message = error
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(named), "{sql}: {message}");
    }
    assert!(!Path::new("/tmp/rankql-should-not-exist.csv").exists());
    // The extended protocol is checked as well (drivers with parameters use it).
    let error = reader
        .query("SELECT * FROM events WHERE user_id = $1", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(code(&error), "42501");
    // Revoked is revoked, at once — also for a statement the driver prepared before.
    let prepared = reader
        .prepare("SELECT count(*) FROM products WHERE product_id > $1")
        .await
        .unwrap();
    reader.query(&prepared, &[&0i64]).await.unwrap();
    admin
        .simple_query("REVOKE SELECT ON products FROM reader")
        .await
        .unwrap();
    let error = reader
        .simple_query("SELECT 1 FROM products")
        .await
        .unwrap_err();
    assert_eq!(code(&error), "42501");
    let error = reader.query(&prepared, &[&0i64]).await.unwrap_err();
    assert_eq!(
        code(&error),
        "42501",
        "a statement prepared before the REVOKE"
    );
    // A superuser may do everything.
    admin
        .simple_query("SELECT count(*) FROM events")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_access_directories_open_server_files_to_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(
        shared.path().join("brands.csv"),
        "brand,country\nStride,DE\n",
    )
    .unwrap();
    let server = team_server(
        dir.path(),
        ServerOptions {
            file_access: FileAccess::new(&[shared.path().to_path_buf()]).unwrap(),
            ..ServerOptions::default()
        },
    )
    .await;
    let admin = login(server.port, "admin", "admin-pw").await;
    admin
        .simple_query("GRANT CREATE ON SCHEMA public TO writer")
        .await
        .unwrap();
    let writer = login(server.port, "writer", "writer-pw").await;
    writer
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE brands STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            shared.path().join("brands.csv").display()
        ))
        .await
        .expect("a file inside --file-access");
    writer.simple_query("SELECT * FROM brands").await.unwrap();
    let escape = writer
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE escape STORED AS CSV LOCATION '{}/../../etc/passwd'",
            shared.path().display()
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&escape), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_per_connection() {
    let server = start_server_with(options(true)).await;
    let first = connect(server.port).await;
    let second = connect(server.port).await;
    first
        .simple_query("SET datafusion.sql_parser.enable_ident_normalization = false")
        .await
        .unwrap();
    second
        .simple_query("SELECT count(*) FROM PRODUCTS")
        .await
        .expect("another connection's SET does not leak");
    let error = first.simple_query("SELECT count(*) FROM PRODUCTS").await;
    assert!(error.is_err(), "the SET applies to its own connection");
    // RESET returns a session's settings to the server's defaults.
    let shown = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default()
    };
    second
        .batch_execute("SET statement_timeout = '2s'; SET application_name = 'nightly job'")
        .await
        .unwrap();
    assert_eq!(
        shown(second.simple_query("SHOW statement_timeout").await.unwrap()),
        "2000ms"
    );
    second
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    assert_eq!(
        shown(second.simple_query("SHOW statement_timeout").await.unwrap()),
        "0"
    );
    second.batch_execute("RESET ALL").await.unwrap();
    assert_ne!(
        shown(second.simple_query("SHOW application_name").await.unwrap()),
        "nightly job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_execution_and_streaming() {
    let server = start_server_with(options(false)).await;
    let client = connect(server.port).await;
    client
        .simple_query("SET statement_timeout = '1s'")
        .await
        .unwrap();
    for sql in [
        // Stopped while executing: no row exists before the aggregate finishes.
        "SELECT count(*) FROM generate_series(1, 20000000000)",
        // Stopped while streaming rows to the client.
        "SELECT * FROM generate_series(1, 2000000000)",
    ] {
        let started = Instant::now();
        let error = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&error), "57014", "{sql}: {error}");
        assert!(started.elapsed() < Duration::from_secs(20), "{sql}");
    }
    client
        .simple_query("SELECT 1")
        .await
        .expect("the connection stays usable");
    client
        .simple_query("SET statement_timeout = 0")
        .await
        .unwrap();
    client
        .simple_query("SELECT count(*) FROM generate_series(1, 3000000)")
        .await
        .expect("no timeout after SET statement_timeout = 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_query() {
    let server = start_server_with(options(false)).await;
    let client = connect(server.port).await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        token.cancel_query(NoTls).await
    });
    let started = Instant::now();
    let error = client
        .simple_query("SELECT * FROM generate_series(1, 2000000000)")
        .await
        .unwrap_err();
    assert_eq!(code(&error), "57014", "{error}");
    assert!(started.elapsed() < Duration::from_secs(20));
    canceller.await.unwrap().unwrap();
    client.simple_query("SELECT 1").await.expect("still usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_53300() {
    let server = start_server_on(
        "127.0.0.1",
        options(false),
        ServerOptions {
            max_connections: 2,
            ..ServerOptions::default()
        },
    )
    .await;
    let first = connect(server.port).await;
    let _second = connect(server.port).await;
    let error = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=rankql dbname=rankql",
            server.port
        ),
        NoTls,
    )
    .await
    .err()
    .expect("a third connection is refused");
    assert_eq!(
        code(&error),
        SqlState::TOO_MANY_CONNECTIONS.code(),
        "{error}"
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    connect(server.port)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

/// This machine's first non-loopback IPv4 address, if it has one (`hostname -I`).
fn non_loopback_address() -> Option<String> {
    let output = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| ip.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_only_loopback_is_let_in() {
    let Some(address) = non_loopback_address() else {
        crate::common::not_run_here(
            "without_users_only_loopback_is_let_in",
            "this machine has no non-loopback IPv4 address (hostname -I)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_on(
        "0.0.0.0",
        durable_demo(dir.path()),
        ServerOptions::default(),
    )
    .await;
    connect(server.port)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
    let error = tokio_postgres::connect(
        &format!(
            "host={address} port={} user=rankql dbname=rankql",
            server.port
        ),
        NoTls,
    )
    .await
    .err()
    .expect("no users: the network address is refused");
    assert_eq!(code(&error), "28000", "{error}");
    let admin = connect(server.port).await;
    admin
        .simple_query("CREATE USER admin WITH SUPERUSER PASSWORD 'admin-pw'")
        .await
        .unwrap();
    let remote = connect_as(&address, server.port, "admin", "admin-pw")
        .await
        .expect("with a user, the network address authenticates");
    remote
        .simple_query("SELECT count(*) FROM products")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_after_a_failed_login_are_not_run() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(dir.path(), ServerOptions::default()).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(b"user\0admin\0database\0rankql\0\0");
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    // A garbage SASL response, then a query as if logged in.
    packet.extend_from_slice(b"p\0\0\0\x0cgarbage\0");
    let query = b"CREATE TABLE pwned AS SELECT 1 AS x\0";
    packet.push(b'Q');
    packet.extend_from_slice(&((query.len() + 4) as u32).to_be_bytes());
    packet.extend_from_slice(query);
    socket.write_all(&packet).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut reply)).await;
    let admin = login(server.port, "admin", "admin-pw").await;
    let error = admin.simple_query("SELECT * FROM pwned").await.unwrap_err();
    assert_eq!(
        code(&error),
        "42P01",
        "the statement must not have run: {error}"
    );
}
