//! Small Postgres functions that BI tools and drivers call on connect, which neither
//! DataFusion nor datafusion-postgres provide: `current_setting`, `set_config` (to the
//! value a setting already has), `version`,
//! `pg_is_in_recovery`, `pg_my_temp_schema`, `pg_postmaster_start_time`,
//! `pg_type_is_visible`, `pg_function_is_visible`, `pg_collation_is_visible`, `json_build_object`,
//! `pg_get_serial_sequence`, `txid_current`, `pg_is_wal_replay_paused`, the comment
//! functions `obj_description`, `col_description` and `shobj_description` (rankql has no
//! `COMMENT`, so NULL), `pg_get_function_result`, `pg_get_function_arguments` and
//! `pg_get_function_sqlbody`
//! (NULL: rankql has no SQL-defined functions to describe), `pg_tablespace_location` (NULL:
//! the default tablespaces have no location), `pg_table_size`, `pg_indexes_size` and
//! `pg_database_size` (NULL: not reported yet), `pg_size_pretty`,
//! `rankql_prefix_elements` (psql's `\d+`);
//! and the version rankql identifies as.
//!
//! Why: Grafana asks `current_setting('server_version_num')` before anything else, and
//! DataGrip, pgcli, Superset and SQLAlchemy fail their first screen on the others. The
//! answers are those of a single primary server without sequences or transactions.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
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
        set_config(),
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
        // Sizes rankql does not report yet: NULL (unknown), never a made-up number, so
        // psql's `\dt+`, `\di+` and `\l+` list their rows with an empty size.
        constant(
            "pg_table_size",
            vec![DataType::Int32],
            ScalarValue::Int64(None),
        ),
        constant(
            "pg_indexes_size",
            vec![DataType::Int32],
            ScalarValue::Int64(None),
        ),
        constant(
            "pg_database_size",
            vec![DataType::Utf8],
            ScalarValue::Int64(None),
        ),
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
        no_text("pg_get_function_sqlbody", &[1]),
        no_text("pg_tablespace_location", &[1]),
        constant("age", vec![DataType::Int64], ScalarValue::Int32(Some(0))),
        ScalarUDF::new_from_impl(Format {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(ExpandArray {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        pg_size_pretty(),
        ScalarUDF::new_from_impl(PrefixElements {
            signature: Signature::any(2, Volatility::Immutable),
        }),
    ] {
        context.register_udf(udf);
    }
}

/// `rankql_prefix_elements(prefix, texts)`: each element of a text array with `prefix`
/// in front (NULL elements stay NULL). It is what psql's `\d+` asks with
/// `array(select 'toast.' || x from unnest(tc.reloptions) x)`, a correlated subquery
/// DataFusion cannot run; the catalog rewrites turn that shape into this function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PrefixElements {
    signature: Signature,
}

impl ScalarUDFImpl for PrefixElements {
    fn name(&self) -> &str {
        "rankql_prefix_elements"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [prefix, texts] = args.args.as_slice() else {
            return exec_err!("rankql_prefix_elements takes a prefix and a text array");
        };
        let prefix = prefix.to_array(rows)?;
        let prefix = datafusion::arrow::compute::cast(&prefix, &DataType::Utf8)?;
        let prefix = prefix.as_string::<i32>();
        let texts = texts.to_array(rows)?;
        let list_type = self.return_type(&[])?;
        if texts.data_type().is_null() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_null_array(&list_type, rows),
            ));
        }
        let texts = datafusion::arrow::compute::cast(&texts, &list_type)?;
        let texts = texts.as_list::<i32>();
        let mut prefixed = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::StringBuilder::new(),
        );
        for row in 0..rows {
            if texts.is_null(row) || prefix.is_null(row) {
                prefixed.append_null();
                continue;
            }
            let elements = texts.value(row);
            for element in elements.as_string::<i32>() {
                prefixed
                    .values()
                    .append_option(element.map(|e| format!("{}{e}", prefix.value(row))));
            }
            prefixed.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(prefixed.finish())))
    }
}

/// `format(template, args…)`: PostgreSQL's `%s` (text; NULL is empty), `%I` (quoted
/// identifier when needed), `%L` (quoted literal; NULL is `NULL`) and `%%`. Metabase
/// builds type names and qualified table names with it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some((template, values)) = arrays.split_first() else {
            return exec_err!("format needs a template");
        };
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let template = ScalarValue::try_from_array(template, row)?;
            if template.is_null() {
                out.push(None);
                continue;
            }
            let values = values
                .iter()
                .map(|array| ScalarValue::try_from_array(array, row))
                .collect::<Result<Vec<_>>>()?;
            out.push(Some(format_row(&template.to_string(), &values)?));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

fn format_row(template: &str, values: &[ScalarValue]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut next = values.iter();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next();
        if spec == Some('%') {
            out.push('%');
            continue;
        }
        let Some(value) = next.next() else {
            return exec_err!("format: too few arguments for {template:?}");
        };
        let text = (!value.is_null()).then(|| value.to_string());
        match (spec, text) {
            (Some('s'), text) => out.push_str(text.as_deref().unwrap_or("")),
            (Some('I'), Some(text)) => out.push_str(&quote_identifier(&text)),
            (Some('I'), None) => return exec_err!("format: NULL cannot be an identifier"),
            (Some('L'), Some(text)) => out.push_str(&format!("'{}'", text.replace('\'', "''"))),
            (Some('L'), None) => out.push_str("NULL"),
            (other, _) => {
                return exec_err!("format: unsupported conversion %{}", other.unwrap_or(' '))
            }
        }
    }
    Ok(out)
}

/// `name` as PostgreSQL's `quote_ident` writes it: bare when lower-case letters, digits
/// and `_` (not starting with a digit), else in double quotes.
fn quote_identifier(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match bare {
        true => name.to_string(),
        false => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// `information_schema._pg_expandarray(a)`: each element of `a` with its position, as a
/// list of `(x, n)` (pgjdbc's key columns; the server's rewrites unnest it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn element_fields(element: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, false),
        ])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        let element = match arguments.first() {
            Some(DataType::List(field)) | Some(DataType::LargeList(field)) => {
                field.data_type().clone()
            }
            other => return exec_err!("_pg_expandarray takes an array, not {other:?}"),
        };
        Ok(DataType::new_list(
            DataType::Struct(Self::element_fields(&element)),
            true,
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(lists) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return exec_err!("_pg_expandarray takes an array");
        };
        // Positions for the whole child array (a sliced list's offsets need not start at 0).
        let mut positions = vec![0i32; lists.values().len()];
        for window in lists.offsets().windows(2) {
            let (start, end) = (window[0] as usize, window[1] as usize);
            for (position, slot) in positions[start..end].iter_mut().enumerate() {
                *slot = position as i32 + 1;
            }
        }
        let fields = Self::element_fields(lists.values().data_type());
        let elements = StructArray::try_new(
            fields.clone(),
            vec![
                lists.values().clone(),
                Arc::new(Int32Array::from(positions)),
            ],
            None,
        )?;
        let field = Arc::new(Field::new_list_field(DataType::Struct(fields), true));
        let result = ListArray::try_new(
            field,
            lists.offsets().clone(),
            Arc::new(elements),
            lists.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(result)))
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

/// `pg_size_pretty(bytes)`: PostgreSQL's rounding and units (`10 kB`, `1536 MB`), for
/// psql's `\dt+` and `\di+` and the size columns of BI tools.
fn pg_size_pretty() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let sizes = sizes[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let pretty: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(pretty)))
        }),
    )
}

/// PostgreSQL's `pg_size_pretty` on one size: bytes below 10 kB, then each unit while the
/// number stays below 20,480 (it keeps one more bit to round half away from zero).
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT * 2 - 1 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
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

/// `set_config(name, value, is_local)`: rankql's sessions change settings with `SET`;
/// this answers `value` when it is already the setting (pgAdmin asks for
/// `bytea_output = 'hex'` on connect), and is an error naming `SET` otherwise.
fn set_config() -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|arg| match arg {
                    ColumnarValue::Array(array) => Some(array.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (names, values) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                if names.is_null(row) || values.is_null(row) {
                    out.push(None);
                    continue;
                }
                let (name, value) = (names.value(row), values.value(row));
                if !setting(name)?.eq_ignore_ascii_case(value) {
                    return exec_err!(
                        "set_config cannot change {name} in rankql; use SET {name} = '{value}'"
                    );
                }
                out.push(Some(value.to_string()));
            }
            let output: ArrayRef = Arc::new(StringArray::from(out));
            match rows == 1 && args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                true => Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &output, 0,
                )?)),
                false => Ok(ColumnarValue::Array(output)),
            }
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

#[cfg(test)]
mod tests {
    use super::size_pretty;

    /// The answers of PostgreSQL 15's `pg_size_pretty`.
    #[test]
    fn sizes_read_as_postgresql_writes_them() {
        for (bytes, pretty) in [
            (0, "0 bytes"),
            (10_239, "10239 bytes"),
            (10_240, "10 kB"),
            (10_485_760, "10 MB"),
            (1_073_741_824, "1024 MB"),
            (-10_240, "-10 kB"),
        ] {
            assert_eq!(size_pretty(bytes), pretty, "{bytes}");
        }
    }
}
