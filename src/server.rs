//! The Postgres wire server: datafusion-postgres' handlers on one shared SessionContext,
//! with rankql's error codes and a safe default bind address.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgvector::PgVectorInsertHook;
use datafusion_postgres::{DfSessionService, QueryHook};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use tokio::net::TcpListener;

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

/// Binds the listening socket after checking the address is loopback. Port 0 picks a
/// free port (tests read it back from the listener).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let is_loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !is_loopback {
        return Err(ServerError::UnsafeBind(host.to_string()));
    }
    let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
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

async fn serve_connection(socket: tokio::net::TcpStream, peer: SocketAddr, handlers: Arc<Handlers>) {
    tracing::debug!(%peer, "connection opened");
    if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
        tracing::info!(%peer, "connection closed: {error}");
    }
}

/// The handler set for one server: queries go to datafusion-postgres' session service,
/// errors get SQLSTATE codes.
struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
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
        Ok(Self {
            session: Arc::new(DfSessionService::new_with_hooks(context, hooks)),
            startup: Arc::new(Startup {
                connections: connections.clone(),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        })
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.session.clone()
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
