//! The fast path for simple-protocol statements that read no table and whose result
//! cannot change: `SELECT 1` (a driver's connection check, a pool's health check),
//! `SELECT version()`, `SELECT 'x' || 'y'` — sent as a simple query or prepared.
//!
//! Why: every statement otherwise goes through datafusion-postgres' parser and rewrites,
//! DataFusion's parser, planner and optimizer, and an execution plan — about half a
//! millisecond, five times PostgreSQL's whole round trip. Such a statement is planned
//! once per connection; if its plan reads no table, has no parameter and calls only
//! immutable functions, and its columns are integers, booleans or text (whose text form
//! no session setting changes), its rows are kept and sent again for the same text.
//! Anything else, or anything that fails, takes the normal path, which reports errors.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use parking_lot::Mutex;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;

/// The statement texts a connection remembers (a cache, cleared when full).
const REMEMBERED: usize = 256;
/// Rows kept per statement: constant queries are small.
const MAX_ROWS: usize = 1000;

/// datafusion-postgres' parser and rewrites, so that a statement's columns are named
/// exactly as on the normal path.
static PARSER: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// A constant statement's rows.
pub struct ConstantResult {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// One connection's constant statements, by text; `None` marks a text that is not one.
#[derive(Default)]
pub struct ConstantQueries {
    known: Mutex<HashMap<String, Option<Arc<ConstantResult>>>>,
}

impl ConstantQueries {
    /// The rows of `query` if it is a constant statement seen before (no planning, no
    /// waiting: answering costs only the encoding).
    pub fn known(&self, query: &str) -> Option<Arc<ConstantResult>> {
        self.known.lock().get(query).cloned().flatten()
    }

    /// The rows of `query` when it is a constant statement, planned (as `sql`, the text
    /// the normal path would plan) and run on first use, and remembered under `query`.
    pub async fn result(
        &self,
        context: &SessionContext,
        query: &str,
        sql: &str,
    ) -> Option<Arc<ConstantResult>> {
        if !may_be_constant(sql) {
            return None;
        }
        if let Some(known) = self.known.lock().get(query) {
            return known.clone();
        }
        let result = run_if_constant(context, sql).await.map(Arc::new);
        self.remember(query, result.clone());
        result
    }

    /// The rows of a statement prepared over the extended protocol as `plan` (its text
    /// `key`), when it is constant: run at its first Execute and remembered under `key`,
    /// so that later Executes — of this or another statement with the same text — only
    /// encode them.
    pub async fn result_of_plan(
        &self,
        context: &SessionContext,
        key: &str,
        plan: &LogicalPlan,
    ) -> Option<Arc<ConstantResult>> {
        if let Some(known) = self.known.lock().get(key) {
            return known.clone();
        }
        let result = rows_if_constant(context, plan.clone()).await.map(Arc::new);
        self.remember(key, result.clone());
        result
    }

    fn remember(&self, key: &str, result: Option<Arc<ConstantResult>>) {
        let mut known = self.known.lock();
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(key.to_string(), result);
    }
}

impl ConstantResult {
    /// The rows as a query response in `format` (text, or a portal's result formats),
    /// encoded with the client's settings.
    pub fn response(
        &self,
        format: &Format,
        format_options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &self.schema,
            format,
            Some(format_options),
        )?);
        let rows: Vec<_> = self
            .batches
            .iter()
            .flat_map(|batch| encode_recordbatch(fields.clone(), batch.clone()))
            .collect();
        Ok(Response::Query(QueryResponse::new(
            fields,
            futures::stream::iter(rows),
        )))
    }
}

/// A cheap test on the text: one `SELECT` with no `FROM` (no table can be read).
fn may_be_constant(query: &str) -> bool {
    let text = query.trim().trim_end_matches(';');
    text.get(..6)
        .is_some_and(|start| start.eq_ignore_ascii_case("select"))
        && !text.contains(';')
        && !text
            .as_bytes()
            .windows(4)
            .any(|word| word.eq_ignore_ascii_case(b"from"))
}

/// Plans `query` and, if it is constant, runs it.
async fn run_if_constant(context: &SessionContext, query: &str) -> Option<ConstantResult> {
    let mut statements = PARSER.parse(query).ok()?;
    if statements.len() != 1 || !matches!(statements[0], Statement::Query(_)) {
        return None;
    }
    let statement = DfStatement::Statement(Box::new(statements.remove(0)));
    let plan = context.state().statement_to_plan(statement).await.ok()?;
    rows_if_constant(context, plan).await
}

/// Runs `plan` if it is constant.
async fn rows_if_constant(context: &SessionContext, plan: LogicalPlan) -> Option<ConstantResult> {
    if !is_constant(&plan) {
        return None;
    }
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let plain_columns = schema.fields().iter().all(|field| {
        let data_type = field.data_type();
        data_type.is_integer()
            || matches!(
                data_type,
                DataType::Boolean | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
    });
    if !plain_columns {
        return None;
    }
    let batches = context
        .execute_logical_plan(plan)
        .await
        .ok()?
        .collect()
        .await
        .ok()?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    (rows <= MAX_ROWS).then_some(ConstantResult { schema, batches })
}

/// Whether `plan` reads no table and computes only immutable expressions.
fn is_constant(plan: &LogicalPlan) -> bool {
    let mut constant = true;
    let _ = plan.apply(|node| {
        let allowed = matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Filter(_)
        );
        let immutable_expressions = node.expressions().iter().all(is_immutable);
        constant = allowed && immutable_expressions;
        Ok(match constant {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    constant
}

fn is_immutable(expr: &Expr) -> bool {
    let mut immutable = true;
    let _ = expr.apply(|expr| {
        immutable = match expr {
            Expr::ScalarFunction(function) => {
                function.func.signature().volatility == Volatility::Immutable
            }
            Expr::Placeholder(_)
            | Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::OuterReferenceColumn(..)
            | Expr::AggregateFunction(_)
            | Expr::WindowFunction(_) => false,
            _ => true,
        };
        Ok(match immutable {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    immutable
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn constant(sql: &str) -> bool {
        let context = SessionContext::new();
        ConstantQueries::default()
            .result(&context, sql, sql)
            .await
            .is_some()
    }

    #[tokio::test]
    async fn only_statements_that_cannot_change_are_kept() {
        assert!(constant("SELECT 1").await);
        assert!(constant("select 1 + 2 AS three, 'a' || 'b', true;").await);
        assert!(!constant("SELECT now()").await, "volatile");
        assert!(!constant("SELECT random() > 2").await, "volatile");
        assert!(
            !constant("SELECT 1.5").await,
            "floats depend on extra_float_digits"
        );
        assert!(
            !constant("SELECT 1 FROM (VALUES (1)) AS t(x)").await,
            "FROM"
        );
        assert!(!constant("SELECT 1; SELECT 2").await, "two statements");
        assert!(
            !constant("SELECT nope()").await,
            "errors take the normal path"
        );
        assert!(!constant("INSERT INTO t VALUES (1)").await);
    }

    #[tokio::test]
    async fn the_rows_are_those_of_the_statement() {
        let context = SessionContext::new();
        let queries = ConstantQueries::default();
        let result = queries
            .result(&context, "SELECT 40 + 2 AS x", "SELECT 40 + 2 AS x")
            .await
            .unwrap();
        assert_eq!(result.schema.field(0).name(), "x");
        let again = queries
            .result(&context, "SELECT 40 + 2 AS x", "SELECT 40 + 2 AS x")
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&result, &again), "planned once");
        let rows: usize = result.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1);
    }
}
