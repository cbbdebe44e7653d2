//! The `rankql` command: `serve`, `sql` and `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rankql::engine::{Engine, EngineOptions};
use rankql::runner::{OutputFormat, Runner};
use rankql::storage::WriterPolicy;
use rankql_udfs::embed::{Device, EmbedOptions};

/// Embeddings, similarities and rankings in SQL, over the Postgres wire protocol.
#[derive(Debug, Parser)]
#[command(name = "rankql", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the engine to Postgres clients (psql, BI tools, drivers).
    Serve {
        /// Address to listen on; only loopback addresses are allowed (no authentication yet).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 5433)]
        port: u16,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run SQL statements given on the command line and print their results.
    Sql {
        /// One or more SQL statements (`;`-separated).
        sql: Vec<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run SQL files in order (a scheduled job); exits non-zero at the first failure.
    Run {
        /// SQL files, run in the order given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// Options of the engine, shared by every command.
#[derive(Debug, Args)]
struct EngineArgs {
    /// Load the built-in demo shop: tables products, users, events.
    #[arg(long)]
    demo: bool,
    /// Data directory (created if missing): tables made with CREATE TABLE are stored here
    /// as Delta tables; its Parquet/CSV/JSON files are registered as tables.
    #[arg(long, env = "RANKQL_DATA_DIR", default_value = "rankql-data")]
    data_dir: PathBuf,
    /// Keep every table in memory; no data directory is read or written.
    #[arg(long)]
    in_memory: bool,
    /// Milliseconds between commits of small appends (single-row INSERTs) from the
    /// tables' write-ahead logs to Delta: how far other Delta readers may lag behind.
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Directory of installed models (written by `python3 models/fetch.py`).
    #[arg(long, env = "RANKQL_MODELS", default_value = "models/cache")]
    models_dir: PathBuf,
    /// ONNX Runtime shared library [default: <models-dir>/onnxruntime/libonnxruntime.so].
    #[arg(long, env = "RANKQL_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// The model `embed(text)` uses.
    #[arg(long, default_value = "minilm")]
    default_model: String,
    /// Where embed() runs: cpu, cuda, or auto (CUDA if it starts, else CPU).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// ONNX Runtime sessions per model, run in parallel [default: chosen for this CPU].
    #[arg(long)]
    embed_sessions: Option<usize>,
    /// Threads per ONNX Runtime session [default: chosen for this CPU].
    #[arg(long)]
    embed_threads: Option<usize>,
    /// Embeddings kept in the in-memory cache.
    #[arg(long, default_value_t = 50_000)]
    embed_cache: usize,
}

impl EngineArgs {
    fn options(self) -> EngineOptions {
        let mut models = EmbedOptions::new(self.models_dir);
        if let Some(library) = self.ort_lib {
            models.runtime_library = library;
        }
        models.default_model = self.default_model;
        models.device = self.device;
        models.cache_entries = self.embed_cache;
        if let Some(sessions) = self.embed_sessions {
            models.sessions = sessions.max(1);
        }
        if let Some(threads) = self.embed_threads {
            models.intra_threads = threads.max(1);
        }
        EngineOptions {
            models,
            data_dir: (!self.in_memory).then_some(self.data_dir),
            demo: self.demo,
            writer: WriterPolicy {
                commit_interval: std::time::Duration::from_millis(self.commit_interval_ms),
                ..WriterPolicy::default()
            },
        }
    }
}

fn main() -> std::process::ExitCode {
    let outcome = rankql::server::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RANKQL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { host, port, engine } => serve(&host, port, engine.options()).await,
        Command::Sql {
            sql,
            format,
            engine,
        } => {
            let engine = Engine::new(engine.options()).await?;
            let mut runner = Runner::new(&engine.context, format, std::io::stdout().lock());
            let script = sql.join(";\n");
            runner.run_script(&script, "<command line>").await?;
            Ok(())
        }
        Command::Run {
            files,
            format,
            engine,
        } => {
            let engine = Engine::new(engine.options()).await?;
            let mut runner = Runner::new(&engine.context, format, std::io::stdout().lock());
            runner.run_files(&files).await?;
            Ok(())
        }
    }
}

async fn serve(host: &str, port: u16, options: EngineOptions) -> anyhow::Result<()> {
    let demo = options.demo;
    let listener = rankql::server::bind(host, port).await?;
    let engine = Engine::new(options).await.context("building the engine")?;
    let address = listener.local_addr()?;
    tracing::info!(
        "rankql listening on {address}{}; connect with: psql -h {} -p {} -U rankql",
        if demo {
            " with the demo tables products, users, events"
        } else {
            ""
        },
        address.ip(),
        address.port()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    rankql::server::serve(listener, engine.context.clone(), shutdown).await?;
    Ok(())
}
