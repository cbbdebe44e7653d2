//! The engine: one DataFusion SessionContext with pg_catalog, rankql's functions,
//! pgvector's operators and the tables of the data directory (and the demo).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{lit, Expr, ScalarUDF};
use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use rankql_udfs::embed::{EmbedOptions, ModelRegistry};

use crate::cluster::{ClusterError, ClusterPlanner};
use crate::demo;
use crate::server::roles::{RoleCatalog, RoleError, ROLES_FILE};
use crate::storage::vector_index::{HnswOptions, Nearest, VectorTopKRule};
use crate::storage::{DurableSchema, StorageError, TableCache, WriterPolicy, TABLES_DIR};

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// DataFusion refused a registration.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The durable tables of the data directory could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The role catalog of the data directory could not be read.
    #[error(transparent)]
    Roles(#[from] RoleError),
    /// The cluster named by `--cluster` cannot be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The data directory could not be read or created.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The name of rankql's one database: the DataFusion catalog of its tables, and what
/// `current_database()` and `pg_database` report, so that tools that look their
/// database up by the name in their connection string (DBeaver) find it.
pub const CATALOG: &str = "rankql";

/// What the engine is built from.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Models and runtime behind `embed()`.
    pub models: EmbedOptions,
    /// The data directory (created if missing): tables made with `CREATE TABLE` are
    /// stored there as Delta tables, and its Parquet/CSV/JSON files become tables.
    /// `None` keeps every table in memory.
    pub data_dir: Option<PathBuf>,
    /// Whether to load the built-in demo tables `products`, `users`, `events`.
    pub demo: bool,
    /// How durable tables batch their commits and compact their files.
    pub writer: WriterPolicy,
    /// Bytes that all running queries together may hold in DataFusion's memory pool
    /// (sorts, joins, aggregates spill to the data directory beyond it); a query that
    /// still needs more fails with 53200 while the others carry on. `None`: no limit.
    pub memory_limit: Option<usize>,
    /// Bytes of decoded durable-table data files kept in memory, shared by every
    /// connection (0: every scan decodes the Parquet files again).
    pub table_cache: usize,
    /// A Ballista scheduler (`host:port`) to run queries over tables on; `None` runs
    /// everything in this process.
    pub cluster: Option<String>,
}

/// The folder of the data directory where queries over the memory limit spill.
pub const SPILL_DIR: &str = "spill";

/// The default `--memory-limit`: half of the machine's memory (the rest is for ONNX
/// Runtime, caches and the operating system), or `None` where it cannot be read.
pub fn default_memory_limit() -> Option<usize> {
    machine_memory().map(|bytes| bytes / 2)
}

/// The default `--table-cache`: a quarter of the machine's memory (1 GiB where it
/// cannot be read), so the cache and the query pool together leave a quarter for ONNX
/// Runtime, the embed cache and the operating system.
pub fn default_table_cache() -> usize {
    machine_memory().map_or(1 << 30, |bytes| bytes / 4)
}

/// The machine's memory in bytes, from /proc/meminfo.
fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The engine every front end (server, `rankql sql`, `rankql run`) shares.
pub struct Engine {
    /// The one SessionContext all connections and statements run on.
    pub context: Arc<SessionContext>,
    /// The models behind `embed()`.
    pub models: Arc<ModelRegistry>,
    /// The durable `public` schema, when there is a data directory.
    pub storage: Option<Arc<DurableSchema>>,
    /// Users, owners and grants (empty without a data directory).
    pub roles: Arc<RoleCatalog>,
}

impl Engine {
    /// Builds the engine.
    pub async fn new(options: EngineOptions) -> Result<Self, EngineError> {
        // The data directory first: its lock keeps a second process off its files.
        let storage = match &options.data_dir {
            Some(dir) => Some(Arc::new(
                DurableSchema::open(
                    dir,
                    options.writer,
                    Arc::new(TableCache::new(options.table_cache)),
                )
                .await?,
            )),
            None => None,
        };
        let roles = Arc::new(RoleCatalog::open(options.data_dir.as_deref())?);
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_option_extension(HnswOptions::default());
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        if let Some(dir) = &options.data_dir {
            let spill = dir.join(SPILL_DIR);
            std::fs::create_dir_all(&spill).map_err(|source| EngineError::DataDir {
                dir: spill.clone(),
                source,
            })?;
            runtime = runtime.with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill])),
            );
        }
        let context = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        // A newtype, not an `Arc<T>`: datafusion-pg-catalog 0.19's provider impl for
        // `Arc<T>` calls itself forever, so `SELECT * FROM pg_roles` would overflow.
        setup_pg_catalog(&context, CATALOG, crate::pg_roles::RolesView(roles.clone()))
            .map_err(|e| *e)?;
        crate::pg_roles::register_pg_user(&context, roles.clone())?;
        crate::pg_types::register(&context).await?;
        crate::pg_indexes::register_index_catalog(&context, storage.clone())?;
        crate::pg_columns::register(&context)?;
        crate::pg_column_types::register(&context)?;
        crate::information_schema_columns::register(&context).await?;
        let mut models = options.models;
        if let (Some(dir), None) = (&options.data_dir, &models.cache_file) {
            models.cache_file = Some(dir.join("embed-cache.bin"));
        }
        let models = Arc::new(ModelRegistry::new(models));
        register_functions(&context, models.clone());
        crate::pg_functions::register(&context)?;
        install_vector_operators(&context)?;
        context.register_udtf("nearest", Arc::new(Nearest::new(&context)));
        install_delta_reader(&context);
        if let (Some(schema), Some(catalog)) = (&storage, context.catalog(CATALOG)) {
            catalog.register_schema("public", schema.clone())?;
        }
        if options.demo {
            for (name, table) in demo::tables()? {
                match &storage {
                    Some(schema) => schema.register_transient(name, table)?,
                    None => {
                        context.register_table(name, table)?;
                    }
                }
            }
        }
        if let Some(dir) = &options.data_dir {
            register_data_dir(&context, dir).await?;
        }
        if let Some(scheduler) = &options.cluster {
            ClusterPlanner::connect(scheduler).await?.install(&context);
        }
        Ok(Self {
            context: Arc::new(context),
            models,
            storage,
            roles,
        })
    }
}

impl Drop for Engine {
    /// Releases the data directory (its writers and its lock) even if DataFusion's
    /// catalog outlives the engine, so a new engine can open the directory.
    fn drop(&mut self) {
        if let Some(storage) = &self.storage {
            storage.close();
        }
    }
}

/// Registers every function rankql's SQL may call (the `rankql-udfs` toolkit with
/// `embed` on `models`, the Postgres compatibility functions, the size-checked string
/// functions): the engine's context and every cluster node's session get the same set,
/// so a plan that names one can run on any of them.
pub fn register_functions(context: &SessionContext, models: Arc<ModelRegistry>) {
    crate::pg_compat::register(context);
    crate::value_limits::register(context);
    rankql_udfs::register_all(context, models);
}

/// pgvector's operators, planned onto rankql's functions so `a <=> b` and
/// `1 - cosine(a, b)` can never disagree: `<->` is `l2_distance`, `<#>` is `0 - dot`,
/// `<=>` is `1 - cosine`. Also switches the SQL dialect to Postgres, which is the one
/// that tokenises these operators, and adds the rule that answers `ORDER BY` one of
/// these distances `LIMIT k` from an HNSW index.
fn install_vector_operators(context: &SessionContext) -> DfResult<()> {
    let state = context.state();
    let planner = Arc::new(VectorOperators {
        l2_distance: state.udf("l2_distance")?,
        dot: state.udf("dot")?,
        cosine: state.udf("cosine")?,
    });
    let mut planners = vec![planner as Arc<dyn ExprPlanner>];
    planners.extend(state.expr_planners().iter().cloned());
    let mut config = context.copied_config();
    config
        .options_mut()
        .set("datafusion.sql_parser.dialect", "postgres")?;
    let state_ref = context.state_ref();
    let existing = state_ref.read().clone();
    *state_ref.write() = SessionStateBuilder::new_from_existing(existing)
        .with_config(config)
        .with_expr_planners(planners)
        .with_physical_optimizer_rule(Arc::new(VectorTopKRule))
        .build();
    Ok(())
}

/// `CREATE EXTERNAL TABLE t STORED AS DELTATABLE LOCATION '…'` reads Delta tables
/// written by other tools (or copied from another rankql's data directory).
fn install_delta_reader(context: &SessionContext) {
    let state_ref = context.state_ref();
    let mut state = state_ref.write();
    state.table_factories_mut().insert(
        "DELTATABLE".to_string(),
        Arc::new(deltalake_core::delta_datafusion::DeltaTableFactory {}),
    );
}

#[derive(Debug)]
struct VectorOperators {
    l2_distance: Arc<ScalarUDF>,
    dot: Arc<ScalarUDF>,
    cosine: Arc<ScalarUDF>,
}

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let call = |udf: &Arc<ScalarUDF>, expr: RawBinaryExpr| {
            Expr::ScalarFunction(ScalarFunction::new_udf(
                udf.clone(),
                vec![expr.left, expr.right],
            ))
        };
        let planned = match &expr.op {
            BinaryOperator::LtDashGt => call(&self.l2_distance, expr),
            BinaryOperator::Spaceship => lit(1.0) - call(&self.cosine, expr),
            // `0 - dot`, not `-dot`: DataFusion 55's sort checks reject an ORDER BY on a
            // negated function over several partitions.
            BinaryOperator::Custom(name) if name == "<#>" => lit(0.0) - call(&self.dot, expr),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// Registers every Parquet, CSV and JSON file (or directory of Parquet files) in `dir` as
/// a table named after it, so `COPY (…) TO 'DIR/name.parquet'` survives a restart. The
/// durable tables' own directory is the storage's, not a file table.
async fn register_data_dir(context: &SessionContext, dir: &Path) -> Result<(), EngineError> {
    let io_error = |source| EngineError::DataDir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        // rankql's own files are not tables: the durable tables' folder, spill files, and
        // the role catalog (which holds password secrets).
        if [TABLES_DIR, SPILL_DIR, ROLES_FILE]
            .iter()
            .any(|own| path.ends_with(own))
        {
            continue;
        }
        let Some(name) = table_name(&path) else {
            continue;
        };
        let location = path.to_string_lossy().to_string();
        let extension = match path.extension().and_then(|e| e.to_str()) {
            _ if path.is_dir() => "parquet",
            Some(extension) => extension,
            None => continue,
        };
        let registered = match extension {
            "parquet" => {
                context
                    .register_parquet(&name, &location, ParquetReadOptions::default())
                    .await
            }
            "csv" => {
                context
                    .register_csv(&name, &location, CsvReadOptions::new())
                    .await
            }
            "json" | "ndjson" => {
                context
                    .register_json(&name, &location, JsonReadOptions::default())
                    .await
            }
            _ => continue,
        };
        match registered {
            Ok(()) => {
                tracing::info!(table = %name, path = %location, "table registered from data dir")
            }
            Err(error) => tracing::warn!(path = %location, "skipped: {error}"),
        }
    }
    Ok(())
}

/// `products.parquet` → `products`; names that are not plain identifiers are skipped.
fn table_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?.to_ascii_lowercase();
    let valid = stem
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(stem)
}
