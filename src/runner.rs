//! Running SQL in-process: `rankql sql "…"` and `rankql run FILE.sql…` (scheduled jobs).
//!
//! Statements run in order on the same engine the server uses. Results stream to the
//! output batch by batch (CSV and JSON never hold a whole result in memory; the aligned
//! table does, as it must measure its columns). A long statement shows a progress line
//! on stderr when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::statements::{split_statements, ScriptStatement};
use crate::storage::create_or_replace;
use crate::storage::vector_index::{execute_index_statement, parse_index_statement};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table, as psql prints.
    Table,
    /// CSV with a header line per statement.
    Csv,
    /// One JSON object per row (newline-delimited JSON).
    Json,
}

/// A statement that failed, located in its script.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: statement failed: {preview}\n  {error}")]
pub struct RunError {
    /// The script's path, or `<command line>`.
    pub source_name: String,
    /// The line the statement starts on.
    pub line: usize,
    /// The statement's first line, shortened.
    pub preview: String,
    /// What went wrong.
    pub error: DataFusionError,
}

/// Runs statements on `context`, printing results to `out`.
pub struct Runner<'a, W: Write> {
    context: &'a SessionContext,
    format: OutputFormat,
    out: W,
    show_progress: bool,
}

impl<'a, W: Write> Runner<'a, W> {
    /// A runner printing in `format` to `out`; progress shows when stderr is a terminal.
    pub fn new(context: &'a SessionContext, format: OutputFormat, out: W) -> Self {
        Self {
            context,
            format,
            out,
            show_progress: std::io::stderr().is_terminal(),
        }
    }

    /// Runs every statement of every file, in order; stops at the first failure.
    pub async fn run_files(&mut self, files: &[PathBuf]) -> Result<(), RunError> {
        for file in files {
            let script = std::fs::read_to_string(file).map_err(|e| RunError {
                source_name: file.display().to_string(),
                line: 0,
                preview: String::new(),
                error: DataFusionError::IoError(e),
            })?;
            self.run_script(&script, &file.display().to_string())
                .await?;
        }
        Ok(())
    }

    /// Runs every statement of `script`; `source_name` names it in errors.
    pub async fn run_script(&mut self, script: &str, source_name: &str) -> Result<(), RunError> {
        for statement in split_statements(script) {
            self.run_statement(&statement)
                .await
                .map_err(|error| RunError {
                    source_name: source_name.to_string(),
                    line: statement.line,
                    preview: preview(&statement.sql),
                    error,
                })?;
        }
        Ok(())
    }

    async fn run_statement(&mut self, statement: &ScriptStatement) -> Result<(), DataFusionError> {
        let started = Instant::now();
        let rows = Arc::new(AtomicU64::new(0));
        let ticker = self
            .show_progress
            .then(|| spawn_progress(statement.line, rows.clone(), started));
        let result = self.execute(&statement.sql, &rows).await;
        if let Some(ticker) = ticker {
            ticker.abort();
            eprint!("\r\x1b[2K");
        }
        result
    }

    async fn execute(&mut self, sql: &str, rows: &AtomicU64) -> Result<(), DataFusionError> {
        if let Some(statement) = parse_index_statement(sql) {
            return match execute_index_statement(self.context, &statement).await {
                Some(outcome) => outcome.map(|_| ()).map_err(DataFusionError::from),
                None => Ok(()),
            };
        }
        let plan = self.context.state().create_logical_plan(sql).await?;
        if let Some(replaced) = create_or_replace(self.context, &plan).await {
            return replaced;
        }
        let frame = self.context.execute_logical_plan(plan).await?;
        let mut stream = frame.execute_stream().await?;
        let mut buffered: Vec<RecordBatch> = Vec::new();
        let mut wrote_header = false;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            if batch.num_columns() == 0 {
                continue;
            }
            match self.format {
                OutputFormat::Table => buffered.push(batch),
                OutputFormat::Csv => {
                    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(!wrote_header)
                        .build(&mut self.out);
                    writer.write(&batch)?;
                    wrote_header = true;
                }
                OutputFormat::Json => {
                    let mut writer =
                        datafusion::arrow::json::LineDelimitedWriter::new(&mut self.out);
                    writer.write(&batch)?;
                    writer.finish()?;
                }
            }
        }
        if self.format == OutputFormat::Table && !buffered.is_empty() {
            let total: usize = buffered.iter().map(RecordBatch::num_rows).sum();
            writeln!(self.out, "{}", pretty_format_batches(&buffered)?)?;
            writeln!(
                self.out,
                "({total} row{})",
                if total == 1 { "" } else { "s" }
            )?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Prints `[line N] rows · seconds` on stderr every half second until aborted.
fn spawn_progress(
    line: usize,
    rows: Arc<AtomicU64>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(500));
        interval.tick().await;
        loop {
            interval.tick().await;
            let elapsed = started.elapsed().as_secs_f64();
            let done = rows.load(Ordering::Relaxed);
            let rate = done as f64 / elapsed.max(1e-9);
            eprint!("\r\x1b[2K[statement at line {line}] {done} rows · {elapsed:.1} s · {rate:.0} rows/s");
        }
    })
}

/// The first line of a statement, shortened for an error message.
fn preview(sql: &str) -> String {
    let first = sql
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        .unwrap_or("");
    let mut text: String = first.trim().chars().take(80).collect();
    if first.trim().chars().count() > 80 || sql.lines().count() > 1 {
        text.push_str(" …");
    }
    text
}
