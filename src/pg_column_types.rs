//! Column types as PostgreSQL names them in `pg_attribute`: a vector column is
//! `vector(384)`, a list of floats `double precision[]`.
//!
//! Why: datafusion-pg-catalog maps only a few Arrow types to PostgreSQL's and shows every
//! other column as `text`, so psql's `\d`, DBeaver's column list and pgjdbc's
//! `getColumns` called an embedding column `text`. The wire already sends these columns
//! as `vector` and arrays; the catalog now says the same. `format_type` learns pgvector's
//! `vector(d)` (its type modifier is the dimension, as in pgvector).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, SchemaRef};
use datafusion::catalog::CatalogProvider;
use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::{is_pg_vector_field, PG_VECTOR_TYPE_OID};

use crate::engine::CATALOG;
use crate::pg_catalog_tables::{rewrite_catalog_table, with_column, CatalogReader, RowRewrite};

/// The oid datafusion-pg-catalog gives every column whose type it does not map.
const TEXT_OID: i32 = 25;

/// Registers the `pg_attribute` rewrite and `format_type` for vectors in `context`
/// (after datafusion-pg-catalog's, which they wrap).
pub fn register(context: &SessionContext) -> Result<()> {
    if let Some(catalog) = context.catalog(CATALOG) {
        rewrite_catalog_table(context, "pg_attribute", Arc::new(ColumnTypes { catalog }))?;
    }
    if let Ok(inner) = context.state().udf("format_type") {
        context.register_udf(ScalarUDF::new_from_impl(FormatVectorType {
            signature: inner.signature().clone(),
            inner,
        }));
    }
    Ok(())
}

/// The PostgreSQL type (oid, type modifier) of a column datafusion-pg-catalog shows as
/// `text`; `None` where `text` is right or no PostgreSQL type fits better. A column is a
/// `vector` where the wire sends it as one (its field is tagged so); its dimension is
/// known while it is a fixed-size list (a stored table keeps a plain list).
pub fn column_type(field: &Field) -> Option<(i32, i32)> {
    if is_pg_vector_field(field) {
        let dimension = match field.data_type() {
            DataType::FixedSizeList(_, dimension) => *dimension,
            _ => -1,
        };
        return Some((PG_VECTOR_TYPE_OID as i32, dimension));
    }
    let element = match field.data_type() {
        DataType::List(field)
        | DataType::LargeList(field)
        | DataType::FixedSizeList(field, _)
        | DataType::ListView(field)
        | DataType::LargeListView(field) => field.data_type(),
        _ => return None,
    };
    let array_oid = match element {
        DataType::Boolean => 1000,
        DataType::Int16 => 1005,
        DataType::Int32 => 1007,
        DataType::Int64 => 1016,
        DataType::Float32 => 1021,
        DataType::Float64 => 1022,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 1009,
        _ => return None,
    };
    Some((array_oid, -1))
}

/// `pg_attribute` with each column's type from its table's Arrow schema where the
/// catalog fell back to `text`.
struct ColumnTypes {
    catalog: Arc<dyn CatalogProvider>,
}

impl ColumnTypes {
    /// The Arrow schema of the table `oid` names, through `pg_class` and `pg_namespace`.
    async fn table_schemas(&self, reader: &CatalogReader<'_>) -> Result<HashMap<i32, SchemaRef>> {
        let namespaces = reader.read("pg_namespace").await?;
        let namespace_names: HashMap<i32, String> = int_column(&namespaces, "oid")
            .iter()
            .zip(text_column(&namespaces, "nspname").iter())
            .filter_map(|(oid, name)| Some((oid?, name?.to_string())))
            .collect();
        let classes = reader.read("pg_class").await?;
        let oids = int_column(&classes, "oid");
        let names = text_column(&classes, "relname");
        let namespaces = int_column(&classes, "relnamespace");
        let mut schemas = HashMap::new();
        for row in 0..classes.num_rows() {
            if oids.is_null(row) || names.is_null(row) || namespaces.is_null(row) {
                continue;
            }
            let Some(schema_name) = namespace_names.get(&namespaces.value(row)) else {
                continue;
            };
            let Some(schema) = self.catalog.schema(schema_name) else {
                continue;
            };
            if let Ok(Some(table)) = schema.table(names.value(row)).await {
                schemas.insert(oids.value(row), table.schema());
            }
        }
        Ok(schemas)
    }
}

#[async_trait]
impl RowRewrite for ColumnTypes {
    async fn rewrite(&self, rows: RecordBatch, reader: &CatalogReader<'_>) -> Result<RecordBatch> {
        let types = int_column(&rows, "atttypid");
        if !types.iter().any(|oid| oid == Some(TEXT_OID)) {
            return Ok(rows);
        }
        let schemas = self.table_schemas(reader).await?;
        let tables = int_column(&rows, "attrelid");
        let numbers = rows
            .column_by_name("attnum")
            .and_then(|c| datafusion::arrow::compute::cast(c, &DataType::Int32).ok());
        let Some(numbers) = numbers else {
            return Ok(rows);
        };
        let numbers = numbers.as_primitive::<Int32Type>();
        let modifiers = int_column(&rows, "atttypmod");
        let mut new_types: Vec<Option<i32>> = types.iter().collect();
        let mut new_modifiers: Vec<Option<i32>> = modifiers.iter().collect();
        for row in 0..rows.num_rows() {
            if types.value(row) != TEXT_OID || tables.is_null(row) || numbers.is_null(row) {
                continue;
            }
            let field = schemas.get(&tables.value(row)).and_then(|schema| {
                let position = usize::try_from(numbers.value(row) - 1).ok()?;
                schema.fields().get(position).cloned()
            });
            if let Some((oid, modifier)) = field.and_then(|f| column_type(&f)) {
                new_types[row] = Some(oid);
                new_modifiers[row] = Some(modifier);
            }
        }
        let rows = with_column(&rows, "atttypid", Arc::new(Int32Array::from(new_types)))?;
        with_column(
            &rows,
            "atttypmod",
            Arc::new(Int32Array::from(new_modifiers)),
        )
    }
}

fn int_column(batch: &RecordBatch, name: &str) -> Int32Array {
    batch
        .column_by_name(name)
        .and_then(|c| datafusion::arrow::compute::cast(c, &DataType::Int32).ok())
        .map(|c| c.as_primitive::<Int32Type>().clone())
        .unwrap_or_else(|| Int32Array::new_null(batch.num_rows()))
}

fn text_column(batch: &RecordBatch, name: &str) -> StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8).ok())
        .map(|c| c.as_string::<i32>().clone())
        .unwrap_or_else(|| StringArray::new_null(batch.num_rows()))
}

/// datafusion-pg-catalog's `format_type`, with pgvector's `vector` (`vector(384)` when
/// the type modifier gives the dimension).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatVectorType {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for FormatVectorType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arguments)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let formatted = self.inner.invoke_with_args(args)?.into_array(rows)?;
        let formatted_type = formatted.data_type().clone();
        let formatted = datafusion::arrow::compute::cast(&formatted, &DataType::Utf8)?;
        let formatted = formatted.as_string::<i32>();
        let oids = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let modifiers = match arrays.get(1) {
            Some(m) => Some(datafusion::arrow::compute::cast(m, &DataType::Int32)?),
            None => None,
        };
        let modifiers = modifiers.as_ref().map(|m| m.as_primitive::<Int32Type>());
        let named: StringArray = (0..rows)
            .map(|row| {
                if oids.is_valid(row) && oids.value(row) == PG_VECTOR_TYPE_OID as i32 {
                    let dimension = modifiers
                        .filter(|m| m.is_valid(row) && m.value(row) > 0)
                        .map(|m| m.value(row));
                    return Some(match dimension {
                        Some(d) => format!("vector({d})"),
                        None => "vector".to_string(),
                    });
                }
                formatted
                    .is_valid(row)
                    .then(|| formatted.value(row).to_string())
            })
            .collect();
        let named = datafusion::arrow::compute::cast(&named, &formatted_type)?;
        Ok(ColumnarValue::Array(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rankql_udfs::vector::args::{vector_field, vector_type};

    #[test]
    fn vectors_and_lists_get_postgresql_types() {
        assert_eq!(
            column_type(&vector_field("v", vector_type(384))),
            Some((PG_VECTOR_TYPE_OID as i32, 384))
        );
        let stored = vector_field("v", DataType::new_list(DataType::Float32, true));
        assert_eq!(column_type(&stored), Some((PG_VECTOR_TYPE_OID as i32, -1)));
        let floats = Field::new("f", DataType::new_list(DataType::Float64, true), true);
        assert_eq!(column_type(&floats), Some((1022, -1)));
        assert_eq!(column_type(&Field::new("t", DataType::Utf8, true)), None);
    }
}
