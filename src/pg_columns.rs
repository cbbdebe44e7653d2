//! Catalog columns with the types and presence clients expect. datafusion-pg-catalog
//! ships some of PostgreSQL's array columns as text (`pg_constraint.conkey` holds
//! `"[1, 2]"`, `pg_index.indkey` holds `"1 2"`) and leaves some columns out, so the
//! catalog queries of SQLAlchemy (`unnest(indkey)`), Superset and Metabase
//! (`attnum = ANY(conkey)`), pgjdbc (`conkey[pos.n]`), psqlODBC (`array_lower(conkey, 1)`),
//! psql (`c.relacl`, `c.reloptions`) and DataGrip (`n.xmin`) fail to plan. Here:
//!
//! - those text columns become arrays of integers (`int2[]`, `oid[]`) parsed from the
//!   text, and the access privilege columns (`proacl`, `nspacl`, `datacl`, `typacl`,
//!   `attacl`) arrays of text; PostgreSQL's `int2vector` subscripts start at 0 and DataFusion's at 1 — only
//!   `indkey[i]` sees the difference;
//! - `pg_class` gets `relacl` and `reloptions` (NULL: default privileges, no options),
//!   `pg_namespace` and `pg_tablespace` get `xmin` (the row version tools use to notice
//!   changes; the catalog's rows are rebuilt on every read, so it is constant);
//! - `information_schema.table_constraints`, `referential_constraints` and
//!   `character_sets`, which DataFusion's `information_schema` lacks, are added to
//!   `pg_catalog` as `information_schema_…` (the server's rewrites point queries there):
//!   rankql tables have no constraints, so the constraint views have no rows;
//!   `character_sets` has the one character set, UTF8;
//! - `pg_locks`, with no rows: rankql takes no row or table locks a client could see;
//!   `pg_timezone_names` and `pg_timezone_abbrevs`, with UTC, the one time zone rankql's
//!   sessions use.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_empty_array, new_null_array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder,
    PrimitiveBuilder, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int16Type, Int32Type, Schema, SchemaRef, TimeUnit,
};
use datafusion::catalog::MemTable;
use datafusion::common::Result;
use datafusion::prelude::SessionContext;

use crate::pg_catalog_tables::{
    add_catalog_table, rewrite_catalog_table, CatalogReader, RowRewrite,
};

/// Registers the column fixes in `context`'s `pg_catalog` (after every other rewrite of
/// these tables, so that their rows are converted too).
pub fn register(context: &SessionContext) -> Result<()> {
    let arrays = |columns: Vec<(&'static str, DataType)>| {
        Arc::new(ColumnFixes {
            arrays: columns,
            added: vec![],
        })
    };
    rewrite_catalog_table(
        context,
        "pg_constraint",
        arrays(vec![
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
        ]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_index",
        arrays(vec![
            ("indkey", DataType::Int16),
            ("indclass", DataType::Int32),
            ("indcollation", DataType::Int32),
            ("indoption", DataType::Int16),
        ]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_policy",
        arrays(vec![("polroles", DataType::Int32)]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_statistic_ext",
        arrays(vec![
            ("stxkeys", DataType::Int16),
            ("stxkind", DataType::Utf8),
        ]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_proc",
        arrays(vec![
            ("proargtypes", DataType::Int32),
            ("proallargtypes", DataType::Int32),
        ]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_tablespace",
        arrays(vec![("spcacl", DataType::Int32)]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_extension",
        arrays(vec![("extconfig", DataType::Int32)]),
    )?;
    rewrite_catalog_table(
        context,
        "pg_attribute",
        arrays(vec![("attacl", DataType::Utf8)]),
    )?;
    // Access privileges, which psql's `\df+`, `\dn+` and `\l+` print with
    // `array_to_string`.
    for (table, column) in [
        ("pg_proc", "proacl"),
        ("pg_namespace", "nspacl"),
        ("pg_database", "datacl"),
        ("pg_type", "typacl"),
    ] {
        rewrite_catalog_table(context, table, arrays(vec![(column, DataType::Utf8)]))?;
    }
    let text_list = DataType::new_list(DataType::Utf8, true);
    rewrite_catalog_table(
        context,
        "pg_class",
        Arc::new(ColumnFixes {
            arrays: vec![],
            added: vec![
                Added::Null("relacl", text_list.clone()),
                Added::Null("reloptions", text_list),
            ],
        }),
    )?;
    add_information_schema_views(context)?;
    for table in ["pg_namespace", "pg_tablespace"] {
        rewrite_catalog_table(
            context,
            table,
            Arc::new(ColumnFixes {
                arrays: vec![],
                added: vec![Added::RowVersion],
            }),
        )?;
    }
    Ok(())
}

/// The catalog tables rankql adds, with PostgreSQL's columns and constant rows.
fn add_information_schema_views(context: &SessionContext) -> Result<()> {
    add_constant_table(
        context,
        "information_schema_table_constraints",
        no_rows(&[
            ("constraint_catalog", DataType::Utf8),
            ("constraint_schema", DataType::Utf8),
            ("constraint_name", DataType::Utf8),
            ("table_catalog", DataType::Utf8),
            ("table_schema", DataType::Utf8),
            ("table_name", DataType::Utf8),
            ("constraint_type", DataType::Utf8),
            ("is_deferrable", DataType::Utf8),
            ("initially_deferred", DataType::Utf8),
            ("enforced", DataType::Utf8),
            ("nulls_distinct", DataType::Utf8),
        ]),
    )?;
    add_constant_table(
        context,
        "information_schema_referential_constraints",
        no_rows(&[
            ("constraint_catalog", DataType::Utf8),
            ("constraint_schema", DataType::Utf8),
            ("constraint_name", DataType::Utf8),
            ("unique_constraint_catalog", DataType::Utf8),
            ("unique_constraint_schema", DataType::Utf8),
            ("unique_constraint_name", DataType::Utf8),
            ("match_option", DataType::Utf8),
            ("update_rule", DataType::Utf8),
            ("delete_rule", DataType::Utf8),
        ]),
    )?;
    add_constant_table(
        context,
        "information_schema_key_column_usage",
        no_rows(&[
            ("constraint_catalog", DataType::Utf8),
            ("constraint_schema", DataType::Utf8),
            ("constraint_name", DataType::Utf8),
            ("table_catalog", DataType::Utf8),
            ("table_schema", DataType::Utf8),
            ("table_name", DataType::Utf8),
            ("column_name", DataType::Utf8),
            ("ordinal_position", DataType::Utf8),
            ("position_in_unique_constraint", DataType::Utf8),
        ]),
    )?;
    add_constant_table(
        context,
        "pg_locks",
        no_rows(&[
            ("locktype", DataType::Utf8),
            ("database", DataType::Int32),
            ("relation", DataType::Int32),
            ("page", DataType::Int32),
            ("tuple", DataType::Int16),
            ("virtualxid", DataType::Utf8),
            ("transactionid", DataType::Int64),
            ("classid", DataType::Int32),
            ("objid", DataType::Int32),
            ("objsubid", DataType::Int16),
            ("virtualtransaction", DataType::Utf8),
            ("pid", DataType::Int32),
            ("mode", DataType::Utf8),
            ("granted", DataType::Boolean),
            ("fastpath", DataType::Boolean),
            (
                "waitstart",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
        ]),
    )?;
    let text = |value: Option<&str>| Arc::new(StringArray::from(vec![value])) as ArrayRef;
    let no_dst = || Arc::new(BooleanArray::from(vec![false])) as ArrayRef;
    add_constant_table(
        context,
        "pg_timezone_names",
        vec![
            ("name", text(Some("UTC"))),
            ("abbrev", text(Some("UTC"))),
            ("utc_offset", text(Some("00:00:00"))),
            ("is_dst", no_dst()),
        ],
    )?;
    add_constant_table(
        context,
        "pg_timezone_abbrevs",
        vec![
            ("abbrev", text(Some("UTC"))),
            ("utc_offset", text(Some("00:00:00"))),
            ("is_dst", no_dst()),
        ],
    )?;
    add_constant_table(
        context,
        "information_schema_character_sets",
        vec![
            ("character_set_catalog", text(None)),
            ("character_set_schema", text(None)),
            ("character_set_name", text(Some("UTF8"))),
            ("character_repertoire", text(Some("UCS"))),
            ("form_of_use", text(Some("UTF8"))),
            ("default_collate_catalog", text(None)),
            ("default_collate_schema", text(Some("pg_catalog"))),
            ("default_collate_name", text(Some("C"))),
        ],
    )
}

/// Columns of no rows, of the given names and types.
fn no_rows(columns: &[(&'static str, DataType)]) -> Vec<(&'static str, ArrayRef)> {
    columns
        .iter()
        .map(|(name, data_type)| (*name, new_empty_array(data_type)))
        .collect()
}

/// Adds to `pg_catalog` the table `name` whose rows are `columns` (name, values).
fn add_constant_table(
    context: &SessionContext,
    name: &'static str,
    columns: Vec<(&'static str, ArrayRef)>,
) -> Result<()> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, values)| Field::new(*name, values.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let rows = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, v)| v).collect(),
    )?;
    add_catalog_table(
        context,
        name,
        Box::new(move || {
            Ok(Arc::new(MemTable::try_new(schema.clone(), vec![vec![rows.clone()]])?) as _)
        }),
    )
}

/// A column added where the catalog lacks it.
enum Added {
    /// A column of NULLs.
    Null(&'static str, DataType),
    /// `xmin`, the row's version (`1` for every row).
    RowVersion,
}

impl Added {
    fn field(&self) -> Field {
        match self {
            Self::Null(name, data_type) => Field::new(*name, data_type.clone(), true),
            Self::RowVersion => Field::new("xmin", DataType::Int32, false),
        }
    }

    fn values(&self, rows: usize) -> ArrayRef {
        match self {
            Self::Null(_, data_type) => new_null_array(data_type, rows),
            Self::RowVersion => Arc::new(Int32Array::from(vec![1; rows])),
        }
    }
}

/// Text columns turned into integer arrays, and missing columns added.
struct ColumnFixes {
    /// (column, element type).
    arrays: Vec<(&'static str, DataType)>,
    added: Vec<Added>,
}

#[async_trait]
impl RowRewrite for ColumnFixes {
    async fn rewrite(&self, rows: RecordBatch, _: &CatalogReader<'_>) -> Result<RecordBatch> {
        let schema = self.schema(rows.schema());
        let mut columns = rows.columns().to_vec();
        for (name, element) in &self.arrays {
            let Ok(position) = rows.schema().index_of(name) else {
                continue;
            };
            let Some(text) = columns[position].as_string_opt::<i32>() else {
                continue;
            };
            columns[position] = match element {
                DataType::Int16 => integer_lists::<Int16Type>(text.iter()),
                DataType::Int32 => integer_lists::<Int32Type>(text.iter()),
                _ => text_lists(text.iter()),
            };
        }
        for added in &self.added {
            if rows.schema().field_with_name(added.field().name()).is_err() {
                columns.push(added.values(rows.num_rows()));
            }
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn schema(&self, catalog: SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = catalog
            .fields()
            .iter()
            .map(|field| {
                let converted = self.arrays.iter().find(|(name, _)| field.name() == name);
                match converted {
                    Some((_, element)) if field.data_type() == &DataType::Utf8 => Field::new(
                        field.name(),
                        DataType::new_list(element.clone(), true),
                        true,
                    ),
                    _ => field.as_ref().clone(),
                }
            })
            .collect();
        for added in &self.added {
            if catalog.field_with_name(added.field().name()).is_err() {
                fields.push(added.field());
            }
        }
        Arc::new(Schema::new_with_metadata(
            fields,
            catalog.metadata().clone(),
        ))
    }
}

/// Each text (`{a,b}`) as a list of texts; NULL stays NULL.
fn text_lists<'a>(texts: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut lists = ListBuilder::new(StringBuilder::new());
    for text in texts {
        match text {
            Some(text) => {
                let inner = text.trim_matches(|c| matches!(c, '[' | ']' | '{' | '}'));
                for part in inner.split(',').filter(|part| !part.is_empty()) {
                    lists.values().append_value(part.trim().trim_matches('"'));
                }
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    Arc::new(lists.finish())
}

/// Each text (`[1, 2]`, `{1,2}` or `1 2`) as a list of integers; NULL stays NULL, and a
/// text that is not a list of integers becomes NULL.
fn integer_lists<'a, T: ArrowPrimitiveType>(
    texts: impl Iterator<Item = Option<&'a str>>,
) -> ArrayRef
where
    T::Native: std::str::FromStr,
{
    let mut lists = ListBuilder::new(PrimitiveBuilder::<T>::new());
    for text in texts {
        let parsed = text.and_then(|text| {
            text.trim_matches(|c| matches!(c, '[' | ']' | '{' | '}'))
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|part| !part.is_empty())
                .map(|part| part.parse::<T::Native>().ok())
                .collect::<Option<Vec<_>>>()
        });
        match parsed {
            Some(values) => {
                lists.values().append_slice(&values);
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    Arc::new(lists.finish())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, ListArray};

    use super::*;

    #[test]
    fn array_texts_become_integer_lists() {
        let lists = integer_lists::<Int16Type>(
            [
                Some("[1, 20, 3]"),
                Some("1 2"),
                Some("{4,5}"),
                Some(""),
                None,
                Some("x"),
            ]
            .into_iter(),
        );
        let lists = lists.as_any().downcast_ref::<ListArray>().unwrap();
        let values = |row: usize| -> Vec<i16> {
            lists
                .value(row)
                .as_primitive::<Int16Type>()
                .values()
                .to_vec()
        };
        assert_eq!(values(0), [1, 20, 3]);
        assert_eq!(values(1), [1, 2]);
        assert_eq!(values(2), [4, 5]);
        assert!(values(3).is_empty());
        assert!(lists.is_null(4));
        assert!(lists.is_null(5));
    }
}
