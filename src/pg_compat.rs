//! Small Postgres functions that BI tools and drivers call on connect, which neither
//! DataFusion nor datafusion-postgres provide: `current_setting`, `version`,
//! `pg_is_in_recovery`, `pg_my_temp_schema`, `pg_postmaster_start_time`,
//! `pg_type_is_visible`, `pg_function_is_visible`, `pg_collation_is_visible`, `json_build_object`,
//! `pg_get_serial_sequence`, `txid_current`, `pg_is_wal_replay_paused`, the comment
//! functions `obj_description`, `col_description` and `shobj_description` (rankql has no
//! `COMMENT`, so NULL), `pg_get_function_result` and `pg_get_function_arguments`
//! (NULL: rankql has no SQL-defined functions to describe), `pg_tablespace_location` (NULL:
//! the default tablespaces have no location); and the version rankql identifies as.
//!
//! Why: Grafana asks `current_setting('server_version_num')` before anything else, and
//! DataGrip, pgcli, Superset and SQLAlchemy fail their first screen on the others. The
//! answers are those of a single primary server without sequences or transactions.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The PostgreSQL version whose protocol and catalog rankql speaks.
pub const PG_VERSION: &str = "16.6";

/// `server_version_num`, as clients compare it (`current_setting`, `SHOW`).
pub const SERVER_VERSION_NUM: &str = "160006";

/// `server_version` as the startup parameter, `SHOW` and `current_setting` report it:
/// PostgreSQL's version first, so drivers that parse the leading number (SQLAlchemy,
/// pgjdbc, psqlODBC, Metabase) accept it.
pub fn server_version() -> String {
    format!("{PG_VERSION} (rankql {})", env!("CARGO_PKG_VERSION"))
}

/// `version()`: PostgreSQL's shape (`PostgreSQL 16.6 … on <platform>, 64-bit`), naming
/// rankql and DataFusion inside, so version checks such as SQLAlchemy's regex pass.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (rankql {}, Apache DataFusion {}) on {}-{}, {}-bit",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
        usize::BITS
    )
}

/// Registers the functions in `context`.
pub fn register(context: &SessionContext) {
    let started = now_micros();
    for udf in [
        current_setting(),
        constant("version", vec![], ScalarValue::Utf8(Some(version_string()))),
        constant(
            "pg_is_in_recovery",
            vec![],
            ScalarValue::Boolean(Some(false)),
        ),
        constant("pg_my_temp_schema", vec![], ScalarValue::Int32(Some(0))),
        constant(
            "pg_postmaster_start_time",
            vec![],
            ScalarValue::TimestampMicrosecond(Some(started), Some("UTC".into())),
        ),
        constant(
            "pg_type_is_visible",
            vec![DataType::Int32],
            ScalarValue::Boolean(Some(true)),
        ),
        constant(
            "pg_function_is_visible",
            vec![DataType::Int32],
            ScalarValue::Boolean(Some(true)),
        ),
        constant(
            "pg_collation_is_visible",
            vec![DataType::Int32],
            ScalarValue::Boolean(Some(true)),
        ),
        // rankql has no sequences (SQLAlchemy asks when it reflects a table's columns).
        constant(
            "pg_get_serial_sequence",
            vec![DataType::Utf8, DataType::Utf8],
            ScalarValue::Utf8(None),
        ),
        constant("txid_current", vec![], ScalarValue::Int64(Some(1))),
        constant(
            "pg_is_wal_replay_paused",
            vec![],
            ScalarValue::Boolean(Some(false)),
        ),
        json_build_object(),
        no_text("obj_description", &[1, 2]),
        no_text("col_description", &[2]),
        no_text("shobj_description", &[2]),
        no_text("pg_get_function_result", &[1]),
        no_text("pg_get_function_arguments", &[1]),
        no_text("pg_tablespace_location", &[1]),
    ] {
        context.register_udf(udf);
    }
}

/// A function that answers NULL text for any arguments of the given counts.
fn no_text(name: &'static str, argument_counts: &[usize]) -> ScalarUDF {
    ScalarUDF::new_from_impl(NoText {
        name,
        signature: Signature::one_of(
            argument_counts
                .iter()
                .map(|count| TypeSignature::Any(*count))
                .collect(),
            Volatility::Stable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NoText {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for NoText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `json_build_object(key, value, …)`: a JSON object as text, numbers and booleans kept
/// as JSON numbers and booleans. SQLAlchemy's column reflection builds identity and
/// collation details with it.
fn json_build_object() -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return exec_err!(
                "json_build_object takes key, value pairs; got {} arguments",
                args.args.len()
            );
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut objects = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?.to_string();
                let value = match ScalarValue::try_from_array(&pair[1], row)? {
                    value if value.is_null() => serde_json::Value::Null,
                    ScalarValue::Boolean(Some(flag)) => serde_json::Value::Bool(flag),
                    value if value.data_type().is_numeric() => {
                        serde_json::from_str(&value.to_string())
                            .unwrap_or(serde_json::Value::String(value.to_string()))
                    }
                    value => serde_json::Value::String(value.to_string()),
                };
                object.insert(key, value);
            }
            objects.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(objects))))
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A function of fixed arguments that always returns `value`.
fn constant(name: &str, arguments: Vec<DataType>, value: ScalarValue) -> ScalarUDF {
    let return_type = value.data_type();
    create_udf(
        name,
        arguments,
        return_type,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// `current_setting(name)`: the few settings clients read; unknown names are an error,
/// as in Postgres.
fn current_setting() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let values = names[0]
                .as_string::<i32>()
                .iter()
                .map(|name| name.map(setting).transpose())
                .collect::<Result<StringArray>>()?;
            let output: ArrayRef = Arc::new(values);
            if matches!(args[0], ColumnarValue::Scalar(_)) {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &output, 0,
                )?));
            }
            Ok(ColumnarValue::Array(output))
        }),
    )
}

fn setting(name: &str) -> Result<String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "server_version_num" => SERVER_VERSION_NUM.to_string(),
        "server_version" => server_version(),
        "server_encoding" | "client_encoding" => "UTF8".to_string(),
        "datestyle" => "ISO, MDY".to_string(),
        "timezone" => "UTC".to_string(),
        "standard_conforming_strings" => "on".to_string(),
        "integer_datetimes" => "on".to_string(),
        "max_identifier_length" => "63".to_string(),
        "search_path" => "public".to_string(),
        "transaction_isolation" | "default_transaction_isolation" => "read committed".to_string(),
        "bytea_output" => "hex".to_string(),
        "is_superuser" => "on".to_string(),
        other => return exec_err!("unrecognized configuration parameter \"{other}\""),
    })
}
