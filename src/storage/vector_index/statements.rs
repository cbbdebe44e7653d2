//! `CREATE INDEX … USING hnsw` and `DROP INDEX`, which DataFusion does not plan: the
//! server's hook and `rankql run` hand such statements here.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CreateIndex, Expr, IndexType, ObjectName, ObjectType, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use rankql_udfs::vector::args::{declared_dimension, Vectors};

use super::definition::{
    check_parameter, IndexDefinition, Metric, DEFAULT_EF_CONSTRUCTION, DEFAULT_M,
};
use super::table_indexes::TableIndexes;
use super::IndexError;
use crate::engine::CATALOG;
use crate::storage::DurableTable;

/// Whether `statement` is one this module runs.
pub fn is_index_statement(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateIndex(_)
            | Statement::Drop {
                object_type: ObjectType::Index,
                ..
            }
    )
}

/// `sql` parsed, when it is one `CREATE INDEX` or `DROP INDEX` statement (for front ends
/// that plan text with DataFusion, which does not know these statements).
pub fn parse_index_statement(sql: &str) -> Option<Statement> {
    if !sql.to_ascii_lowercase().contains("index") {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    match statements.as_slice() {
        [statement] if is_index_statement(statement) => statements.pop(),
        _ => None,
    }
}

/// Runs `CREATE INDEX` or `DROP INDEX`; returns the command tag, or `None` when the
/// statement is neither.
pub async fn execute_index_statement(
    context: &SessionContext,
    statement: &Statement,
) -> Option<Result<&'static str, IndexError>> {
    match statement {
        Statement::CreateIndex(create) => Some(create_index(context, create).await),
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            if_exists,
            ..
        } => Some(drop_indexes(context, names, *if_exists).await),
        _ => None,
    }
}

/// The table a statement names, resolved in `public`.
fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| ident.value.clone())
        .unwrap_or_else(|| name.to_string())
}

/// Every durable table of the session's `public` schema.
async fn durable_tables(context: &SessionContext) -> Vec<Arc<dyn TableProvider>> {
    let Some(schema) = context
        .catalog(CATALOG)
        .and_then(|catalog| catalog.schema("public"))
    else {
        return Vec::new();
    };
    let mut tables = Vec::new();
    for name in schema.table_names() {
        if let Ok(Some(table)) = schema.table(&name).await {
            if table.downcast_ref::<DurableTable>().is_some() {
                tables.push(table);
            }
        }
    }
    tables
}

/// The tables whose indexes a `CREATE INDEX` or `DROP INDEX` changes (for privilege
/// checks: only a table's owner may).
pub async fn indexed_tables(statement: &Statement, context: &SessionContext) -> Vec<String> {
    match statement {
        Statement::CreateIndex(create) => vec![last_name(&create.table_name)],
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            ..
        } => {
            let mut tables = Vec::new();
            for name in names {
                if let Some(owner) = index_owner(context, &last_name(name)).await {
                    tables.push(owner.table().to_string());
                }
            }
            tables
        }
        _ => Vec::new(),
    }
}

/// The table holding index `name`, if any does.
pub async fn index_owner(context: &SessionContext, name: &str) -> Option<Arc<TableIndexes>> {
    for table in durable_tables(context).await {
        if let Some(durable) = table.downcast_ref::<DurableTable>() {
            if durable.indexes().get(name).is_some() {
                return Some(durable.indexes().clone());
            }
        }
    }
    None
}

async fn create_index(
    context: &SessionContext,
    create: &CreateIndex,
) -> Result<&'static str, IndexError> {
    let request = IndexRequest::parse(create)?;
    let table = context
        .table_provider(request.table.as_str())
        .await
        .map_err(|_| IndexError::NoTable(request.table.clone()))?;
    let durable = table
        .downcast_ref::<DurableTable>()
        .ok_or_else(|| IndexError::NotDurable(request.table.clone()))?;
    let indexes = durable.indexes().clone();
    let column = indexes
        .schema()
        .index_of(&request.column)
        .map_err(|_| IndexError::NoColumn {
            table: request.table.clone(),
            column: request.column.clone(),
        })?;
    let name = match &request.name {
        Some(name) => {
            if index_owner(context, name).await.is_some() {
                return match create.if_not_exists {
                    true => Ok("CREATE INDEX"),
                    false => Err(IndexError::Exists(name.clone())),
                };
            }
            name.clone()
        }
        None => free_name(context, &request.table, &request.column).await,
    };
    let snapshot = durable.snapshot();
    let files = snapshot.delta.files.clone();
    let pending = snapshot.pending;
    let data_type = indexes.schema().field(column).data_type().clone();
    let build_indexes = indexes.clone();
    tokio::task::spawn_blocking(move || {
        let dimension = match declared_dimension(&data_type) {
            Some(dimension) => dimension,
            None => first_dimension(&build_indexes, &files, &pending, column, &request.column)?,
        };
        let definition = IndexDefinition {
            name,
            column: request.column.clone(),
            metric: request.metric,
            dimension,
            m: request.m,
            ef_construction: request.ef_construction,
        };
        build_indexes.create(definition, &files)
    })
    .await
    .map_err(|e| IndexError::Library(e.to_string()))??;
    indexes.catch_up(&durable.snapshot().delta.files);
    Ok("CREATE INDEX")
}

/// PostgreSQL's name for an unnamed index: `table_column_idx`, numbered if taken.
async fn free_name(context: &SessionContext, table: &str, column: &str) -> String {
    let base = format!("{table}_{column}_idx");
    let mut candidate = base.clone();
    let mut number = 0;
    while index_owner(context, &candidate).await.is_some() {
        number += 1;
        candidate = format!("{base}{number}");
    }
    candidate
}

/// The dimension of the column's first non-NULL vector (data files, then logged rows).
fn first_dimension(
    indexes: &TableIndexes,
    files: &[crate::storage::committer::DataFile],
    pending: &[datafusion::arrow::record_batch::RecordBatch],
    column: usize,
    column_name: &str,
) -> Result<usize, IndexError> {
    let vectors_error = |e: datafusion::error::DataFusionError| IndexError::Vectors {
        column: column_name.to_string(),
        reason: e.to_string(),
    };
    let first_in = |batches: &[datafusion::arrow::record_batch::RecordBatch]| {
        for batch in batches {
            let vectors =
                Vectors::try_new(batch.column(column), column_name).map_err(vectors_error)?;
            if let Some(values) = (0..vectors.len()).find_map(|row| vectors.row(row)) {
                return Ok(Some(values.len()));
            }
        }
        Ok(None)
    };
    for file in files {
        if let Some(dimension) = first_in(&indexes.batches(&file.path)?)? {
            return Ok(dimension);
        }
    }
    first_in(pending)?.ok_or_else(|| IndexError::NoVectors(column_name.to_string()))
}

async fn drop_indexes(
    context: &SessionContext,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<&'static str, IndexError> {
    for name in names {
        let name = last_name(name);
        match index_owner(context, &name).await {
            Some(indexes) => indexes.drop_index(&name)?,
            None if if_exists => {}
            None => return Err(IndexError::NoIndex(name)),
        }
    }
    Ok("DROP INDEX")
}

/// A `CREATE INDEX` statement, checked.
struct IndexRequest {
    name: Option<String>,
    table: String,
    column: String,
    metric: Metric,
    m: usize,
    ef_construction: usize,
}

impl IndexRequest {
    fn parse(create: &CreateIndex) -> Result<Self, IndexError> {
        let unsupported = |what: &str| Err(IndexError::Unsupported(what.to_string()));
        match &create.using {
            Some(IndexType::Custom(name)) if name.value.eq_ignore_ascii_case("hnsw") => {}
            _ => {
                return unsupported(
                    "rankql builds HNSW vector indexes only: CREATE INDEX … ON table USING hnsw \
                     (column vector_cosine_ops | vector_l2_ops | vector_ip_ops)",
                )
            }
        }
        if create.unique {
            return unsupported("UNIQUE indexes are not supported");
        }
        if create.predicate.is_some() || !create.include.is_empty() {
            return unsupported("partial indexes (WHERE) and INCLUDE are not supported");
        }
        let [column] = create.columns.as_slice() else {
            return unsupported("an hnsw index covers exactly one vector column");
        };
        let Expr::Identifier(column_name) = &column.column.expr else {
            return unsupported("an hnsw index is built on a column, not an expression");
        };
        let Some(class) = &column.operator_class else {
            return Err(IndexError::Unsupported(format!(
                "column {column_name} needs an operator class for access method hnsw: \
                 vector_cosine_ops, vector_l2_ops or vector_ip_ops"
            )));
        };
        let metric = Metric::from_operator_class(&last_name(class))?;
        let (mut m, mut ef_construction) = (DEFAULT_M, DEFAULT_EF_CONSTRUCTION);
        for option in &create.with {
            let (key, value) = parameter(option)?;
            match key.as_str() {
                "m" => m = check_parameter("m", value)?,
                other => ef_construction = check_parameter(other, value)?,
            }
        }
        Ok(Self {
            name: create.name.as_ref().map(last_name),
            table: last_name(&create.table_name),
            column: column_name.value.clone(),
            metric,
            m,
            ef_construction,
        })
    }
}

/// `name = number` from `WITH (…)`.
fn parameter(option: &Expr) -> Result<(String, usize), IndexError> {
    let bad = || {
        IndexError::BadParameter(format!(
            "index parameter {option}: expected name = whole number, e.g. m = 16"
        ))
    };
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = option
    else {
        return Err(bad());
    };
    let Expr::Identifier(name) = left.as_ref() else {
        return Err(bad());
    };
    let Expr::Value(value) = right.as_ref() else {
        return Err(bad());
    };
    let Value::Number(number, _) = &value.value else {
        return Err(bad());
    };
    let number: usize = number.parse().map_err(|_| bad())?;
    Ok((name.value.to_ascii_lowercase(), number))
}
