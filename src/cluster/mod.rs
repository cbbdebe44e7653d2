//! Running rankql's SQL on an Apache DataFusion Ballista cluster, when one machine is
//! not enough: `rankql scheduler` and `rankql executor` are Ballista's processes with
//! rankql's functions in their sessions ([`nodes`]); `--cluster` makes the engine send
//! the queries that read tables to the scheduler and keep the rest local
//! ([`planner`]); small in-memory tables travel inside the plan ([`codec`]).
//!
//! Every node needs the same view of the files a plan reads: durable tables are sent as
//! their committed Parquet files, so the data directory must be at the same path on
//! every machine (a shared mount), and each executor loads the models of its own
//! models directory.

mod codec;
mod nodes;
mod planner;

pub use codec::RankqlLogicalCodec;
pub use nodes::{run_executor, run_scheduler, ExecutorOptions, SchedulerOptions};
pub use planner::ClusterPlanner;

use ballista::prelude::SessionConfigExt;
use datafusion::prelude::SessionConfig;

/// Why a cluster process could not start, or the engine could not use a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `--cluster` or `--scheduler` is not `host:port`.
    #[error("{given:?} is not a scheduler address: give it as HOST:PORT, e.g. localhost:50050")]
    Address {
        /// What was given.
        given: String,
    },
    /// Nothing answered at the scheduler's address.
    #[error(
        "cannot reach the Ballista scheduler at {address}: {reason} \
         (start one with `rankql scheduler --port PORT`)"
    )]
    Unreachable {
        /// The scheduler's address.
        address: String,
        /// What the connection attempt reported.
        reason: String,
    },
    /// Ballista refused to start or stopped with an error.
    #[error("ballista: {0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    /// DataFusion refused the session every node builds.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// The settings every query runs with on the cluster, whatever the client sent: the
/// scheduler applies them to each session it builds. Three features of Ballista 55 and
/// DataFusion 55 are off because they give wrong answers or leave a query waiting
/// forever there: hash joins that collect their build side into one task (a `LEFT JOIN`
/// loses matched rows), dynamic filters (the scheduler fails to swap a hash join's
/// inputs: "Cannot swap HashJoinExec inputs after dynamic filter") and Ballista's
/// adaptive planner (it can plan a TopK over a stage with no partitions, which
/// DataFusion's debug builds reject with a panic). `tests/it/cluster.rs` runs the
/// pipelines that found each of them.
fn cluster_settings(config: SessionConfig) -> SessionConfig {
    let ballista = config.ballista_config();
    let mut config = config
        .with_option_extension(ballista)
        .with_ballista_adaptive_query_planner(false);
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.hash_join_single_partition_threshold = 0;
    optimizer.hash_join_single_partition_threshold_rows = 0;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
    config
}

/// Splits `HOST:PORT` (an IPv6 host in brackets), refusing anything else.
pub fn parse_address(given: &str) -> Result<(String, u16), ClusterError> {
    let invalid = || ClusterError::Address {
        given: given.to_string(),
    };
    let (host, port) = given.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(
            parse_address("localhost:50050").unwrap(),
            ("localhost".to_string(), 50050)
        );
        assert_eq!(parse_address("[::1]:7").unwrap(), ("::1".to_string(), 7));
        for bad in ["localhost", "localhost:", ":50050", "host:port", "host:0"] {
            assert!(parse_address(bad).is_err(), "{bad} was accepted");
        }
    }
}
