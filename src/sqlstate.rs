//! Engine errors → Postgres SQLSTATE codes, so clients can tell a typo from a bug.
//!
//! Why: datafusion-postgres reports every engine error as `XX000 internal_error`. A BI
//! tool or driver branches on the class: `42601` (syntax), `42P01` (no such table),
//! `42883` (no such function), `42804` (wrong type), `22xxx` (bad data). The message is
//! kept as the engine wrote it, since it names the bad value.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::storage::StorageError;

/// The SQLSTATE for an error raised while parsing, planning or executing.
pub fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> &'static str {
    if error.downcast_ref::<ParserError>().is_some() {
        return "42601";
    }
    match error.downcast_ref::<DataFusionError>() {
        Some(error) => datafusion_sqlstate(error.find_root()),
        None => "XX000",
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
        DataFusionError::ResourcesExhausted(_) => "53200",
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
        DataFusionError::External(inner) => match inner.downcast_ref::<StorageError>() {
            Some(storage) => storage_sqlstate(storage),
            None => "XX000",
        },
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => "58030",
        _ => "XX000",
    }
}

fn storage_sqlstate(error: &StorageError) -> &'static str {
    match error {
        StorageError::BadTableName(_) => "42602",
        StorageError::Locked(_) => "55006",
        StorageError::NotAppend(_) => "0A000",
        StorageError::WriterGone(_) => "57P01",
        StorageError::Rows { .. } => "22P02",
        StorageError::Backlog { .. } => "53000",
        StorageError::DataDir { .. } | StorageError::Delta { .. } | StorageError::Log { .. } => {
            "58030"
        }
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
    } else if lower.contains("not installed") || lower.contains("not found") {
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
}
