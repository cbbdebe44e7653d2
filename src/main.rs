//! The `rankql` command: `serve`, `sql`, `run`, `user`, and the cluster's `scheduler`
//! and `executor`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rankql::cluster::{run_executor, run_scheduler, ExecutorOptions, SchedulerOptions};
use rankql::engine::{Engine, EngineOptions};
use rankql::runner::{OutputFormat, Runner};
use rankql::server::privileges::FileAccess;
use rankql::server::roles::{RoleCatalog, RoleOptions};
use rankql::server::tls::{self, TlsMode};
use rankql::server::ServerOptions;
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
        /// Address to listen on (0.0.0.0 for every interface). Until a user exists only
        /// loopback clients are let in; from then on every client needs a password.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 5433)]
        port: u16,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Manage users of a data directory while no server runs on it (inside a running
    /// server, use CREATE USER / ALTER USER / DROP USER).
    User {
        #[command(subcommand)]
        action: UserAction,
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
    /// Start a Ballista scheduler for a rankql cluster (executors and `--cluster`
    /// clients connect to it).
    Scheduler {
        /// Address to listen on (0.0.0.0 for every interface).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on.
        #[arg(long, default_value_t = 50050)]
        port: u16,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Start a Ballista executor that runs rankql's functions (embed on its own models)
    /// for the scheduler given.
    Executor {
        #[command(flatten)]
        executor: ExecutorArgs,
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

/// Options of `rankql executor`.
#[derive(Debug, Args)]
struct ExecutorArgs {
    /// The scheduler to serve, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    scheduler: String,
    /// Tasks run at once: this executor's share of the machine's cores; embed() gets
    /// as many single-threaded ONNX Runtime sessions unless --embed-sessions says
    /// otherwise [default: every core].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The host name the other nodes reach this executor at [default: --host].
    #[arg(long)]
    external_host: Option<String>,
    /// Port of the executor's Arrow Flight service (results and shuffles are fetched
    /// from it).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Port of the executor's gRPC service (the scheduler sends tasks to it).
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Where shuffle files are written [default: a temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    models: ModelArgs,
}

impl ExecutorArgs {
    fn options(self) -> ExecutorOptions {
        let concurrency = self.concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let sessions_given = self.models.embed_sessions.is_some();
        let threads_given = self.models.embed_threads.is_some();
        let mut models = self.models.options();
        if !sessions_given {
            models.sessions = concurrency.max(1);
        }
        if !threads_given {
            models.intra_threads = 1;
        }
        ExecutorOptions {
            scheduler: self.scheduler,
            host: self.host,
            external_host: self.external_host,
            port: self.port,
            grpc_port: self.grpc_port,
            concurrency,
            work_dir: self.work_dir.map(|dir| dir.to_string_lossy().into_owned()),
            models,
        }
    }
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a user (the first user ends trusted loopback access: every client then
    /// authenticates with SCRAM-SHA-256).
    Add {
        /// The user's name.
        name: String,
        /// Make the user a superuser (may manage users, grants, server files).
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Data directory the user is stored in.
        #[arg(long, env = "RANKQL_DATA_DIR", default_value = "rankql-data")]
        data_dir: PathBuf,
    },
}

/// Options of the network server.
#[derive(Debug, Args)]
struct ServerArgs {
    /// PEM certificate chain for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (PKCS#8, RSA or EC).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Whether clients must use TLS [default: preferred when a certificate is given].
    #[arg(long, value_enum)]
    tls: Option<TlsMode>,
    /// Connections served at once; more are refused with "too many connections".
    #[arg(long, default_value_t = 100)]
    max_connections: usize,
    /// Default statement_timeout of every session, e.g. 30s, 500ms, 5min (0: none).
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    statement_timeout: Duration,
    /// A directory whose files every role may read and write with CREATE EXTERNAL TABLE
    /// and COPY … TO (repeatable); elsewhere, server files are for superusers only.
    #[arg(long)]
    file_access: Vec<PathBuf>,
}

impl ServerArgs {
    fn options(self) -> anyhow::Result<ServerOptions> {
        let mode = match (&self.tls_cert, self.tls) {
            (None, Some(TlsMode::Required)) => return Err(tls::TlsError::MissingCertificate.into()),
            (_, Some(mode)) => mode,
            _ => TlsMode::Preferred,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        Ok(ServerOptions {
            tls_required: tls.is_some() && mode == TlsMode::Required,
            tls,
            max_connections: self.max_connections.max(1),
            statement_timeout: (!self.statement_timeout.is_zero())
                .then_some(self.statement_timeout),
            file_access: FileAccess::new(&self.file_access)
                .context("--file-access names a directory that cannot be opened")?,
        })
    }
}

/// PostgreSQL's duration syntax for settings: a number of milliseconds, or a number with
/// `ms`, `s`, `min` or `h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 500ms or 5min"))?;
    let millis = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, min or h"
            ))
        }
    };
    Ok(Duration::from_millis(number.saturating_mul(millis)))
}

/// `"30s"` → `(30, "s")`; `None` if it does not start with a number.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// A size such as 8GB, 512MB or a number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let (number, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a size such as 8GB or 512MB"))?;
    let number = usize::try_from(number).map_err(|_| format!("{text:?} is too large"))?;
    let scale: usize = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use KB, MB, GB or TB"
            ))
        }
    };
    Ok(number.saturating_mul(scale))
}

/// `--synchronous-commit` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SynchronousCommit {
    On,
    Off,
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
    /// Compact a table's small files after this many commits.
    #[arg(long, default_value_t = WriterPolicy::default().commits_between_compactions)]
    compact_after_commits: usize,
    /// on: every acknowledged write is forced to disk first (fsync; survives a power cut;
    /// concurrent writes share one fsync). off: acknowledged once the operating system has
    /// it (survives a crash of rankql, not of the machine). PostgreSQL's name and default.
    #[arg(long, value_enum, default_value_t = SynchronousCommit::On)]
    synchronous_commit: SynchronousCommit,
    #[command(flatten)]
    models: ModelArgs,
    /// Run queries over tables on the Ballista cluster whose scheduler is at HOST:PORT
    /// (started with `rankql scheduler`); catalog queries, SET and DDL stay here.
    #[arg(long, env = "RANKQL_CLUSTER", value_name = "HOST:PORT")]
    cluster: Option<String>,
    /// Memory all running queries together may hold (sorts, joins and aggregates spill
    /// to the data directory beyond it), e.g. 8GB [default: half of the machine's memory].
    #[arg(long, value_parser = parse_bytes)]
    memory_limit: Option<usize>,
    /// Memory for decoded durable-table data files, shared by all connections, so
    /// repeated scans read memory, not Parquet (least recently used files are dropped;
    /// a table larger than it is scanned from disk), e.g. 4GB; 0 turns it off
    /// [default: a quarter of the machine's memory].
    #[arg(long, value_parser = parse_bytes)]
    table_cache: Option<usize>,
}

/// The models behind `embed()`, for every command that runs it.
#[derive(Debug, Args)]
struct ModelArgs {
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

impl ModelArgs {
    fn options(self) -> EmbedOptions {
        let mut models = EmbedOptions::new(self.models_dir);
        models.device = self.device;
        match self.ort_lib {
            Some(library) => models.runtime_library = library,
            None => models.prefer_gpu_runtime(),
        }
        models.default_model = self.default_model;
        models.cache_entries = self.embed_cache;
        if let Some(sessions) = self.embed_sessions {
            models.sessions = sessions.max(1);
        }
        if let Some(threads) = self.embed_threads {
            models.intra_threads = threads.max(1);
        }
        models
    }
}

impl EngineArgs {
    fn options(self) -> EngineOptions {
        EngineOptions {
            models: self.models.options(),
            cluster: self.cluster,
            data_dir: (!self.in_memory).then_some(self.data_dir),
            demo: self.demo,
            writer: WriterPolicy {
                commit_interval: std::time::Duration::from_millis(self.commit_interval_ms),
                synchronous_commit: self.synchronous_commit == SynchronousCommit::On,
                commits_between_compactions: self.compact_after_commits.max(1),
                ..WriterPolicy::default()
            },
            memory_limit: self
                .memory_limit
                .or_else(rankql::engine::default_memory_limit),
            table_cache: self
                .table_cache
                .unwrap_or_else(rankql::engine::default_table_cache),
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve {
            host,
            port,
            server,
            engine,
        } => serve(&host, port, server.options()?, engine.options()).await,
        Command::User {
            action:
                UserAction::Add {
                    name,
                    superuser,
                    password_stdin: _,
                    data_dir,
                },
        } => add_user(&data_dir, &name, superuser),
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
        Command::Scheduler { host, port, models } => {
            run_scheduler(SchedulerOptions {
                host,
                port,
                models: models.options(),
            })
            .await?;
            Ok(())
        }
        Command::Executor { executor } => {
            run_executor(executor.options()).await?;
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

/// `rankql user add`: adds a user to a data directory no server holds.
fn add_user(data_dir: &Path, name: &str, superuser: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let lock = std::fs::File::create(data_dir.join(rankql::storage::LOCK_FILE))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "a rankql server is running on {}: connect as a superuser and use CREATE USER, \
             or stop the server first",
            data_dir.display()
        );
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    let roles = RoleCatalog::open(Some(data_dir))?;
    let options = RoleOptions {
        superuser: Some(superuser),
        login: Some(true),
        password: Some(Some(password)),
    };
    roles.create_role(name, &options, true)?;
    if !roles.roles().iter().any(|r| r.superuser && r.has_password) {
        eprintln!(
            "warning: no superuser exists in {}: nobody can create users or grant privileges \
             in SQL; add one with --superuser",
            data_dir.display()
        );
    }
    println!(
        "user {name} added to {}{}",
        data_dir.display(),
        if superuser { " (superuser)" } else { "" }
    );
    Ok(())
}

async fn serve(
    host: &str,
    port: u16,
    server: ServerOptions,
    options: EngineOptions,
) -> anyhow::Result<()> {
    let demo = options.demo;
    let listener = rankql::server::bind(host, port).await?;
    let engine = Engine::new(options).await.context("building the engine")?;
    if engine.roles.has_users() {
        tracing::info!("every client authenticates with SCRAM-SHA-256");
    } else {
        tracing::info!("no user exists: loopback clients are trusted, other addresses refused");
    }
    if server.tls.is_none() && !listener.local_addr()?.ip().is_loopback() {
        tracing::warn!("listening beyond loopback without TLS: passwords are safe (SCRAM), data is not; give --tls-cert and --tls-key");
    }
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
    rankql::server::serve(
        listener,
        engine.context.clone(),
        engine.roles.clone(),
        server,
        shutdown,
    )
    .await?;
    Ok(())
}
