//! `information_schema.columns` as PostgreSQL has it, for the tools that list a table's
//! columns through it (Metabase's field sync, Grafana's column picker, Superset).
//!
//! Why: DataFusion's own view names Arrow types (`Int64`, `List(Float32, …)`), counts
//! `ordinal_position` from 0 and lacks `udt_schema`/`udt_name`, `is_identity` and the
//! other columns PostgreSQL has, so Metabase could not sync a table's fields. This view
//! reads `pg_attribute`, `pg_class`, `pg_namespace` and `pg_type` (so a column's type
//! agrees with `\d`: `bigint`, `ARRAY` of `_float8`, `USER-DEFINED` `vector`), and the
//! server's catalog rewrites send `information_schema.columns` here
//! (`pg_catalog.information_schema_columns`; DataFusion's `information_schema` cannot be
//! extended).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::Result;
use datafusion::datasource::ViewTable;
use datafusion::prelude::SessionContext;

use crate::engine::CATALOG;
use crate::pg_catalog_tables::add_catalog_table;

/// The view's name in `pg_catalog`.
pub const TABLE_NAME: &str = "information_schema_columns";

/// PostgreSQL's columns of `information_schema.columns`, from the catalog tables. Types
/// are `format_type`'s names, except arrays (`ARRAY`) and types outside PostgreSQL's
/// core (`USER-DEFINED`), as PostgreSQL reports them; precisions are PostgreSQL's (binary
/// for integers and floats).
const DEFINITION: &str = "SELECT
    CAST('{catalog}' AS TEXT) AS table_catalog,
    n.nspname AS table_schema,
    c.relname AS table_name,
    a.attname AS column_name,
    CAST(a.attnum AS INT) AS ordinal_position,
    CAST(NULL AS TEXT) AS column_default,
    CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
    CASE
        WHEN t.typcategory = 'A' THEN 'ARRAY'
        WHEN tn.nspname <> 'pg_catalog' OR t.typname = 'vector' THEN 'USER-DEFINED'
        ELSE format_type(a.atttypid, NULL)
    END AS data_type,
    CAST(NULL AS INT) AS character_maximum_length,
    CASE WHEN a.atttypid IN (25, 1043, 1042) THEN 1073741824 END AS character_octet_length,
    CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24
        WHEN 701 THEN 53 END AS numeric_precision,
    CASE WHEN a.atttypid IN (21, 23, 20, 700, 701) THEN 2 WHEN a.atttypid = 1700 THEN 10
        END AS numeric_precision_radix,
    CASE WHEN a.atttypid IN (21, 23, 20) THEN 0 END AS numeric_scale,
    CASE WHEN a.atttypid = 1082 THEN 0 WHEN a.atttypid IN (1083, 1114, 1184) THEN 6
        END AS datetime_precision,
    CAST(NULL AS TEXT) AS interval_type,
    CAST(NULL AS INT) AS interval_precision,
    CAST(NULL AS TEXT) AS character_set_catalog,
    CAST(NULL AS TEXT) AS character_set_schema,
    CAST(NULL AS TEXT) AS character_set_name,
    CAST(NULL AS TEXT) AS collation_catalog,
    CAST(NULL AS TEXT) AS collation_schema,
    CAST(NULL AS TEXT) AS collation_name,
    CAST(NULL AS TEXT) AS domain_catalog,
    CAST(NULL AS TEXT) AS domain_schema,
    CAST(NULL AS TEXT) AS domain_name,
    CAST('{catalog}' AS TEXT) AS udt_catalog,
    tn.nspname AS udt_schema,
    t.typname AS udt_name,
    CAST(NULL AS TEXT) AS scope_catalog,
    CAST(NULL AS TEXT) AS scope_schema,
    CAST(NULL AS TEXT) AS scope_name,
    CAST(NULL AS INT) AS maximum_cardinality,
    CAST(a.attnum AS TEXT) AS dtd_identifier,
    'NO' AS is_self_referencing,
    'NO' AS is_identity,
    CAST(NULL AS TEXT) AS identity_generation,
    CAST(NULL AS TEXT) AS identity_start,
    CAST(NULL AS TEXT) AS identity_increment,
    CAST(NULL AS TEXT) AS identity_maximum,
    CAST(NULL AS TEXT) AS identity_minimum,
    CAST(NULL AS TEXT) AS identity_cycle,
    'NEVER' AS is_generated,
    CAST(NULL AS TEXT) AS generation_expression,
    'YES' AS is_updatable
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'm', 'f', 'p')";

/// Adds the view to `context`'s `pg_catalog` (after the catalog tables it reads and
/// their rewrites). The plan is made once; each read scans the catalog afresh.
pub async fn register(context: &SessionContext) -> Result<()> {
    let definition = DEFINITION.replace("{catalog}", CATALOG);
    let plan = context.state().create_logical_plan(&definition).await?;
    let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(definition)));
    add_catalog_table(context, TABLE_NAME, Box::new(move || Ok(view.clone())))
}
