//! embed(): parity with an independent reference, semantics, batch invariance.

use rankql_udfs::embed::{EmbedOptions, ModelRegistry};
use serde::Deserialize;

use crate::common::{models_dir, repo_root};

#[derive(Deserialize)]
struct Reference {
    model: String,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn registry() -> ModelRegistry {
    ModelRegistry::new(EmbedOptions::new(models_dir()))
}

/// Vectors match ONNX Runtime's Python API on the same model files (cosine ≥ 0.9999),
/// texts embedded all in one mixed batch.
#[test]
fn matches_python_onnxruntime_reference() {
    let path = repo_root().join("tests/fixtures/embed_reference.json");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let embedder = registry().embedder(&reference.model).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).unwrap();
    for ((text, expected), actual) in reference.texts.iter().zip(&reference.vectors).zip(&vectors) {
        let similarity = cosine(expected, actual);
        assert!(similarity >= 0.9999, "cosine {similarity} for {text:?}");
    }
}

/// The same text alone and inside a mixed, padded batch gets the same vector.
#[test]
fn batch_composition_does_not_change_a_vector() {
    let embedder = registry().embedder("minilm").unwrap();
    let text = "insulated down jacket for winter camping";
    let alone = embedder.embed_uncached(&[text]).unwrap().remove(0);
    let long = "a much longer neighbouring text that forces padding of the short one ".repeat(6);
    let batch = embedder
        .embed_uncached(&["tiny", text, &long, "another short one", "x"])
        .unwrap();
    let similarity = cosine(&alone, &batch[1]);
    assert!(similarity >= 0.99999, "cosine {similarity}");
}

/// Paraphrases score above unrelated pairs.
#[test]
fn paraphrases_beat_unrelated_pairs() {
    let embedder = registry().embedder("minilm").unwrap();
    let pairs = [
        (
            "running shoes for a marathon",
            "sneakers for long-distance running",
        ),
        ("espresso machine", "a machine that makes coffee"),
        (
            "dog bed for large dogs",
            "big cushion for your dog to sleep on",
        ),
    ];
    for (a, b) in pairs {
        let v = embedder.embed(&[a, b, "vitamin C face serum"]).unwrap();
        let paraphrase = cosine(&v[0], &v[1]);
        let unrelated = cosine(&v[0], &v[2]).max(cosine(&v[1], &v[2]));
        assert!(
            paraphrase > unrelated + 0.1,
            "{a:?}/{b:?}: {paraphrase} vs {unrelated}"
        );
    }
}

/// Identical texts in one call are computed once; a repeat is a cache hit.
#[test]
fn duplicates_and_repeats_use_the_cache() {
    let registry = registry();
    let embedder = registry.embedder("minilm").unwrap();
    let before = embedder.texts_embedded();
    embedder
        .embed(&["same text", "same text", "same text"])
        .unwrap();
    assert_eq!(embedder.texts_embedded() - before, 1);
    embedder.embed(&["same text"]).unwrap();
    assert_eq!(embedder.texts_embedded() - before, 1);
    assert!(registry.cache_stats().hits >= 1);
}

/// A missing model directory says how to fetch it.
#[test]
fn missing_model_says_how_to_fetch() {
    let error = ModelRegistry::new(EmbedOptions::new("/nonexistent/models"))
        .embedder("minilm")
        .err()
        .expect("no models there")
        .to_string();
    assert!(error.contains("python3 models/fetch.py"), "{error}");
}

/// Micro-batches spread over a pool of sessions give the same vectors as one session.
#[test]
fn session_pool_gives_the_same_vectors() {
    let mut options = EmbedOptions::new(models_dir());
    options.sessions = 2;
    options.intra_threads = 1;
    options.max_batch_tokens = 64;
    let pooled = ModelRegistry::new(options).embedder("minilm").unwrap();
    let mut options = EmbedOptions::new(models_dir());
    options.sessions = 1;
    options.intra_threads = 2;
    let single = ModelRegistry::new(options).embedder("minilm").unwrap();
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "product {i}: {}",
                "very comfortable trail shoe ".repeat(1 + i % 7)
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (a, b) = (
        pooled.embed_uncached(&refs).unwrap(),
        single.embed_uncached(&refs).unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(cosine(x, y) >= 0.99999);
    }
}
