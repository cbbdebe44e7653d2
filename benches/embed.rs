//! Embedding throughput: rankql's `embed()` through SQL against the same model driven
//! directly, in one run on the same machine, each given its best.
//!
//! - (a) raw: ONNX Runtime sessions driven directly with length-sorted batches, the texts
//!   tokenised inside the timed part (as SQL does), after an untimed warm-up pass; every
//!   session layout (one session × all threads, one session per core × one thread) and
//!   batch size (16, 32, 64) is tried and the best is the baseline.
//! - (b) naive: unsorted batches of 32, every text padded to 128 tokens.
//! - SQL: `SELECT embed(text) FROM texts` with the cache off, after a warm-up query, for
//!   each session layout.
//!
//! Run: `python3 models/fetch.py && cargo bench --bench embed` (RANKQL_BENCH_TEXTS to
//! change the number of texts, 2,000 by default).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rankql_udfs::embed::tokenize::TokenizedText;
use rankql_udfs::embed::{EmbedOptions, ModelRegistry};

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("RANKQL_MODELS")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/cache")
        })
}

fn options(sessions: usize, threads: usize) -> EmbedOptions {
    let mut options = EmbedOptions::new(models_dir());
    options.sessions = sessions;
    options.intra_threads = threads;
    options.cache_entries = 0;
    options
}

fn rate(texts: usize, started: Instant) -> f64 {
    texts as f64 / started.elapsed().as_secs_f64()
}

/// The raw pipeline for one layout and batch size: tokenise, sort by length, run the
/// batches over `sessions` threads (one session each). Returns texts/s.
fn raw_sorted(registry: &ModelRegistry, texts: &[&str], sessions: usize, batch: usize) -> f64 {
    let embedder = registry.embedder("minilm").expect("model installed");
    let run = |texts: &[&str]| {
        let tokens = embedder.tokenize(texts).expect("tokenised");
        let mut sorted: Vec<&TokenizedText> = tokens.iter().collect();
        sorted.sort_by_key(|t| t.len());
        let batches: Vec<&[&TokenizedText]> = sorted.chunks(batch).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for worker in 0..sessions {
                let (embedder, batches, next) = (&embedder, &batches, &next);
                scope.spawn(move || {
                    let mut session = embedder.session(worker);
                    while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let longest = batch.iter().map(|t| t.len()).max().unwrap_or(0);
                        embedder
                            .infer(&mut session, batch, longest)
                            .expect("inference");
                    }
                });
            }
        });
    };
    run(&texts[..texts.len().min(256)]);
    let started = Instant::now();
    run(texts);
    rate(texts.len(), started)
}

/// The raw pipeline at its best over the layouts and batch sizes; prints each.
fn raw_best(texts: &[&str], layouts: &[(usize, usize)]) -> f64 {
    let mut best = 0.0f64;
    for &(sessions, threads) in layouts {
        let registry = ModelRegistry::new(options(sessions, threads));
        for batch in [16, 32, 64] {
            let rate = raw_sorted(&registry, texts, sessions, batch);
            println!(
                "(a) raw, {sessions} session(s) x {threads} thread(s), sorted batches of {batch:2}: {rate:8.1} texts/s"
            );
            best = best.max(rate);
        }
    }
    best
}

fn naive_padded(registry: &ModelRegistry, tokens: &[TokenizedText]) -> f64 {
    let embedder = registry.embedder("minilm").expect("model installed");
    let truncated: Vec<TokenizedText> = tokens
        .iter()
        .map(|t| TokenizedText {
            ids: t.ids.iter().copied().take(128).collect(),
        })
        .collect();
    let mut session = embedder.session(0);
    if let Some(first) = truncated.chunks(32).next() {
        let warm_up: Vec<&TokenizedText> = first.iter().collect();
        embedder
            .infer(&mut session, &warm_up, 128)
            .expect("inference");
    }
    let started = Instant::now();
    for batch in truncated.chunks(32) {
        let batch: Vec<&TokenizedText> = batch.iter().collect();
        embedder
            .infer(&mut session, &batch, 128)
            .expect("inference");
    }
    rate(tokens.len(), started)
}

async fn through_sql(texts: &[String], sessions: usize, threads: usize) -> f64 {
    let context = SessionContext::new();
    rankql_udfs::register_all(
        &context,
        Arc::new(ModelRegistry::new(options(sessions, threads))),
    );
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(texts.to_vec()))],
    )
    .unwrap();
    context
        .register_table(
            "texts",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
    // Load the model outside the timed part.
    context
        .sql("SELECT embed('warm up')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let started = Instant::now();
    let batches = context
        .sql("SELECT embed(text) FROM texts")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let result = rate(texts.len(), started);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        texts.len()
    );
    result
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let count: usize = std::env::var("RANKQL_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let texts = rankql::demo::catalogue_texts(count, 7);
    let mut layouts = vec![(1, cores)];
    if cores > 1 {
        layouts.push((cores, 1));
    }
    let registry = ModelRegistry::new(options(1, cores));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = registry
        .embedder("minilm")
        .expect("model installed")
        .tokenize(&refs)
        .unwrap();
    let mean_tokens = tokens.iter().map(|t| t.len()).sum::<usize>() as f64 / tokens.len() as f64;
    println!("{count} product texts, {mean_tokens:.1} tokens on average, {cores} cores");

    let raw = raw_best(&refs, &layouts);
    let naive = naive_padded(&registry, &tokens);
    println!("(a) raw at its best:                         {raw:8.1} texts/s");
    println!("(b) naive, batches of 32 padded to 128:      {naive:8.1} texts/s");
    for (sessions, threads) in layouts {
        let sql = through_sql(&texts, sessions, threads).await;
        println!(
            "SQL embed(), {sessions} session(s) x {threads} thread(s): {sql:8.1} texts/s = {:.2}x (a), {:.2}x (b)",
            sql / raw,
            sql / naive
        );
    }
}
