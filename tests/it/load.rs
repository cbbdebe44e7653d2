//! Load with 64 clients mixing `embed` search, top-k cosine over stored vectors, single-row
//! INSERTs and COPY on a durable table: no error, no lost or doubled row, bounded memory.
//! Not a benchmark (latencies are printed, not asserted; see benches/server_load.sh):
//! RANKQL_LOAD_SECONDS (default 15) sets how long it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::SinkExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rankql::engine::EngineOptions;

use crate::common::{connect, options, start_server_with};

fn resident_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_mixed_load() {
    const CLIENTS: usize = 64;
    let seconds: u64 = std::env::var("RANKQL_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..options(true)
    })
    .await;
    let setup = connect(server.port).await;
    setup
        .batch_execute(
            "CREATE TABLE product_vectors AS SELECT product_id, embed(title || ' ' || description) AS v FROM products;
             CREATE TABLE clicks (user_id BIGINT NOT NULL, product_id BIGINT NOT NULL)",
        )
        .await
        .unwrap();
    let rss_before = resident_kib("VmRSS:");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let port = server.port;
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(port).await;
            let mut rng = ChaCha8Rng::seed_from_u64(client_index as u64);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                match rng.random_range(0..10) {
                    0 => {
                        let q = format!("trail running shoes {}", rng.random_range(0..50));
                        client
                            .query(
                                "SELECT product_id FROM products ORDER BY cosine(embed(title), embed($1::text)) DESC LIMIT 5",
                                &[&q],
                            )
                            .await
                            .map(|rows| assert_eq!(rows.len(), 5))
                    }
                    1..=3 => {
                        let p: i64 = rng.random_range(1..=300);
                        client
                            .simple_query(&format!(
                                "SELECT b.product_id FROM product_vectors a, product_vectors b \
                                 WHERE a.product_id = {p} ORDER BY cosine(a.v, b.v) DESC LIMIT 10"
                            ))
                            .await
                            .map(|_| ())
                    }
                    4..=7 => {
                        let (u, p): (i64, i64) = (rng.random_range(1..200), rng.random_range(1..300));
                        let result = client
                            .execute("INSERT INTO clicks VALUES ($1, $2)", &[&u, &p])
                            .await;
                        if result.is_ok() {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        result.map(|_| ())
                    }
                    _ => {
                        let rows = 10u64;
                        let copied = async {
                            let sink = client
                                .copy_in("COPY clicks (user_id, product_id) FROM STDIN")
                                .await?;
                            futures::pin_mut!(sink);
                            let data: String = (0..rows).map(|i| format!("{client_index}\t{i}\n")).collect();
                            sink.send(bytes::Bytes::from(data)).await?;
                            sink.finish().await
                        }
                        .await;
                        if let Ok(count) = copied {
                            assert_eq!(count, rows);
                            acknowledged.fetch_add(rows, Ordering::Relaxed);
                        }
                        copied.map(|_| ())
                    }
                }
                .unwrap_or_else(|e| panic!("client {client_index}: {e:?}"));
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("no client failed"));
    }
    latencies.sort();
    let stored = setup
        .query_one("SELECT count(*) FROM clicks", &[])
        .await
        .unwrap()
        .get::<_, i64>(0) as u64;
    assert_eq!(
        stored,
        acknowledged.load(Ordering::Relaxed),
        "every acknowledged row stored exactly once"
    );
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let rss_after = resident_kib("VmRSS:");
    eprintln!(
        "load: {CLIENTS} clients, {seconds} s, {} statements ({:.0}/s), p50 {:?}, p99 {:?}, {} rows stored; \
         test-process RSS {} MB before, {} MB after, peak {} MB",
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        percentile(0.5),
        percentile(0.99),
        stored,
        rss_before / 1024,
        rss_after / 1024,
        resident_kib("VmHWM:") / 1024,
    );
    assert!(
        rss_after < rss_before + 3 * 1024 * 1024,
        "memory grew by more than 3 GB under load: {rss_before} → {rss_after} KiB"
    );
}
