//! Who may connect, and how they prove it.
//!
//! The rule: while the data directory has no user who can log in, loopback clients are
//! trusted (the quick start needs no password) and other addresses are refused; once a
//! user exists, every connection authenticates with SCRAM-SHA-256, loopback included.
//! Under `--tls required` a client that did not negotiate TLS is refused before it can
//! send a password.
//!
//! pgwire answers a failed authentication with a FATAL error but keeps reading the
//! socket, so the connection's [`Authenticated`] flag — set only here, on success — is
//! what every query handler checks, and a failure also asks the connection to close.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use parking_lot::Mutex;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Notify;

use super::limits::{CancelRegistry, SessionDefaults};
use super::roles::RoleCatalog;
use super::session::LoggedIn;
use crate::sqlstate;

/// Whether a connection has authenticated; shared by its handlers.
#[derive(Debug, Default)]
pub struct Authenticated {
    done: AtomicBool,
    /// Woken when authentication fails, so the connection closes at once.
    pub failed: Notify,
}

impl Authenticated {
    /// Whether the client may run statements.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The error for a statement sent before authentication finished.
    pub fn refusal() -> PgWireError {
        fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "not authenticated: the connection must complete authentication first".into(),
        )
    }
}

/// How connections must arrive and what they get once in.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Users, passwords, superusers.
    pub roles: Arc<RoleCatalog>,
    /// Refuse clients that did not negotiate TLS.
    pub tls_required: bool,
    /// The server's default `statement_timeout` (`--statement-timeout`).
    pub statement_timeout: Option<Duration>,
}

/// The startup handler of one connection.
pub struct Startup {
    policy: AuthPolicy,
    cancels: Arc<CancelRegistry>,
    authenticated: Arc<Authenticated>,
    method: Mutex<Option<Method>>,
    scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Trust,
    Scram,
}

impl Startup {
    /// The handler for a new connection.
    pub fn new(
        policy: AuthPolicy,
        cancels: Arc<CancelRegistry>,
        authenticated: Arc<Authenticated>,
    ) -> Self {
        let source = Arc::new(Passwords {
            roles: policy.roles.clone(),
        });
        let scram =
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(ScramAuth::new(source));
        Self {
            policy,
            cancels,
            authenticated,
            method: Mutex::new(None),
            scram,
        }
    }

    fn choose(&self, client: &impl ClientInfo) -> PgWireResult<Method> {
        if self.policy.tls_required && !client.is_secure() {
            return Err(fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "this rankql server requires TLS: connect with sslmode=require (or verify-full)"
                    .into(),
            ));
        }
        if self.policy.roles.has_users() {
            Ok(Method::Scram)
        } else if client.socket_addr().ip().is_loopback() {
            Ok(Method::Trust)
        } else {
            Err(fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no user exists yet, so rankql only accepts loopback connections; create one \
                 with `rankql user add NAME --superuser --password-stdin`"
                    .into(),
            ))
        }
    }

    /// Once pgwire has finished authentication: the connection may run statements, can
    /// be cancelled, and starts with the server's statement timeout.
    fn finish(&self, client: &mut impl ClientInfo, method: Method) {
        if self.authenticated.is_done()
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return;
        }
        let (pid, secret) = client.pid_and_secret_key();
        let registration = self.cancels.register(pid, secret.to_bytes().to_vec());
        client.session_extensions().insert(registration);
        client.session_extensions().insert(LoggedIn {
            trusted: matches!(method, Method::Trust),
        });
        let defaults = SessionDefaults {
            statement_timeout: self.policy.statement_timeout,
        };
        defaults.restore(client.metadata_mut());
        client.session_extensions().insert(defaults);
        self.authenticated.done.store(true, Ordering::Release);
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.authenticated.is_done() {
            return Ok(());
        }
        let method = match &message {
            PgWireFrontendMessage::Startup(_) => {
                let chosen = self.choose(client);
                *self.method.lock() = chosen.as_ref().ok().copied();
                chosen
            }
            _ => (*self.method.lock()).ok_or_else(|| {
                fatal(
                    "08P01",
                    "authentication message before the startup message".into(),
                )
            }),
        };
        let method = match method {
            Ok(method) => method,
            Err(error) => {
                self.authenticated.failed.notify_one();
                return Err(error);
            }
        };
        let outcome = match method {
            Method::Trust => Trust.on_startup(client, message).await,
            Method::Scram => self.scram.on_startup(client, message).await,
        };
        match outcome {
            Ok(()) => {
                self.finish(client, method);
                Ok(())
            }
            Err(error) => {
                self.authenticated.failed.notify_one();
                Err(error)
            }
        }
    }
}

/// What a client learns at startup: PostgreSQL's parameters, with rankql's
/// `server_version` (see [`crate::pg_compat::server_version`]).
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = crate::pg_compat::server_version();
    parameters
}

/// Process ids and cancel keys for every connection of this server: one generator, so
/// that ids are distinct (pgwire's handlers would each start their own count).
static PIDS: LazyLock<Arc<RandomPidSecretKeyGenerator>> =
    LazyLock::new(|| Arc::new(RandomPidSecretKeyGenerator::default()));

/// Trusted loopback startup (no user exists yet): no password exchange.
struct Trust;

impl Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret) = PIDS.generate(&*client);
            client.set_pid_and_secret_key(pid, secret);
            finish_authentication(client, &server_parameters()).await?;
        }
        Ok(())
    }
}

/// The SCRAM secrets of the role catalog. An unknown user, or one who may not log in,
/// gets a random secret: the exchange fails exactly as a wrong password does, so user
/// names cannot be probed.
#[derive(Debug)]
struct Passwords {
    roles: Arc<RoleCatalog>,
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let secret = login.user().and_then(|user| self.roles.scram_secret(user));
        Ok(match secret {
            Some((salt, salted_password)) => Password::new(Some(salt), salted_password),
            None => Password::new(
                Some(rand::random::<[u8; 16]>().to_vec()),
                rand::random::<[u8; 32]>().to_vec(),
            ),
        })
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message,
    )))
}
