//! `ab_bucket(user_id, experiment [, weights])`: which arm of an experiment a user is in.
//!
//! The hash is XXH3-64 (seed 0) of the UTF-8 bytes of `experiment || ':' || user_id`
//! (the user id as text). Its top 53 bits give u ∈ [0, 1), and the arm is the first
//! whose cumulative normalised weight exceeds u. The same user lands in the same arm on
//! every run and machine; different experiments are independent. Weights default to two
//! equal arms and may be given as `'[90, 10]'` or `ARRAY[0.9, 0.1]`.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_OTHER, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use xxhash_rust::xxh3::xxh3_64;

use crate::columnar::scalar_if_all_scalar;
use crate::vector::args::{check_vector_arg, VectorArg};

/// The `ab_bucket` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AbBucket {
    signature: Signature,
}

impl Default for AbBucket {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The arm (0-based) of `user_id` in `experiment` for the given arm weights.
pub fn bucket(user_id: &str, experiment: &str, weights: &[f32]) -> Result<i32> {
    if weights.is_empty() || weights.iter().any(|w| w.is_nan() || *w < 0.0) {
        return exec_err!("ab_bucket: weights must be non-negative numbers, got {weights:?}");
    }
    let total: f64 = weights.iter().map(|w| *w as f64).sum();
    if total <= 0.0 {
        return exec_err!("ab_bucket: weights must not all be zero");
    }
    let key = format!("{experiment}:{user_id}");
    let unit = (xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
    let mut cumulative = 0.0;
    for (arm, weight) in weights.iter().enumerate() {
        cumulative += *weight as f64 / total;
        if unit < cumulative {
            return Ok(arm as i32);
        }
    }
    Ok(weights.iter().rposition(|w| *w > 0.0).unwrap_or(0) as i32)
}

impl ScalarUDFImpl for AbBucket {
    fn name(&self) -> &str {
        "ab_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [_, _] => Ok(vec![DataType::Utf8, DataType::Utf8]),
            [_, _, weights] => {
                check_vector_arg(self.name(), 3, weights)?;
                Ok(vec![DataType::Utf8, DataType::Utf8, weights.clone()])
            }
            _ => plan_err!(
                "ab_bucket takes (user_id, experiment [, weights]), got {} arguments",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let users = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let experiments = cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let (users, experiments) = (users.as_string::<i32>(), experiments.as_string::<i32>());
        let weights = match args.args.get(2) {
            Some(w) => Some(VectorArg::try_new(w, self.name())?),
            None => None,
        };
        let buckets = (0..rows)
            .map(|i| {
                if users.is_null(i) || experiments.is_null(i) {
                    return Ok(None);
                }
                let arm_weights = match &weights {
                    Some(w) => match w.row(i) {
                        Some(row) => row,
                        None => return Ok(None),
                    },
                    None => &[1.0, 1.0][..],
                };
                bucket(users.value(i), experiments.value(i), arm_weights).map(Some)
            })
            .collect::<Result<Int32Array>>()?;
        scalar_if_all_scalar(&args.args, Arc::new(buckets))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_OTHER,
                "Deterministic experiment arm (0-based) of a user: XXH3-64 of 'experiment:user_id' \
                 mapped onto the cumulative weights (default two equal arms).",
                "ab_bucket(user_id, experiment [, weights])",
            )
            .with_sql_example("SELECT ab_bucket(user_id, 'new-ranker', '[90, 10]') FROM users")
            .build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_weighted() {
        assert_eq!(
            bucket("42", "exp", &[1.0, 1.0]).unwrap(),
            bucket("42", "exp", &[1.0, 1.0]).unwrap()
        );
        let treated = (0..100_000)
            .filter(|id| bucket(&id.to_string(), "exp", &[90.0, 10.0]).unwrap() == 1)
            .count();
        assert!((9_500..10_500).contains(&treated), "{treated}");
    }

    #[test]
    fn zero_weight_arm_gets_nobody() {
        assert!((0..10_000).all(|id| bucket(&id.to_string(), "e", &[1.0, 0.0]).unwrap() == 0));
    }

    #[test]
    fn bad_weights_are_rejected() {
        assert!(bucket("1", "e", &[]).is_err());
        assert!(bucket("1", "e", &[-1.0, 2.0]).is_err());
    }
}
