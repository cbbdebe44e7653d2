//! Prepared point lookups answered without DataFusion: `SELECT a, b FROM t WHERE key = $1`
//! (or `= 42`) on a durable table. Why: an application asks this on every page view
//! ("this product", "this user's vector"), and each Execute otherwise optimises the plan,
//! plans it physically and scans the table — ten times PostgreSQL's primary-key lookup.
//!
//! The statement was planned at Parse; at Execute its plan is matched once more against
//! one shape — a projection of plain columns over an equality filter on one column over
//! a durable table — and the rows come from the table's key lists
//! ([`DurableTable::lookup`]). Privileges were checked on the plan before this runs. Any
//! other shape, a key type the lists do not take, or a table too big for the table cache
//! takes the normal path.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ParamValues, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use pgwire::api::portal::Portal;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use crate::storage::{DurableTable, Probe};

/// Where the looked-up value comes from.
enum KeyValue {
    /// A parameter of the prepared statement (`$1`).
    Parameter { id: String, data_type: DataType },
    /// A literal in the statement.
    Literal(ScalarValue),
}

/// A statement of the point-lookup shape.
pub struct PointLookup {
    table: Arc<dyn TableProvider>,
    /// The compared column, as an index into the table's columns.
    column: usize,
    /// The selected columns, as indexes into the table's columns.
    projection: Vec<usize>,
    value: KeyValue,
    /// The statement's result columns (names as the client sees them).
    schema: SchemaRef,
}

impl PointLookup {
    /// `plan` as a point lookup, if it has that shape.
    pub fn of(plan: &LogicalPlan) -> Option<Self> {
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return None;
        };
        let scanned = match filter.input.as_ref() {
            LogicalPlan::SubqueryAlias(alias) => alias.input.as_ref(),
            other => other,
        };
        let LogicalPlan::TableScan(scan) = scanned else {
            return None;
        };
        if scan.fetch.is_some() || !scan.filters.is_empty() {
            return None;
        }
        let table = source_as_provider(&scan.source).ok()?;
        table.downcast_ref::<DurableTable>()?;
        let scanned_schema = filter.input.schema();
        let table_column = |column: &Column| {
            let index = scanned_schema.index_of_column(column).ok()?;
            match &scan.projection {
                Some(projection) => projection.get(index).copied(),
                None => Some(index),
            }
        };
        let (key, value) = equality(&filter.predicate)?;
        let column = table_column(key)?;
        let projection = projection
            .expr
            .iter()
            .map(|expr| match expr.clone().unalias() {
                Expr::Column(column) => table_column(&column),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            table,
            column,
            projection,
            value,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }

    /// The rows for `portal`'s parameters, as a query response in the portal's formats;
    /// `None` when the table or the value is one for the normal path.
    pub async fn answer<S: Clone>(
        &self,
        portal: &Portal<S>,
        client: &(impl ClientInfo + ?Sized),
    ) -> PgWireResult<Option<Response>> {
        let value = match &self.value {
            KeyValue::Literal(value) => value.clone(),
            KeyValue::Parameter { id, data_type } => {
                if portal.parameter_len() != 1 {
                    return Ok(None);
                }
                let wire_type = into_pg_type(data_type)?;
                let params: ParamValues = deserialize_parameters_with_server_types(
                    portal,
                    &[Some(data_type)],
                    &[Some(&wire_type)],
                )?;
                params
                    .get_placeholders_with_values(id)
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?
                    .value
            }
        };
        let Some(table) = self.table.downcast_ref::<DurableTable>() else {
            return Ok(None);
        };
        let Some(probe) = Probe::of(&value, self.table.schema().field(self.column).data_type())
        else {
            return Ok(None);
        };
        let found = table
            .lookup(self.column, &probe, &self.projection)
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(DataFusionError::from(e))))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let format_options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &self.schema,
            &portal.result_column_format,
            Some(format_options),
        )?);
        let mut rows = Vec::new();
        for batch in found {
            let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            rows.extend(encode_recordbatch(fields.clone(), batch));
        }
        Ok(Some(Response::Query(QueryResponse::new(
            fields,
            futures::stream::iter(rows),
        ))))
    }
}

/// `column = value` (either way round), where the value is a parameter or a literal.
fn equality(predicate: &Expr) -> Option<(&Column, KeyValue)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = predicate
    else {
        return None;
    };
    let (column, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(column), value) | (value, Expr::Column(column)) => (column, value),
        _ => return None,
    };
    let value = match value {
        Expr::Placeholder(placeholder) => KeyValue::Parameter {
            id: placeholder.id.clone(),
            data_type: placeholder.field.as_ref()?.data_type().clone(),
        },
        Expr::Literal(value, _) => KeyValue::Literal(value.clone()),
        _ => return None,
    };
    Some((column, value))
}
