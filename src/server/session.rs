//! One connection's session: its own DataFusion `SessionContext` (so `SET` changes only
//! this connection) over the shared catalog, functions, embed runtime and memory pool;
//! the statement handlers that run SQL in it under the connection's role and limits.
//!
//! A statement goes: authenticated? → size limit → `COPY … FROM STDIN`? → role
//! statement (`CREATE USER`, `GRANT`, …)? → datafusion-postgres' handler, whose first
//! hook is the privilege check → rows streamed under `statement_timeout` and cancel.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::TableReference;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::arrow_pg::datatypes::{pg_vector_type, PG_VECTOR_TYPE_OID};
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgvector::PgVectorInsertHook;
use datafusion_postgres::{DfSessionService, QueryHook};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete,
};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use rankql_udfs::interrupt::StatementInterrupt;

use super::admin::{self, AdminStatement, ScriptPart};
use super::auth::Authenticated;
use super::compat_hooks::{NoOpStatements, ResetSettings, ShowServerVersion};
use super::constant_queries::ConstantQueries;
use super::copy::CopyIn;
use super::copy_in::{start_copy_in, user_error};
use super::deferred_flush::DeferredFlush;
use super::fast_insert::{FastInsert, PlainInsert};
use super::index_hook::IndexStatements;
use super::limits::StatementLimits;
use super::pg_rewrites;
use super::point_lookup::PointLookup;
use super::privileges::{public_name, Checker, FileAccess, PrivilegeError, SessionRole};
use super::replace_hook::ReplaceDurableTable;
use super::roles::{Privilege, RoleCatalog};
use crate::engine::CATALOG;
use crate::sqlstate::{self, sqlstate_of, SqlState};
use crate::storage::create_or_replace;
use crate::storage::vector_index::{indexed_tables, is_index_statement};

/// The largest statement text accepted. Postgres allows up to 1 GiB; a statement of
/// megabytes is a mistake (or an attack) that would otherwise tie up parser and planner.
pub const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// How a connection logged in, kept in its session extensions.
#[derive(Debug, Clone, Copy)]
pub struct LoggedIn {
    /// Trusted loopback login (no user exists): the session is a superuser.
    pub trusted: bool,
}

/// One connection's session.
pub struct Session {
    /// This connection's context: its own settings over the shared catalog.
    pub context: Arc<SessionContext>,
    /// Users, owners, grants.
    pub roles: Arc<RoleCatalog>,
    /// Server directories open to every role.
    pub files: Arc<FileAccess>,
    /// Whether the connection has authenticated.
    pub authenticated: Arc<Authenticated>,
    /// Raised when the running statement must stop (see [`StatementLimits`]).
    pub interrupt: StatementInterrupt,
    service: Arc<DfSessionService>,
    /// Statements answered without planning again (see [`ConstantQueries`]).
    constants: ConstantQueries,
}

impl Session {
    /// A session for a new connection, started from the engine's `state`.
    pub fn new(
        mut state: SessionState,
        roles: Arc<RoleCatalog>,
        files: Arc<FileAccess>,
        authenticated: Arc<Authenticated>,
    ) -> Arc<Self> {
        let interrupt = StatementInterrupt::default();
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(interrupt.clone());
        let context = Arc::new(SessionContext::new_with_state(state));
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(PrivilegeHook {
                roles: roles.clone(),
                files: files.clone(),
            }),
            Arc::new(ReplaceDurableTable),
            Arc::new(IndexStatements),
            Arc::new(FastInsert),
            Arc::new(CursorStatementHook),
            Arc::new(ShowServerVersion),
            Arc::new(NoOpStatements),
            Arc::new(ResetSettings),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(PgVectorInsertHook),
        ];
        let service = Arc::new(DfSessionService::new_with_hooks(context.clone(), hooks));
        Arc::new(Self {
            context,
            roles,
            files,
            authenticated,
            interrupt,
            service,
            constants: ConstantQueries::default(),
        })
    }

    /// The role the connection runs as.
    pub fn role(&self, client: &(impl ClientInfo + ?Sized)) -> SessionRole {
        session_role(client, &self.roles)
    }

    fn checker(&self) -> Checker<'_> {
        Checker {
            roles: &self.roles,
            files: &self.files,
            table_exists: Box::new(|name| self.context.table_exist(name).unwrap_or(false)),
        }
    }

    fn public_tables(&self) -> Vec<String> {
        self.context
            .catalog(CATALOG)
            .and_then(|catalog| catalog.schema("public"))
            .map(|schema| schema.table_names())
            .unwrap_or_default()
    }

    fn run_admin(
        &self,
        client: &(impl ClientInfo + ?Sized),
        statement: &AdminStatement,
    ) -> PgWireResult<Response> {
        statement
            .apply(&self.role(client), &self.roles, &self.public_tables())
            .map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
        Ok(Response::Execution(Tag::new(statement.tag())))
    }
}

fn session_role(client: &(impl ClientInfo + ?Sized), roles: &RoleCatalog) -> SessionRole {
    let name = client
        .metadata()
        .get("user")
        .cloned()
        .unwrap_or_else(|| super::roles::TRUSTED_SUPERUSER.to_string());
    let trusted = client
        .session_extensions()
        .get::<LoggedIn>()
        .is_some_and(|l| l.trusted);
    SessionRole {
        superuser: trusted || roles.is_superuser(&name),
        name,
    }
}

fn denied(error: PrivilegeError) -> PgWireError {
    user_error(error.sqlstate(), error.to_string())
}

/// The privilege check, as datafusion-postgres' first hook: it plans the statement,
/// checks the plan, records ownership of what it creates, and lets the statement go on.
struct PrivilegeHook {
    roles: Arc<RoleCatalog>,
    files: Arc<FileAccess>,
}

impl PrivilegeHook {
    /// Refuses unless `role` may INSERT into the public table `table`.
    fn need_insert(&self, role: &SessionRole, table: String) -> PgWireResult<()> {
        if role.superuser
            || self
                .roles
                .has_privilege(&role.name, &table, Privilege::Insert)
        {
            return Ok(());
        }
        Err(denied(PrivilegeError::Table {
            table,
            privilege: Privilege::Insert,
            role: role.name.clone(),
        }))
    }

    /// `from_text`: plan the statement's text with DataFusion's parser, as
    /// datafusion-postgres' simple-query path runs it; otherwise plan the parsed
    /// statement, as its extended-query parser does. The check sees the plan that runs.
    async fn check(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
        from_text: bool,
    ) -> PgWireResult<()> {
        let role = session_role(client, &self.roles);
        let creates_or_drops = matches!(
            statement,
            Statement::CreateTable(_) | Statement::CreateView(_) | Statement::Drop { .. }
        );
        if role.superuser && !(creates_or_drops && self.roles.has_users()) {
            return Ok(());
        }
        if let Some(insert) = PlainInsert::parse(statement) {
            // Literal rows read no table: INSERT on the target is all it needs.
            if let Some(name) = public_name(&insert.table) {
                return self.need_insert(&role, name);
            }
        }
        let queries: Vec<Statement> = match statement {
            Statement::Set(_) => {
                let text = statement.to_string().to_ascii_lowercase();
                if !role.superuser && text.contains("datafusion.") {
                    return Err(denied(PrivilegeError::Superuser(statement.to_string())));
                }
                return Ok(());
            }
            Statement::Declare { stmts } => stmts
                .iter()
                .filter_map(|d| d.for_query.as_ref())
                .map(|q| Statement::Query(q.clone()))
                .collect(),
            Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. } => return Ok(()),
            other => vec![other.clone()],
        };
        let checker = Checker {
            roles: &self.roles,
            files: &self.files,
            table_exists: Box::new(|name| context.table_exist(name).unwrap_or(false)),
        };
        if is_index_statement(statement) {
            if role.superuser {
                return Ok(());
            }
            // Creating or dropping an index changes its table: owners only.
            for table in indexed_tables(statement, context).await {
                checker
                    .need_owner(&role, &TableReference::bare(table))
                    .map_err(denied)?;
            }
            return Ok(());
        }
        for query in queries {
            let state = context.state();
            let planned = if from_text {
                state.create_logical_plan(&query.to_string()).await
            } else {
                state
                    .statement_to_plan(DfStatement::Statement(Box::new(query.clone())))
                    .await
            };
            match planned {
                Ok(plan) => {
                    checker.check(&role, &plan).map_err(denied)?;
                    checker.record_ownership(&role, &plan);
                }
                // A statement that does not plan as written fails the same way when it
                // runs — except an INSERT of pgvector text literals, which a later hook
                // rewrites: check its target here.
                Err(_) => {
                    if let Statement::Insert(insert) = &query {
                        let table = datafusion::common::TableReference::from(
                            insert.table.to_string().as_str(),
                        );
                        if let Some(name) = public_name(&table) {
                            self.need_insert(&role, name)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl QueryHook for PrivilegeHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let client: &(dyn ClientInfo + Send + Sync) = &*client;
        self.check(statement, context, client, true)
            .await
            .err()
            .map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.check(statement, context, client, false)
            .await
            .err()
            .map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &datafusion::common::ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// Simple-protocol queries.
pub struct SimpleQueries {
    /// The connection's session.
    pub session: Arc<Session>,
}

#[async_trait]
impl SimpleQueryHandler for SimpleQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        if !self.session.authenticated.is_done() {
            return Err(Authenticated::refusal());
        }
        if query.len() > MAX_STATEMENT_BYTES {
            return Err(user_error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "statement of {} bytes exceeds rankql's limit of {MAX_STATEMENT_BYTES} bytes; \
                     load large data with CREATE EXTERNAL TABLE or COPY instead",
                    query.len()
                ),
            ));
        }
        let format = |client: &C| Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        if let Some(result) = self.session.constants.known(query) {
            return Ok(vec![result.response(&Format::UnifiedText, format(client))?]);
        }
        let typed = pg_rewrites::rewrite(query);
        let sql = typed.as_deref().unwrap_or(query);
        let limits = StatementLimits::start(client, &self.session.interrupt);
        let seen_by = &*client;
        let constant = limits
            .run(async {
                match self
                    .session
                    .constants
                    .result(&self.session.context, query, sql)
                    .await
                {
                    Some(result) => {
                        Ok(vec![result.response(&Format::UnifiedText, format(seen_by))?])
                    }
                    None => Ok(Vec::new()),
                }
            })
            .await?;
        if !constant.is_empty() {
            return Ok(constant);
        }
        if let Some(copy) = CopyIn::parse(sql) {
            return start_copy_in(&self.session, client, copy).await;
        }
        let Some(script) = admin::parse_script(sql) else {
            return limits.run(self.run_sql(client, sql)).await;
        };
        let parts = script.map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
        let mut responses = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                ScriptPart::Admin(statement) => {
                    responses.push(self.session.run_admin(client, &statement)?)
                }
                ScriptPart::Sql(sql) => {
                    responses.extend(limits.run(self.run_sql(client, &sql)).await?)
                }
            }
        }
        Ok(responses)
    }
}

/// Why the DataFusion-dialect second chance did not produce responses.
enum DialectFallback {
    /// DataFusion's parser rejects it too: report the Postgres parser's error.
    NotDataFusionSyntax,
    /// It parsed but was refused, or failed to plan or run: report that.
    Failed(PgWireError),
}

impl SimpleQueries {
    /// datafusion-postgres' handler, with a second chance for DataFusion's own syntax
    /// (`CREATE EXTERNAL TABLE … STORED AS …`, `COPY … TO … STORED AS …`) that the
    /// Postgres parser rejects.
    async fn run_sql<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        match SimpleQueryHandler::do_query(self.session.service.as_ref(), client, query).await {
            Err(postgres_error) if is_parser_error(&postgres_error) => {
                match self.run_datafusion_dialect(client, query).await {
                    Ok(responses) => Ok(responses),
                    Err(DialectFallback::NotDataFusionSyntax) => Err(postgres_error),
                    Err(DialectFallback::Failed(error)) => Err(error),
                }
            }
            result => result,
        }
    }

    async fn run_datafusion_dialect(
        &self,
        client: &impl ClientInfo,
        query: &str,
    ) -> Result<Vec<Response>, DialectFallback> {
        let statements = DFParser::parse_sql_with_dialect(query, &PostgreSqlDialect {})
            .map_err(|_| DialectFallback::NotDataFusionSyntax)?;
        let failed = |e: datafusion::error::DataFusionError| {
            DialectFallback::Failed(PgWireError::ApiError(Box::new(e)))
        };
        let role = self.session.role(client);
        let context = &self.session.context;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let plan = context
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(failed)?;
            let checker = self.session.checker();
            checker
                .check(&role, &plan)
                .map_err(|e| DialectFallback::Failed(denied(e)))?;
            if self.session.roles.has_users() {
                checker.record_ownership(&role, &plan);
            }
            let tag = match &plan {
                LogicalPlan::Ddl(ddl) => Some(ddl.name().to_ascii_uppercase()),
                LogicalPlan::Copy(_) => Some("COPY".to_string()),
                _ => None,
            };
            if let Some(replaced) = create_or_replace(context, &plan).await {
                replaced.map_err(failed)?;
                responses.push(Response::Execution(Tag::new("CREATE TABLE")));
                continue;
            }
            let frame = context.execute_logical_plan(plan).await.map_err(failed)?;
            responses.push(match tag {
                Some(tag) => {
                    let batches = frame.collect().await.map_err(failed)?;
                    Response::Execution(Tag::new(&tag).with_rows(reported_count(&batches)))
                }
                None => Response::Query(
                    encode_dataframe(frame, &Format::UnifiedText, None)
                        .await
                        .map_err(DialectFallback::Failed)?,
                ),
            });
        }
        Ok(responses)
    }
}

/// The row count a DDL or COPY plan reports in its single `count` cell (0 if none).
fn reported_count(batches: &[datafusion::arrow::array::RecordBatch]) -> usize {
    use datafusion::arrow::array::{Array, UInt64Array};
    batches
        .first()
        .and_then(|batch| batch.column_by_name("count"))
        .and_then(|column| {
            column
                .as_any()
                .downcast_ref::<UInt64Array>()
                .filter(|c| !c.is_empty())
                .map(|c| c.value(0))
        })
        .unwrap_or(0) as usize
}

fn is_parser_error(error: &PgWireError) -> bool {
    matches!(error, PgWireError::ApiError(inner) if sqlstate_of(inner.as_ref()) == sqlstate::SYNTAX_ERROR)
}

/// The statement type of the extended protocol: datafusion-postgres' (SQL text and, if
/// it planned, the parsed statement and plan). Role statements are kept as text only.
type ExtendedStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

/// Extended-protocol queries (Parse/Bind/Execute): datafusion-postgres' handler, with
/// role statements, the authentication check and the statement limits around it.
pub struct ExtendedQueries {
    /// The connection's session.
    pub session: Arc<Session>,
    parser: Arc<RoleAwareParser>,
}

impl ExtendedQueries {
    /// The handler for `session`.
    pub fn new(session: Arc<Session>) -> Self {
        let parser = Arc::new(RoleAwareParser {
            inner: session.service.query_parser(),
        });
        Self { session, parser }
    }
}

/// datafusion-postgres' parser, which leaves role statements and `COPY … FROM STDIN`
/// unplanned (for [`ExtendedQueries::do_query`] to run).
pub struct RoleAwareParser {
    inner: Arc<datafusion_postgres::Parser>,
}

fn single_admin(sql: &str) -> Option<PgWireResult<AdminStatement>> {
    match admin::parse_script(sql)? {
        Ok(parts) => match parts.as_slice() {
            [ScriptPart::Admin(statement)] => Some(Ok(statement.clone())),
            _ => Some(Err(user_error(
                sqlstate::SYNTAX_ERROR,
                "a prepared statement holds one statement; send role statements on their own"
                    .into(),
            ))),
        },
        Err(error) => Some(Err(user_error(error.sqlstate(), error.to_string()))),
    }
}

#[async_trait]
impl QueryParser for RoleAwareParser {
    type Statement = ExtendedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(admin) = single_admin(sql) {
            admin?;
            return Ok(Some((sql.to_string(), None)));
        }
        if CopyIn::parse(sql).is_some() {
            return Ok(Some((sql.to_string(), None)));
        }
        let typed = pg_rewrites::rewrite(sql);
        self.inner
            .parse_sql(client, typed.as_deref().unwrap_or(sql), types)
            .await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for ExtendedQueries {
    type Statement = ExtendedStatement;
    type QueryParser = RoleAwareParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// pgwire's own `on_parse`, keeping one parameter type it drops: pgvector's `vector`
    /// (oid 16385) is not a built-in type, so pgwire records no type for it and its binary
    /// parameters (psycopg's and pgvector-python's default for numpy arrays) would be read
    /// as text. With the type kept, arrow-pg decodes them as vectors.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(mut statement) => {
                for (stored, oid) in statement.parameter_types.iter_mut().zip(&message.type_oids) {
                    if stored.is_none() && *oid == PG_VECTOR_TYPE_OID {
                        *stored = Some(pg_vector_type());
                    }
                }
                client.portal_store().put_statement(Arc::new(statement));
            }
            None => client.portal_store().put_empty_statement(&name),
        }
        futures::SinkExt::feed(
            client,
            PgWireBackendMessage::ParseComplete(ParseComplete::new()),
        )
        .await?;
        Ok(())
    }

    /// pgwire's own `on_bind`, except that BindComplete waits for Sync or Flush like the
    /// other replies (see [`DeferredFlush`]).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(user_error(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!(
                            "bind message supplies {} parameters, but prepared statement \
                             {statement_name:?} requires 0",
                            message.parameters.len()
                        ),
                    ));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        futures::SinkExt::feed(
            client,
            PgWireBackendMessage::BindComplete(BindComplete::new()),
        )
        .await?;
        Ok(())
    }

    /// pgwire's own `on_describe` on a [`DeferredFlush`] connection: the description goes
    /// out with the next Sync or Flush.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_describe(&mut DeferredFlush(client), message).await
    }

    /// pgwire's own `on_execute` on a [`DeferredFlush`] connection: the rows and
    /// CommandComplete go out with Sync's ReadyForQuery, in one write.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = self._on_execute(&mut DeferredFlush(client), message).await;
        if matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            futures::SinkExt::flush(client).await?;
        }
        outcome
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        if !self.session.authenticated.is_done() {
            return Err(Authenticated::refusal());
        }
        let (sql, planned) = &portal.statement.statement;
        if planned.is_none() {
            if let Some(admin) = single_admin(sql) {
                return self.session.run_admin(client, &admin?);
            }
            if let Some(copy) = CopyIn::parse(sql) {
                let mut responses = start_copy_in(&self.session, client, copy).await?;
                return Ok(responses.pop().unwrap_or(Response::EmptyQuery));
            }
        }
        // Other statements may belong to a hook (SHOW, cursors), which runs later.
        let query_plan = match planned {
            Some((Statement::Query(_), plan)) => Some(plan),
            _ => None,
        };
        // Checked at Parse, and again at each Execute: a prepared statement kept by a
        // driver must not outlive a REVOKE. (The plan is walked, not made again.)
        if let Some((_, plan)) = planned {
            let role = self.session.role(client);
            self.session.checker().check(&role, plan).map_err(denied)?;
        }
        // A key lookup answers at once, so it runs outside the statement limits.
        if let Some(lookup) = query_plan.and_then(PointLookup::of) {
            if let Some(response) = lookup.answer(portal, client).await? {
                return Ok(response);
            }
        }
        let limits = StatementLimits::start(client, &self.session.interrupt);
        if let (Some(plan), 0) = (query_plan, portal.parameter_len()) {
            let (constants, context) = (&self.session.constants, &self.session.context);
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let format = &portal.result_column_format;
            let mut constant = limits
                .run(async move {
                    match constants.result_of_plan(context, sql, plan).await {
                        Some(result) => Ok(vec![result.response(format, options)?]),
                        None => Ok(Vec::new()),
                    }
                })
                .await?;
            if let Some(response) = constant.pop() {
                return Ok(response);
            }
        }
        let service = self.session.service.clone();
        let mut responses = limits
            .run(async move {
                ExtendedQueryHandler::do_query(service.as_ref(), client, portal, max_rows)
                    .await
                    .map(|r| vec![r])
            })
            .await?;
        Ok(responses.pop().unwrap_or(Response::EmptyQuery))
    }
}
