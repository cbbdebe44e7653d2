//! Small helpers shared by scalar functions.

use datafusion::arrow::array::ArrayRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// Returns `output` as a scalar when every argument was a scalar (so constant folding and
/// constant arguments stay cheap), and as an array otherwise.
pub fn scalar_if_all_scalar(args: &[ColumnarValue], output: ArrayRef) -> Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &output, 0,
        )?));
    }
    Ok(ColumnarValue::Array(output))
}
