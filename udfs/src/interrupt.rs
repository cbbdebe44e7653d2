//! A statement's stop flag, carried in the session's configuration so that functions
//! that run for seconds inside one call (`embed` over a large batch) can stop between
//! micro-batches when the statement is cancelled or times out, instead of keeping the
//! CPU busy for a client that has gone.
//!
//! The server gives each connection's session one [`StatementInterrupt`] (a shared
//! flag), clears it when a statement starts and raises it when the statement must stop.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{config_err, Result};
use datafusion::config::ConfigOptions;

/// The stop flag of the statement running on one session.
#[derive(Debug, Clone, Default)]
pub struct StatementInterrupt(Arc<AtomicBool>);

impl StatementInterrupt {
    /// Asks the running statement to stop.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Clears the flag for a new statement.
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether the running statement should stop.
    pub fn is_interrupted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// The flag of the session whose configuration is `config`, if it has one (sessions
    /// outside the server, such as `rankql run`, have none and never stop early).
    pub fn of(config: &ConfigOptions) -> Option<&Self> {
        config.extensions.get::<Self>()
    }
}

impl ExtensionOptions for StatementInterrupt {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        config_err!(
            "{}.{key} is internal to rankql and cannot be set",
            Self::PREFIX
        )
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

impl ConfigExtension for StatementInterrupt {
    const PREFIX: &'static str = "rankql_interrupt";
}
