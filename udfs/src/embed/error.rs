//! What can go wrong between a text and its vector, worded for the person who can fix it.

use std::path::PathBuf;

/// An error of the model runtime behind `embed()`.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model's directory or one of its files is not on disk.
    #[error(
        "model '{name}' is not installed in {dir}{missing}: run `python3 models/fetch.py` \
         (installed models: {available})"
    )]
    ModelNotInstalled {
        /// The model asked for.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The files its directory lacks (`" (missing model.onnx)"`), empty when there is
        /// no such directory.
        missing: String,
        /// The models that are there, comma-separated.
        available: String,
    },
    /// The ONNX Runtime shared library is not where it was expected.
    #[error(
        "ONNX Runtime library not found at {0}: run `python3 models/fetch.py` \
         or set RANKQL_ORT_LIB to libonnxruntime.so"
    )]
    RuntimeMissing(PathBuf),
    /// A model directory's `model.json` is missing or malformed.
    #[error("bad model config {path}: {reason}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer of model '{model}': {reason}")]
    Tokenizer {
        /// The model whose tokenizer failed.
        model: String,
        /// The tokenizer's own message.
        reason: String,
    },
    /// ONNX Runtime failed to load the library, create a session or run the model.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The statement was cancelled or timed out while texts were being embedded.
    #[error("stopped: the statement was cancelled or reached statement_timeout")]
    Interrupted,
    /// The model produced an output this runtime does not know how to pool.
    #[error("model '{model}' produced an unexpected output: {reason}")]
    BadOutput {
        /// The model.
        model: String,
        /// What was unexpected.
        reason: String,
    },
}

impl EmbedError {
    /// The PostgreSQL SQLSTATE a client should see for this error, so that a driver can
    /// tell a missing model (`58P01`) from a cancelled statement (`57014`).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EmbedError::ModelNotInstalled { .. } | EmbedError::RuntimeMissing(_) => "58P01",
            EmbedError::BadConfig { .. } => "F0000",
            EmbedError::Tokenizer { .. } => "22023",
            EmbedError::Runtime(_) => "58000",
            EmbedError::Interrupted => "57014",
            EmbedError::BadOutput { .. } => "XX000",
        }
    }
}

/// An [`EmbedError`] raised by a call of `embed` in SQL: shown as `embed: …`, and
/// carried inside DataFusion's `External` error so that its type, not its message,
/// decides the client's SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("embed: {0}")]
pub struct EmbedCallError(#[from] pub EmbedError);

impl From<EmbedCallError> for datafusion::error::DataFusionError {
    fn from(error: EmbedCallError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}

impl<R> From<ort::Error<R>> for EmbedError {
    fn from(error: ort::Error<R>) -> Self {
        Self::Runtime(error.to_string())
    }
}
