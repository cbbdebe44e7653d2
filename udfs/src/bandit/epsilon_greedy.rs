//! `epsilon_greedy(score, epsilon [, seed])`: ε-greedy exploration as a ranking key.
//!
//! With probability 1 − ε the row keeps its `score`; with probability ε it gets a uniform
//! random score in [0, 1) instead. Ranking by the result exploits the best items most of
//! the time and shows random ones the rest, which is ε-greedy for scores in [0, 1] (CTRs,
//! probabilities). With a seed the choice is reproducible.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use rand::Rng;

use super::{coerce_with_seed, row_rng};
use crate::columnar::scalar_if_all_scalar;

/// The `epsilon_greedy` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EpsilonGreedy {
    signature: Signature,
}

impl Default for EpsilonGreedy {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Volatile),
        }
    }
}

/// The ranking key: `score`, or with probability `epsilon` a uniform draw in [0, 1).
pub fn epsilon_greedy_key(score: f64, epsilon: f64, seed: Option<i64>) -> Result<f64> {
    if !(0.0..=1.0).contains(&epsilon) {
        return exec_err!("epsilon_greedy: epsilon must be in [0, 1], got {epsilon}");
    }
    let mut rng = row_rng(seed);
    Ok(if rng.random::<f64>() < epsilon {
        rng.random::<f64>()
    } else {
        score
    })
}

impl ScalarUDFImpl for EpsilonGreedy {
    fn name(&self) -> &str {
        "epsilon_greedy"
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
        let scores = arrays[0].as_primitive::<Float64Type>();
        let epsilons = arrays[1].as_primitive::<Float64Type>();
        let seeds = arrays.get(2).map(|s| s.as_primitive::<Int64Type>());
        let values = (0..scores.len())
            .map(|i| {
                if scores.is_null(i) || epsilons.is_null(i) {
                    return Ok(None);
                }
                let seed = seeds.and_then(|s| s.is_valid(i).then(|| s.value(i)));
                epsilon_greedy_key(scores.value(i), epsilons.value(i), seed).map(Some)
            })
            .collect::<Result<Float64Array>>()?;
        scalar_if_all_scalar(&args.args, Arc::new(values))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "score with probability 1-ε, else a uniform random key in [0,1); reproducible with a seed.",
                "epsilon_greedy(score, epsilon [, seed])",
            )
            .with_sql_example("SELECT item_id FROM ctr ORDER BY epsilon_greedy(ctr, 0.1) DESC LIMIT 10")
            .build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explores_about_epsilon_of_the_time() {
        let explored = (0..10_000)
            .filter(|seed| epsilon_greedy_key(2.0, 0.1, Some(*seed)).unwrap() != 2.0)
            .count();
        assert!((800..1200).contains(&explored), "{explored}");
    }

    #[test]
    fn epsilon_outside_unit_interval_is_an_error() {
        assert!(epsilon_greedy_key(0.5, 1.5, None).is_err());
    }
}
