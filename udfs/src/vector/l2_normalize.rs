//! `l2_normalize(v)`: scale a vector to unit length, so `dot` equals `cosine` afterwards.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::args::{
    check_vector_arg, declared_dimension, vector_field, vector_type, VectorBuilder, Vectors,
};
use super::kernels;
use crate::columnar::scalar_if_all_scalar;

/// Unit-length copy of a vector; a zero vector stays zero (as in pgvector); NULL → NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2Normalize {
    signature: Signature,
}

impl Default for L2Normalize {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for L2Normalize {
    fn name(&self) -> &str {
        "l2_normalize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [one] => check_vector_arg(self.name(), 1, one).map(|_| arg_types.to_vec()),
            _ => plan_err!(
                "l2_normalize takes one vector, got {} arguments",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = match declared_dimension(args.arg_fields[0].data_type()) {
            Some(dimension) => vector_type(dimension),
            None => DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
        };
        Ok(Arc::new(vector_field(self.name(), data_type)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(1)?;
        let vectors = Vectors::try_new(&input, self.name())?;
        let mut output = VectorBuilder::new(args.return_field.data_type(), vectors.len());
        for i in 0..vectors.len() {
            let normalised = vectors.row(i).map(|row| {
                let norm = kernels::squared_norm(row).sqrt();
                let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                row.iter().map(|x| x * scale).collect::<Vec<f32>>()
            });
            output.push(normalised.as_deref());
        }
        let output = output.finish()?;
        scalar_if_all_scalar(&args.args, output)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "The vector scaled to unit L2 length; a zero vector stays zero.",
                "l2_normalize(v)",
            )
            .with_sql_example("SELECT l2_normalize('[3,4]') -- [0.6,0.8]")
            .build()
        }))
    }
}
