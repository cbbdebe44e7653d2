//! Models by name: finding them on disk, loading them once, and embedding with them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::batcher::plan_batches;
use super::cache::{CacheKey, CacheStats, EmbeddingCache};
use super::config::{Device, EmbedOptions, ModelConfig};
use super::error::EmbedError;
use super::pooling::pool;
use super::runtime::{environment, ModelSession};
use super::tokenize::{TextTokenizer, TokenizedText};

/// The vectors of one micro-batch, or why it failed.
type BatchResult = Result<Vec<Vec<f32>>, EmbedError>;

/// One loaded model: tokenizer, a pool of ONNX Runtime sessions, and the shared cache.
pub struct Embedder {
    name: String,
    config: ModelConfig,
    tokenizer: TextTokenizer,
    sessions: Vec<Mutex<ModelSession>>,
    device: Device,
    max_batch_tokens: usize,
    cache: Arc<EmbeddingCache>,
    texts_embedded: AtomicU64,
}

impl Embedder {
    fn load(
        name: &str,
        options: &EmbedOptions,
        cache: Arc<EmbeddingCache>,
    ) -> Result<Self, EmbedError> {
        let dir = options.models_dir.join(name);
        let config = ModelConfig::load(&dir)?;
        let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"), name, config.max_tokens)?;
        let environment = environment(&options.runtime_library)?;
        let mut sessions = Vec::with_capacity(options.sessions.max(1));
        let mut device = options.device;
        for _ in 0..options.sessions.max(1) {
            let (session, used) = ModelSession::create(
                environment,
                &dir.join("model.onnx"),
                device,
                options.intra_threads,
            )?;
            // Once CUDA has failed, later sessions go straight to the CPU.
            device = used;
            sessions.push(Mutex::new(session));
        }
        tracing::info!(
            model = name,
            device = %device,
            sessions = sessions.len(),
            intra_threads = options.intra_threads,
            "embedding model loaded"
        );
        Ok(Self {
            name: name.to_string(),
            config,
            tokenizer,
            sessions,
            device,
            max_batch_tokens: options.max_batch_tokens,
            cache,
            texts_embedded: AtomicU64::new(0),
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device inference really runs on (after any CUDA fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Texts this model has run through the network (cache hits excluded).
    pub fn texts_embedded(&self) -> u64 {
        self.texts_embedded.load(Ordering::Relaxed)
    }

    /// Embeds `texts`: cached vectors are reused, identical texts computed once.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>, EmbedError> {
        self.embed_until(texts, &|| false)
    }

    /// [`Self::embed`], checking `stop` before each micro-batch: once it says so, no new
    /// batch starts and the call fails with [`EmbedError::Interrupted`] (vectors already
    /// computed stay in the cache).
    pub fn embed_until(
        &self,
        texts: &[&str],
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<Arc<[f32]>>, EmbedError> {
        let mut unique: HashMap<&str, usize> = HashMap::with_capacity(texts.len());
        let mut slots = Vec::with_capacity(texts.len());
        let mut unique_texts = Vec::new();
        for text in texts {
            let next = unique_texts.len();
            let slot = *unique.entry(*text).or_insert_with(|| {
                unique_texts.push(*text);
                next
            });
            slots.push(slot);
        }
        let mut vectors: Vec<Option<Arc<[f32]>>> = unique_texts
            .iter()
            .map(|text| self.cache.get(&CacheKey::new(&self.name, text)))
            .collect();
        let missing: Vec<usize> = (0..vectors.len())
            .filter(|i| vectors[*i].is_none())
            .collect();
        if !missing.is_empty() {
            let missing_texts: Vec<&str> = missing.iter().map(|i| unique_texts[*i]).collect();
            let tokens = self.tokenize(&missing_texts)?;
            let computed = self.embed_tokenized_until(&tokens, stop)?;
            for (index, vector) in missing.into_iter().zip(computed) {
                let vector: Arc<[f32]> = Arc::from(vector);
                self.cache.insert(
                    CacheKey::new(&self.name, unique_texts[index]),
                    vector.clone(),
                );
                vectors[index] = Some(vector);
            }
        }
        Ok(slots
            .into_iter()
            .map(|slot| {
                vectors[slot]
                    .clone()
                    .expect("every unique text was embedded")
            })
            .collect())
    }

    /// Embeds `texts` through the network, without the cache.
    pub fn embed_uncached(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let tokens = self.tokenize(texts)?;
        self.embed_tokenized(&tokens)
    }

    /// Tokenises `texts` (truncated to the model's maximum, unpadded).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>, EmbedError> {
        self.tokenizer.tokenize(texts)
    }

    /// Embeds tokenised texts: length-sorted micro-batches under the token budget, spread
    /// over the session pool.
    pub fn embed_tokenized(&self, tokens: &[TokenizedText]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_tokenized_until(tokens, &|| false)
    }

    /// [`Self::embed_tokenized`], checking `stop` before each micro-batch.
    fn embed_tokenized_until(
        &self,
        tokens: &[TokenizedText],
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let counts: Vec<usize> = tokens.iter().map(TokenizedText::len).collect();
        let batches = plan_batches(&counts, self.max_batch_tokens);
        let results: Vec<Mutex<Option<BatchResult>>> =
            batches.iter().map(|_| Mutex::new(None)).collect();
        let next_batch = AtomicUsize::new(0);
        let work = |session: &Mutex<ModelSession>| loop {
            if stop() {
                break;
            }
            let index = next_batch.fetch_add(1, Ordering::Relaxed);
            let Some(batch) = batches.get(index) else {
                break;
            };
            let texts: Vec<&TokenizedText> = batch.iter().map(|i| &tokens[*i]).collect();
            let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
            *results[index].lock() = Some(self.infer(&mut session.lock(), &texts, longest));
        };
        let workers = self.sessions.len().min(batches.len());
        if workers <= 1 {
            if let Some(session) = self.sessions.first() {
                work(session);
            }
        } else {
            // One task per session on rayon's pool: no thread is spawned per batch.
            rayon::scope(|scope| {
                for session in &self.sessions[..workers] {
                    let work = &work;
                    scope.spawn(move |_| work(session));
                }
            });
        }
        let mut output: Vec<Vec<f32>> = vec![Vec::new(); tokens.len()];
        for (batch, result) in batches.iter().zip(results) {
            let vectors = result.into_inner().ok_or(EmbedError::Interrupted)??;
            for (index, vector) in batch.iter().zip(vectors) {
                output[*index] = vector;
            }
        }
        self.texts_embedded
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        Ok(output)
    }

    /// Runs one micro-batch padded to `seq` tokens and pools each text's vector.
    pub fn infer(
        &self,
        session: &mut ModelSession,
        batch: &[&TokenizedText],
        seq: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (hidden, seq_out, dim) = session.run(batch, seq)?;
        if dim != self.config.dimension {
            return Err(EmbedError::BadOutput {
                model: self.name.clone(),
                reason: format!(
                    "vectors of {dim} dimensions, model.json says {}",
                    self.config.dimension
                ),
            });
        }
        Ok(batch
            .iter()
            .enumerate()
            .map(|(row, text)| {
                let tokens = if seq_out == 1 {
                    1
                } else {
                    text.len().min(seq_out)
                };
                pool(
                    &hidden,
                    seq_out,
                    dim,
                    row,
                    tokens,
                    self.config.pooling,
                    self.config.normalize,
                )
            })
            .collect())
    }

    /// Locks session `index` of the pool, for benchmarks that drive the network directly.
    pub fn session(&self, index: usize) -> parking_lot::MutexGuard<'_, ModelSession> {
        self.sessions[index % self.sessions.len()].lock()
    }
}

/// The models a server can use, loaded on first use and kept.
pub struct ModelRegistry {
    options: EmbedOptions,
    loaded: Mutex<HashMap<String, Arc<Embedder>>>,
    cache: Arc<EmbeddingCache>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("options", &self.options)
            .finish()
    }
}

impl ModelRegistry {
    /// A registry over `options.models_dir`; nothing is loaded until first use, so a
    /// server without models starts and only `embed()` reports what is missing.
    pub fn new(options: EmbedOptions) -> Self {
        let cache = match &options.cache_file {
            Some(path) => {
                EmbeddingCache::with_file(options.cache_entries, path).unwrap_or_else(|error| {
                    tracing::warn!(
                        "embedding cache file {}: {error}; the cache stays in memory only",
                        path.display()
                    );
                    EmbeddingCache::new(options.cache_entries)
                })
            }
            None => EmbeddingCache::new(options.cache_entries),
        };
        let cache = Arc::new(cache);
        // `minilm` is a link models/fetch.py points at the graph that ran fastest here.
        if let Ok(target) = std::fs::read_link(options.models_dir.join(&options.default_model)) {
            tracing::info!(
                "embed(text) uses {} = {} (the graph models/fetch.py measured fastest on this CPU)",
                options.default_model,
                target.display()
            );
        }
        Self {
            options,
            loaded: Mutex::new(HashMap::new()),
            cache,
        }
    }

    /// The options the registry was built with.
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    /// Names of the model directories that have a `model.json`, sorted.
    pub fn installed_models(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.options.models_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join("model.json").is_file())
            .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The model `name` stands for (`None`: the default model).
    pub fn resolve<'a>(&'a self, name: Option<&'a str>) -> &'a str {
        name.unwrap_or(&self.options.default_model)
    }

    /// `name`'s configuration, read from disk without loading the model (for planning).
    pub fn config(&self, name: &str) -> Result<ModelConfig, EmbedError> {
        if let Some(embedder) = self.loaded.lock().get(name) {
            return Ok(embedder.config().clone());
        }
        self.check_installed(name)?;
        ModelConfig::load(&self.options.models_dir.join(name))
    }

    /// The loaded model `name`, loading it on first use.
    pub fn embedder(&self, name: &str) -> Result<Arc<Embedder>, EmbedError> {
        let mut loaded = self.loaded.lock();
        if let Some(embedder) = loaded.get(name) {
            return Ok(embedder.clone());
        }
        self.check_installed(name)?;
        let embedder = Arc::new(Embedder::load(name, &self.options, self.cache.clone())?);
        loaded.insert(name.to_string(), embedder.clone());
        Ok(embedder)
    }

    /// The models loaded so far.
    pub fn loaded_models(&self) -> Vec<Arc<Embedder>> {
        let mut models: Vec<_> = self.loaded.lock().values().cloned().collect();
        models.sort_by(|a, b| a.name().cmp(b.name()));
        models
    }

    /// The embedding cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn check_installed(&self, name: &str) -> Result<(), EmbedError> {
        let dir = self.options.models_dir.join(name);
        let absent: Vec<&str> = ["model.json", "model.onnx", "tokenizer.json"]
            .into_iter()
            .filter(|file| !dir.join(file).is_file())
            .collect();
        let safe_name = !name.is_empty() && !name.contains(['/', '\\']) && name != "..";
        if absent.is_empty() && safe_name {
            return Ok(());
        }
        let installed = self.installed_models();
        let missing = match safe_name && dir.is_dir() {
            true => format!(" (missing {})", absent.join(", ")),
            false => String::new(),
        };
        Err(EmbedError::ModelNotInstalled {
            name: name.to_string(),
            dir: self.options.models_dir.clone(),
            missing,
            available: if installed.is_empty() {
                "none".into()
            } else {
                installed.join(", ")
            },
        })
    }
}
