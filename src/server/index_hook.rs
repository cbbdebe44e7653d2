//! `CREATE INDEX … USING hnsw` and `DROP INDEX` over the wire (DataFusion does not plan
//! them): run by [`crate::storage::vector_index`]. Only the table's owner may create or
//! drop its indexes; the privilege hook checks that before this hook runs.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use crate::storage::vector_index::{execute_index_statement, is_index_statement};

/// Takes `CREATE INDEX` and `DROP INDEX` statements.
pub struct IndexStatements;

async fn run(statement: &Statement, context: &SessionContext) -> Option<PgWireResult<Response>> {
    let outcome = execute_index_statement(context, statement).await?;
    Some(
        outcome
            .map(|tag| Response::Execution(Tag::new(tag)))
            .map_err(|error| {
                PgWireError::ApiError(Box::new(datafusion::error::DataFusionError::from(error)))
            }),
    )
}

#[async_trait]
impl QueryHook for IndexStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, context).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // Planned as an empty relation; the statement runs at execute time.
        is_index_statement(statement).then(|| {
            Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: std::sync::Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, context).await
    }
}
