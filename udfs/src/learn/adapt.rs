//! `adapt(adapter, v)`: apply an adapter from `adapter_fit` to a vector: W·v, unit length.
//!
//! Why a function of its own: the adapter is applied to every product vector and every
//! query, so it runs as one matrix product per batch (faer) when the adapter is the same
//! for all rows — the usual `(SELECT w FROM adapters WHERE name = 'search')`.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, ColumnarValue, Documentation, DocumentationBuilder,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::columnar::scalar_if_all_scalar;
use crate::vector::args::{
    check_vector_arg, declared_dimension, vector_field, vector_type, VectorArg, VectorBuilder,
};

const NAME: &str = "adapt";

/// The `adapt` scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Adapt {
    signature: Signature,
}

impl Default for Adapt {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Adapt {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [adapter, vector] => {
                check_vector_arg(NAME, 1, adapter)?;
                check_vector_arg(NAME, 2, vector)?;
                Ok(arg_types.to_vec())
            }
            _ => plan_err!(
                "{NAME} takes (adapter, vector), got {} arguments",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = match declared_dimension(args.arg_fields[1].data_type()) {
            Some(dimension) => vector_type(dimension),
            None => DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
        };
        Ok(Arc::new(vector_field(NAME, data_type)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let adapter = VectorArg::try_new(&args.args[0], NAME)?;
        let vectors = VectorArg::try_new(&args.args[1], NAME)?;
        let adapted: Vec<Option<Vec<f32>>> = match &adapter {
            VectorArg::Constant(Some(w)) => Weights::new(w)?.apply_to_rows(&vectors, rows)?,
            _ => (0..rows)
                .map(|i| match (adapter.row(i), vectors.row(i)) {
                    (Some(w), Some(v)) => Ok(Weights::new(w)?
                        .apply_to_rows(&VectorArg::Constant(Some(v.to_vec())), 1)?
                        .pop()
                        .flatten()),
                    _ => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let mut output = VectorBuilder::new(args.return_field.data_type(), rows);
        for row in &adapted {
            output.push(row.as_deref());
        }
        let output = output.finish()?;
        scalar_if_all_scalar(&args.args, output)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: OnceLock<Documentation> = OnceLock::new();
        Some(DOCUMENTATION.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Applies an adapter from adapter_fit: W·v scaled to unit length.",
                "adapt(adapter, v)",
            )
            .with_sql_example(
                "SELECT product_id, adapt((SELECT w FROM adapters WHERE name = 'search'), vec) FROM product_vectors",
            )
            .build()
        }))
    }
}

/// W, checked to be square.
struct Weights<'a> {
    matrix: MatRef<'a, f32>,
}

impl<'a> Weights<'a> {
    fn new(values: &'a [f32]) -> Result<Self> {
        let d = (values.len() as f64).sqrt().round() as usize;
        if d * d != values.len() || d == 0 {
            return exec_err!(
                "{NAME}: an adapter has d² values (from adapter_fit), got {}",
                values.len()
            );
        }
        Ok(Self {
            matrix: MatRef::from_row_major_slice(values, d, d),
        })
    }

    /// W·v / ‖W·v‖ for every non-NULL row, as one matrix product.
    fn apply_to_rows(&self, vectors: &VectorArg, rows: usize) -> Result<Vec<Option<Vec<f32>>>> {
        let d = self.matrix.nrows();
        let present: Vec<(usize, &[f32])> = (0..rows)
            .filter_map(|i| vectors.row(i).map(|v| (i, v)))
            .collect();
        if let Some((_, v)) = present.iter().find(|(_, v)| v.len() != d) {
            return exec_err!(
                "{NAME}: the adapter is for {d}-d vectors, the vector has {}",
                v.len()
            );
        }
        let inputs = Mat::<f32>::from_fn(present.len(), d, |i, k| present[i].1[k]);
        let mut outputs = Mat::<f32>::zeros(present.len(), d);
        matmul(
            &mut outputs,
            Accum::Replace,
            &inputs,
            self.matrix.transpose(),
            1.0,
            Par::rayon(0),
        );
        let mut adapted = vec![None; rows];
        for (position, (row, _)) in present.iter().enumerate() {
            let mut v: Vec<f32> = (0..d).map(|k| outputs[(position, k)]).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
            adapted[*row] = Some(v);
        }
        Ok(adapted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_w_then_normalises() {
        // W = [[2, 0], [0, 1]] maps [1, 1] to [2, 1] / √5.
        let w = [2.0, 0.0, 0.0, 1.0];
        let weights = Weights::new(&w).unwrap();
        let rows = VectorArg::Constant(Some(vec![1.0, 1.0]));
        let out = weights.apply_to_rows(&rows, 1).unwrap();
        let v = out[0].as_ref().unwrap();
        assert!((v[0] - 2.0 / 5f32.sqrt()).abs() < 1e-6 && (v[1] - 1.0 / 5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn wrong_sizes_are_named() {
        assert!(Weights::new(&[1.0, 2.0, 3.0]).is_err());
        let weights = Weights::new(&[1.0, 0.0, 0.0, 1.0]).unwrap();
        let err = weights
            .apply_to_rows(&VectorArg::Constant(Some(vec![1.0, 2.0, 3.0])), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2-d") && err.contains("has 3"), "{err}");
    }
}
