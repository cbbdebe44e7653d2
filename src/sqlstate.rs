//! Engine errors → Postgres SQLSTATE codes, so clients can tell a typo from a bug.
//!
//! Why: datafusion-postgres reports every engine error as `XX000 internal_error`. A BI
//! tool or driver branches on the class: `42601` (syntax), `42P01` (no such table),
//! `42883` (no such function), `42804` (wrong type), `22xxx` (bad data). The message is
//! kept as the engine wrote it, since it names the bad value.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::server::limits::Interrupted;
use crate::server::privileges::PrivilegeError;
use crate::server::roles::RoleError;
use crate::storage::vector_index::IndexError;
use crate::storage::StorageError;
use crate::value_limits::ValueTooLarge;
use rankql_udfs::embed::EmbedCallError;

/// An error that knows the SQLSTATE a client should see for it: the code comes from the
/// error's type and variant, never from its message text.
pub trait SqlState {
    /// The five-character SQLSTATE.
    fn sqlstate(&self) -> &'static str;
}

/// `42601`: the statement does not parse.
pub const SYNTAX_ERROR: &str = "42601";
/// `42501`: the role lacks a privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `42704`: e.g. an unknown role.
pub const UNDEFINED_OBJECT: &str = "42704";
/// `42710`: e.g. a role that exists already.
pub const DUPLICATE_OBJECT: &str = "42710";
/// `42602`: a name that cannot be used.
pub const INVALID_NAME: &str = "42602";
/// `22023`: a value out of its allowed range.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// `55006`: the object is in use.
pub const OBJECT_IN_USE: &str = "55006";
/// `58030`: the server could not read or write a file.
pub const IO_ERROR: &str = "58030";
/// `57014`: the statement was cancelled (by the client or `statement_timeout`).
pub const QUERY_CANCELED: &str = "57014";
/// `53200`: the statement needs more memory than it may use.
pub const OUT_OF_MEMORY: &str = "53200";
/// `53300`: the server has no free connection slot.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `54000`: a statement or value exceeds a size limit.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// `28P01`: wrong password (or unknown user: the same answer, so names cannot be probed).
pub const INVALID_PASSWORD: &str = "28P01";
/// `28000`: the connection is not allowed (no TLS where it is required, no users yet).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// `08P01`: a message that breaks the wire protocol's rules.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// `0A000`: a feature rankql does not have.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// The SQLSTATE for an error raised while parsing, planning or executing.
pub fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> &'static str {
    if error.downcast_ref::<ParserError>().is_some() {
        return "42601";
    }
    match error.downcast_ref::<DataFusionError>() {
        Some(error) => datafusion_sqlstate(error.find_root()),
        None => external_sqlstate(error),
    }
}

fn datafusion_sqlstate(error: &DataFusionError) -> &'static str {
    let message = error.to_string();
    match error {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(..) => {
            if message.contains("No field named") || message.contains("not found") {
                "42703"
            } else {
                "42P07"
            }
        }
        DataFusionError::Plan(text) => plan_sqlstate(text),
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::ArrowError(arrow, _) => {
            use datafusion::arrow::error::ArrowError;
            match arrow.as_ref() {
                ArrowError::DivideByZero => "22012",
                ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
                ArrowError::ComputeError(_) | ArrowError::InvalidArgumentError(_) => "22023",
                _ => "XX000",
            }
        }
        DataFusionError::Execution(_) if message.contains("already exists") => "42P07",
        DataFusionError::Execution(_) => "22023",
        DataFusionError::External(inner) => external_sqlstate(inner.as_ref()),
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => "58030",
        _ => "XX000",
    }
}

/// The code of an error type of rankql's own, carried inside DataFusion's `External`.
pub fn external_sqlstate(error: &(dyn std::error::Error + 'static)) -> &'static str {
    if let Some(storage) = error.downcast_ref::<StorageError>() {
        return storage_sqlstate(storage);
    }
    if let Some(error) = error.downcast_ref::<IndexError>() {
        return error.sqlstate();
    }
    if let Some(error) = error.downcast_ref::<PrivilegeError>() {
        return error.sqlstate();
    }
    if let Some(error) = error.downcast_ref::<RoleError>() {
        return error.sqlstate();
    }
    if let Some(error) = error.downcast_ref::<Interrupted>() {
        return error.sqlstate();
    }
    if let Some(error) = error.downcast_ref::<ValueTooLarge>() {
        return error.sqlstate();
    }
    if let Some(error) = error.downcast_ref::<EmbedCallError>() {
        return error.0.sqlstate();
    }
    "XX000"
}

fn storage_sqlstate(error: &StorageError) -> &'static str {
    match error {
        StorageError::BadTableName(_) => "42602",
        StorageError::Locked(_) => "55006",
        StorageError::NotAppend(_) => "0A000",
        StorageError::WriterGone(_) => "57P01",
        StorageError::Rows { .. } => "22P02",
        StorageError::Backlog { .. } => "53000",
        StorageError::DataDir { .. }
        | StorageError::Delta { .. }
        | StorageError::Log { .. }
        | StorageError::Sync { .. }
        | StorageError::Read { .. }
        | StorageError::LogNotDurable { .. }
        | StorageError::Index { .. }
        | StorageError::Lookup { .. } => "58030",
    }
}

fn plan_sqlstate(text: &str) -> &'static str {
    let lower = text.to_ascii_lowercase();
    if lower.contains("table") && (lower.contains("not found") || lower.contains("doesn't exist")) {
        "42P01"
    } else if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        "42883"
    } else if lower.contains("already exists") {
        "42P07"
    } else if lower.contains("coerce")
        || lower.contains("must be")
        || lower.contains("type")
        || lower.contains("dimensions differ")
    {
        "42804"
    } else if lower.contains("not found") {
        "58P01"
    } else {
        "42000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: DataFusionError) -> &'static str {
        sqlstate_of(&error)
    }

    #[test]
    fn classes() {
        assert_eq!(
            code(DataFusionError::Plan("table 'x' not found".into())),
            "42P01"
        );
        assert_eq!(
            code(DataFusionError::Plan("Invalid function 'nope'".into())),
            "42883"
        );
        assert_eq!(
            code(DataFusionError::Plan(
                "cosine: argument 1 must be a vector".into()
            )),
            "42804"
        );
        assert_eq!(
            code(DataFusionError::Execution("dimensions".into())),
            "22023"
        );
        assert_eq!(code(DataFusionError::NotImplemented("x".into())), "0A000");
        let wrapped = DataFusionError::Context(
            "ctx".into(),
            Box::new(DataFusionError::Plan("table 't' not found".into())),
        );
        assert_eq!(code(wrapped), "42P01");
    }

    #[test]
    fn rankql_errors_carry_their_own_code() {
        use rankql_udfs::embed::EmbedError;
        let interrupted = EmbedCallError(EmbedError::Interrupted);
        assert_eq!(
            code(DataFusionError::External(Box::new(interrupted))),
            "57014"
        );
        let missing = EmbedCallError(EmbedError::RuntimeMissing("/x".into()));
        let wrapped = DataFusionError::Context(
            "planning".into(),
            Box::new(DataFusionError::External(Box::new(missing))),
        );
        assert_eq!(code(wrapped), "58P01");
        let denied = PrivilegeError::File("/etc/passwd".into());
        assert_eq!(code(DataFusionError::External(Box::new(denied))), "42501");
    }
}
