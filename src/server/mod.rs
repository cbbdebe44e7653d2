//! The Postgres wire server. One concept per file:
//!
//! - this file: binding, the accept loop, the connection limit;
//! - [`connection_thread`]: a thread per connection, its queries' tasks on the shared
//!   runtime;
//! - [`auth`]: trust-on-loopback until a user exists, then SCRAM-SHA-256; TLS required?
//! - [`tls`]: certificates; [`roles`]: users, grants, owners in the data directory;
//! - [`session`]: a session per connection and the statement handlers;
//! - [`privileges`]: the check of every planned statement; [`admin`]: `CREATE USER`,
//!   `GRANT` and the other role statements;
//! - [`limits`]: `statement_timeout`, cancel requests, "too many connections";
//! - [`copy`] and [`copy_in`]: `COPY … FROM STDIN`;
//! - [`compat_hooks`]: statements answered for drivers (`SHOW server_version`, savepoints);
//! - [`constant_queries`], [`point_lookup`] and [`fast_insert`]: small statements answered
//!   without DataFusion's planning (`SELECT 1`, `WHERE key = $1`, `INSERT … VALUES`).

pub mod admin;
pub mod auth;
pub mod catalog_rewrites;
pub mod compat_hooks;
pub mod connection_thread;
pub mod constant_queries;
pub mod copy;
pub mod copy_in;
pub mod deferred_flush;
pub mod fast_insert;
pub mod index_hook;
pub mod limits;
pub mod pg_rewrites;
pub mod point_lookup;
pub mod privileges;
pub mod replace_hook;
pub mod roles;
pub mod session;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::cancel::CancelRequest;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};

use self::auth::{AuthPolicy, Authenticated, Startup};
use self::copy_in::CopyIns;
use self::limits::{disconnect_watcher, peer_closed, refuse_connection, CancelRegistry};
use self::privileges::FileAccess;
use self::roles::RoleCatalog;
use self::session::{ExtendedQueries, Session, SimpleQueries};
use crate::sqlstate::sqlstate_of;

pub use self::session::MAX_STATEMENT_BYTES;

/// Why the server would not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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

/// How long a connection may take to authenticate before it is closed, so that idle
/// unauthenticated sockets cannot hold the connection slots.
pub const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping server waits for its connections to close.
pub const CLOSING_TIME: Duration = Duration::from_secs(5);

/// The multi-threaded runtime the server (and the CLI) runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
}

/// Binds the listening socket. Any address may be bound: until a user exists, only
/// loopback clients are let in (see [`auth`]). Port 0 picks a free port.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// How the server treats its clients.
#[derive(Clone)]
pub struct ServerOptions {
    /// TLS, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// Refuse clients that do not negotiate TLS.
    pub tls_required: bool,
    /// Connections served at once; more are refused with 53300.
    pub max_connections: usize,
    /// Default `statement_timeout` of every session.
    pub statement_timeout: Option<Duration>,
    /// Server directories open to every role.
    pub file_access: FileAccess,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: None,
            tls_required: false,
            max_connections: 100,
            statement_timeout: None,
            file_access: FileAccess::default(),
        }
    }
}

/// What every connection shares.
struct Shared {
    context: Arc<SessionContext>,
    roles: Arc<RoleCatalog>,
    files: Arc<FileAccess>,
    cancels: Arc<CancelRegistry>,
    options: ServerOptions,
}

/// Serves Postgres clients on `listener` until `shutdown` completes, then closes the
/// connections and returns once they are closed (at most [`CLOSING_TIME`] later). Each connection runs on its own thread with its own session: a client
/// that misbehaves or disconnects ends only its own thread.
pub async fn serve(
    listener: TcpListener,
    context: Arc<SessionContext>,
    roles: Arc<RoleCatalog>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let shared = Arc::new(Shared {
        context,
        roles,
        files: Arc::new(options.file_access.clone()),
        cancels: Arc::new(CancelRegistry::default()),
        options,
    });
    // Dropping `serving` ends every connection: their threads wait on this channel.
    let (serving, server_stopped) = watch::channel(());
    let runtime = Handle::current();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                drop(serving);
                // Connections poll timers of this runtime: wait for them to close before
                // it stops.
                let all = u32::try_from(shared.options.max_connections).unwrap_or(u32::MAX);
                let _ = tokio::time::timeout(CLOSING_TIME, slots.acquire_many(all)).await;
                return Ok(());
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let shared = shared.clone();
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let stopped = server_stopped.clone();
                            let started = socket.into_std().and_then(|socket| {
                                connection_thread::spawn(
                                    format!("rankql-conn {peer}"),
                                    THREAD_STACK_BYTES,
                                    socket,
                                    runtime.clone(),
                                    move |socket| {
                                        let sockets = disconnect_watcher(socket);
                                        async move {
                                            match sockets {
                                                Ok((socket, watcher)) => serve_connection(socket, watcher, peer, shared, stopped).await,
                                                Err(error) => tracing::warn!(%peer, "connection dropped: {error}"),
                                            }
                                            drop(slot);
                                        }
                                    },
                                )
                            });
                            if let Err(error) = started {
                                tracing::warn!(%peer, "connection dropped: cannot start its thread: {error}");
                            }
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "refused: all {} connection slots are in use", shared.options.max_connections);
                            let message = format!(
                                "sorry, too many clients already (rankql serves at most {} connections; raise --max-connections)",
                                shared.options.max_connections
                            );
                            tokio::spawn(refuse_connection(socket, message, shared.cancels.clone()));
                        }
                    }
                }
                Err(error) => tracing::warn!("accept failed: {error}"),
            },
        }
    }
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    watcher: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut server_stopped: watch::Receiver<()>,
) {
    tracing::debug!(%peer, "connection opened");
    let authenticated = Arc::new(Authenticated::default());
    let session = Session::new(
        shared.context.state(),
        shared.roles.clone(),
        shared.files.clone(),
        authenticated.clone(),
    );
    let policy = AuthPolicy {
        roles: shared.roles.clone(),
        tls_required: shared.options.tls_required,
        statement_timeout: shared.options.statement_timeout,
    };
    let handlers = Arc::new(ConnectionHandlers {
        simple: Arc::new(SimpleQueries {
            session: session.clone(),
        }),
        extended: Arc::new(ExtendedQueries::new(session.clone())),
        startup: Arc::new(Startup::new(
            policy,
            shared.cancels.clone(),
            authenticated.clone(),
        )),
        copy: Arc::new(CopyIns {
            context: session.context.clone(),
            authenticated: authenticated.clone(),
        }),
        cancel: Arc::new(CancelRequests {
            registry: shared.cancels.clone(),
        }),
    });
    let unauthenticated_end = async {
        tokio::select! {
            _ = authenticated.failed.notified() => {
                // Let pgwire send the FATAL error first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                "authentication failed"
            }
            _ = tokio::time::sleep(AUTHENTICATION_TIMEOUT) => {
                if authenticated.is_done() {
                    std::future::pending::<()>().await;
                }
                "authentication timed out"
            }
        }
    };
    let tls = shared.options.tls.clone();
    tokio::select! {
        served = pgwire::tokio::process_socket(socket, tls, handlers) => {
            if let Err(error) = served {
                tracing::info!(%peer, "connection closed: {error}");
            }
        }
        reason = unauthenticated_end => tracing::info!(%peer, "connection closed: {reason}"),
        _ = server_stopped.changed() => tracing::info!(%peer, "connection closed: the server stopped"),
        // The client went away mid-statement: dropping the connection's future drops the
        // statement's streams (stopping their work), and embed stops at its next batch.
        _ = peer_closed(watcher) => {
            session.interrupt.interrupt();
            tracing::info!(%peer, "client closed the connection; its statement, if any, was stopped");
        }
    }
}

/// The handler set of one connection.
struct ConnectionHandlers {
    simple: Arc<SimpleQueries>,
    extended: Arc<ExtendedQueries>,
    startup: Arc<Startup>,
    copy: Arc<CopyIns>,
    cancel: Arc<CancelRequests>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.simple.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.extended.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.copy.clone()
    }
}

/// CancelRequests, which arrive on a connection of their own.
struct CancelRequests {
    registry: Arc<CancelRegistry>,
}

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.registry
            .cancel(request.pid, &request.secret_key.to_bytes());
    }
}

/// Rewrites engine errors into Postgres errors with their SQLSTATE, and names the user
/// in a failed login as PostgreSQL does (SCRAM clients such as libpq leave the name in
/// the SCRAM exchange empty).
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        if let PgWireError::InvalidPassword(_) = error {
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                crate::sqlstate::INVALID_PASSWORD.to_string(),
                format!("password authentication failed for user \"{user}\""),
            )));
        }
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
