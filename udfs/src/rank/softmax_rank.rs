//! `softmax_rank(score [, temperature]) OVER (PARTITION BY …)`: scores → probabilities.
//!
//! Why: a ranking shown to a user, or sampled from by an exploration policy, wants
//! p(i|u) = exp(sᵢ/T) / Σⱼ exp(sⱼ/T) within each partition. Computed with the
//! log-sum-exp trick (subtracting the partition's maximum first), so scores in the
//! thousands do not overflow. NULL scores get a NULL probability and take no share;
//! equal scores get equal probabilities; a partition of only NULLs is all NULL.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    window_doc_sections::DOC_SECTION_ANALYTICAL, Documentation, DocumentationBuilder,
    PartitionEvaluator, Signature, Volatility, WindowUDFImpl,
};

/// The `softmax_rank` window UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SoftmaxRank {
    signature: Signature,
}

impl Default for SoftmaxRank {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for SoftmaxRank {
    fn name(&self) -> &str {
        "softmax_rank"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 2 {
            return plan_err!(
                "softmax_rank takes a score and an optional temperature, got {} arguments",
                arg_types.len()
            );
        }
        for data_type in arg_types {
            if !(data_type.is_numeric() || data_type.is_null()) {
                return plan_err!("softmax_rank: arguments must be numbers, got {data_type}");
            }
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(SoftmaxEvaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Float64,
            true,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_ANALYTICAL,
                "Softmax probability of each row's score within its window partition: \
                 exp(s/T) / Σ exp(s/T). NULL scores → NULL and take no share.",
                "softmax_rank(score [, temperature]) OVER (PARTITION BY ...)",
            )
            .with_sql_example(
                "SELECT user_id, item_id, softmax_rank(score) OVER (PARTITION BY user_id) FROM scores",
            )
            .build()
        }))
    }
}

#[derive(Debug)]
struct SoftmaxEvaluator;

impl PartitionEvaluator for SoftmaxEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let scores = values[0].as_primitive::<Float64Type>();
        let temperature = match values.get(1) {
            Some(t) => partition_temperature(t.as_primitive::<Float64Type>())?,
            None => 1.0,
        };
        Ok(Arc::new(softmax(scores, temperature, num_rows)))
    }
}

/// The temperature, which must be one positive number for the whole partition.
fn partition_temperature(temperatures: &Float64Array) -> Result<f64> {
    let mut found = None;
    for t in temperatures.iter().flatten() {
        if !(t > 0.0 && t.is_finite()) {
            return exec_err!("softmax_rank: temperature must be a positive number, got {t}");
        }
        match found {
            Some(previous) if previous != t => {
                return exec_err!(
                    "softmax_rank: temperature must be the same for the whole partition, got {previous} and {t}"
                )
            }
            _ => found = Some(t),
        }
    }
    Ok(found.unwrap_or(1.0))
}

/// Numerically stable softmax of `scores / temperature`.
fn softmax(scores: &Float64Array, temperature: f64, num_rows: usize) -> Float64Array {
    let max = scores
        .iter()
        .flatten()
        .filter(|s| !s.is_nan())
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return Float64Array::new_null(num_rows);
    }
    let total: f64 = scores
        .iter()
        .flatten()
        .filter(|s| !s.is_nan())
        .map(|s| ((s - max) / temperature).exp())
        .sum();
    scores
        .iter()
        .map(|s| {
            s.filter(|s| !s.is_nan())
                .map(|s| ((s - max) / temperature).exp() / total)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    #[test]
    fn sums_to_one_for_huge_scores() {
        let scores = Float64Array::from(vec![Some(5000.0), Some(4999.0), None, Some(4000.0)]);
        let p = softmax(&scores, 1.0, 4);
        let total: f64 = p.iter().flatten().sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(p.is_null(2));
        assert!((p.value(0) / p.value(1) - std::f64::consts::E).abs() < 1e-9);
    }

    #[test]
    fn high_temperature_flattens() {
        let scores = Float64Array::from(vec![1.0, 2.0]);
        let p = softmax(&scores, 1e6, 2);
        assert!((p.value(0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn all_null_partition_is_null() {
        let scores = Float64Array::from(vec![None, None]);
        assert_eq!(softmax(&scores, 1.0, 2).null_count(), 2);
    }

    #[test]
    fn bad_temperature_is_an_error() {
        assert!(partition_temperature(&Float64Array::from(vec![0.0])).is_err());
        assert!(partition_temperature(&Float64Array::from(vec![1.0, 2.0])).is_err());
    }
}
