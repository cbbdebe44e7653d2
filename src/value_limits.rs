//! A limit on the size of one value made by a string function, as PostgreSQL has (1 GB):
//! `repeat('x', 2147483647)` would otherwise allocate gigabytes outside DataFusion's
//! memory pool, for minutes, and take the server's memory with it.
//!
//! `repeat`, `lpad` and `rpad` are the functions whose output is not bounded by their
//! input's size; each is wrapped so that a call whose result would exceed
//! [`MAX_VALUE_BYTES`] fails with 54000 before anything is allocated.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use crate::sqlstate::{self, SqlState};

/// The largest value a string function may produce: PostgreSQL's limit on one field.
pub const MAX_VALUE_BYTES: usize = 1 << 30;

/// A string function's result would be larger than [`MAX_VALUE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{function}: the result would be {bytes} bytes, over the limit of {MAX_VALUE_BYTES} bytes \
     for one value"
)]
pub struct ValueTooLarge {
    function: &'static str,
    bytes: u128,
}

impl SqlState for ValueTooLarge {
    fn sqlstate(&self) -> &'static str {
        sqlstate::PROGRAM_LIMIT_EXCEEDED
    }
}

/// How a wrapped function's result size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: bytes of text × n.
    Repeat,
    /// `lpad/rpad(text, n [, fill])`: n characters of up to 4 bytes.
    Pad,
}

/// A DataFusion string function behind a size check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizeChecked {
    inner: Arc<ScalarUDF>,
    name: &'static str,
    growth: Growth,
}

/// Replaces `repeat`, `lpad` and `rpad` in `context` with size-checked versions.
pub fn register(context: &SessionContext) {
    for (name, growth) in [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
    ] {
        if let Ok(inner) = context.state().udf(name) {
            context.register_udf(ScalarUDF::new_from_impl(SizeChecked {
                inner,
                name,
                growth,
            }));
        }
    }
}

/// The largest non-null value of the argument at `index`, as an integer.
fn max_count(args: &[ColumnarValue], index: usize, rows: usize) -> Result<i64> {
    let Some(arg) = args.get(index) else {
        return Ok(0);
    };
    let array = cast(&arg.to_array(rows)?, &DataType::Int64)?;
    Ok(array
        .as_primitive::<Int64Type>()
        .iter()
        .flatten()
        .max()
        .unwrap_or(0))
}

/// The longest non-null text of the argument at `index`, in bytes.
fn max_text_bytes(args: &[ColumnarValue], index: usize, rows: usize) -> Result<usize> {
    let Some(arg) = args.get(index) else {
        return Ok(0);
    };
    if let ColumnarValue::Scalar(scalar) = arg {
        return Ok(match scalar {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s.len(),
            _ => 0,
        });
    }
    let array = cast(&arg.to_array(rows)?, &DataType::Utf8)?;
    let strings = array.as_string::<i32>();
    Ok((0..strings.len())
        .filter(|i| strings.is_valid(*i))
        .map(|i| strings.value(i).len())
        .max()
        .unwrap_or(0))
}

impl SizeChecked {
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let bytes: u128 = match self.growth {
            Growth::Repeat => {
                max_text_bytes(args, 0, rows)? as u128 * max_count(args, 1, rows)?.max(0) as u128
            }
            Growth::Pad => max_count(args, 1, rows)?.max(0) as u128 * 4,
        };
        if bytes > MAX_VALUE_BYTES as u128 {
            return Err(DataFusionError::External(Box::new(ValueTooLarge {
                function: self.name,
                bytes,
            })));
        }
        Ok(())
    }
}

impl ScalarUDFImpl for SizeChecked {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn huge_values_are_refused_before_allocation() {
        let context = SessionContext::new();
        register(&context);
        let error = context
            .sql("SELECT repeat('x', 2147483647)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(crate::sqlstate::sqlstate_of(&error), "54000", "{error}");
        let error = context
            .sql("SELECT lpad('a', 900000000)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("lpad"), "{error}");
        let ok = context
            .sql("SELECT repeat('ab', 3) AS r, rpad('a', 3, 'b') AS p")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(ok[0].num_rows(), 1);
    }
}
