//! The wire side of `COPY table FROM STDIN`: checks the statement (table, columns, the
//! role's INSERT privilege), then receives the client's data, decoding rows as they
//! arrive and inserting them in one statement when the client finishes, so a copy is all
//! or nothing. Decoding lives in [`super::copy`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use super::auth::Authenticated;
use super::copy::{CopyError, CopyIn, RowDecoder};
use super::privileges::PrivilegeError;
use super::roles::Privilege;
use super::session::Session;
use crate::sqlstate::SqlState;

/// A `COPY … FROM STDIN` in progress on one connection: its target and the rows decoded
/// so far, or the first error (reported when the client finishes).
struct PendingCopy {
    table: String,
    decoder: Result<RowDecoder, CopyError>,
}

/// The per-connection slot for the COPY in progress.
#[derive(Default)]
struct CopySlot(parking_lot::Mutex<Option<PendingCopy>>);

impl CopySlot {
    /// The slot of `client`'s connection.
    fn of(client: &impl ClientInfo) -> Arc<Self> {
        client
            .session_extensions()
            .get_or_insert_with(Self::default)
    }
}

/// An error with its SQLSTATE, as the client sees it.
pub fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn copy_error(error: &CopyError) -> PgWireError {
    user_error(error.sqlstate(), error.to_string())
}

/// Checks the target table, its columns and the role's privilege, then tells the client
/// to send its rows.
pub async fn start_copy_in<C: ClientInfo>(
    session: &Session,
    client: &mut C,
    copy: Result<CopyIn, CopyError>,
) -> PgWireResult<Vec<Response>> {
    let copy = copy.map_err(|e| copy_error(&e))?;
    let table = session
        .context
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
    let role = session.role(client);
    if !role.superuser
        && !session
            .roles
            .has_privilege(&role.name, &copy.table, Privilege::Insert)
    {
        let denied = PrivilegeError::Table {
            table: copy.table.clone(),
            privilege: Privilege::Insert,
            role: role.name,
        };
        return Err(user_error(denied.sqlstate(), denied.to_string()));
    }
    let decoder = RowDecoder::new(&copy, table.schema()).map_err(|e| copy_error(&e))?;
    let columns = if copy.columns.is_empty() {
        table.schema().fields().len()
    } else {
        copy.columns.len()
    };
    *CopySlot::of(client).0.lock() = Some(PendingCopy {
        table: copy.table,
        decoder: Ok(decoder),
    });
    Ok(vec![Response::CopyIn(CopyResponse::new(
        0,
        columns,
        futures::stream::empty(),
    ))])
}

/// Receives `COPY … FROM STDIN` data for one connection.
pub struct CopyIns {
    /// The connection's session.
    pub context: Arc<SessionContext>,
    /// Whether the connection has authenticated.
    pub authenticated: Arc<Authenticated>,
}

#[async_trait]
impl CopyHandler for CopyIns {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        if !self.authenticated.is_done() {
            return Err(Authenticated::refusal());
        }
        let slot = CopySlot::of(client);
        let mut pending = slot.0.lock();
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
        if !self.authenticated.is_done() {
            return Err(Authenticated::refusal());
        }
        let pending = CopySlot::of(client).0.lock().take();
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
        CopySlot::of(client).0.lock().take();
        user_error(
            "57014",
            format!(
                "COPY cancelled by the client: {}; nothing was written",
                fail.message
            ),
        )
    }
}
