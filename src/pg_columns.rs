//! Catalog columns with the types and presence clients expect. datafusion-pg-catalog
//! ships some of PostgreSQL's array columns as text (`pg_constraint.conkey` holds
//! `"[1, 2]"`, `pg_index.indkey` holds `"1 2"`) and leaves some columns out, so the
//! catalog queries of SQLAlchemy (`unnest(indkey)`), Superset and Metabase
//! (`attnum = ANY(conkey)`), pgjdbc (`conkey[pos.n]`), psqlODBC (`array_lower(conkey, 1)`),
//! psql (`c.relacl`, `c.reloptions`) and DataGrip (`n.xmin`) fail to plan. Here:
//!
//! - those text columns become arrays of integers (`int2[]`, `oid[]`), parsed from the
//!   text; PostgreSQL's `int2vector` subscripts start at 0 and DataFusion's at 1 — only
//!   `indkey[i]` sees the difference;
//! - `pg_class` gets `relacl` and `reloptions` (NULL: default privileges, no options),
//!   `pg_namespace` and `pg_tablespace` get `xmin` (the row version tools use to notice
//!   changes; the catalog's rows are rebuilt on every read, so it is constant).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_null_array, ArrayRef, AsArray, Int32Array, ListBuilder, PrimitiveBuilder, RecordBatch,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int16Type, Int32Type, Schema, SchemaRef,
};
use datafusion::common::Result;
use datafusion::prelude::SessionContext;

use crate::pg_catalog_tables::{rewrite_catalog_table, CatalogReader, RowRewrite};

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
        ]),
    )?;
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
                _ => integer_lists::<Int32Type>(text.iter()),
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
