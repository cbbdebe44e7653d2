//! Statements clients send that rankql answers itself, before datafusion-postgres' own
//! hooks: `SHOW server_version[_num]` (with the version drivers parse), savepoints and
//! `DEALLOCATE ALL`, and `RESET` of the PostgreSQL settings datafusion-postgres keeps per
//! connection.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ParamValues, ToDFSchema};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DiscardObject, Reset, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{PgWireError, PgWireResult};

use super::limits::SessionDefaults;

/// A plan of no rows with the given columns, for the extended protocol's Describe.
fn empty_plan(fields: Vec<Field>) -> PgWireResult<LogicalPlan> {
    Schema::new(fields)
        .to_dfschema()
        .map(|schema| {
            LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: true,
                schema: Arc::new(schema),
            })
        })
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// `SHOW server_version` and `SHOW server_version_num` with rankql's answers (see
/// [`crate::pg_compat::server_version`]); datafusion-postgres would answer
/// "datafusion … on rankql", which drivers cannot parse.
pub struct ShowServerVersion;

impl ShowServerVersion {
    /// The setting and its value, if `statement` shows one of the version settings.
    fn setting(statement: &Statement) -> Option<(&'static str, String)> {
        let Statement::ShowVariable { variable } = statement else {
            return None;
        };
        match variable.as_slice() {
            [name] if name.value.eq_ignore_ascii_case("server_version") => {
                Some(("server_version", crate::pg_compat::server_version()))
            }
            [name] if name.value.eq_ignore_ascii_case("server_version_num") => Some((
                "server_version_num",
                crate::pg_compat::SERVER_VERSION_NUM.to_string(),
            )),
            _ => None,
        }
    }

    fn respond(statement: &Statement) -> Option<PgWireResult<Response>> {
        let (name, value) = Self::setting(statement)?;
        let fields = Arc::new(vec![FieldInfo::new(
            name.to_string(),
            None,
            None,
            Type::VARCHAR,
            FieldFormat::Text,
        )]);
        let mut encoder = DataRowEncoder::new(fields.clone());
        if let Err(error) = encoder.encode_field(&Some(value)) {
            return Some(Err(error));
        }
        let row = encoder.take_row();
        Some(Ok(Response::Query(QueryResponse::new(
            fields,
            futures::stream::once(async move { Ok(row) }),
        ))))
    }
}

#[async_trait]
impl QueryHook for ShowServerVersion {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::respond(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let (name, _) = Self::setting(statement)?;
        Some(empty_plan(vec![Field::new(name, DataType::Utf8, false)]))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::respond(statement)
    }
}

/// Statements drivers send on their own that need nothing from rankql, answered as
/// PostgreSQL does:
/// - `SAVEPOINT name` and `RELEASE [SAVEPOINT] name`, like `BEGIN`/`COMMIT`: rankql
///   statements are not transactional (each write is durable when it returns), and
///   psycopg and SQLAlchemy issue savepoints while connecting;
/// - `DEALLOCATE [PREPARE] ALL`, which psycopg sends when it resets its prepared
///   statements (a connection returned to SQLAlchemy's pool after many queries):
///   DataFusion would look for a statement named `all`. The driver prepares again under
///   the same names, which replace the old statements.
pub struct NoOpStatements;

impl NoOpStatements {
    fn tag(statement: &Statement) -> Option<&'static str> {
        match statement {
            Statement::Savepoint { .. } => Some("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
            Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
                Some("DEALLOCATE ALL")
            }
            _ => None,
        }
    }
}

#[async_trait]
impl QueryHook for NoOpStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::tag(statement).map(|tag| Ok(Response::Execution(Tag::new(tag))))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::tag(statement).map(|_| empty_plan(Vec::new()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::tag(statement).map(|tag| Ok(Response::Execution(Tag::new(tag))))
    }
}

/// The PostgreSQL settings datafusion-postgres' `SET` keeps in a connection's metadata
/// (`statement_timeout` is handled apart: it has a server default).
const SESSION_SETTINGS: [&str; 7] = [
    "application_name",
    "bytea_output",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "timezone",
];

/// `RESET name`, `RESET ALL` and `DISCARD ALL` for those settings and
/// `statement_timeout` (back to the server's `--statement-timeout`). `RESET datafusion.…`
/// goes on to DataFusion.
pub struct ResetSettings;

impl ResetSettings {
    /// The settings `statement` resets, if it is a `RESET` of ours.
    fn targets(statement: &Statement) -> Option<Vec<String>> {
        let reset = match statement {
            Statement::Reset(reset) => &reset.reset,
            // Connection poolers (pgbouncer, SQLAlchemy's reset) send `DISCARD ALL`: the
            // settings go back as with `RESET ALL` (prepared statements are replaced when
            // the client prepares again).
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => &Reset::ALL,
            _ => return None,
        };
        match reset {
            Reset::ALL => Some(
                SESSION_SETTINGS
                    .iter()
                    .map(|s| s.to_string())
                    .chain(["statement_timeout".to_string()])
                    .collect(),
            ),
            Reset::ConfigurationParameter(name) => {
                let name = name.to_string().to_ascii_lowercase();
                let ours = name == "statement_timeout" || SESSION_SETTINGS.contains(&name.as_str());
                ours.then(|| vec![name])
            }
        }
    }

    fn reset(statement: &Statement, client: &mut dyn HookClient) -> Option<PgWireResult<Response>> {
        for name in Self::targets(statement)? {
            if name == "statement_timeout" {
                let defaults = client
                    .session_extensions()
                    .get::<SessionDefaults>()
                    .map(|defaults| (*defaults).clone())
                    .unwrap_or_default();
                defaults.restore(client.metadata_mut());
            } else {
                client.metadata_mut().remove(&name);
            }
        }
        let tag = match statement {
            Statement::Discard { .. } => "DISCARD ALL",
            _ => "RESET",
        };
        Some(Ok(Response::Execution(Tag::new(tag))))
    }
}

#[async_trait]
impl QueryHook for ResetSettings {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::reset(statement, client)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::targets(statement).map(|_| empty_plan(Vec::new()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::reset(statement, client)
    }
}
