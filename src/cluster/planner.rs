//! Which statements run on the cluster, and the plan the scheduler receives.
//!
//! A query runs on the cluster when it reads at least one table and every table it
//! reads can be read there: durable tables (sent as their committed Parquet files, after
//! the rows still in the write-ahead log are committed), Parquet/CSV/JSON file tables,
//! and in-memory tables up to [`MAX_SHIPPED_BYTES`] (sent inside the plan), and when
//! every function it calls exists on the executors. Everything else runs here, as
//! without a cluster: statements that read no table (`SELECT 1`, `SELECT embed('…')`),
//! the catalog (`pg_catalog`, `information_schema`, as BI tools ask), table functions
//! (`models()`, `nearest()`), `SET`/`SHOW`, DDL, `INSERT`, `COPY` and `EXPLAIN`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ballista::prelude::SessionConfigExt;
use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::arrow::compute::SortOptions;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Result;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;
use rankql_udfs::embed::{EmbedOptions, ModelRegistry};

use super::codec::{RankqlLogicalCodec, MAX_SHIPPED_BYTES};
use super::{parse_address, ClusterError};
use crate::storage::DurableTable;

/// How long a cluster query waits for a durable table's logged rows to be committed.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// How long `--cluster` waits for the scheduler to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine's query planner under `--cluster`: sends the queries that read tables to
/// the Ballista scheduler, plans the rest here.
pub struct ClusterPlanner {
    scheduler_url: String,
    codec: Arc<dyn LogicalExtensionCodec>,
    local: DefaultPhysicalPlanner,
}

impl std::fmt::Debug for ClusterPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPlanner")
            .field("scheduler_url", &self.scheduler_url)
            .finish_non_exhaustive()
    }
}

impl ClusterPlanner {
    /// A planner for the scheduler at `address` (`host:port`), once it accepts a
    /// connection: a scheduler that is down is an error now, not at the first query.
    pub async fn connect(address: &str) -> Result<Self, ClusterError> {
        let (host, port) = parse_address(address)?;
        let unreachable = |reason: String| ClusterError::Unreachable {
            address: address.to_string(),
            reason,
        };
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(unreachable(error.to_string())),
            Err(_) => return Err(unreachable(format!("no answer in {CONNECT_TIMEOUT:?}"))),
        }
        tracing::info!("queries over tables run on the Ballista cluster at {address}");
        Ok(Self {
            scheduler_url: format!("http://{host}:{port}"),
            codec: Arc::new(RankqlLogicalCodec::default()),
            local: DefaultPhysicalPlanner::default(),
        })
    }

    /// Makes this planner `context`'s query planner (and `SET ballista.…` possible).
    pub fn install(self, context: &SessionContext) {
        let state_ref = context.state_ref();
        let mut state = state_ref.write();
        let ballista = state.config().ballista_config();
        let config = state.config().clone().with_option_extension(ballista);
        *state = SessionStateBuilder::new_from_existing(state.clone())
            .with_config(config)
            .with_query_planner(Arc::new(self))
            .build();
    }
}

#[async_trait]
impl datafusion::execution::context::QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return self.local.create_physical_plan(logical_plan, session).await;
        };
        match for_cluster(logical_plan).await? {
            Some(plan) => {
                tracing::debug!("running on the cluster: {}", plan.display());
                let distributed =
                    Arc::new(DistributedQueryExec::<LogicalPlanNode>::with_extension(
                        self.scheduler_url.clone(),
                        state.config().ballista_config(),
                        plan.clone(),
                        self.codec.clone(),
                        state.session_id().to_string(),
                    ));
                final_order(&plan, distributed)
            }
            None => self.local.create_physical_plan(logical_plan, session).await,
        }
    }
}

/// `rows` (the cluster's answer to `plan`) sorted again by `plan`'s final `ORDER BY`
/// (and cut to its `LIMIT`): Ballista 55 can return the rows of a sorted query out of
/// order (seen with `LEFT JOIN … ORDER BY`), so the final rows, and only they, are
/// sorted again here. Left as they are when the root is not a sort on plain columns.
fn final_order(plan: &LogicalPlan, rows: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let LogicalPlan::Sort(sort) = plan else {
        return Ok(rows);
    };
    let mut ordering = Vec::with_capacity(sort.expr.len());
    for key in &sort.expr {
        let Expr::Column(column) = &key.expr else {
            return Ok(rows);
        };
        let index = plan.schema().index_of_column(column)?;
        ordering.push(PhysicalSortExpr::new(
            Arc::new(Column::new(&column.name, index)),
            SortOptions {
                descending: !key.asc,
                nulls_first: key.nulls_first,
            },
        ));
    }
    let Some(ordering) = LexOrdering::new(ordering) else {
        return Ok(rows);
    };
    Ok(Arc::new(
        SortExec::new(ordering, rows).with_fetch(sort.fetch),
    ))
}

/// What a table becomes in the plan sent to the cluster.
enum ClusterTable {
    /// Sent as it is (a file table, an empty table).
    AsIs,
    /// Sent as this table instead (a durable table's files, a copy of a memory table).
    Replaced(Arc<dyn TableProvider>),
}

/// `plan` as the cluster is to run it, or `None` when it is to run here.
async fn for_cluster(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    if !is_query(plan) || calls_local_functions(plan)? {
        return Ok(None);
    }
    let mut providers = Vec::new();
    let mut extension = false;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => providers.push(source_as_provider(&scan.source)?),
            LogicalPlan::Extension(_) => extension = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if providers.is_empty() || extension {
        return Ok(None);
    }
    let mut replacements: HashMap<usize, Arc<dyn TableProvider>> = HashMap::new();
    let mut shipped = 0;
    for provider in providers {
        let key = identity(&provider);
        if replacements.contains_key(&key) {
            continue;
        }
        match cluster_table(&provider, &mut shipped).await? {
            Some(ClusterTable::AsIs) => {}
            Some(ClusterTable::Replaced(table)) => {
                replacements.insert(key, table);
            }
            None => return Ok(None),
        }
    }
    let plan = plan
        .clone()
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => {
                let provider = source_as_provider(&scan.source)?;
                match replacements.get(&identity(&provider)) {
                    Some(table) => Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                        source: provider_as_source(table.clone()),
                        ..scan
                    }))),
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                }
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok(Some(plan))
}

/// Whether `plan` is a query whose rows the cluster could compute (not DDL, DML, `SET`,
/// `COPY`, `EXPLAIN` or `DESCRIBE`).
fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::EmptyRelation(_)
    )
}

/// Whether `plan` calls a function the cluster's nodes do not have: one only this
/// process registers (the catalog functions of BI tools).
fn calls_local_functions(plan: &LogicalPlan) -> Result<bool> {
    let cluster = cluster_function_names();
    let mut local = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|expr| {
                let name = match expr {
                    Expr::ScalarFunction(call) => Some(call.func.name()),
                    Expr::AggregateFunction(call) => Some(call.func.name()),
                    _ => None,
                };
                if name.is_some_and(|name| !cluster.contains(name)) {
                    local = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if local {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(local)
}

/// The scalar and aggregate functions every cluster node registers: DataFusion's own and
/// rankql's ([`crate::engine::register_functions`]); the same on every node, so computed
/// once.
fn cluster_function_names() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let context = SessionContext::new();
        let mut options = EmbedOptions::new(PathBuf::new());
        options.cache_entries = 0;
        crate::engine::register_functions(&context, Arc::new(ModelRegistry::new(options)));
        let state = context.state();
        state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .cloned()
            .collect()
    })
}

/// How `provider` is read on the cluster, or `None` when it cannot be.
async fn cluster_table(
    provider: &Arc<dyn TableProvider>,
    shipped: &mut usize,
) -> Result<Option<ClusterTable>> {
    if provider.is::<ListingTable>() || provider.is::<EmptyTable>() {
        return Ok(Some(ClusterTable::AsIs));
    }
    if let Some(durable) = provider.downcast_ref::<DurableTable>() {
        return durable_files(durable).await;
    }
    if let Some(memory) = provider.downcast_ref::<MemTable>() {
        let mut batches = Vec::new();
        for partition in &memory.batches {
            batches.extend(partition.read().await.iter().cloned());
        }
        *shipped += batches
            .iter()
            .map(|batch| batch.get_array_memory_size())
            .sum::<usize>();
        if *shipped > MAX_SHIPPED_BYTES {
            return Ok(None);
        }
        let copy = MemTable::try_new(memory.schema(), vec![batches])?;
        return Ok(Some(ClusterTable::Replaced(Arc::new(copy))));
    }
    Ok(None)
}

/// A durable table as the files of its newest Delta version, once the rows waiting in
/// its write-ahead log are committed there (`None` if they could not be in time: the
/// query then runs here, where it sees them).
async fn durable_files(table: &DurableTable) -> Result<Option<ClusterTable>> {
    let Some(files) = table.committed_files(COMMIT_WAIT).await else {
        tracing::warn!(
            table = table.name(),
            "rows of the write-ahead log are not committed yet: the query runs locally"
        );
        return Ok(None);
    };
    let schema = table.schema();
    if files.is_empty() {
        return Ok(Some(ClusterTable::Replaced(Arc::new(EmptyTable::new(
            schema,
        )))));
    }
    let urls = files
        .iter()
        .map(|path| {
            let absolute = std::path::absolute(path)?;
            ListingTableUrl::parse(absolute.to_string_lossy())
        })
        .collect::<Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Some(ClusterTable::Replaced(Arc::new(
        ListingTable::try_new(config)?,
    ))))
}

/// The address of the table behind `provider`: scans of one table share it.
fn identity(provider: &Arc<dyn TableProvider>) -> usize {
    Arc::as_ptr(provider) as *const () as usize
}
