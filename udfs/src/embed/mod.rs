//! `embed(text)`: sentence embeddings from an ONNX BERT model, in SQL.
//!
//! The pipeline, one concept per module:
//! [`config`] (a model directory's `model.json`) → [`tokenize`] (the `tokenizers` crate,
//! no fixed padding) → [`batcher`] (deduplicate, sort by length, micro-batches under a
//! token budget) → [`runtime`] (ONNX Runtime sessions on CPU or CUDA) → [`pooling`]
//! (mean or CLS, L2 normalisation) → [`cache`] (model, text hash → vector) → [`udf`].
//! [`registry`] finds and loads models by name; [`stats`] makes the cache visible in SQL,
//! [`models_table`] the installed models.

pub mod batcher;
pub mod cache;
pub mod config;
pub mod error;
pub mod models_table;
pub mod pooling;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod tokenize;
pub mod udf;

pub use config::{Device, EmbedOptions, ModelConfig, Pooling};
pub use error::{EmbedCallError, EmbedError};
pub use registry::{Embedder, ModelRegistry};
