//! `thompson(successes, failures [, seed])`: a Thompson-sampling score.
//!
//! Draws from Beta(successes + 1, failures + 1), the posterior of a click-through rate
//! under a uniform prior. Items with few impressions get wide posteriors and so get
//! explored; with a seed the draw is reproducible, so tests and replays are stable.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use rand_distr::{Beta, Distribution};

use super::{coerce_with_seed, row_rng};
use crate::columnar::scalar_if_all_scalar;

/// The `thompson` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Thompson {
    signature: Signature,
}

impl Default for Thompson {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Volatile),
        }
    }
}

/// One draw from Beta(successes + 1, failures + 1).
pub fn thompson_sample(successes: f64, failures: f64, seed: Option<i64>) -> Result<f64> {
    if !(successes >= 0.0 && failures >= 0.0) {
        return exec_err!(
            "thompson: successes and failures must be ≥ 0, got {successes} and {failures}"
        );
    }
    let beta = Beta::new(successes + 1.0, failures + 1.0)
        .or_else(|e| exec_err!("thompson: invalid Beta({successes} + 1, {failures} + 1): {e}"))?;
    Ok(beta.sample(&mut row_rng(seed)))
}

impl ScalarUDFImpl for Thompson {
    fn name(&self) -> &str {
        "thompson"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_with_seed(self.name(), arg_types, 2, 2)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let successes = arrays[0].as_primitive::<Float64Type>();
        let failures = arrays[1].as_primitive::<Float64Type>();
        let seeds = arrays.get(2).map(|s| s.as_primitive::<Int64Type>());
        let values = (0..successes.len())
            .map(|i| {
                if successes.is_null(i) || failures.is_null(i) {
                    return Ok(None);
                }
                let seed = seeds.and_then(|s| s.is_valid(i).then(|| s.value(i)));
                thompson_sample(successes.value(i), failures.value(i), seed).map(Some)
            })
            .collect::<Result<Float64Array>>()?;
        scalar_if_all_scalar(&args.args, Arc::new(values))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "A draw from Beta(successes + 1, failures + 1); reproducible when a seed is given.",
                "thompson(successes, failures [, seed])",
            )
            .with_sql_example("SELECT item_id FROM ctr ORDER BY thompson(clicks, views - clicks, item_id) DESC LIMIT 10")
            .build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat() {
        assert_eq!(
            thompson_sample(3.0, 7.0, Some(42)).unwrap(),
            thompson_sample(3.0, 7.0, Some(42)).unwrap()
        );
    }

    #[test]
    fn mean_matches_the_posterior() {
        let n = 20_000;
        let mean: f64 = (0..n)
            .map(|seed| thompson_sample(30.0, 70.0, Some(seed)).unwrap())
            .sum::<f64>()
            / n as f64;
        // Beta(31, 71) has mean 31/102.
        assert!((mean - 31.0 / 102.0).abs() < 0.005, "{mean}");
    }

    #[test]
    fn negative_counts_are_rejected() {
        assert!(thompson_sample(-1.0, 0.0, None).is_err());
    }
}
