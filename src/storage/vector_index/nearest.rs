//! `nearest(query_table, query_key, query_vector, target_table, target_key, target_vector,
//! k [, metric])`: the k nearest target rows for *every* query row — recommendations for
//! all users, similar products for every product — as one table function, because
//! DataFusion cannot plan `LATERAL (… ORDER BY … LIMIT k)`. Output: `query_id`,
//! `neighbour_id`, `score` (cosine similarity, L2 distance or dot product) and `rank`.
//!
//! The query rows are spread over every core. When the target is a durable table with an
//! HNSW index of the metric on the target column, each query searches every data file's
//! graph (with the session's `hnsw.ef_search`) and ranks the candidates exactly; data files
//! without a graph, logged rows and tables without an index are ranked exactly, row by row.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, Session, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use rankql_udfs::vector::args::Vectors;
use rankql_udfs::vector::kernels::{
    cosine_from_parts, dot, dot_and_norm, squared_l2, squared_norm,
};
use rayon::prelude::*;

use super::definition::Metric;
use super::file_index::GraphView;
use super::rule::HnswOptions;
use crate::engine::CATALOG;
use crate::storage::DurableTable;

/// The `nearest(…)` table function, resolving table names in the engine's catalog.
#[derive(Debug)]
pub struct Nearest {
    catalogs: Arc<dyn CatalogProviderList>,
}

impl Nearest {
    /// A `nearest` that finds tables in `context`'s catalogs (shared by all sessions).
    pub fn new(context: &SessionContext) -> Self {
        Self {
            catalogs: context.state().catalog_list().clone(),
        }
    }

    /// The table `name` (`table` or `schema.table`) of the `datafusion` catalog.
    fn table(&self, name: &str) -> DfResult<Arc<dyn TableProvider>> {
        let (schema, table) = name.split_once('.').unwrap_or(("public", name));
        let found = self
            .catalogs
            .catalog(CATALOG)
            .and_then(|catalog| catalog.schema(schema))
            .map(|schema| futures::executor::block_on(schema.table(table)))
            .transpose()?
            .flatten();
        found.ok_or_else(|| DataFusionError::Plan(format!("nearest: table {name} does not exist")))
    }
}

const USAGE: &str = "nearest(query_table, query_key, query_vector, target_table, target_key, \
                     target_vector, k [, 'cosine' | 'l2' | 'ip'])";

fn text_arg(args: &[Expr], position: usize) -> DfResult<String> {
    match args.get(position) {
        Some(Expr::Literal(ScalarValue::Utf8(Some(text)), _)) => Ok(text.clone()),
        _ => plan_err!("{USAGE}: argument {} must be a text literal", position + 1),
    }
}

impl TableFunctionImpl for Nearest {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        if !(7..=8).contains(&args.len()) {
            return plan_err!("{USAGE}: got {} arguments", args.len());
        }
        let k = match &args[6] {
            Expr::Literal(value, _) => value.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(k)) if (1..=10_000).contains(&k) => Some(k as usize),
                _ => None,
            }),
            _ => None,
        };
        let Some(k) = k else {
            return plan_err!("{USAGE}: k must be a whole number from 1 to 10000");
        };
        let metric = match args.get(7).map(|_| text_arg(args, 7)).transpose()? {
            None => Metric::Cosine,
            Some(name) => match name.to_ascii_lowercase().as_str() {
                "cosine" => Metric::Cosine,
                "l2" => Metric::L2,
                "ip" => Metric::InnerProduct,
                other => return plan_err!("{USAGE}: unknown metric {other:?}"),
            },
        };
        let side = |table: usize| -> DfResult<Side> {
            let name = text_arg(args, table)?;
            let provider = self.table(&name)?;
            let schema = provider.schema();
            let column = |position: usize| -> DfResult<usize> {
                let column = text_arg(args, position)?;
                schema
                    .index_of(&column)
                    .map_err(|_| DataFusionError::Plan(format!("{name} has no column {column}")))
            };
            Ok(Side {
                key: column(table + 1)?,
                vector: column(table + 2)?,
                provider,
            })
        };
        let (query, target) = (side(0)?, side(3)?);
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "query_id",
                query.provider.schema().field(query.key).data_type().clone(),
                true,
            ),
            Field::new(
                "neighbour_id",
                target
                    .provider
                    .schema()
                    .field(target.key)
                    .data_type()
                    .clone(),
                true,
            ),
            Field::new("score", DataType::Float64, false),
            Field::new("rank", DataType::UInt32, false),
        ]));
        Ok(Arc::new(NearestTable {
            query,
            target,
            k,
            metric,
            schema,
        }))
    }
}

/// One side of the search: a table, its key column and its vector column.
#[derive(Debug)]
struct Side {
    provider: Arc<dyn TableProvider>,
    key: usize,
    vector: usize,
}

impl Side {
    /// The (key, vector) columns of every row.
    async fn rows(&self, state: &dyn Session) -> DfResult<Vec<RecordBatch>> {
        let projection = vec![self.key, self.vector];
        let plan = self
            .provider
            .scan(state, Some(&projection), &[], None)
            .await?;
        collect(plan, state.task_ctx()).await
    }
}

/// The result of one `nearest(…)` call, computed when it is scanned.
#[derive(Debug)]
struct NearestTable {
    query: Side,
    target: Side,
    k: usize,
    metric: Metric,
    schema: SchemaRef,
}

/// Target rows searched together: a data file (with its graph, if it has one) or the
/// rows of a table without an index.
struct Segment {
    keys: Vec<ArrayRef>,
    vectors: Vec<Vectors>,
    graph: Option<Arc<GraphView>>,
}

impl Segment {
    fn new(batches: &[RecordBatch], graph: Option<Arc<GraphView>>) -> DfResult<Self> {
        Ok(Self {
            keys: batches.iter().map(|b| b.column(0).clone()).collect(),
            vectors: batches
                .iter()
                .map(|b| Vectors::try_new(b.column(1), "nearest"))
                .collect::<DfResult<_>>()?,
            graph,
        })
    }

    /// (batch, row) of the `position`-th row.
    fn locate(&self, position: u64) -> Option<(usize, usize)> {
        let mut position = position as usize;
        for (batch, vectors) in self.vectors.iter().enumerate() {
            if position < vectors.len() {
                return Some((batch, position));
            }
            position -= vectors.len();
        }
        None
    }
}

/// A target row and its score.
#[derive(Clone, Copy)]
struct Hit {
    segment: usize,
    batch: usize,
    row: usize,
    score: f64,
}

impl NearestTable {
    /// `row`'s score against `query`, whose squared norm is `query_norm`.
    fn score(&self, row: &[f32], query: &[f32], query_norm: f32) -> DfResult<Option<f64>> {
        if row.len() != query.len() {
            return Err(DataFusionError::Execution(format!(
                "nearest: a query vector has dimension {} but a target vector has {}",
                query.len(),
                row.len()
            )));
        }
        Ok(match self.metric {
            Metric::Cosine => {
                let (dot, norm) = dot_and_norm(row, query);
                cosine_from_parts(dot, norm, query_norm)
            }
            Metric::L2 => Some(f64::from(squared_l2(row, query).sqrt())),
            Metric::InnerProduct => Some(f64::from(dot(row, query))),
        })
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.metric {
            Metric::L2 => a < b,
            Metric::Cosine | Metric::InnerProduct => a > b,
        }
    }

    /// The `k` best target rows for `query`.
    fn search(&self, segments: &[Segment], query: &[f32], ef_search: usize) -> DfResult<Vec<Hit>> {
        let query_norm = squared_norm(query);
        let mut hits: Vec<Hit> = Vec::with_capacity(self.k + 1);
        let mut offer = |hit: Hit| {
            if hits.len() == self.k && !self.better(hit.score, hits[self.k - 1].score) {
                return;
            }
            let at = hits.partition_point(|h| !self.better(hit.score, h.score));
            hits.insert(at, hit);
            hits.truncate(self.k);
        };
        for (index, segment) in segments.iter().enumerate() {
            let rows: usize = segment.vectors.iter().map(Vectors::len).sum();
            let positions: Box<dyn Iterator<Item = (usize, usize)>> = match &segment.graph {
                Some(graph) if ef_search < rows => Box::new(
                    graph
                        .search(query, self.k, None)?
                        .into_iter()
                        .filter_map(|key| segment.locate(key)),
                ),
                _ => Box::new(
                    segment
                        .vectors
                        .iter()
                        .enumerate()
                        .flat_map(|(batch, v)| (0..v.len()).map(move |row| (batch, row))),
                ),
            };
            for (batch, row) in positions {
                let Some(values) = segment.vectors[batch].row(row) else {
                    continue;
                };
                if let Some(score) = self.score(values, query, query_norm)? {
                    offer(Hit {
                        segment: index,
                        batch,
                        row,
                        score,
                    });
                }
            }
        }
        Ok(hits)
    }

    /// The target's segments: per data file (with graphs) for an indexed durable table,
    /// else all its rows as one.
    async fn segments(&self, state: &dyn Session, ef_search: usize) -> DfResult<Vec<Segment>> {
        let indexed = self
            .target
            .provider
            .downcast_ref::<DurableTable>()
            .and_then(|table| {
                let name = table
                    .indexes()
                    .schema()
                    .field(self.target.vector)
                    .name()
                    .clone();
                let index = table
                    .indexes()
                    .definitions()
                    .into_iter()
                    .find(|index| index.column == name && index.metric == self.metric)?;
                Some((table, index))
            });
        let Some((table, index)) = indexed else {
            return Ok(vec![Segment::new(&self.target.rows(state).await?, None)?]);
        };
        let indexes = table.indexes();
        let snapshot = table.snapshot();
        indexes.catch_up(&snapshot.delta.files);
        let columns = [self.target.key, self.target.vector];
        let mut segments = Vec::with_capacity(snapshot.delta.files.len() + 1);
        for file in snapshot.delta.files.iter() {
            let batches: Vec<RecordBatch> = indexes
                .batches(&file.path)?
                .iter()
                .map(|b| b.project(&columns))
                .collect::<Result<_, _>>()?;
            let graph = indexes.graph(&index, &file.path, ef_search);
            segments.push(Segment::new(&batches, graph)?);
        }
        let pending: Vec<RecordBatch> = snapshot
            .pending
            .iter()
            .map(|b| b.project(&columns))
            .collect::<Result<_, _>>()?;
        segments.push(Segment::new(&pending, None)?);
        Ok(segments)
    }
}

#[async_trait]
impl TableProvider for NearestTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let ef_search = state
            .config_options()
            .extensions
            .get::<HnswOptions>()
            .map_or(40, |options| options.ef_search)
            .max(self.k);
        let segments = self.segments(state, ef_search).await?;
        let queries = self.query.rows(state).await?;
        let query_vectors: Vec<Vectors> = queries
            .iter()
            .map(|b| Vectors::try_new(b.column(1), "nearest"))
            .collect::<DfResult<_>>()?;
        let positions: Vec<(usize, usize)> = query_vectors
            .iter()
            .enumerate()
            .flat_map(|(batch, v)| (0..v.len()).map(move |row| (batch, row)))
            .collect();
        let results: Vec<Vec<Hit>> = positions
            .par_iter()
            .map(|&(batch, row)| match query_vectors[batch].row(row) {
                Some(query) => self.search(&segments, query, ef_search),
                None => Ok(Vec::new()),
            })
            .collect::<DfResult<_>>()?;
        // Gather the keys: the query's once per hit, the target's from its segment.
        let mut query_rows = Vec::new();
        let mut target_rows = Vec::new();
        let mut scores = Vec::new();
        let mut ranks = Vec::new();
        let batch_starts: Vec<usize> = segments
            .iter()
            .scan(0, |start, s| {
                let first = *start;
                *start += s.keys.len();
                Some(first)
            })
            .collect();
        for (&(batch, row), hits) in positions.iter().zip(&results) {
            for (rank, hit) in hits.iter().enumerate() {
                query_rows.push((batch, row));
                target_rows.push((batch_starts[hit.segment] + hit.batch, hit.row));
                scores.push(hit.score);
                ranks.push(rank as u32 + 1);
            }
        }
        let query_keys: Vec<&dyn Array> = queries.iter().map(|b| b.column(0).as_ref()).collect();
        let target_keys: Vec<&dyn Array> = segments
            .iter()
            .flat_map(|s| s.keys.iter().map(|k| k.as_ref()))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            if query_keys.is_empty() {
                datafusion::arrow::array::new_empty_array(self.schema.field(0).data_type())
            } else {
                interleave(&query_keys, &query_rows)?
            },
            if target_keys.is_empty() {
                datafusion::arrow::array::new_empty_array(self.schema.field(1).data_type())
            } else {
                interleave(&target_keys, &target_rows)?
            },
            Arc::new(Float64Array::from(scores)),
            Arc::new(UInt32Array::from(ranks)),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
