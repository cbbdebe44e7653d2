//! Tables of rankql's own beside datafusion-pg-catalog's in `pg_catalog` (`pg_user`,
//! `pg_indexes`): the catalog's schema is wrapped, and each extra table is built from
//! rankql's state whenever a query reads it, so it is never stale.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

/// Builds an extra table's current contents.
pub type TableBuilder = Box<dyn Fn() -> Result<Arc<dyn TableProvider>> + Send + Sync>;

/// `pg_catalog` with one extra table; every other table comes from the wrapped schema.
struct WithTable {
    catalog: Arc<dyn SchemaProvider>,
    name: &'static str,
    build: TableBuilder,
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
    let catalog = context
        .catalog("datafusion")
        .ok_or_else(|| DataFusionError::Plan("catalog datafusion is missing".into()))?;
    let Some(pg_catalog) = catalog.schema("pg_catalog") else {
        return Ok(());
    };
    catalog.register_schema(
        "pg_catalog",
        Arc::new(WithTable {
            catalog: pg_catalog,
            name,
            build,
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
        names.push(self.name.to_string());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name == self.name {
            return (self.build)().map(Some);
        }
        self.catalog.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name == self.name || self.catalog.table_exist(name)
    }
}
