//! `SELECT * FROM embed_stats()`: the embedding cache and loaded models, as a table.
//!
//! Why: "is the nightly re-embed hitting the cache?" should be one query away, from any
//! client, not a log search.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;

use super::registry::ModelRegistry;

/// The `embed_stats()` table function: one row per loaded model (one row with a NULL
/// model before any is loaded), with the shared cache's counters.
#[derive(Debug)]
pub struct EmbedStats {
    registry: Arc<ModelRegistry>,
}

impl EmbedStats {
    /// Statistics of `registry`.
    pub fn new(registry: Arc<ModelRegistry>) -> Self {
        Self { registry }
    }
}

impl TableFunctionImpl for EmbedStats {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        if !args.is_empty() {
            return plan_err!("embed_stats() takes no arguments");
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, true),
            Field::new("texts_embedded", DataType::UInt64, false),
            Field::new("cache_entries", DataType::UInt64, false),
            Field::new("cache_capacity", DataType::UInt64, false),
            Field::new("cache_hits", DataType::UInt64, false),
            Field::new("cache_misses", DataType::UInt64, false),
            Field::new("cache_hit_rate", DataType::Float64, true),
            Field::new("cache_evictions", DataType::UInt64, false),
        ]));
        let stats = self.registry.cache_stats();
        let models = self.registry.loaded_models();
        let rows = models.len().max(1);
        let names: Vec<Option<String>> = if models.is_empty() {
            vec![None]
        } else {
            models.iter().map(|m| Some(m.name().to_string())).collect()
        };
        let devices: Vec<Option<String>> = if models.is_empty() {
            vec![None]
        } else {
            models
                .iter()
                .map(|m| Some(m.device().to_string()))
                .collect()
        };
        let embedded: Vec<u64> = if models.is_empty() {
            vec![0]
        } else {
            models.iter().map(|m| m.texts_embedded()).collect()
        };
        let lookups = stats.hits + stats.misses;
        let hit_rate = (lookups > 0).then(|| stats.hits as f64 / lookups as f64);
        let repeat = |value: u64| -> ArrayRef { Arc::new(UInt64Array::from(vec![value; rows])) };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(devices)),
                Arc::new(UInt64Array::from(embedded)),
                repeat(stats.entries),
                repeat(stats.capacity),
                repeat(stats.hits),
                repeat(stats.misses),
                Arc::new(Float64Array::from(vec![hit_rate; rows])),
                repeat(stats.evictions),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
