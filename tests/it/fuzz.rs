//! Hostile input: random and truncated protocol messages, absurd lengths, messages out of
//! order, before and after authentication; and thousands of random statements over
//! rankql's functions with NULLs, empty and huge texts, wrong dimensions and NaN. The
//! server never crashes, every failed statement gets a SQLSTATE, the connection stays
//! usable. Deterministic: a fixed seed.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rankql::engine::EngineOptions;
use rankql::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{add_user, connect, connect_as, options, start_server_on, start_server_with};

/// One frontend message: type byte, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![kind];
    bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0{user}\0database\0rankql\0\0").as_bytes());
    let mut bytes = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    bytes
}

/// A random, usually malformed, sequence of frontend messages.
fn hostile_messages(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..rng.random_range(1..6) {
        let kind = *[
            b'Q', b'P', b'B', b'E', b'D', b'S', b'H', b'C', b'd', b'c', b'f', b'p', b'X', b'F',
        ]
        .get(rng.random_range(0..14))
        .unwrap_or(&b'Q');
        match rng.random_range(0..5) {
            // Random body.
            0 => {
                let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
                bytes.extend(message(kind, &body));
            }
            // Absurd length, then too little data.
            1 => {
                bytes.push(kind);
                bytes.extend_from_slice(&rng.random_range(0x7000_0000u32..u32::MAX).to_be_bytes());
                bytes.extend_from_slice(b"short");
            }
            // A length below the minimum.
            2 => {
                bytes.push(kind);
                bytes.extend_from_slice(&rng.random_range(0u32..4).to_be_bytes());
            }
            // A valid message truncated.
            3 => {
                let full = message(b'Q', b"SELECT count(*) FROM products\0");
                let cut = rng.random_range(1..full.len());
                bytes.extend_from_slice(&full[..cut]);
            }
            // Extended-protocol messages out of order (Execute, Bind of unknown names).
            _ => {
                bytes.extend(message(b'E', b"nope\0\0\0\0\0"));
                bytes.extend(message(b'B', b"\0nope\0\0\0\0\0\0\0"));
                bytes.extend(message(b'S', b""));
            }
        }
    }
    bytes
}

async fn send_and_drain(port: u16, prefix: Vec<u8>, payload: Vec<u8>) {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let _ = socket.write_all(&prefix).await;
    let _ = socket.write_all(&payload).await;
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Ok(n) = socket.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn server_with_users() -> (tempfile::TempDir, crate::common::TestServer) {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin", "admin-pw", true);
    let engine = EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..options(true)
    };
    let server = start_server_on("127.0.0.1", engine, ServerOptions::default()).await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_garbage_before_and_after_authentication() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Trusted (no users): garbage after a valid startup, and instead of one.
    let trusted = start_server_with(options(true)).await;
    for round in 0..150 {
        let prefix = if round % 3 == 0 {
            Vec::new()
        } else {
            startup("rankql")
        };
        send_and_drain(trusted.port, prefix, hostile_messages(&mut rng)).await;
    }
    connect(trusted.port)
        .await
        .simple_query("SELECT count(*) FROM products")
        .await
        .expect("the trusted server still serves");

    // With a user: garbage during SCRAM, and statements that never authenticated.
    let (_dir, guarded) = server_with_users().await;
    for round in 0..150 {
        let prefix = if round % 2 == 0 {
            startup("admin")
        } else {
            startup("mallory")
        };
        let mut payload = hostile_messages(&mut rng);
        if round % 5 == 0 {
            payload.extend(message(b'Q', b"CREATE TABLE pwned AS SELECT 1 AS x\0"));
        }
        send_and_drain(guarded.port, prefix, payload).await;
    }
    let admin = connect_as("127.0.0.1", guarded.port, "admin", "admin-pw")
        .await
        .expect("the server still authenticates");
    let error = admin.simple_query("SELECT * FROM pwned").await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
}

/// A random SQL expression over rankql's functions.
fn expression(rng: &mut ChaCha8Rng, depth: u32) -> String {
    let vectors = [
        "embed(title)",
        "'[1, 2, 3]'",
        "'[0, 0, 0]'",
        "'[1, 2]'",
        "ARRAY[1.0, 2.0, 3.0]",
        "ARRAY['NaN'::double, 1.0, 2.0]",
        "NULL",
        "'[]'",
        "'not a vector'",
        "make_array(1, 2, 3)",
    ];
    let texts = [
        "title",
        "''",
        "NULL",
        "'running shoes'",
        "repeat('shoe ', 2000)",
        "'🏃 跑步鞋 ünïcödé'",
        "description",
        "CAST(price AS TEXT)",
    ];
    let numbers = [
        "price",
        "1",
        "0",
        "-1",
        "'NaN'::double",
        "NULL",
        "1e308",
        "product_id",
    ];
    let pick =
        |rng: &mut ChaCha8Rng, list: &[&str]| list[rng.random_range(0..list.len())].to_string();
    let vector = |rng: &mut ChaCha8Rng| {
        if depth > 0 && rng.random_bool(0.3) {
            format!("l2_normalize({})", expression(rng, depth - 1))
        } else {
            pick(rng, &vectors)
        }
    };
    match rng.random_range(0..12) {
        0 => format!("cosine({}, {})", vector(rng), vector(rng)),
        1 => format!("dot({}, {})", vector(rng), vector(rng)),
        2 => format!("l2_distance({}, {})", vector(rng), vector(rng)),
        3 => format!("vector_dims({})", vector(rng)),
        4 => format!("l2_normalize({})", vector(rng)),
        5 => format!("embed({})", pick(rng, &texts)),
        6 => format!("embed('no_such_model', {})", pick(rng, &texts)),
        7 => format!("rrf({}, {})", pick(rng, &numbers), pick(rng, &numbers)),
        8 => format!(
            "thompson({}, {}, {})",
            pick(rng, &numbers),
            pick(rng, &numbers),
            pick(rng, &numbers)
        ),
        9 => format!(
            "ucb({}, {}, {})",
            pick(rng, &numbers),
            pick(rng, &numbers),
            pick(rng, &numbers)
        ),
        10 => format!("ab_bucket({}, {})", pick(rng, &numbers), pick(rng, &texts)),
        _ => format!("{} <=> {}", vector(rng), vector(rng)),
    }
}

fn statement(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..6) {
        0 => format!("SELECT {} FROM products LIMIT 3", expression(rng, 2)),
        1 => format!(
            "SELECT vec_avg({}) FROM products GROUP BY category",
            [
                "embed(title)",
                "'[1,2]'",
                "NULL::double[]",
                "ARRAY[price, 1.0]"
            ][rng.random_range(0..4)]
        ),
        2 => format!(
            "SELECT softmax_rank({}) OVER (PARTITION BY category) FROM products LIMIT 5",
            [
                "price",
                "NULL::double",
                "'NaN'::double",
                "1e308",
                "price, 0",
                "price, -1"
            ][rng.random_range(0..6)]
        ),
        3 => format!(
            "SELECT product_id FROM products ORDER BY {} DESC LIMIT 2",
            expression(rng, 1)
        ),
        4 => format!("SELECT {}", expression(rng, 1).replace("title", "'t'")),
        _ => {
            let junk = [
                "SELEC", "FROM", "((", "'", "\\", ";;", "cosine(", "NULL", "*",
            ];
            (0..rng.random_range(1..6))
                .map(|_| junk[rng.random_range(0..junk.len())])
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_statements_get_a_sqlstate_and_leave_the_connection_usable() {
    let server = start_server_with(options(true)).await;
    let client = connect(server.port).await;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut failed, mut internal) = (0, Vec::new());
    let total = 1500;
    for _ in 0..total {
        let sql = statement(&mut rng);
        if let Err(error) = client.simple_query(&sql).await {
            failed += 1;
            let code = error
                .code()
                .unwrap_or_else(|| panic!("no SQLSTATE for {sql}: {error}"))
                .code()
                .to_string();
            if code == "XX000" {
                internal.push(format!("{sql}: {error}"));
            }
        }
    }
    client
        .simple_query("SELECT count(*) FROM products")
        .await
        .expect("the connection is still usable");
    eprintln!(
        "SQL fuzz: {total} statements, {failed} failed with a SQLSTATE, {} of them XX000",
        internal.len()
    );
    assert!(
        internal.len() * 20 <= failed.max(1),
        "too many internal errors (XX000) where a user error was due:\n{}",
        internal.join("\n")
    );
}
