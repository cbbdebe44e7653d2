//! `pg_catalog.pg_indexes`, listing the HNSW indexes of durable tables, so that
//! `SELECT * FROM pg_indexes WHERE tablename = 't'` (pgvector users' way to check an
//! index exists) and tools that read it see them.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::Result;
use datafusion::prelude::SessionContext;

use crate::pg_catalog_tables::add_catalog_table;
use crate::storage::DurableSchema;

/// Adds `pg_catalog.pg_indexes` (the indexes of `storage`'s tables) to `context`.
pub fn register_pg_indexes(context: &SessionContext, storage: Arc<DurableSchema>) -> Result<()> {
    add_catalog_table(
        context,
        "pg_indexes",
        Box::new(move || pg_indexes(&storage)),
    )
}

/// (table, index, its CREATE INDEX statement).
type IndexRow = (String, String, String);

/// PostgreSQL's `pg_indexes` columns, one row per index.
fn pg_indexes(storage: &DurableSchema) -> Result<Arc<dyn TableProvider>> {
    let mut rows: Vec<IndexRow> = Vec::new();
    for table in storage.indexes() {
        for definition in table.definitions() {
            rows.push((
                table.table().to_string(),
                definition.name.clone(),
                definition.statement(table.table()),
            ));
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, false),
        Field::new("tablename", DataType::Utf8, false),
        Field::new("indexname", DataType::Utf8, false),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("indexdef", DataType::Utf8, false),
    ]));
    let column = |f: &dyn Fn(&IndexRow) -> Option<String>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as _
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|_| Some("public".to_string())),
            column(&|row| Some(row.0.clone())),
            column(&|row| Some(row.1.clone())),
            column(&|_| None),
            column(&|row| Some(row.2.clone())),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
