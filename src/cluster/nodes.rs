//! `rankql scheduler` and `rankql executor`: Ballista's scheduler and executor
//! processes whose sessions know rankql's functions. The scheduler re-plans each query
//! it receives, so it needs the functions (and the models' manifests, for `embed`'s
//! vector size); the executors run them, each with its own ONNX Runtime sessions and
//! embedding cache on the models of its own models directory.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use rankql_udfs::embed::{EmbedOptions, ModelRegistry};

use super::codec::RankqlLogicalCodec;
use super::{cluster_settings, parse_address, ClusterError};
use crate::storage::vector_index::HnswOptions;

/// Seconds between an executor's heartbeats, and how long the scheduler waits for one
/// before it takes the executor for dead and runs its tasks elsewhere: a killed executor
/// costs a query about this long, not Ballista's default of three minutes.
const HEARTBEAT_SECONDS: u64 = 3;
const EXECUTOR_TIMEOUT_SECONDS: u64 = 10;

/// Where the scheduler listens, and the models its sessions know.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (clients' `--cluster` and executors' `--scheduler` name it).
    pub port: u16,
    /// The models directory whose manifests give `embed`'s vector sizes.
    pub models: EmbedOptions,
}

/// Where an executor listens, which scheduler it serves and what it may use.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Address to listen on.
    pub host: String,
    /// The host name other nodes reach this executor at [default: `host`].
    pub external_host: Option<String>,
    /// Port of its Arrow Flight service (where other executors and clients fetch
    /// results).
    pub port: u16,
    /// Port of its gRPC service (where the scheduler sends tasks).
    pub grpc_port: u16,
    /// Tasks run at once (its share of the machine's cores).
    pub concurrency: usize,
    /// Where shuffle files are written [default: a temporary directory].
    pub work_dir: Option<String>,
    /// The models `embed` runs on this executor.
    pub models: EmbedOptions,
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<(), ClusterError> {
    let models = Arc::new(ModelRegistry::new(options.models));
    let config = SchedulerConfig {
        bind_host: options.host.clone(),
        bind_port: options.port,
        external_host: options.host.clone(),
        executor_timeout_seconds: EXECUTOR_TIMEOUT_SECONDS,
        expire_dead_executor_interval_seconds: HEARTBEAT_SECONDS,
        no_executors_grace_period_seconds: EXECUTOR_TIMEOUT_SECONDS,
        override_session_builder: Some(Arc::new(move |config| {
            node_state(cluster_settings(config), models.clone())
        })),
        override_config_producer: Some(Arc::new(node_config)),
        override_logical_codec: Some(Arc::new(RankqlLogicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let address: SocketAddr = tokio::net::lookup_host((options.host.as_str(), options.port))
        .await
        .map_err(|e| ballista_core::error::BallistaError::Configuration(e.to_string()))?
        .next()
        .ok_or_else(|| ClusterError::Address {
            given: format!("{}:{}", options.host, options.port),
        })?;
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!("rankql scheduler listening on {address}");
    start_server(cluster, address, Arc::new(config)).await?;
    Ok(())
}

/// Runs an executor until the process is stopped or its scheduler tells it to stop.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    let (scheduler_host, scheduler_port) = parse_address(&options.scheduler)?;
    let models = Arc::new(ModelRegistry::new(options.models));
    let functions = node_state(node_config(), models)?;
    let config = ExecutorProcessConfig {
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 10,
        bind_host: options.host.clone(),
        external_host: Some(options.external_host.unwrap_or(options.host)),
        port: options.port,
        grpc_port: options.grpc_port,
        vcores: options.concurrency.max(1),
        work_dir: options.work_dir,
        executor_heartbeat_interval_seconds: HEARTBEAT_SECONDS,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        override_config_producer: Some(Arc::new(node_config)),
        override_logical_codec: Some(Arc::new(RankqlLogicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// The session configuration of every node: Ballista's, with rankql's own options so
/// the settings a client sends are understood, and the cluster's settings.
fn node_config() -> SessionConfig {
    cluster_settings(
        SessionConfig::new_with_ballista().with_option_extension(HnswOptions::default()),
    )
}

/// A Ballista node's session with every rankql function.
fn node_state(
    config: SessionConfig,
    models: Arc<ModelRegistry>,
) -> datafusion::common::Result<SessionState> {
    let context = SessionContext::new_with_state(default_session_builder(config)?);
    crate::engine::register_functions(&context, models);
    Ok(context.state())
}
