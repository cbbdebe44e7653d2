//! The Postgres wire server: datafusion-postgres' handlers on one shared SessionContext,
//! with rankql's error codes and a safe default bind address.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgvector::PgVectorInsertHook;
use datafusion_postgres::{DfSessionService, QueryHook};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;

use crate::copy::{CopyError, CopyIn, RowDecoder};
use crate::sqlstate::sqlstate_of;

/// Why the server would not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A non-loopback address was asked for while no authentication exists.
    #[error(
        "refusing to listen on {0}: rankql has no authentication yet, so it only listens on \
         loopback (127.0.0.1, ::1, localhost). Reach it through an SSH tunnel or a proxy that \
         authenticates."
    )]
    UnsafeBind(String),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Stack size of the runtime's threads: DataFusion plans recursively, and the catalog
/// queries of some BI tools nest deeply enough to overflow the 2 MiB default.
pub const THREAD_STACK_BYTES: usize = 32 << 20;

/// The multi-threaded runtime the server (and the CLI) runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
}

/// Binds the listening socket after checking the address is loopback. Port 0 picks a
/// free port (tests read it back from the listener).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let is_loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !is_loopback {
        return Err(ServerError::UnsafeBind(host.to_string()));
    }
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// Serves Postgres clients on `listener` until `shutdown` completes. Each connection runs
/// in its own task: a client that misbehaves or disconnects ends only its own task.
pub async fn serve(
    listener: TcpListener,
    context: Arc<SessionContext>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handlers = Arc::new(Handlers::new(context)?);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    tokio::spawn(async move { serve_connection(socket, peer, handlers).await });
                }
                Err(error) => tracing::warn!("accept failed: {error}"),
            },
        }
    }
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    handlers: Arc<Handlers>,
) {
    tracing::debug!(%peer, "connection opened");
    if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
        tracing::info!(%peer, "connection closed: {error}");
    }
}

/// The largest statement text accepted over the simple protocol. Postgres allows up to
/// 1 GiB; a statement of megabytes is a mistake (or an attack) that would otherwise tie
/// up the parser and planner.
pub const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// The handler set for one server: queries go to datafusion-postgres' session service,
/// errors get SQLSTATE codes.
struct Handlers {
    session: Arc<DfSessionService>,
    simple: Arc<SimpleQueries>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
    copy: Arc<CopyIns>,
}

impl Handlers {
    fn new(context: Arc<SessionContext>) -> std::io::Result<Self> {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(PgVectorInsertHook),
        ];
        let connections = Arc::new(ConnectionManager::new());
        let session = Arc::new(DfSessionService::new_with_hooks(context.clone(), hooks));
        Ok(Self {
            copy: Arc::new(CopyIns {
                context: context.clone(),
            }),
            simple: Arc::new(SimpleQueries {
                inner: session.clone(),
                context,
            }),
            session,
            startup: Arc::new(Startup {
                connections: connections.clone(),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        })
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.simple.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.copy.clone()
    }
}

/// Simple-protocol queries: datafusion-postgres' handler, with a size limit, and a second
/// chance for DataFusion's own syntax (`CREATE EXTERNAL TABLE … STORED AS …`,
/// `COPY … TO … STORED AS …`) that the Postgres parser rejects.
struct SimpleQueries {
    inner: Arc<DfSessionService>,
    context: Arc<SessionContext>,
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
        if query.len() > MAX_STATEMENT_BYTES {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                "54000".to_string(),
                format!(
                    "statement of {} bytes exceeds rankql's limit of {MAX_STATEMENT_BYTES} bytes; \
                     load large data with CREATE EXTERNAL TABLE or COPY instead",
                    query.len()
                ),
            ))));
        }
        if let Some(copy) = CopyIn::parse(query) {
            return start_copy_in(&self.context, client, copy).await;
        }
        match self.inner.do_query(client, query).await {
            Err(postgres_error) if is_parser_error(&postgres_error) => {
                match self.run_datafusion_dialect(query).await {
                    Ok(responses) => Ok(responses),
                    Err(DialectFallback::NotDataFusionSyntax) => Err(postgres_error),
                    Err(DialectFallback::Failed(error)) => Err(error),
                }
            }
            result => result,
        }
    }
}

/// Why the DataFusion-dialect second chance did not produce responses.
enum DialectFallback {
    /// DataFusion's parser rejects it too: report the Postgres parser's error.
    NotDataFusionSyntax,
    /// It parsed but failed to plan or run: report that.
    Failed(PgWireError),
}

impl SimpleQueries {
    async fn run_datafusion_dialect(&self, query: &str) -> Result<Vec<Response>, DialectFallback> {
        let statements = DFParser::parse_sql_with_dialect(query, &PostgreSqlDialect {})
            .map_err(|_| DialectFallback::NotDataFusionSyntax)?;
        let failed = |e: datafusion::error::DataFusionError| {
            DialectFallback::Failed(PgWireError::ApiError(Box::new(e)))
        };
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let state = self.context.state();
            let plan = state.statement_to_plan(statement).await.map_err(failed)?;
            let tag = match &plan {
                LogicalPlan::Ddl(ddl) => Some(ddl.name().to_ascii_uppercase()),
                LogicalPlan::Copy(_) => Some("COPY".to_string()),
                _ => None,
            };
            let frame = self
                .context
                .execute_logical_plan(plan)
                .await
                .map_err(failed)?;
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
    matches!(error, PgWireError::ApiError(inner) if sqlstate_of(inner.as_ref()) == "42601")
}

/// A `COPY … FROM STDIN` in progress on one connection: its target and the rows
/// decoded so far, or the first error (reported when the client finishes).
struct PendingCopy {
    table: String,
    decoder: Result<RowDecoder, CopyError>,
}

/// The per-connection slot for the COPY in progress.
#[derive(Default)]
struct CopySlot(std::sync::Mutex<Option<PendingCopy>>);

impl CopySlot {
    /// The slot of `client`'s connection.
    fn of(client: &impl ClientInfo) -> Arc<Self> {
        client
            .session_extensions()
            .get_or_insert_with(Self::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PendingCopy>> {
        match self.0.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn copy_error(error: &CopyError) -> PgWireError {
    let code = match error {
        CopyError::Unsupported(_) => "0A000",
        CopyError::NoSuchColumn { .. } => "42703",
        CopyError::MissingNotNull(_) => "23502",
        CopyError::BadRow { .. } | CopyError::Csv(_) => "22P04",
    };
    user_error(code, error.to_string())
}

/// Checks the target table and columns, then tells the client to send its rows.
async fn start_copy_in<C: ClientInfo>(
    context: &SessionContext,
    client: &mut C,
    copy: Result<CopyIn, CopyError>,
) -> PgWireResult<Vec<Response>> {
    let copy = copy.map_err(|e| copy_error(&e))?;
    let table = context
        .table_provider(copy.table.as_str())
        .await
        .map_err(|_| {
            user_error(
                "42P01",
                format!("COPY: table {} does not exist", copy.table),
            )
        })?;
    if table.table_type() != datafusion::logical_expr::TableType::Base {
        return Err(user_error(
            "42809",
            format!("COPY: {} is not a table that accepts rows", copy.table),
        ));
    }
    let decoder = RowDecoder::new(&copy, table.schema()).map_err(|e| copy_error(&e))?;
    let columns = if copy.columns.is_empty() {
        table.schema().fields().len()
    } else {
        copy.columns.len()
    };
    *CopySlot::of(client).lock() = Some(PendingCopy {
        table: copy.table,
        decoder: Ok(decoder),
    });
    Ok(vec![Response::CopyIn(CopyResponse::new(
        0,
        columns,
        futures::stream::empty(),
    ))])
}

/// Receives `COPY … FROM STDIN` data. Rows are decoded as they arrive and inserted in
/// one statement when the client finishes, so the copy is all or nothing.
struct CopyIns {
    context: Arc<SessionContext>,
}

#[async_trait]
impl CopyHandler for CopyIns {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = CopySlot::of(client);
        let mut pending = slot.lock();
        if let Some(pending) = pending.as_mut() {
            if let Ok(rows) = &mut pending.decoder {
                if let Err(error) = rows.push(&copy_data.data) {
                    pending.decoder = Err(error);
                }
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let pending = CopySlot::of(client).lock().take();
        let Some(PendingCopy { table, decoder }) = pending else {
            return Err(user_error(
                "08P01",
                "COPY data without a COPY statement".to_string(),
            ));
        };
        let batches = decoder
            .and_then(RowDecoder::finish)
            .map_err(|e| copy_error(&e))?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > 0 {
            self.context
                .read_batches(batches)
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?
                .write_table(&table, datafusion::dataframe::DataFrameWriteOptions::new())
                .await
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        }
        use futures::SinkExt;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        CopySlot::of(client).lock().take();
        user_error(
            "57014",
            format!(
                "COPY cancelled by the client: {}; nothing was written",
                fail.message
            ),
        )
    }
}

/// Accepts every client (loopback only, see [`bind`]) and registers it for cancellation.
struct Startup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// Rewrites engine errors into Postgres errors with a meaningful SQLSTATE.
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            let code = sqlstate_of(inner.as_ref());
            let message = inner.to_string();
            tracing::debug!(code, "query failed: {message}");
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                code.to_string(),
                message,
            )));
        }
    }
}
