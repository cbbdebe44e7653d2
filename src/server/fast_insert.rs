//! `INSERT INTO t VALUES (…), …` of plain literals (or, over the extended protocol, bound
//! parameters) into a durable table, without DataFusion. Why: an application logging clicks sends thousands of such statements a
//! second, and DataFusion spends most of each one copying its session state (every
//! registered function) and planning, where the rows only need to be typed and logged.
//! Profiling 16 pgbench connections showed the planning, not the write-ahead log, bounding
//! throughput. The literals become an Arrow batch in the table's schema with Arrow's own
//! casts (the ones DataFusion's INSERT uses), and go to the table's writer.
//!
//! Anything this path does not take exactly as DataFusion would — an expression, a
//! column list that leaves a column out, a NULL for a NOT NULL column, a value a cast
//! refuses, a number with a fraction for an integer column, a non-durable table — is left
//! to the normal path, which runs it or reports the error.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    Expr, Insert, ObjectName, Parens, SetExpr, Statement, TableObject, UnaryOperator, Value,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use super::privileges::public_name;
use crate::engine::CATALOG;
use crate::storage::DurableTable;

/// The target and rows of an INSERT this path can take, before typing.
pub struct PlainInsert<'a> {
    /// The target table, as written.
    pub table: TableReference,
    /// The column list (empty: all columns in order).
    columns: Vec<String>,
    rows: &'a [Parens<Vec<Expr>>],
}

impl<'a> PlainInsert<'a> {
    /// `statement` as a plain INSERT of literal rows, if it is one.
    pub fn parse(statement: &'a Statement) -> Option<Self> {
        let Statement::Insert(insert) = statement else {
            return None;
        };
        if !is_plain(insert) {
            return None;
        }
        let TableObject::TableName(name) = &insert.table else {
            return None;
        };
        let query = insert.source.as_deref()?;
        let plain_query = query.with.is_none()
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.fetch.is_none()
            && query.locks.is_empty();
        let SetExpr::Values(values) = query.body.as_ref() else {
            return None;
        };
        if !plain_query || values.rows.is_empty() {
            return None;
        }
        let columns = insert
            .columns
            .iter()
            .map(|column| Some(normalized(column)?.table().to_string()))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            table: normalized(name)?,
            columns,
            rows: &values.rows,
        })
    }

    /// The rows as one batch in `schema` (`params`: the values bound to `$n`), or `None`
    /// where the normal path must decide.
    fn batch(&self, schema: &SchemaRef, params: Option<&ParamValues>) -> Option<RecordBatch> {
        let positions: Vec<usize> = if self.columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            if self.columns.len() != schema.fields().len() {
                return None;
            }
            schema
                .fields()
                .iter()
                .map(|field| self.columns.iter().position(|c| c == field.name()))
                .collect::<Option<Vec<_>>>()?
        };
        if self
            .rows
            .iter()
            .any(|row| row.content.len() != positions.len())
        {
            return None;
        }
        let columns = schema
            .fields()
            .iter()
            .zip(&positions)
            .map(|(field, &position)| {
                let values = self
                    .rows
                    .iter()
                    .map(|row| typed(literal(&row.content[position], params)?, field.data_type()))
                    .collect::<Option<Vec<_>>>()?;
                if !field.is_nullable() && values.iter().any(ScalarValue::is_null) {
                    return None;
                }
                ScalarValue::iter_to_array(values).ok()
            })
            .collect::<Option<Vec<ArrayRef>>>()?;
        RecordBatch::try_new(schema.clone(), columns).ok()
    }
}

/// An INSERT with nothing but a target, an optional column list and a source query.
fn is_plain(insert: &Insert) -> bool {
    insert.or.is_none()
        && !insert.ignore
        && !insert.overwrite
        && insert.table_alias.is_none()
        && insert.assignments.is_empty()
        && insert.partitioned.is_none()
        && insert.after_columns.is_empty()
        && insert.on.is_none()
        && insert.returning.is_none()
        && insert.output.is_none()
        && !insert.replace_into
        && insert.priority.is_none()
        && insert.insert_alias.is_none()
        && insert.settings.is_none()
        && insert.format_clause.is_none()
        && insert.multi_table_insert_type.is_none()
}

/// A name as DataFusion resolves it (unquoted identifiers in lower case).
fn normalized(name: &ObjectName) -> Option<TableReference> {
    object_name_to_table_reference(name.clone(), true).ok()
}

/// The value of a literal: a number, a quoted string, a boolean, NULL, a negated number,
/// or a bound parameter.
fn literal(expr: &Expr, params: Option<&ParamValues>) -> Option<ScalarValue> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => number(text),
            Value::SingleQuotedString(text) => Some(ScalarValue::Utf8(Some(text.clone()))),
            Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            Value::Null => Some(ScalarValue::Null),
            Value::Placeholder(id) => params?
                .get_placeholders_with_values(id)
                .ok()
                .map(|bound| bound.value),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => number(&format!("-{text}")),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => literal(inner, params),
        _ => None,
    }
}

fn number(text: &str) -> Option<ScalarValue> {
    if let Ok(integer) = text.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(integer)));
    }
    text.parse::<f64>()
        .ok()
        .map(|float| ScalarValue::Float64(Some(float)))
}

/// `value` cast to `target`, when the cast is one DataFusion's INSERT would make the same
/// way: a value of the target's type as it is (a parameter bound as the column's type),
/// integers to any number, fractions to floats and decimals, strings to text and
/// dates/times, booleans to booleans, NULL to anything.
fn typed(value: ScalarValue, target: &DataType) -> Option<ScalarValue> {
    if value.data_type() == *target {
        return Some(value);
    }
    let allowed = match &value {
        ScalarValue::Null => return ScalarValue::try_from(target).ok(),
        ScalarValue::Int64(_) => target.is_numeric(),
        ScalarValue::Float64(_) => target.is_floating() || target.is_decimal(),
        ScalarValue::Utf8(_) => {
            matches!(
                target,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) || target.is_temporal()
        }
        ScalarValue::Boolean(_) => target == &DataType::Boolean,
        _ => false,
    };
    if !allowed {
        return None;
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    value.cast_to_with_options(target, &strict).ok()
}

/// The table `reference` names in the public schema, if there is one.
async fn public_table(
    context: &SessionContext,
    reference: &TableReference,
) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
    let name = public_name(reference)?;
    let schema = context.catalog(CATALOG)?.schema("public")?;
    schema.table(&name).await.ok()?
}

/// Runs `statement` (with `params` bound) on the fast path if it can.
async fn run(
    statement: &Statement,
    context: &SessionContext,
    params: Option<&ParamValues>,
) -> Option<PgWireResult<Response>> {
    let insert = PlainInsert::parse(statement)?;
    let table = public_table(context, &insert.table).await?;
    let durable = table.downcast_ref::<DurableTable>()?;
    let batch = insert.batch(&table.schema(), params)?;
    let rows = batch.num_rows();
    Some(match durable.append(batch).await {
        Ok(()) => Ok(Response::Execution(
            Tag::new("INSERT").with_oid(0).with_rows(rows),
        )),
        Err(error) => Err(PgWireError::ApiError(Box::new(
            datafusion::error::DataFusionError::from(error),
        ))),
    })
}

/// The hook that takes plain INSERTs of literals or parameters into durable tables
/// (privileges were checked before it: by the privilege hook, and at each Execute).
pub struct FastInsert;

#[async_trait]
impl QueryHook for FastInsert {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, context, None).await
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        params: &ParamValues,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, context, Some(params)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn statement(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("kind", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn batch(sql: &str) -> Option<RecordBatch> {
        let statement = statement(sql);
        PlainInsert::parse(&statement)?.batch(&schema(), None)
    }

    #[test]
    fn literal_rows_become_a_typed_batch() {
        let batch =
            batch("INSERT INTO Events VALUES (1, 'view', '2026-11-30 12:00:00'), (-2, NULL, NULL)")
                .unwrap();
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.values(), &[1, -2]);
        let kinds = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert!(kinds.is_null(1));
        let ts = batch
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_796_040_000_000_000);
    }

    #[test]
    fn a_column_list_is_reordered_to_the_table() {
        let batch = batch("INSERT INTO events (kind, ts, id) VALUES ('x', NULL, 7)").unwrap();
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.value(0), 7);
    }

    #[test]
    fn anything_else_is_left_to_datafusion() {
        for sql in [
            "INSERT INTO events VALUES (1 + 1, 'view', NULL)",
            "INSERT INTO events VALUES (NULL, 'view', NULL)",
            "INSERT INTO events VALUES (1.5, 'view', NULL)",
            "INSERT INTO events VALUES ('one', 'view', NULL)",
            "INSERT INTO events VALUES (1, 'view', 'not a time')",
            "INSERT INTO events VALUES (1, 'view')",
            "INSERT INTO events (id) VALUES (1)",
            "INSERT INTO events SELECT 1, 'view', NULL",
            "INSERT INTO events VALUES (1, 'view', NULL) RETURNING id",
            "INSERT INTO events VALUES (1, 'view', now())",
        ] {
            assert!(batch(sql).is_none(), "{sql}");
        }
    }
}
