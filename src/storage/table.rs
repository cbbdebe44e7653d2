//! A durable table as DataFusion sees it: scans read the newest committed snapshot,
//! `INSERT` sends its rows to the table's writer and returns once they are committed.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;

use super::committer::{Committer, Published};
use super::StorageError;

/// A Delta table in the data directory, readable and appendable through SQL.
#[derive(Debug)]
pub struct DurableTable {
    name: String,
    schema: SchemaRef,
    published: Published,
    committer: Committer,
}

impl DurableTable {
    pub(crate) fn new(
        name: &str,
        schema: SchemaRef,
        published: Published,
        committer: Committer,
    ) -> Self {
        Self {
            name: name.to_string(),
            schema,
            published,
            committer,
        }
    }

    /// The table's name (also its directory under `DATA_DIR/tables`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn current(&self) -> Arc<dyn TableProvider> {
        match self.published.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.current().scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.current().supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(StorageError::NotAppend(self.name.clone()).into());
        }
        let sink = AppendSink {
            table: self.name.clone(),
            schema: self.schema.clone(),
            committer: self.committer.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// The end of an `INSERT` plan: gathers the rows and hands them to the writer.
#[derive(Debug)]
struct AppendSink {
    table: String,
    schema: SchemaRef,
    committer: Committer,
}

impl DisplayAs for AppendSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "DurableAppend: table={}", self.table)
    }
}

#[async_trait]
impl DataSink for AppendSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows > 0 {
            self.committer.append(batches).await?;
        }
        Ok(rows)
    }
}
