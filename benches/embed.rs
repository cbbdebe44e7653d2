//! Embedding throughput: rankql's `embed()` through SQL against the physical limit of
//! the model and against a naive pipeline, in one run on the same machine.
//!
//! - (a) raw: one ONNX Runtime session fed pre-tokenised, length-sorted batches of 32
//!   (tokenisation excluded): what this model can do on this CPU.
//! - (b) naive: unsorted batches of 32, every text padded to 128 tokens.
//! - SQL: `SELECT embed(text) FROM texts` with the cache off, for each session layout
//!   (one session × all threads, or one session per core × one thread).
//!
//! Run: `python3 models/fetch.py && cargo bench --bench embed` (RANKQL_BENCH_TEXTS to
//! change the number of texts, 2,000 by default).

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

fn raw_sorted(registry: &ModelRegistry, tokens: &[TokenizedText]) -> f64 {
    let embedder = registry.embedder("minilm").expect("model installed");
    let mut sorted: Vec<&TokenizedText> = tokens.iter().collect();
    sorted.sort_by_key(|t| t.len());
    let started = Instant::now();
    let mut session = embedder.session(0);
    for batch in sorted.chunks(32) {
        let longest = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        embedder
            .infer(&mut session, batch, longest)
            .expect("inference");
    }
    rate(tokens.len(), started)
}

fn naive_padded(registry: &ModelRegistry, tokens: &[TokenizedText]) -> f64 {
    let embedder = registry.embedder("minilm").expect("model installed");
    let truncated: Vec<TokenizedText> = tokens
        .iter()
        .map(|t| TokenizedText {
            ids: t.ids.iter().copied().take(128).collect(),
        })
        .collect();
    let started = Instant::now();
    let mut session = embedder.session(0);
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
    let registry = ModelRegistry::new(options(1, cores));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = registry
        .embedder("minilm")
        .expect("model installed")
        .tokenize(&refs)
        .unwrap();
    let mean_tokens = tokens.iter().map(|t| t.len()).sum::<usize>() as f64 / tokens.len() as f64;
    println!("{count} product texts, {mean_tokens:.1} tokens on average, {cores} cores");

    let raw = raw_sorted(&registry, &tokens);
    let naive = naive_padded(&registry, &tokens);
    println!("(a) raw session, sorted batches of 32:      {raw:8.1} texts/s");
    println!("(b) naive, batches of 32 padded to 128:     {naive:8.1} texts/s");
    let mut layouts = vec![(1, cores)];
    if cores > 1 {
        layouts.push((cores, 1));
    }
    for (sessions, threads) in layouts {
        let sql = through_sql(&texts, sessions, threads).await;
        println!(
            "SQL embed(), {sessions} session(s) x {threads} thread(s): {sql:8.1} texts/s = {:.2}x (a), {:.2}x (b)",
            sql / raw,
            sql / naive
        );
    }
}
