//! The optimizer rule that makes the SQL users already write use an index: a top-k sort
//! (`ORDER BY cosine(col, q) DESC LIMIT k`, `ORDER BY col <=> q LIMIT k`, and the L2 and
//! inner-product forms) over projections, one `WHERE` filter and repartitions, down to
//! the scan of a table with a matching index, gets a [`VectorSearchExec`] in place of the
//! scan. Everything above the scan stays, so the sort still ranks the candidates exactly
//! and the filter still filters them; any other shape keeps its plan unchanged.
//! DataFusion has no hook that offers `ORDER BY … LIMIT` to a table provider, so this is
//! a physical rule, as in GreptimeDB's vector top-k rule.

use std::sync::Arc;

use datafusion::common::config::{ConfigExtension, ConfigOptions};
use datafusion::common::extensions_options;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal, NegativeExpr};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::definition::Metric;
use super::search::{IndexedScanExec, SearchSpec, VectorSearchExec};

extensions_options! {
    /// Per-session HNSW settings, as pgvector names them (`SET hnsw.ef_search = 100`).
    pub struct HnswOptions {
        /// Candidates each graph search considers: higher finds more of the true nearest
        /// rows, at the cost of speed. At least the query's LIMIT is always used.
        pub ef_search: usize, default = 40
    }
}

impl ConfigExtension for HnswOptions {
    const PREFIX: &'static str = "hnsw";
}

/// Puts index searches under top-k distance sorts (see the module docs).
#[derive(Debug, Default)]
pub struct VectorTopKRule;

impl PhysicalOptimizerRule for VectorTopKRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let ef_search = config
            .extensions
            .get::<HnswOptions>()
            .map_or(40, |options| options.ef_search)
            .max(1);
        plan.transform_down(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            match rewrite_sort(sort, ef_search)? {
                Some(input) => {
                    let rewritten = replace_children_if_necessary(node.clone(), vec![input])?;
                    Ok(Transformed::new(rewritten, true, TreeNodeRecursion::Jump))
                }
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "vector_top_k"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The sort's new input, when the sort is a top-k by an indexed distance.
fn rewrite_sort(sort: &SortExec, ef_search: usize) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(k) = sort.fetch() else {
        return Ok(None);
    };
    let [order] = sort.expr().as_ref() else {
        return Ok(None);
    };
    let wanted = Wanted {
        k,
        ef_search,
        descending: order.options.descending,
        nulls_first: order.options.nulls_first,
    };
    descend(sort.input(), order.expr.clone(), None, &wanted)
}

/// What the sort asks for.
struct Wanted {
    k: usize,
    ef_search: usize,
    descending: bool,
    nulls_first: bool,
}

/// Follows the sort key (and the filter met on the way) down to the scan, rewritten into
/// each node's input columns; returns `node` with the scan replaced by a search.
fn descend(
    node: &Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    wanted: &Wanted,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(scan) = node.downcast_ref::<IndexedScanExec>() {
        return Ok(search(scan, &key, filter, wanted).map(|search| search as _));
    }
    let (input, key, filter) = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        let key = through_projection(&key, projection.expr())?;
        let filter = match filter {
            Some(filter) => Some(through_projection(&filter, projection.expr())?),
            None => None,
        };
        (projection.input(), key, filter)
    } else if let Some(filter_exec) = node.downcast_ref::<FilterExec>() {
        if filter.is_some() {
            return Ok(None);
        }
        let key = match filter_exec.projection() {
            Some(columns) => through_columns(&key, columns, filter_exec.input())?,
            None => key,
        };
        (
            filter_exec.input(),
            key,
            Some(filter_exec.predicate().clone()),
        )
    } else if let Some(repartition) = node.downcast_ref::<RepartitionExec>() {
        (repartition.input(), key, filter)
    } else if let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>() {
        (coalesce.input(), key, filter)
    } else {
        return Ok(None);
    };
    match descend(input, key, filter, wanted)? {
        Some(child) => Ok(Some(replace_children_if_necessary(
            node.clone(),
            vec![child],
        )?)),
        None => Ok(None),
    }
}

/// `expr` over a projection's output, rewritten over its input.
fn through_projection(
    expr: &Arc<dyn PhysicalExpr>,
    projection: &[ProjectionExpr],
) -> DfResult<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform(|e| match e.downcast_ref::<Column>() {
            Some(column) => match projection.get(column.index()) {
                Some(projected) => Ok(Transformed::yes(projected.expr.clone())),
                None => Ok(Transformed::no(e)),
            },
            None => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

/// `expr` over a filter's projected output, rewritten over the filter's input.
fn through_columns(
    expr: &Arc<dyn PhysicalExpr>,
    columns: &[usize],
    input: &Arc<dyn ExecutionPlan>,
) -> DfResult<Arc<dyn PhysicalExpr>> {
    let schema = input.schema();
    expr.clone()
        .transform(|e| match e.downcast_ref::<Column>() {
            Some(column) => match columns.get(column.index()) {
                Some(&index) => Ok(Transformed::yes(Arc::new(Column::new(
                    schema.field(index).name(),
                    index,
                ))
                    as Arc<dyn PhysicalExpr>)),
                None => Ok(Transformed::no(e)),
            },
            None => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

/// The search that replaces `scan`, when `key` is a distance an index of it serves.
fn search(
    scan: &IndexedScanExec,
    key: &Arc<dyn PhysicalExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    wanted: &Wanted,
) -> Option<Arc<VectorSearchExec>> {
    let (metric, column, query) = distance(key, wanted.descending)?;
    let source = scan.source();
    let table_column = source.table_column(column)?;
    let schema = source.indexes.schema();
    let name = schema.fields().get(table_column)?.name();
    let index = source
        .indexes
        .definitions()
        .into_iter()
        .find(|index| &index.column == name && index.metric == metric)?;
    let spec = SearchSpec {
        index,
        query,
        k: wanted.k,
        filter,
        nulls_first: wanted.nulls_first,
        ef_search: wanted.ef_search.max(wanted.k),
    };
    Some(Arc::new(VectorSearchExec::new(
        source.clone(),
        spec,
        scan.schema(),
    )))
}

/// The metric, scan column and query of a sort key that orders by an index's distance:
/// `cosine(col, q)` descending, `1 - cosine(col, q)` (`<=>`) ascending, `l2_distance`
/// (`<->`) ascending, `dot` descending and `0 - dot` (`<#>`) or `-dot` ascending.
fn distance(
    key: &Arc<dyn PhysicalExpr>,
    descending: bool,
) -> Option<(Metric, usize, Arc<dyn PhysicalExpr>)> {
    if let Some(call) = key.downcast_ref::<ScalarFunctionExpr>() {
        let metric = match (call.name(), descending) {
            ("cosine", true) => Metric::Cosine,
            ("l2_distance", false) => Metric::L2,
            ("dot", true) => Metric::InnerProduct,
            _ => return None,
        };
        let (column, query) = column_and_constant(call.args())?;
        return Some((metric, column, query));
    }
    if descending {
        return None;
    }
    if let Some(binary) = key.downcast_ref::<BinaryExpr>() {
        let constant = binary
            .left()
            .downcast_ref::<Literal>()
            .and_then(|literal| as_f64(literal.value()));
        let wanted = match constant {
            Some(1.0) => Metric::Cosine,
            Some(0.0) => Metric::InnerProduct,
            _ => return None,
        };
        if *binary.op() != Operator::Minus {
            return None;
        }
        return distance(binary.right(), true).filter(|(metric, _, _)| *metric == wanted);
    }
    let negative = key.downcast_ref::<NegativeExpr>()?;
    distance(negative.arg(), true).filter(|(metric, _, _)| *metric == Metric::InnerProduct)
}

fn as_f64(value: &ScalarValue) -> Option<f64> {
    match value {
        ScalarValue::Float64(Some(v)) => Some(*v),
        ScalarValue::Float32(Some(v)) => Some(f64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v as f64),
        _ => None,
    }
}

/// `(column, constant)` in either order; the constant must read no column.
fn column_and_constant(args: &[Arc<dyn PhysicalExpr>]) -> Option<(usize, Arc<dyn PhysicalExpr>)> {
    let [left, right] = args else {
        return None;
    };
    let constant = |e: &Arc<dyn PhysicalExpr>| collect_columns(e).is_empty();
    match (
        left.downcast_ref::<Column>(),
        right.downcast_ref::<Column>(),
    ) {
        (Some(column), _) if constant(right) => Some((column.index(), right.clone())),
        (_, Some(column)) if constant(left) => Some((column.index(), left.clone())),
        _ => None,
    }
}
