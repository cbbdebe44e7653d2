//! The logical plan codec every node uses: Ballista's, plus in-memory tables (the demo
//! tables, `CREATE TABLE` results without a data directory) sent inside the plan as
//! Arrow IPC, so that the cluster can read tables that live in the client's memory.
//! [`planner`](super::planner) only sends tables up to [`MAX_SHIPPED_BYTES`] this way.

use std::sync::Arc;

use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::{exec_err, DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

/// The most bytes of in-memory table data one plan carries to the cluster; queries over
/// bigger in-memory tables run in the serving process.
pub const MAX_SHIPPED_BYTES: usize = 8 << 20;

/// Ballista's logical codec, plus [`MemTable`]s as Arrow IPC streams.
#[derive(Debug, Default)]
pub struct RankqlLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for RankqlLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let batches = StreamReader::try_new(buf, None)?
            .map(|batch| Ok(batch?.with_schema(schema.clone())?))
            .collect::<Result<Vec<RecordBatch>>>()
            .map_err(|e: DataFusionError| {
                e.context(format!("decoding the rows of in-memory table {table_ref}"))
            })?;
        Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(memory) = node.downcast_ref::<MemTable>() else {
            return exec_err!("table {table_ref} cannot be sent to the cluster");
        };
        let mut writer = StreamWriter::try_new(&mut *buf, &memory.schema())?;
        for partition in &memory.batches {
            let Ok(batches) = partition.try_read() else {
                return exec_err!("in-memory table {table_ref} is being written");
            };
            for batch in batches.iter() {
                writer.write(batch)?;
            }
        }
        writer.finish()?;
        Ok(())
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn in_memory_tables_travel_with_their_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let table = Arc::new(MemTable::try_new(schema.clone(), vec![vec![batch.clone()]]).unwrap());
        let codec = RankqlLogicalCodec::default();
        let name = TableReference::bare("t");
        let mut bytes = Vec::new();
        codec
            .try_encode_table_provider(&name, table, &mut bytes)
            .unwrap();
        let context = SessionContext::new();
        let decoded = codec
            .try_decode_table_provider(&bytes, &name, schema, &context.task_ctx())
            .unwrap();
        context.register_table("t", decoded).unwrap();
        let rows = context
            .sql("SELECT * FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows, vec![batch]);
    }
}
