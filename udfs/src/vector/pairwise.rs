//! The shared shape of `cosine`, `dot` and `l2_distance`: two vectors in, a double out.
//!
//! Why: the three differ only in their arithmetic. Argument decoding, NULL handling,
//! dimension checks and the fast path for a constant query vector are written once here;
//! each function's file supplies a [`PairwiseKernel`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::args::{check_vector_arg, declared_dimension, dimension_mismatch, VectorArg};
use super::kernels;

/// The arithmetic of one pairwise vector function.
pub trait PairwiseKernel: Debug + Send + Sync + 'static {
    /// The SQL name.
    const NAME: &'static str;

    /// The function's documentation, shown by `SHOW FUNCTIONS`-style tooling.
    fn documentation() -> &'static Documentation;

    /// The result for two vectors of equal dimension; `None` where it is undefined.
    fn pair(a: &[f32], b: &[f32]) -> Option<f64>;

    /// The result for a row against a constant query whose squared norm is precomputed.
    /// Overridden where the precomputation saves work (cosine).
    #[inline]
    fn against_query(row: &[f32], query: &[f32], _query_norm_sq: f32) -> Option<f64> {
        Self::pair(row, query)
    }

    /// [`Self::against_query`] for every row of a contiguous column (`query.len()`
    /// values per row), appended to `out`, with NaN where the result is undefined.
    /// Overridden where a whole-column kernel is faster (cosine).
    fn against_query_rows(rows: &[f32], query: &[f32], query_norm_sq: f32, out: &mut Vec<f64>) {
        out.extend(
            rows.chunks_exact(query.len())
                .map(|row| Self::against_query(row, query, query_norm_sq).unwrap_or(f64::NAN)),
        );
    }
}

/// A scalar UDF computing `K` for every row.
#[derive(Debug)]
pub struct PairwiseUdf<K: PairwiseKernel> {
    signature: Signature,
    kernel: PhantomData<K>,
}

impl<K: PairwiseKernel> Default for PairwiseUdf<K> {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            kernel: PhantomData,
        }
    }
}

impl<K: PairwiseKernel> PartialEq for PairwiseUdf<K> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl<K: PairwiseKernel> Eq for PairwiseUdf<K> {}
impl<K: PairwiseKernel> std::hash::Hash for PairwiseUdf<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        K::NAME.hash(state);
    }
}

impl<K: PairwiseKernel> ScalarUDFImpl for PairwiseUdf<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "{} takes two vectors, got {} arguments",
                K::NAME,
                arg_types.len()
            );
        }
        for (position, data_type) in arg_types.iter().enumerate() {
            check_vector_arg(K::NAME, position + 1, data_type)?;
        }
        if let (Some(left), Some(right)) = (
            declared_dimension(&arg_types[0]),
            declared_dimension(&arg_types[1]),
        ) {
            if left != right {
                return plan_err!("{}: vector dimensions differ: {left} vs {right}", K::NAME);
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let left = VectorArg::try_new(&args.args[0], K::NAME)?;
        let right = VectorArg::try_new(&args.args[1], K::NAME)?;
        match (&left, &right) {
            (VectorArg::Constant(a), VectorArg::Constant(b)) => {
                let value = match (a, b) {
                    (Some(a), Some(b)) => evaluate_one::<K>(a, b)?,
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Float64(value)))
            }
            (VectorArg::Column(rows), VectorArg::Constant(query))
            | (VectorArg::Constant(query), VectorArg::Column(rows)) => {
                let Some(query) = query else {
                    return Ok(ColumnarValue::Array(Arc::new(Float64Array::new_null(
                        rows.len(),
                    ))));
                };
                let query_norm_sq = kernels::squared_norm(query);
                if let Some((flat, dimension)) = rows.contiguous() {
                    if dimension == query.len() {
                        return Ok(ColumnarValue::Array(against_query_column::<K>(
                            flat,
                            rows.nulls(),
                            query,
                            query_norm_sq,
                        )));
                    }
                }
                let values = (0..rows.len())
                    .map(|i| match rows.row(i) {
                        Some(row) if row.len() != query.len() => {
                            dimension_mismatch(K::NAME, row.len(), query.len())
                        }
                        Some(row) => Ok(K::against_query(row, query, query_norm_sq)),
                        None => Ok(None),
                    })
                    .collect::<Result<Float64Array>>()?;
                Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
            }
            (VectorArg::Column(a), VectorArg::Column(_)) => {
                let values = (0..a.len())
                    .map(|i| match (left.row(i), right.row(i)) {
                        (Some(a), Some(b)) => evaluate_one::<K>(a, b),
                        _ => Ok(None),
                    })
                    .collect::<Result<Float64Array>>()?;
                Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
            }
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(K::documentation())
    }
}

/// A contiguous column against a constant query in one pass; undefined results and NULL
/// rows are NULL.
fn against_query_column<K: PairwiseKernel>(
    rows: &[f32],
    row_nulls: Option<&NullBuffer>,
    query: &[f32],
    query_norm_sq: f32,
) -> ArrayRef {
    let mut values = Vec::with_capacity(rows.len() / query.len());
    K::against_query_rows(rows, query, query_norm_sq, &mut values);
    let defined = NullBuffer::new(BooleanBuffer::collect_bool(values.len(), |i| {
        !values[i].is_nan()
    }));
    let nulls = NullBuffer::union(row_nulls, Some(&defined)).filter(|n| n.null_count() > 0);
    Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
}

fn evaluate_one<K: PairwiseKernel>(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    if a.len() != b.len() {
        return dimension_mismatch(K::NAME, a.len(), b.len());
    }
    Ok(K::pair(a, b))
}
