//! `to_regtype(name)`: a type name to its oid, as drivers ask on connect.
//!
//! Why: pgvector's Python helper (`register_vector`, through psycopg's `TypeInfo.fetch`)
//! looks its type up with `WHERE t.oid = to_regtype('vector')`. Names resolve through `pg_catalog.pg_type` (read once at
//! start: it is a static table) plus PostgreSQL's spelled-out aliases (`integer`,
//! `double precision`, …) and an optional `pg_catalog.` / `public.` qualifier; an
//! unknown name is NULL, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

/// PostgreSQL's other spellings of built-in type names.
const ALIASES: &[(&str, &str)] = &[
    ("integer", "int4"),
    ("int", "int4"),
    ("smallint", "int2"),
    ("bigint", "int8"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("boolean", "bool"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("char", "bpchar"),
    ("decimal", "numeric"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("time without time zone", "time"),
    ("time with time zone", "timetz"),
];

/// Registers `to_regtype` in `context` (after datafusion-pg-catalog's tables, which it
/// reads).
pub async fn register(context: &SessionContext) -> Result<()> {
    let mut oids: HashMap<String, i32> = HashMap::new();
    let batches = context
        .sql("SELECT typname, CAST(oid AS INT) FROM pg_catalog.pg_type")
        .await?
        .collect()
        .await?;
    for batch in &batches {
        let names = batch.column(0).as_string::<i32>();
        let values = batch.column(1).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            if !names.is_null(row) && !values.is_null(row) {
                oids.insert(names.value(row).to_string(), values.value(row));
            }
        }
    }
    for (alias, name) in ALIASES {
        if let Some(oid) = oids.get(*name).copied() {
            oids.insert(alias.to_string(), oid);
        }
    }
    context.register_udf(to_regtype(Arc::new(oids)));
    Ok(())
}

fn to_regtype(oids: Arc<HashMap<String, i32>>) -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let lookup = |name: &str| {
                let name = name.trim().to_ascii_lowercase();
                let name = name.trim_matches('"');
                let bare = name
                    .strip_prefix("pg_catalog.")
                    .or_else(|| name.strip_prefix("public."))
                    .unwrap_or(name);
                oids.get(bare).copied()
            };
            match &args[0] {
                ColumnarValue::Scalar(value) => {
                    let name = match value {
                        ScalarValue::Utf8(name) | ScalarValue::Utf8View(name) => name,
                        other => return exec_err!("to_regtype takes text, got {other:?}"),
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                        name.as_deref().and_then(lookup),
                    )))
                }
                ColumnarValue::Array(names) => {
                    let names = names.as_string::<i32>();
                    let oids: Int32Array = names.iter().map(|n| n.and_then(lookup)).collect();
                    Ok(ColumnarValue::Array(Arc::new(oids)))
                }
            }
        }),
    )
}
