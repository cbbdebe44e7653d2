//! `vector_dims(v)`: the number of dimensions, for checks before comparing vectors.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::Int32Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::args::{check_vector_arg, Vectors};
use crate::columnar::scalar_if_all_scalar;

/// Number of dimensions of a vector; NULL → NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorDims {
    signature: Signature,
}

impl Default for VectorDims {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for VectorDims {
    fn name(&self) -> &str {
        "vector_dims"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [one] => check_vector_arg(self.name(), 1, one).map(|_| arg_types.to_vec()),
            _ => plan_err!(
                "vector_dims takes one vector, got {} arguments",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let vectors = Vectors::try_new(&args.args[0].to_array(1)?, self.name())?;
        let dims: Int32Array = (0..vectors.len())
            .map(|i| vectors.row(i).map(|row| row.len() as i32))
            .collect();
        scalar_if_all_scalar(&args.args, Arc::new(dims))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Number of dimensions of a vector.",
                "vector_dims(v)",
            )
            .with_sql_example("SELECT vector_dims(embed('hello')) -- 384")
            .build()
        }))
    }
}
