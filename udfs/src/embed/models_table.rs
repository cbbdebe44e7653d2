//! `SELECT * FROM models()`: every installed model, as a table.
//!
//! Why: which models a server has, which one `embed(text)` uses, what each is for and
//! where its files came from should be one query away from any client — the first
//! question of a user choosing between `embed('minilm', …)` and `embed('e5', …)`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;

use super::config::{ModelConfig, Pooling};
use super::registry::ModelRegistry;

/// The `models()` table function: one row per model directory with a `model.json`.
#[derive(Debug)]
pub struct Models {
    registry: Arc<ModelRegistry>,
}

impl Models {
    /// The models of `registry`.
    pub fn new(registry: Arc<ModelRegistry>) -> Self {
        Self { registry }
    }
}

/// One installed model as the table shows it.
struct ModelRow {
    name: String,
    config: Option<ModelConfig>,
    problem: Option<String>,
    device: String,
    bytes: u64,
}

impl TableFunctionImpl for Models {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        if !args.is_empty() {
            return plan_err!("models() takes no arguments");
        }
        let options = self.registry.options();
        let loaded = self.registry.loaded_models();
        let rows: Vec<ModelRow> = self
            .registry
            .installed_models()
            .into_iter()
            .map(|name| {
                let dir = options.models_dir.join(&name);
                let bytes = ["model.onnx", "tokenizer.json", "model.json"]
                    .iter()
                    .filter_map(|file| std::fs::metadata(dir.join(file)).ok())
                    .map(|metadata| metadata.len())
                    .sum();
                let device = loaded
                    .iter()
                    .find(|embedder| embedder.name() == name)
                    .map_or(options.device.to_string(), |e| e.device().to_string());
                let (config, problem) = match self.registry.config(&name) {
                    Ok(config) => (Some(config), None),
                    Err(error) => (None, Some(error.to_string())),
                };
                ModelRow {
                    name,
                    config,
                    problem,
                    device,
                    bytes,
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("is_default", DataType::Boolean, false),
            Field::new("dimension", DataType::UInt64, true),
            Field::new("max_tokens", DataType::UInt64, true),
            Field::new("pooling", DataType::Utf8, true),
            Field::new("query_prefix", DataType::Utf8, true),
            Field::new("passage_prefix", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, false),
            Field::new("size_bytes", DataType::UInt64, false),
            Field::new("description", DataType::Utf8, true),
            Field::new("source", DataType::Utf8, true),
            Field::new("problem", DataType::Utf8, true),
        ]));
        let text = |f: &dyn Fn(&ModelRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let number = |f: &dyn Fn(&ModelConfig) -> usize| -> ArrayRef {
            Arc::new(
                rows.iter()
                    .map(|row| row.config.as_ref().map(|c| f(c) as u64))
                    .collect::<UInt64Array>(),
            )
        };
        let configured = |f: &dyn Fn(&ModelConfig) -> String| -> ArrayRef {
            Arc::new(
                rows.iter()
                    .map(|row| row.config.as_ref().map(f))
                    .collect::<StringArray>(),
            )
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(&|row| Some(row.name.clone())),
                Arc::new(
                    rows.iter()
                        .map(|row| Some(row.name == options.default_model))
                        .collect::<BooleanArray>(),
                ),
                number(&|config| config.dimension),
                number(&|config| config.max_tokens),
                configured(&|config| {
                    match config.pooling {
                        Pooling::Mean => "mean",
                        Pooling::Cls => "cls",
                    }
                    .to_string()
                }),
                configured(&|config| config.query_prefix.clone()),
                configured(&|config| config.passage_prefix.clone()),
                text(&|row| Some(row.device.clone())),
                Arc::new(rows.iter().map(|row| row.bytes).collect::<UInt64Array>()),
                configured(&|config| config.description.clone()),
                configured(&|config| config.source.clone()),
                text(&|row| row.problem.clone()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
