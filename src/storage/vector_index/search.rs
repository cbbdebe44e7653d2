//! Two plan nodes. [`IndexedScanExec`] is the scan of a durable table that has indexes:
//! it runs exactly as the ordinary scan it wraps, and carries what an index search needs
//! (the snapshot's data files, the logged rows, the projection), so the optimizer rule
//! can find it under an `ORDER BY … LIMIT k`. [`VectorSearchExec`] replaces it there: it
//! passes on only the candidate rows — per data file, the graph's k nearest (of the rows
//! that pass the `WHERE` filter, when there is one); every row of files without a graph
//! and every logged row — for the query's own sort to rank exactly.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatchOptions};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{stream, StreamExt};
use rankql_udfs::vector::args::VectorArg;
use rayon::prelude::*;

use super::definition::IndexDefinition;
use super::table_indexes::{rows, TableIndexes};
use crate::storage::committer::DataFile;

/// What an index search over one snapshot of a table reads.
#[derive(Debug)]
pub(crate) struct ScanSource {
    /// The table's indexes.
    pub indexes: Arc<TableIndexes>,
    /// The snapshot's data files.
    pub files: Arc<Vec<DataFile>>,
    /// Acknowledged rows still in the write-ahead log (full schema).
    pub pending: Vec<RecordBatch>,
    /// The scan's projection of the table's columns.
    pub projection: Option<Vec<usize>>,
}

impl ScanSource {
    /// Position in the table's schema of column `index` of the scan's output.
    pub fn table_column(&self, index: usize) -> Option<usize> {
        match &self.projection {
            Some(projection) => projection.get(index).copied(),
            None => Some(index),
        }
    }

    fn project(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        match &self.projection {
            Some(projection) => Ok(batch.project(projection)?),
            None => Ok(batch.clone()),
        }
    }
}

/// The scan of a durable table with indexes (runs as the scan it wraps).
#[derive(Debug)]
pub struct IndexedScanExec {
    inner: Arc<dyn ExecutionPlan>,
    source: Arc<ScanSource>,
}

impl IndexedScanExec {
    /// Wraps `inner`, the ordinary scan of `source`.
    pub(crate) fn new(inner: Arc<dyn ExecutionPlan>, source: ScanSource) -> Self {
        Self {
            inner,
            source: Arc::new(source),
        }
    }

    /// What an index search over this scan reads.
    pub(crate) fn source(&self) -> &Arc<ScanSource> {
        &self.source
    }
}

impl DisplayAs for IndexedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IndexedScanExec: table={}, ",
            self.source.indexes.table()
        )?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for IndexedScanExec {
    fn name(&self) -> &str {
        "IndexedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}

/// How a search uses one index.
#[derive(Debug, Clone)]
pub(crate) struct SearchSpec {
    /// The index.
    pub index: Arc<IndexDefinition>,
    /// The query vector's expression (no column references).
    pub query: Arc<dyn PhysicalExpr>,
    /// Rows the query's sort keeps (LIMIT + OFFSET).
    pub k: usize,
    /// The `WHERE` filter over the scan's output, when the plan has one right above it.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The sort puts NULL distances first, so rows without a vector are candidates too.
    pub nulls_first: bool,
    /// Candidates each graph search considers (`hnsw.ef_search`, at least k).
    pub ef_search: usize,
}

/// An index search standing in for the scan under `ORDER BY distance LIMIT k`.
#[derive(Debug)]
pub struct VectorSearchExec {
    source: Arc<ScanSource>,
    spec: SearchSpec,
    properties: Arc<PlanProperties>,
}

impl VectorSearchExec {
    /// A search of `source` as `spec` says, producing the scan's columns.
    pub(crate) fn new(source: Arc<ScanSource>, spec: SearchSpec, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            source,
            spec,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for VectorSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VectorSearchExec: table={}, index={} (hnsw, {}), k={}, ef_search={}, files={}, \
             logged_batches={}",
            self.source.indexes.table(),
            self.spec.index.name,
            self.spec.index.metric.operator_class(),
            self.spec.k,
            self.spec.ef_search,
            self.source.files.len(),
            self.source.pending.len()
        )?;
        if let Some(filter) = &self.spec.filter {
            write!(f, ", filter={filter}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for VectorSearchExec {
    fn name(&self) -> &str {
        "VectorSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        if f(&self.spec.query)? == TreeNodeRecursion::Stop {
            return Ok(TreeNodeRecursion::Stop);
        }
        match &self.spec.filter {
            Some(filter) => f(filter),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (source, spec, schema) = (self.source.clone(), self.spec.clone(), self.schema());
        let query = query_vector(&spec)?;
        let search = async move {
            let candidates = tokio::task::spawn_blocking(move || candidates(&source, &spec, query))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??;
            Ok::<_, DataFusionError>(stream::iter(candidates.into_iter().map(Ok)))
        };
        let batches = stream::once(search).flat_map(|outcome| match outcome {
            Ok(batches) => batches.boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// The query vector, or `None` when it is NULL (then every distance is NULL and the
/// search passes every row on, as the exact scan would).
fn query_vector(spec: &SearchSpec) -> DfResult<Option<Vec<f32>>> {
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = spec.query.evaluate(&one_row)?;
    let query = VectorArg::try_new(&value, &spec.index.name)?;
    Ok(query.row(0).map(<[f32]>::to_vec))
}

/// The candidate rows of every data file (in parallel) and the logged rows, projected.
fn candidates(
    source: &ScanSource,
    spec: &SearchSpec,
    query: Option<Vec<f32>>,
) -> DfResult<Vec<RecordBatch>> {
    // A NULL query or one of another dimension: no index can answer; pass everything on
    // and let the exact sort rank (or report the dimension error) as it would anyway.
    let query = query.filter(|q| q.len() == spec.index.dimension);
    source.indexes.catch_up(&source.files);
    let per_file: Vec<Vec<RecordBatch>> = source
        .files
        .par_iter()
        .map(|file| file_candidates(source, spec, query.as_deref(), file))
        .collect::<DfResult<_>>()?;
    let mut batches: Vec<RecordBatch> = per_file.into_iter().flatten().collect();
    for batch in &source.pending {
        batches.push(source.project(batch)?);
    }
    Ok(batches)
}

/// One data file's candidates: the graph's nearest rows, or all rows without a graph.
fn file_candidates(
    source: &ScanSource,
    spec: &SearchSpec,
    query: Option<&[f32]>,
    file: &DataFile,
) -> DfResult<Vec<RecordBatch>> {
    let batches = source.indexes.batches(&file.path)?;
    let projected: Vec<RecordBatch> = batches
        .iter()
        .map(|batch| source.project(batch))
        .collect::<DfResult<_>>()?;
    let graph = query.and_then(|_| {
        source
            .indexes
            .graph(&spec.index, &file.path, spec.ef_search)
    });
    let (Some(query), Some(graph)) = (query, graph) else {
        return Ok(projected);
    };
    if spec.ef_search >= graph.size() {
        // A search this wide visits about every vector anyway, and HNSW does not promise
        // to reach them all: the exact ranking of the whole file is the same work, exact.
        return Ok(projected);
    }
    let passes = match &spec.filter {
        Some(filter) => Some(filter_mask(filter, &projected)?),
        None => None,
    };
    let total = rows(&batches);
    let eligible =
        |row: u64| (row as usize) < total && passes.as_ref().is_none_or(|mask| mask[row as usize]);
    let accept: Option<&(dyn Fn(u64) -> bool + Sync)> = match &passes {
        Some(_) => Some(&eligible),
        None => None,
    };
    let mut chosen: Vec<u64> = graph
        .search(query, spec.k, accept)?
        .into_iter()
        .filter(|key| eligible(*key))
        .collect();
    let indexed_eligible = match &passes {
        Some(mask) => mask.iter().filter(|pass| **pass).count(),
        None => graph.size(),
    };
    if chosen.len() < spec.k.min(indexed_eligible) {
        // The graph found fewer rows than the filter lets through (a very selective
        // filter can cut HNSW's paths): fall back to every row of this file, so the
        // query still gets k rows whenever k rows match.
        return Ok(projected);
    }
    if spec.nulls_first {
        let unindexed = source
            .indexes
            .unindexed(&spec.index, &file.path, &batches)?;
        chosen.extend(
            unindexed
                .rows
                .iter()
                .copied()
                .filter(|row| eligible(*row))
                .take(spec.k),
        );
    }
    Ok(vec![take_rows(&projected, &chosen)?])
}

/// Which rows of a file pass `filter`.
fn filter_mask(filter: &Arc<dyn PhysicalExpr>, batches: &[RecordBatch]) -> DfResult<Vec<bool>> {
    let mut mask = Vec::with_capacity(rows(batches));
    for batch in batches {
        let values = filter.evaluate(batch)?.into_array(batch.num_rows())?;
        let values: &BooleanArray = values.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal("a WHERE filter did not evaluate to booleans".into())
        })?;
        mask.extend((0..values.len()).map(|i| values.is_valid(i) && values.value(i)));
    }
    Ok(mask)
}

/// Rows `positions` (within the file) of a file's batches, as one batch.
fn take_rows(batches: &[RecordBatch], positions: &[u64]) -> DfResult<RecordBatch> {
    let mut starts = Vec::with_capacity(batches.len());
    let mut start = 0usize;
    for batch in batches {
        starts.push(start);
        start += batch.num_rows();
    }
    let indices: Vec<(usize, usize)> = positions
        .iter()
        .map(|position| {
            let position = *position as usize;
            let batch = starts.partition_point(|start| *start <= position) - 1;
            (batch, position - starts[batch])
        })
        .collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(interleave_record_batch(&refs, &indices)?)
}
