//! Tables of rankql's own beside datafusion-pg-catalog's in `pg_catalog` (`pg_user`,
//! `pg_indexes`), and rows of rankql's own in its tables (the vector indexes in
//! `pg_class` and `pg_index`): the catalog's schema is wrapped, and each table is built
//! or rewritten from rankql's state whenever a query reads it, so it is never stale.

use std::sync::Arc;

use crate::engine::CATALOG;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;

/// Builds an extra table's current contents.
pub type TableBuilder = Box<dyn Fn() -> Result<Arc<dyn TableProvider>> + Send + Sync>;

/// Rewrites the rows of one of the catalog's own tables as a query reads them.
#[async_trait]
pub trait RowRewrite: Send + Sync {
    /// `rows` (the table's rows, one batch) as rankql shows them; `catalog` reads the
    /// catalog's other tables (as the wrapped schema has them).
    async fn rewrite(&self, rows: RecordBatch, catalog: &CatalogReader<'_>) -> Result<RecordBatch>;

    /// The table's columns as rankql shows them, given the catalog's (the same unless
    /// the rewrite adds columns or changes their types).
    fn schema(&self, catalog: SchemaRef) -> SchemaRef {
        catalog
    }
}

/// Reads whole tables of the wrapped `pg_catalog` for a [`RowRewrite`].
pub struct CatalogReader<'a> {
    catalog: &'a dyn SchemaProvider,
    state: &'a dyn Session,
}

impl CatalogReader<'_> {
    /// Every row of the catalog table `name`, in one batch.
    pub async fn read(&self, name: &str) -> Result<RecordBatch> {
        let table = self
            .catalog
            .table(name)
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("pg_catalog.{name} is missing")))?;
        read_all(table.as_ref(), self.state).await
    }
}

async fn read_all(table: &dyn TableProvider, state: &dyn Session) -> Result<RecordBatch> {
    let plan = table.scan(state, None, &[], None).await?;
    let batches = collect(plan, state.task_ctx()).await?;
    Ok(concat_batches(&table.schema(), &batches)?)
}

/// Where a wrapped table's rows come from.
enum Source {
    /// A table of rankql's own.
    Built(TableBuilder),
    /// The catalog's table of the same name, rewritten.
    Rewritten(Arc<dyn RowRewrite>),
}

/// `pg_catalog` with one table added or rewritten; every other table comes from the
/// wrapped schema.
struct WithTable {
    catalog: Arc<dyn SchemaProvider>,
    name: &'static str,
    source: Source,
}

impl std::fmt::Debug for WithTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithTable")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Adds the table `name` (contents from `build`) to `context`'s `pg_catalog`.
pub fn add_catalog_table(
    context: &SessionContext,
    name: &'static str,
    build: TableBuilder,
) -> Result<()> {
    wrap(context, name, Source::Built(build))
}

/// Has every read of `context`'s `pg_catalog.<name>` rewritten by `rewrite`.
pub fn rewrite_catalog_table(
    context: &SessionContext,
    name: &'static str,
    rewrite: Arc<dyn RowRewrite>,
) -> Result<()> {
    wrap(context, name, Source::Rewritten(rewrite))
}

fn wrap(context: &SessionContext, name: &'static str, source: Source) -> Result<()> {
    let catalog = context
        .catalog(CATALOG)
        .ok_or_else(|| DataFusionError::Plan(format!("catalog {CATALOG} is missing")))?;
    let Some(pg_catalog) = catalog.schema("pg_catalog") else {
        return Ok(());
    };
    catalog.register_schema(
        "pg_catalog",
        Arc::new(WithTable {
            catalog: pg_catalog,
            name,
            source,
        }),
    )?;
    Ok(())
}

#[async_trait]
impl SchemaProvider for WithTable {
    fn owner_name(&self) -> Option<&str> {
        self.catalog.owner_name()
    }

    fn table_names(&self) -> Vec<String> {
        let mut names = self.catalog.table_names();
        if !names.iter().any(|name| name == self.name) {
            names.push(self.name.to_string());
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name != self.name {
            return self.catalog.table(name).await;
        }
        match &self.source {
            Source::Built(build) => build().map(Some),
            Source::Rewritten(rewrite) => {
                let Some(table) = self.catalog.table(name).await? else {
                    return Ok(None);
                };
                Ok(Some(Arc::new(RewrittenTable {
                    table,
                    catalog: self.catalog.clone(),
                    rewrite: rewrite.clone(),
                })))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name == self.name || self.catalog.table_exist(name)
    }
}

/// A catalog table whose rows a [`RowRewrite`] rewrites when it is scanned (catalog
/// tables are small: they are read whole).
struct RewrittenTable {
    table: Arc<dyn TableProvider>,
    catalog: Arc<dyn SchemaProvider>,
    rewrite: Arc<dyn RowRewrite>,
}

impl std::fmt::Debug for RewrittenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewrittenTable").finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for RewrittenTable {
    fn schema(&self) -> SchemaRef {
        self.rewrite.schema(self.table.schema())
    }

    fn table_type(&self) -> TableType {
        self.table.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = read_all(self.table.as_ref(), state).await?;
        let reader = CatalogReader {
            catalog: self.catalog.as_ref(),
            state,
        };
        let rows = self.rewrite.rewrite(rows, &reader).await?;
        MemTable::try_new(self.schema(), vec![vec![rows]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `batch` with its column `name` replaced by `values`.
pub fn with_column(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    let position = batch.schema().index_of(name)?;
    let mut columns = batch.columns().to_vec();
    columns[position] = values;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
