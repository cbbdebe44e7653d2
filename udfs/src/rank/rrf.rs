//! `rrf(rank [, k])`: reciprocal-rank fusion, 1 / (k + rank).
//!
//! Why: a semantic ranking, a collaborative-filtering ranking and a popularity ranking
//! have scores on different scales; their ranks do not. Summing `rrf(rank)` over the
//! rankings an item appears in (Cormack et al., 2009; k = 60 by default) fuses them
//! without calibration: `SUM(rrf(ROW_NUMBER() OVER (...)))` per item.

use std::sync::{Arc, OnceLock};

use crate::columnar::scalar_if_all_scalar;
use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The default `k` of reciprocal-rank fusion, as in the original paper.
pub const DEFAULT_K: f64 = 60.0;

/// The `rrf` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Rrf {
    signature: Signature,
}

impl Default for Rrf {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Rrf {
    fn name(&self) -> &str {
        "rrf"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 2 {
            return plan_err!(
                "rrf takes a rank and an optional k, got {} arguments",
                arg_types.len()
            );
        }
        for data_type in arg_types {
            if !(data_type.is_numeric() || data_type.is_null()) {
                return plan_err!("rrf: arguments must be numbers, got {data_type}");
            }
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ranks = arrays[0].as_primitive::<Float64Type>();
        let ks = arrays.get(1).map(|k| k.as_primitive::<Float64Type>());
        let values = (0..ranks.len())
            .map(|i| {
                let k = match ks {
                    Some(ks) if ks.is_null(i) => return Ok(None),
                    Some(ks) => ks.value(i),
                    None => DEFAULT_K,
                };
                if ranks.is_null(i) {
                    return Ok(None);
                }
                let rank = ranks.value(i);
                if rank < 1.0 || k < 0.0 {
                    return exec_err!("rrf: rank must be ≥ 1 and k ≥ 0, got rank {rank}, k {k}");
                }
                Ok(Some(1.0 / (k + rank)))
            })
            .collect::<Result<Float64Array>>()?;
        scalar_if_all_scalar(&args.args, Arc::new(values))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Reciprocal-rank fusion term 1 / (k + rank), k = 60 by default. Sum it over rankings.",
                "rrf(rank [, k])",
            )
            .with_sql_example("SELECT item_id, SUM(rrf(rnk)) AS fused FROM rankings GROUP BY item_id")
            .build()
        }))
    }
}
