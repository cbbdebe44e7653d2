//! The HNSW indexes of durable tables as PostgreSQL's catalog shows indexes, so that
//! pgvector users' checks and psql's `\d t` / `\di` list them:
//! - `pg_catalog.pg_indexes`, one row per index with its `CREATE INDEX` statement;
//! - rows in `pg_class` (relkind `i`, and `relhasindex` on the indexed table), `pg_index`
//!   (which table and column) and `pg_am` (the `hnsw` access method);
//! - `pg_get_indexdef(oid [, column, pretty])`.
//!
//! An index's oid is a hash of its table and name, so it is the same in every query.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray,
    UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use xxhash_rust::xxh3::xxh3_64;

use crate::pg_catalog_tables::{
    add_catalog_table, rewrite_catalog_table, with_column, CatalogReader, RowRewrite,
};
use crate::storage::DurableSchema;

/// The oid of the `hnsw` access method in `pg_am` (index oids are above it).
const HNSW_AM_OID: i32 = (1 << 30) - 1;

/// Shows `storage`'s indexes in `context`'s catalog (see the module's doc); without a
/// data directory there are no indexes, and `pg_get_indexdef` answers NULL.
pub fn register_index_catalog(
    context: &SessionContext,
    storage: Option<Arc<DurableSchema>>,
) -> Result<()> {
    if let Some(storage) = &storage {
        let listed = storage.clone();
        add_catalog_table(context, "pg_indexes", Box::new(move || pg_indexes(&listed)))?;
        rewrite_catalog_table(context, "pg_class", Arc::new(InPgClass(storage.clone())))?;
        rewrite_catalog_table(context, "pg_index", Arc::new(InPgIndex(storage.clone())))?;
        rewrite_catalog_table(context, "pg_am", Arc::new(InPgAm))?;
    }
    context.register_udf(ScalarUDF::new_from_impl(PgGetIndexdef {
        storage,
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(3)],
            Volatility::Stable,
        ),
    }));
    Ok(())
}

/// One index as the catalog shows it.
struct IndexEntry {
    oid: i32,
    table: String,
    name: String,
    column: String,
    /// The indexed column's number in its table (`attnum`, from 1).
    column_number: i16,
    statement: String,
}

fn index_entries(storage: &DurableSchema) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for table in storage.indexes() {
        for definition in table.definitions() {
            let Ok(position) = table.column(&definition) else {
                continue;
            };
            entries.push(IndexEntry {
                oid: index_oid(table.table(), &definition.name),
                table: table.table().to_string(),
                name: definition.name.clone(),
                column: definition.column.clone(),
                column_number: i16::try_from(position + 1).unwrap_or(i16::MAX),
                statement: definition.statement(table.table()),
            });
        }
    }
    entries
}

/// A stable oid for an index, above every oid datafusion-pg-catalog hands out.
fn index_oid(table: &str, index: &str) -> i32 {
    let hash = xxh3_64(format!("{table}.{index}").as_bytes());
    HNSW_AM_OID + 1 + i32::try_from(hash % ((1 << 30) - 1)).unwrap_or_default()
}

/// PostgreSQL's `pg_indexes` columns, one row per index.
fn pg_indexes(storage: &DurableSchema) -> Result<Arc<dyn TableProvider>> {
    let entries = index_entries(storage);
    let schema = Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, false),
        Field::new("tablename", DataType::Utf8, false),
        Field::new("indexname", DataType::Utf8, false),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("indexdef", DataType::Utf8, false),
    ]));
    let column = |f: &dyn Fn(&IndexEntry) -> Option<String>| {
        Arc::new(entries.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(&|_| Some("public".to_string())),
            column(&|entry| Some(entry.table.clone())),
            column(&|entry| Some(entry.name.clone())),
            column(&|_| None),
            column(&|entry| Some(entry.statement.clone())),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The oids the rows of `pg_class` (`classes`) give the tables of the `public` schema,
/// with their row numbers, by name.
async fn public_table_oids(
    classes: &RecordBatch,
    catalog: &CatalogReader<'_>,
) -> Result<HashMap<String, (i32, usize)>> {
    let namespaces = catalog.read("pg_namespace").await?;
    let public = strings(&namespaces, "nspname")?
        .iter()
        .position(|name| name == Some("public"))
        .map(|row| ints(&namespaces, "oid").map(|oids| oids.value(row)))
        .transpose()?;
    let (names, spaces, oids) = (
        strings(classes, "relname")?,
        ints(classes, "relnamespace")?,
        ints(classes, "oid")?,
    );
    Ok((0..classes.num_rows())
        .filter(|&row| Some(spaces.value(row)) == public && !names.is_null(row))
        .map(|row| (names.value(row).to_string(), (oids.value(row), row)))
        .collect())
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    match batch.column_by_name(name).and_then(|c| c.as_string_opt()) {
        Some(column) => Ok(column),
        None => plan_err!("catalog column {name} is not text"),
    }
}

fn ints<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int32Array> {
    match batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
    {
        Some(column) => Ok(column),
        None => plan_err!("catalog column {name} is not int4"),
    }
}

/// Copies of `batch`'s row `row`, one per entry, with `columns` set from the entries.
fn rows_like(
    batch: &RecordBatch,
    rows: &[u32],
    columns: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut copies = take_record_batch(batch, &UInt32Array::from(rows.to_vec()))?;
    for (name, values) in columns {
        let target = copies.schema().field_with_name(name)?.data_type().clone();
        copies = with_column(&copies, name, cast(&values, &target)?)?;
    }
    Ok(copies)
}

/// `pg_class`: `relhasindex` on indexed tables, and a row (relkind `i`) per index.
struct InPgClass(Arc<DurableSchema>);

#[async_trait]
impl RowRewrite for InPgClass {
    async fn rewrite(&self, rows: RecordBatch, catalog: &CatalogReader<'_>) -> Result<RecordBatch> {
        let entries = index_entries(&self.0);
        if entries.is_empty() {
            return Ok(rows);
        }
        let tables = public_table_oids(&rows, catalog).await?;
        let entries: Vec<(&IndexEntry, usize)> = entries
            .iter()
            .filter_map(|entry| Some((entry, tables.get(&entry.table)?.1)))
            .collect();
        let indexed: HashSet<usize> = entries.iter().map(|(_, row)| *row).collect();
        let has_index = rows
            .column_by_name("relhasindex")
            .and_then(|c| c.as_boolean_opt())
            .map(|column| {
                (0..rows.num_rows())
                    .map(|row| Some(column.value(row) || indexed.contains(&row)))
                    .collect::<BooleanArray>()
            });
        let Some(has_index) = has_index else {
            return plan_err!("pg_class.relhasindex is not boolean");
        };
        let rows = with_column(&rows, "relhasindex", Arc::new(has_index))?;
        let oids: ArrayRef = Arc::new(Int32Array::from_iter_values(
            entries.iter().map(|(entry, _)| entry.oid),
        ));
        let count = entries.len();
        let index_rows = rows_like(
            &rows,
            &entries
                .iter()
                .map(|(_, row)| *row as u32)
                .collect::<Vec<_>>(),
            vec![
                ("oid", oids.clone()),
                ("relfilenode", oids),
                (
                    "relname",
                    Arc::new(StringArray::from_iter_values(
                        entries.iter().map(|(entry, _)| entry.name.as_str()),
                    )),
                ),
                ("relkind", Arc::new(StringArray::from(vec!["i"; count]))),
                (
                    "relam",
                    Arc::new(Int32Array::from(vec![HNSW_AM_OID; count])),
                ),
                (
                    "relhasindex",
                    Arc::new(BooleanArray::from(vec![false; count])),
                ),
                ("relnatts", Arc::new(Int16Array::from(vec![1; count]))),
            ],
        )?;
        Ok(concat_batches(&rows.schema(), [&rows, &index_rows])?)
    }
}

/// `pg_index`: a row per index, saying which table and column it indexes.
struct InPgIndex(Arc<DurableSchema>);

#[async_trait]
impl RowRewrite for InPgIndex {
    async fn rewrite(&self, rows: RecordBatch, catalog: &CatalogReader<'_>) -> Result<RecordBatch> {
        let entries = index_entries(&self.0);
        if entries.is_empty() || rows.num_rows() == 0 {
            return Ok(rows);
        }
        let tables = public_table_oids(&catalog.read("pg_class").await?, catalog).await?;
        let entries: Vec<(&IndexEntry, i32)> = entries
            .iter()
            .filter_map(|entry| Some((entry, tables.get(&entry.table)?.0)))
            .collect();
        let count = entries.len();
        let flag = |value: bool| Arc::new(BooleanArray::from(vec![value; count])) as ArrayRef;
        let none = Arc::new(StringArray::from(vec![None::<&str>; count])) as ArrayRef;
        let index_rows = rows_like(
            &rows,
            &vec![0; count],
            vec![
                (
                    "indexrelid",
                    Arc::new(Int32Array::from_iter_values(
                        entries.iter().map(|(entry, _)| entry.oid),
                    )),
                ),
                (
                    "indrelid",
                    Arc::new(Int32Array::from_iter_values(
                        entries.iter().map(|(_, table)| *table),
                    )),
                ),
                ("indnatts", Arc::new(Int16Array::from(vec![1; count]))),
                ("indnkeyatts", Arc::new(Int16Array::from(vec![1; count]))),
                ("indisunique", flag(false)),
                ("indnullsnotdistinct", flag(false)),
                ("indisprimary", flag(false)),
                ("indisexclusion", flag(false)),
                ("indimmediate", flag(true)),
                ("indisclustered", flag(false)),
                ("indisvalid", flag(true)),
                ("indcheckxmin", flag(false)),
                ("indisready", flag(true)),
                ("indislive", flag(true)),
                ("indisreplident", flag(false)),
                (
                    "indkey",
                    Arc::new(StringArray::from_iter_values(
                        entries
                            .iter()
                            .map(|(entry, _)| entry.column_number.to_string()),
                    )),
                ),
                (
                    "indcollation",
                    Arc::new(StringArray::from(vec!["0"; count])),
                ),
                ("indoption", Arc::new(StringArray::from(vec!["0"; count]))),
                ("indexprs", none.clone()),
                ("indpred", none),
            ],
        )?;
        Ok(concat_batches(&rows.schema(), [&rows, &index_rows])?)
    }
}

/// `pg_am`: the `hnsw` access method (as pgvector adds it).
struct InPgAm;

#[async_trait]
impl RowRewrite for InPgAm {
    async fn rewrite(&self, rows: RecordBatch, _: &CatalogReader<'_>) -> Result<RecordBatch> {
        let names = strings(&rows, "amname")?;
        let Some(btree) = (0..rows.num_rows()).find(|&row| names.value(row) == "btree") else {
            return Ok(rows);
        };
        let hnsw = rows_like(
            &rows,
            &[btree as u32],
            vec![
                ("oid", Arc::new(Int32Array::from(vec![HNSW_AM_OID]))),
                ("amname", Arc::new(StringArray::from(vec!["hnsw"]))),
                (
                    "amhandler",
                    Arc::new(StringArray::from(vec!["hnswhandler"])),
                ),
            ],
        )?;
        Ok(concat_batches(&rows.schema(), [&rows, &hnsw])?)
    }
}

/// `pg_get_indexdef(oid [, column, pretty])`: an index's `CREATE INDEX` statement, or with
/// a column number above 0 that column's name (PostgreSQL's forms); NULL for other oids.
#[derive(Debug)]
struct PgGetIndexdef {
    storage: Option<Arc<DurableSchema>>,
    signature: Signature,
}

impl PartialEq for PgGetIndexdef {
    fn eq(&self, other: &Self) -> bool {
        match (&self.storage, &other.storage) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

impl Eq for PgGetIndexdef {}

impl std::hash::Hash for PgGetIndexdef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_indexdef".hash(state);
    }
}

impl ScalarUDFImpl for PgGetIndexdef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let oids = cast(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let columns = match arrays.get(1) {
            Some(column) => Some(cast(column, &DataType::Int64)?),
            None => None,
        };
        let entries: HashMap<i64, IndexEntry> = self
            .storage
            .as_deref()
            .map(index_entries)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| (i64::from(entry.oid), entry))
            .collect();
        let definitions: StringArray = (0..args.number_rows)
            .map(|row| {
                let entry = entries
                    .get(&oids.value(row))
                    .filter(|_| !oids.is_null(row))?;
                let column = columns
                    .as_ref()
                    .map(|c| c.as_primitive::<Int64Type>().value(row))
                    .unwrap_or_default();
                match column {
                    0 => Some(entry.statement.clone()),
                    1 => Some(entry.column.clone()),
                    _ => None,
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(definitions)))
    }
}
