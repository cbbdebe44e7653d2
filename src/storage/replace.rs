//! `CREATE OR REPLACE TABLE` for durable tables. DataFusion runs it by dropping the old
//! table *before* it runs the query, then registering the result: a query that fails
//! (a bad `embed` input, a cancel) or a crash in between leaves no table at all, and a
//! query that reads the table it replaces finds its files deleted. For a durable table
//! rankql runs the query first and then swaps the tables in one step
//! ([`DurableSchema::replace`]); any other target keeps DataFusion's behaviour.

use std::sync::Arc;

use datafusion::catalog::{MemTable, SchemaProvider};
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;

use super::{DurableSchema, DurableTable};

/// Runs `plan` if it is `CREATE OR REPLACE TABLE` of a durable table and returns its
/// outcome; `None` for every other plan, which the caller runs as usual.
pub async fn create_or_replace(
    context: &SessionContext,
    plan: &LogicalPlan,
) -> Option<DfResult<()>> {
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
        return None;
    };
    if !create.or_replace {
        return None;
    }
    let state = context.state();
    let defaults = &state.config().options().catalog;
    let name = create
        .name
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    let schema = context.catalog(&name.catalog)?.schema(&name.schema)?;
    let durable = schema.downcast_ref::<DurableSchema>()?;
    if !durable.is_durable(&name.table) {
        return None;
    }
    let replaced = async {
        let rows = DataFrame::new(state.clone(), create.input.as_ref().clone())
            .collect_partitioned()
            .await?;
        let table = MemTable::try_new(Arc::new(create.input.schema().as_arrow().clone()), rows)?;
        // Like DataFusion's own catalog calls, the swap runs synchronously (its storage work
        // runs on the writers' runtime).
        durable
            .replace(&name.table, &table)
            .map_err(DataFusionError::from)?;
        // The statement ends when the kept indexes' graphs are built, as `CREATE INDEX`
        // does: the next query is served by them (it is exact, only slower, before).
        let replacement = durable.table(&name.table).await?;
        let indexes = replacement
            .as_ref()
            .and_then(|table| table.downcast_ref::<DurableTable>())
            .map(|table| table.indexes().clone());
        if let Some(indexes) = indexes {
            tokio::task::spawn_blocking(move || indexes.wait_for_builds())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
        Ok(())
    };
    Some(replaced.await)
}
