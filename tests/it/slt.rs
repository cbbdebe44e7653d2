//! Runs every `tests/slt/*.slt` file against an in-process engine with the demo data.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

use rankql::storage::create_or_replace;
use rankql::storage::vector_index::{execute_index_statement, parse_index_statement};

use crate::common::{demo_engine, options};

struct Engine(Arc<SessionContext>);

#[async_trait]
impl sqllogictest::AsyncDB for Engine {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        if let Some(statement) = parse_index_statement(sql) {
            if let Some(outcome) = execute_index_statement(&self.0, &statement).await {
                outcome?;
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        // As `rankql run` and the server do: CREATE OR REPLACE of a durable table swaps it.
        let plan = self.0.state().create_logical_plan(sql).await?;
        if let Some(replaced) = create_or_replace(&self.0, &plan).await {
            replaced?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let frame = self.0.execute_logical_plan(plan).await?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await?;
        if schema.fields().is_empty() || is_statement(sql) {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    DefaultColumnType::FloatingPoint
                }
                _ => DefaultColumnType::Text,
            })
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: format_rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}
}

fn is_statement(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "CREATE" | "DROP" | "INSERT" | "COPY" | "SET"
    )
}

fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(
                        |(f, column)| match column.as_primitive_opt::<Float64Type>() {
                            // Rust's formatting: 1 rather than 1.0, as DataFusion's .slt files expect.
                            Some(floats) if floats.is_valid(row) => floats.value(row).to_string(),
                            _ => match f.value(row).to_string() {
                                text if text.is_empty() => "(empty)".to_string(),
                                text => text,
                            },
                        },
                    )
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let dir = crate::common::repo_root().join("tests").join("slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        // `durable_*.slt` files run with a data directory, so their tables are durable.
        let data_dir = tempfile::tempdir().expect("temp dir");
        let durable = file
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("durable_"));
        let engine = match durable {
            true => rankql::engine::Engine::new(rankql::engine::EngineOptions {
                data_dir: Some(data_dir.path().to_path_buf()),
                ..options(true)
            })
            .await
            .expect("engine builds"),
            false => demo_engine().await,
        };
        let context = engine.context.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let context = context.clone();
            async move { Ok(Engine(context)) }
        });
        if let Err(error) = runner.run_file_async(&file).await {
            panic!("{}: {error}", file.display());
        }
    }
}
