//! `ucb(clicks, impressions, total_impressions [, c])`: the UCB1 optimistic score.
//!
//! mean + c·√(2·ln N / n): the click-through rate plus a bonus that shrinks as an item is
//! shown more. An item never shown (`impressions` = 0) scores +Infinity, so it is tried
//! first. `c` defaults to 1 (UCB1).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::columnar::scalar_if_all_scalar;

/// The `ucb` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Ucb {
    signature: Signature,
}

impl Default for Ucb {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The UCB1 score with exploration weight `c`.
pub fn ucb_score(clicks: f64, impressions: f64, total: f64, c: f64) -> Result<f64> {
    if clicks < 0.0 || impressions < 0.0 || c < 0.0 || clicks > impressions {
        return exec_err!(
            "ucb: need 0 ≤ clicks ≤ impressions and c ≥ 0, got clicks {clicks}, impressions {impressions}, c {c}"
        );
    }
    if impressions == 0.0 {
        return Ok(f64::INFINITY);
    }
    let bonus = if total > 1.0 {
        (2.0 * total.ln() / impressions).sqrt()
    } else {
        0.0
    };
    Ok(clicks / impressions + c * bonus)
}

impl ScalarUDFImpl for Ucb {
    fn name(&self) -> &str {
        "ucb"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(3..=4).contains(&arg_types.len()) {
            return plan_err!("ucb takes 3 or 4 arguments, got {}", arg_types.len());
        }
        if let Some(bad) = arg_types.iter().find(|t| !(t.is_numeric() || t.is_null())) {
            return plan_err!("ucb: arguments must be numbers, got {bad}");
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let columns: Vec<&Float64Array> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let values = (0..columns[0].len())
            .map(|i| {
                if columns.iter().any(|c| c.is_null(i)) {
                    return Ok(None);
                }
                let c = columns.get(3).map_or(1.0, |c| c.value(i));
                ucb_score(
                    columns[0].value(i),
                    columns[1].value(i),
                    columns[2].value(i),
                    c,
                )
                .map(Some)
            })
            .collect::<Result<Float64Array>>()?;
        scalar_if_all_scalar(&args.args, Arc::new(values))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "UCB1 score clicks/impressions + c·sqrt(2·ln(total)/impressions); +Infinity when impressions = 0.",
                "ucb(clicks, impressions, total_impressions [, c])",
            )
            .with_sql_example("SELECT item_id, ucb(clicks, views, SUM(views) OVER ()) FROM ctr")
            .build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unexplored_items_come_first() {
        assert_eq!(ucb_score(0.0, 0.0, 100.0, 1.0).unwrap(), f64::INFINITY);
    }

    #[test]
    fn bonus_shrinks_with_impressions() {
        let few = ucb_score(1.0, 10.0, 1000.0, 1.0).unwrap();
        let many = ucb_score(100.0, 1000.0, 1000.0, 1.0).unwrap();
        assert!(few > many);
        assert_eq!(ucb_score(5.0, 10.0, 1000.0, 0.0).unwrap(), 0.5);
    }

    #[test]
    fn more_clicks_than_impressions_is_an_error() {
        assert!(ucb_score(11.0, 10.0, 100.0, 1.0).is_err());
    }
}
