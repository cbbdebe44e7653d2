//! How a model is described on disk and how the runtime is configured.
//!
//! A model is a directory `<models_dir>/<name>/` holding `model.onnx`, `tokenizer.json`
//! and `model.json` (this module's [`ModelConfig`]). `models/fetch.py` writes these for the
//! models in `models/manifest.json`; users add their own directories the same way.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::EmbedError;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps (sentence-transformers' default).
    Mean,
    /// The first (`[CLS]`) token's vector.
    Cls,
}

/// A model directory's `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    /// Length of the output vectors.
    pub dimension: usize,
    /// Pooling over token vectors.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Whether vectors are scaled to unit length.
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// Tokens kept per text; longer texts are truncated (the model cannot see further).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Put before a text `embed_query` embeds (e5 was trained with `query: `); empty for
    /// models trained without one.
    #[serde(default)]
    pub query_prefix: String,
    /// Put before a text `embed` embeds (e5: `passage: `).
    #[serde(default)]
    pub passage_prefix: String,
    /// What the model is, for `models()`.
    #[serde(default)]
    pub description: String,
    /// Where its files come from (package, file, sha256), for `models()`.
    #[serde(default)]
    pub source: String,
}

/// Which side of a search a text is on: models like e5 embed the two differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextRole {
    /// Something searched for (`embed_query`).
    Query,
    /// Something searched (a product title, a document: `embed`).
    Passage,
}

impl ModelConfig {
    /// The prefix the model expects before a text of `role`.
    pub fn prefix(&self, role: TextRole) -> &str {
        match role {
            TextRole::Query => &self.query_prefix,
            TextRole::Passage => &self.passage_prefix,
        }
    }
}

fn default_pooling() -> Pooling {
    Pooling::Mean
}
fn default_true() -> bool {
    true
}
fn default_max_tokens() -> usize {
    256
}

impl ModelConfig {
    /// Reads `dir/model.json`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let path = dir.join("model.json");
        let text = std::fs::read_to_string(&path).map_err(|e| EmbedError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| EmbedError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if config.dimension == 0 || config.max_tokens < 2 {
            return Err(EmbedError::BadConfig {
                path,
                reason: "dimension must be > 0 and max_tokens ≥ 2".into(),
            });
        }
        Ok(config)
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU, always available.
    #[default]
    Cpu,
    /// An NVIDIA GPU through ONNX Runtime's CUDA execution provider; falls back to the CPU
    /// with a warning when CUDA cannot start.
    Cuda,
    /// CUDA when it starts, the CPU otherwise.
    Auto,
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown device '{other}': use cpu, cuda or auto")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Auto => "auto",
        })
    }
}

/// Everything the embedding runtime is configured with.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// The directory holding one subdirectory per model.
    pub models_dir: PathBuf,
    /// ONNX Runtime's shared library (`libonnxruntime.so`).
    pub runtime_library: PathBuf,
    /// The model `embed(text)` uses.
    pub default_model: String,
    /// Where inference runs.
    pub device: Device,
    /// ONNX Runtime sessions per model, run in parallel on different micro-batches.
    pub sessions: usize,
    /// Threads each session uses inside one operator.
    pub intra_threads: usize,
    /// Token budget of one micro-batch (texts × longest text in it).
    pub max_batch_tokens: usize,
    /// Vectors kept in the cache (≈ 1.6 KB each at 384 dimensions).
    pub cache_entries: usize,
    /// Where the cache persists its vectors across restarts; `None` keeps it in memory.
    pub cache_file: Option<PathBuf>,
}

/// Where `models/fetch.py --cuda` installs ONNX Runtime's GPU build, under the models
/// directory; its `cuda/` folder holds the CUDA and cuDNN libraries it needs.
pub const GPU_RUNTIME_DIR: &str = "onnxruntime-gpu";

impl EmbedOptions {
    /// With a CUDA device asked for, ONNX Runtime's GPU build when `fetch.py --cuda`
    /// installed it (the CPU build cannot run CUDA).
    pub fn prefer_gpu_runtime(&mut self) {
        let gpu = self
            .models_dir
            .join(GPU_RUNTIME_DIR)
            .join("libonnxruntime.so");
        if self.device != Device::Cpu && gpu.is_file() {
            self.runtime_library = gpu;
        }
    }

    /// Defaults for a models directory: `<dir>/onnxruntime/libonnxruntime.so`, model
    /// `minilm`, CPU, one single-threaded session per core (`benches/embed.rs` measured
    /// it 5 % faster than one session using every core).
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        let models_dir = models_dir.into();
        Self {
            runtime_library: models_dir.join("onnxruntime").join("libonnxruntime.so"),
            models_dir,
            default_model: "minilm".to_string(),
            device: Device::Cpu,
            sessions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            intra_threads: 1,
            max_batch_tokens: 1024,
            cache_entries: 50_000,
            cache_file: None,
        }
    }
}
