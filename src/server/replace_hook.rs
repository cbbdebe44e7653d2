//! `CREATE OR REPLACE TABLE` of a durable table over the wire: run through
//! [`crate::storage::create_or_replace`] (query first, then one swap), not DataFusion's
//! drop-then-create. Privileges were checked by the privilege hook before this one.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CreateTable, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use crate::storage::create_or_replace;

/// Takes `CREATE OR REPLACE TABLE` statements whose target is a durable table.
pub struct ReplaceDurableTable;

fn is_create_or_replace(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateTable(CreateTable {
            or_replace: true,
            ..
        })
    )
}

fn api_error(error: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

/// Runs `plan` as a replace if it is one of a durable table.
async fn replace(context: &SessionContext, plan: &LogicalPlan) -> Option<PgWireResult<Response>> {
    let outcome = create_or_replace(context, plan).await?;
    Some(
        outcome
            .map(|()| Response::Execution(Tag::new("CREATE TABLE")))
            .map_err(api_error),
    )
}

#[async_trait]
impl QueryHook for ReplaceDurableTable {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !is_create_or_replace(statement) {
            return None;
        }
        let plan = context
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await;
        match plan {
            Ok(plan) => replace(context, &plan).await,
            Err(error) => Some(Err(api_error(error))),
        }
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
        plan: &LogicalPlan,
        params: &ParamValues,
        context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !is_create_or_replace(statement) {
            return None;
        }
        match plan.clone().replace_params_with_values(params) {
            Ok(plan) => replace(context, &plan).await,
            Err(error) => Some(Err(api_error(error))),
        }
    }
}
