//! Limits that stop work: `statement_timeout`, a client's CancelRequest, and the
//! connection limit.
//!
//! A statement can be stopped in two places: while it is planned and executed (before
//! the first row), and while its rows stream to the client — datafusion-postgres only
//! covers the first. [`StatementLimits`] races both against the statement's deadline and
//! the connection's cancel signal; stopping drops the DataFusion stream, which aborts the
//! tasks that were computing it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use futures::Stream;
use parking_lot::Mutex;
use pgwire::api::results::Response;
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use rankql_udfs::interrupt::StatementInterrupt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::sqlstate::{self, SqlState};

/// Client metadata key under which datafusion-postgres' `SET statement_timeout` keeps
/// the timeout in milliseconds (absent: no timeout).
pub const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// A connection's defaults, as it started (`RESET` returns to them).
#[derive(Debug, Clone, Default)]
pub struct SessionDefaults {
    /// The server's `--statement-timeout`.
    pub statement_timeout: Option<Duration>,
}

impl SessionDefaults {
    /// Puts the default `statement_timeout` back into a connection's metadata.
    pub fn restore(&self, metadata: &mut HashMap<String, String>) {
        match self.statement_timeout {
            Some(timeout) => {
                metadata.insert(
                    STATEMENT_TIMEOUT_KEY.to_string(),
                    timeout.as_millis().to_string(),
                );
            }
            None => {
                metadata.remove(STATEMENT_TIMEOUT_KEY);
            }
        }
    }
}

/// Why a statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// `statement_timeout` passed.
    #[error("canceling statement due to statement timeout")]
    Timeout,
    /// The client sent a CancelRequest.
    #[error("canceling statement due to user request")]
    Cancelled,
}

impl SqlState for Interrupted {
    fn sqlstate(&self) -> &'static str {
        sqlstate::QUERY_CANCELED
    }
}

impl Interrupted {
    fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            self.sqlstate().to_string(),
            self.to_string(),
        )))
    }
}

/// The cancel signal of one connection: a counter that a CancelRequest bumps.
#[derive(Debug)]
pub struct CancelSignal(watch::Sender<u64>);

impl CancelSignal {
    fn new() -> Self {
        Self(watch::channel(0).0)
    }

    fn cancel(&self) {
        self.0.send_modify(|count| *count += 1);
    }
}

/// What a CancelRequest names a connection by: its process id and secret key.
type CancelKey = (i32, Vec<u8>);

/// Connections by their [`CancelKey`].
#[derive(Debug, Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<CancelKey, Arc<CancelSignal>>>,
}

impl CancelRegistry {
    /// Registers a connection; it is forgotten when the returned guard drops (with the
    /// connection).
    pub fn register(self: &Arc<Self>, pid: i32, secret: Vec<u8>) -> CancelRegistration {
        let signal = Arc::new(CancelSignal::new());
        self.connections
            .lock()
            .insert((pid, secret.clone()), signal.clone());
        CancelRegistration {
            registry: self.clone(),
            key: (pid, secret),
            signal,
        }
    }

    /// Cancels the running statement of the connection named by a CancelRequest; an
    /// unknown pair is ignored, as PostgreSQL does (the sender learns nothing).
    pub fn cancel(&self, pid: i32, secret: &[u8]) {
        let signal = self
            .connections
            .lock()
            .get(&(pid, secret.to_vec()))
            .cloned();
        if let Some(signal) = signal {
            signal.cancel();
        }
    }
}

/// A connection's entry in the [`CancelRegistry`], kept in the connection's session
/// extensions so it lives exactly as long as the connection.
#[derive(Debug)]
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
    signal: Arc<CancelSignal>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry.connections.lock().remove(&self.key);
    }
}

/// The limits of one statement: its deadline and its connection's cancel signal, as
/// they stood when the statement started.
#[derive(Clone)]
pub struct StatementLimits {
    deadline: Option<Instant>,
    cancel: Option<watch::Receiver<u64>>,
    interrupt: StatementInterrupt,
}

impl StatementLimits {
    /// The limits for a statement starting now on `client`'s connection, whose session
    /// raises `interrupt` for functions that check it (embed) when the statement stops.
    pub fn start(client: &impl ClientInfo, interrupt: &StatementInterrupt) -> Self {
        interrupt.reset();
        let timeout = client
            .metadata()
            .get(STATEMENT_TIMEOUT_KEY)
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let cancel = client
            .session_extensions()
            .get::<CancelRegistration>()
            .map(|registration| {
                let mut receiver = registration.signal.0.subscribe();
                receiver.mark_unchanged();
                receiver
            });
        Self {
            deadline: timeout.map(|t| Instant::now() + t),
            cancel,
            interrupt: interrupt.clone(),
        }
    }

    /// Resolves when the statement must stop.
    fn expired(self) -> BoxFuture<'static, Interrupted> {
        async move {
            let deadline = async {
                match self.deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let cancelled = async {
                match self.cancel {
                    Some(mut receiver) => {
                        if receiver.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = deadline => Interrupted::Timeout,
                _ = cancelled => Interrupted::Cancelled,
            };
            self.interrupt.interrupt();
            reason
        }
        .boxed()
    }

    /// Runs `statement` under these limits, then puts every row stream it returns under
    /// them too.
    pub async fn run<F>(&self, statement: F) -> PgWireResult<Vec<Response>>
    where
        F: Future<Output = PgWireResult<Vec<Response>>>,
    {
        let responses = tokio::select! {
            result = statement => result?,
            reason = self.clone().expired() => return Err(reason.into_pgwire()),
        };
        Ok(responses.into_iter().map(|r| self.limit(r)).collect())
    }

    /// Puts the rows of `response` (if it has any) under these limits.
    pub fn limit(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                let rows =
                    std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                query.data_rows = Box::pin(LimitedRows {
                    rows: Some(rows),
                    expired: self.clone().expired(),
                });
                Response::Query(query)
            }
            other => other,
        }
    }
}

/// A row stream that ends with a 57014 error when its statement's limits expire, and
/// drops the underlying stream (stopping its work) at that moment.
struct LimitedRows<S> {
    rows: Option<S>,
    expired: BoxFuture<'static, Interrupted>,
}

impl<S> Stream for LimitedRows<S>
where
    S: Stream<Item = PgWireResult<DataRow>> + Unpin,
{
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(reason) = this.expired.as_mut().poll(cx) {
            this.rows = None;
            return Poll::Ready(Some(Err(reason.into_pgwire())));
        }
        let next = Pin::new(rows).poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            this.rows = None;
        }
        next
    }
}

/// Writes PostgreSQL's "too many connections" error (53300) to a client the server has
/// no slot for, after reading its startup packet as PostgreSQL does (so the client
/// reports the error instead of a dropped connection), then closes the socket. A
/// CancelRequest still works when the server is full: it needs no slot.
pub async fn refuse_connection(
    mut socket: tokio::net::TcpStream,
    message: String,
    cancels: Arc<CancelRegistry>,
) {
    use pgwire::messages::response::ErrorResponse;
    use pgwire::messages::PgWireBackendMessage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CANCEL_REQUEST: u32 = 80_877_102;
    const SSL_REQUEST: u32 = 80_877_103;
    const GSSENC_REQUEST: u32 = 80_877_104;
    let read_packet = async {
        for _ in 0..3 {
            let length = socket.read_u32().await? as usize;
            if !(8..=10_000).contains(&length) {
                break;
            }
            let code = socket.read_u32().await?;
            let mut rest = vec![0; length - 8];
            socket.read_exact(&mut rest).await?;
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                socket.write_all(b"N").await?;
                continue;
            }
            if code == CANCEL_REQUEST && rest.len() >= 8 {
                let pid = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                cancels.cancel(pid, &rest[4..]);
                return Ok(false);
            }
            break;
        }
        std::io::Result::Ok(true)
    };
    match tokio::time::timeout(Duration::from_secs(5), read_packet).await {
        Ok(Ok(true)) => {}
        _ => return,
    }
    let error: ErrorResponse = ErrorInfo::new(
        "FATAL".to_string(),
        sqlstate::TOO_MANY_CONNECTIONS.to_string(),
        message,
    )
    .into();
    let mut buffer = bytes::BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(error)
        .encode(&mut buffer)
        .is_ok()
    {
        let _ = socket.write_all(&buffer).await;
        let _ = socket.shutdown().await;
    }
}

/// The client's socket for pgwire and a second handle on it, to notice the client going
/// away while a statement runs (pgwire reads the socket only between statements). Both
/// are registered with the calling thread's runtime.
pub fn disconnect_watcher(
    socket: std::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let watcher = socket.try_clone()?;
    Ok((
        tokio::net::TcpStream::from_std(socket)?,
        tokio::net::TcpStream::from_std(watcher)?,
    ))
}

/// Resolves when the client has closed or reset its connection, as PostgreSQL's
/// `client_connection_check_interval` notices it: a peek that reads end-of-file. Bytes
/// waiting to be read (a pipelined next message) are left alone and looked at again a
/// little later.
pub async fn peer_closed(watcher: tokio::net::TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match watcher.peek(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
