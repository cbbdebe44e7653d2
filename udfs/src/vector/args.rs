//! Decoding of vector arguments, whatever form the user wrote them in.
//!
//! Why: a vector reaches a function as `embed()`'s `FixedSizeList<Float32>`, as a
//! `List<Float32|Float64>` from a Parquet file or `ARRAY[...]`, or as pgvector text
//! `'[0.1, 0.2]'` typed by a person or sent by a driver. Every function decodes through
//! here into one borrowed form, [`Vectors`], so the kernels see plain `&[f32]` rows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, GenericListArray, OffsetSizeTrait,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// The field metadata that makes clients see pgvector's `vector` type on the wire.
pub const PG_VECTOR_METADATA: (&str, &str) = ("pg.vector", "vector");

/// The Arrow type of a `d`-dimensional vector: `FixedSizeList<Float32, d>`.
pub fn vector_type(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dimension as i32,
    )
}

/// A result field of vector type, tagged so that it is sent as pgvector's `vector`.
pub fn vector_field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true).with_metadata(
        [(
            PG_VECTOR_METADATA.0.to_string(),
            PG_VECTOR_METADATA.1.to_string(),
        )]
        .into(),
    )
}

/// Whether `data_type` is a form a vector argument may take.
pub fn is_vector_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::FixedSizeList(field, _) | DataType::List(field) | DataType::LargeList(field) => {
            field.data_type().is_numeric() || field.data_type().is_null()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        _ => false,
    }
}

/// Plan-time check of a vector argument's type, with an error that says what is accepted.
pub fn check_vector_arg(function: &str, position: usize, data_type: &DataType) -> Result<()> {
    if is_vector_like(data_type) {
        Ok(())
    } else {
        plan_err!(
            "{function}: argument {position} must be a vector (FixedSizeList/List of floats, \
             or pgvector text such as '[1,2,3]'), got {data_type}"
        )
    }
}

/// The dimension a vector type declares, when its type fixes one.
pub fn declared_dimension(data_type: &DataType) -> Option<usize> {
    match data_type {
        DataType::FixedSizeList(_, d) => Some(*d as usize),
        _ => None,
    }
}

/// How row `i`'s values are found in the flat buffer.
#[derive(Debug, Clone)]
enum Layout {
    /// Every row has `dimension` values; row `i` starts at `first + i * dimension`.
    Fixed { first: usize, dimension: usize },
    /// Row `i` spans `offsets[i]..offsets[i + 1]`.
    Offsets(Vec<usize>),
}

/// A column of f32 vectors, borrowed from Arrow buffers where the input already was f32.
#[derive(Debug, Clone)]
pub struct Vectors {
    values: ScalarBuffer<f32>,
    layout: Layout,
    nulls: Option<NullBuffer>,
    len: usize,
}

impl Vectors {
    /// Decodes any vector-like array; `function` names the caller in error messages.
    pub fn try_new(array: &ArrayRef, function: &str) -> Result<Self> {
        match array.data_type() {
            DataType::FixedSizeList(_, dimension) => {
                let list = array.as_fixed_size_list();
                let list = if list.value_type() == DataType::Float32 {
                    list.clone()
                } else {
                    let target = vector_type(*dimension as usize);
                    cast(array, &target)?.as_fixed_size_list().clone()
                };
                Self::from_fixed(&list, function)
            }
            DataType::List(_) => Self::from_list(&float32_list::<i32>(array)?, function),
            DataType::LargeList(_) => Self::from_list(&float32_list::<i64>(array)?, function),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Self::from_text(&cast(array, &DataType::Utf8)?, function)
            }
            DataType::Null => Ok(Self {
                values: ScalarBuffer::from(Vec::<f32>::new()),
                layout: Layout::Offsets(vec![0; array.len() + 1]),
                nulls: Some(NullBuffer::new_null(array.len())),
                len: array.len(),
            }),
            other => exec_err!("{function}: expected a vector, got {other}"),
        }
    }

    fn from_fixed(list: &FixedSizeListArray, function: &str) -> Result<Self> {
        let values = list.values().as_primitive::<Float32Type>();
        let dimension = list.value_length() as usize;
        let first = if list.is_empty() {
            0
        } else {
            list.value_offset(0) as usize
        };
        Self {
            values: values.values().clone(),
            layout: Layout::Fixed { first, dimension },
            nulls: list.nulls().cloned(),
            len: list.len(),
        }
        .reject_null_elements(values, function)
    }

    fn from_list<O: OffsetSizeTrait>(list: &GenericListArray<O>, function: &str) -> Result<Self> {
        let values = list.values().as_primitive::<Float32Type>();
        Self {
            values: values.values().clone(),
            layout: Layout::Offsets(list.value_offsets().iter().map(|o| o.as_usize()).collect()),
            nulls: list.nulls().cloned(),
            len: list.len(),
        }
        .reject_null_elements(values, function)
    }

    fn from_text(array: &ArrayRef, function: &str) -> Result<Self> {
        let strings = array.as_string::<i32>();
        let mut values = Vec::new();
        let mut offsets = Vec::with_capacity(strings.len() + 1);
        offsets.push(0);
        for text in strings.iter() {
            if let Some(text) = text {
                values.extend(parse_vector_text(text, function)?);
            }
            offsets.push(values.len());
        }
        Ok(Self {
            values: ScalarBuffer::from(values),
            layout: Layout::Offsets(offsets),
            nulls: strings.nulls().cloned(),
            len: strings.len(),
        })
    }

    /// Checks that no non-NULL row holds a NULL element (slots under NULL rows may).
    fn reject_null_elements(self, values: &Float32Array, function: &str) -> Result<Self> {
        let Some(element_nulls) = values.nulls().filter(|n| n.null_count() > 0) else {
            return Ok(self);
        };
        for i in 0..self.len {
            if let Some(range) = self.row_range(i) {
                if range.into_iter().any(|slot| element_nulls.is_null(slot)) {
                    return exec_err!(
                        "{function}: vector elements must not be NULL (row {})",
                        i + 1
                    );
                }
            }
        }
        Ok(self)
    }

    /// Where row `i`'s values lie in the flat buffer, or `None` when the row is NULL.
    fn row_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if self.nulls.as_ref().is_some_and(|nulls| nulls.is_null(i)) {
            return None;
        }
        Some(match &self.layout {
            Layout::Fixed { first, dimension } => {
                first + i * dimension..first + (i + 1) * dimension
            }
            Layout::Offsets(offsets) => offsets[i]..offsets[i + 1],
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row's values as one contiguous slice (`len × dimension` floats; NULL rows
    /// hold arbitrary values) and the dimension, when all rows share one: the layout that
    /// whole-column kernels scan without per-row bookkeeping.
    pub fn contiguous(&self) -> Option<(&[f32], usize)> {
        match self.layout {
            Layout::Fixed { first, dimension } if dimension > 0 => self
                .values
                .get(first..first + self.len * dimension)
                .map(|values| (values, dimension)),
            _ => None,
        }
    }

    /// Which rows are NULL, if any are.
    pub fn nulls(&self) -> Option<&NullBuffer> {
        self.nulls.as_ref()
    }

    /// Row `i`'s values, or `None` when the row is NULL.
    #[inline]
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.row_range(i).map(|range| &self.values[range])
    }
}

/// A vector argument as a function receives it: a column, or one constant for all rows.
#[derive(Debug, Clone)]
pub enum VectorArg {
    /// One vector per row.
    Column(Vectors),
    /// The same vector (or NULL) for every row, e.g. a query vector.
    Constant(Option<Vec<f32>>),
}

impl VectorArg {
    /// Decodes argument `value` of `function`.
    pub fn try_new(value: &ColumnarValue, function: &str) -> Result<Self> {
        match value {
            ColumnarValue::Array(array) => Ok(Self::Column(Vectors::try_new(array, function)?)),
            ColumnarValue::Scalar(scalar) => {
                let vectors = Vectors::try_new(&scalar.to_array_of_size(1)?, function)?;
                Ok(Self::Constant(vectors.row(0).map(<[f32]>::to_vec)))
            }
        }
    }

    /// Row `i`'s vector (the constant for every `i` when it is one).
    #[inline]
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        match self {
            Self::Column(vectors) => vectors.row(i),
            Self::Constant(vector) => vector.as_deref(),
        }
    }
}

/// Parses pgvector's text form `[1, 2.5, -3]`, naming the bad text on failure.
pub fn parse_vector_text(text: &str, function: &str) -> Result<Vec<f32>> {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return exec_err!(
            "{function}: '{}' is not a vector literal; write it as '[1, 2, 3]'",
            preview(text)
        );
    };
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|part| match part.trim().parse::<f32>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => exec_err!(
                "{function}: '{}' in vector literal '{}' is not a finite number",
                part.trim(),
                preview(text)
            ),
        })
        .collect()
}

/// The first characters of a possibly huge text, for error messages.
fn preview(text: &str) -> String {
    const LIMIT: usize = 60;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn float32_list<O: OffsetSizeTrait>(array: &ArrayRef) -> Result<GenericListArray<O>> {
    let field = Arc::new(Field::new_list_field(DataType::Float32, true));
    let target = if O::IS_LARGE {
        DataType::LargeList(field)
    } else {
        DataType::List(field)
    };
    Ok(cast(array, &target)?.as_list::<O>().clone())
}

/// Builds a vector result column row by row: a `FixedSizeList` when the result type fixes
/// the dimension (a NULL row keeps zeroed slots, as Arrow requires), a `List` otherwise.
#[derive(Debug)]
pub struct VectorBuilder {
    fixed_dimension: Option<usize>,
    values: Vec<f32>,
    lengths: Vec<usize>,
    valid: Vec<bool>,
}

impl VectorBuilder {
    /// A builder for a result of type `data_type` (from `vector_type` or a float list).
    pub fn new(data_type: &DataType, rows: usize) -> Self {
        Self {
            fixed_dimension: declared_dimension(data_type),
            values: Vec::new(),
            lengths: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
        }
    }

    /// Appends one row; `None` is NULL.
    pub fn push(&mut self, row: Option<&[f32]>) {
        let before = self.values.len();
        match (row, self.fixed_dimension) {
            (Some(row), _) => self.values.extend_from_slice(row),
            (None, Some(dimension)) => self.values.extend(std::iter::repeat_n(0.0, dimension)),
            (None, None) => {}
        }
        self.lengths.push(self.values.len() - before);
        self.valid.push(row.is_some());
    }

    /// The column, or an error when a row's length does not fit the fixed dimension.
    pub fn finish(self) -> Result<ArrayRef> {
        let nulls = NullBuffer::from(self.valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let values = Arc::new(Float32Array::from(self.values));
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        Ok(match self.fixed_dimension {
            Some(dimension) => Arc::new(FixedSizeListArray::try_new(
                item,
                dimension as i32,
                values,
                nulls,
            )?),
            None => Arc::new(GenericListArray::<i32>::try_new(
                item,
                OffsetBuffer::from_lengths(self.lengths),
                values,
                nulls,
            )?),
        })
    }
}

/// The error for two vectors of different dimensions, naming both.
pub fn dimension_mismatch<T>(function: &str, left: usize, right: usize) -> Result<T> {
    exec_err!("{function}: vector dimensions differ: {left} vs {right}")
}

/// Turns an owned-or-borrowed scalar into an array-of-one when a function needs an array.
pub fn scalar_vector(values: &[f32]) -> ScalarValue {
    let list = FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        values.len() as i32,
        Arc::new(Float32Array::from(values.to_vec())),
        None,
    );
    ScalarValue::FixedSizeList(Arc::new(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListArray, StringArray};
    use datafusion::arrow::datatypes::Float64Type;

    #[test]
    fn decodes_every_form() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("[1, 2]"), None]));
        let vectors = Vectors::try_new(&text, "t").unwrap();
        assert_eq!(vectors.row(0), Some(&[1.0, 2.0][..]));
        assert_eq!(vectors.row(1), None);

        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(3.0), Some(4.0)]),
        ]));
        assert_eq!(
            Vectors::try_new(&list, "t").unwrap().row(0),
            Some(&[3.0, 4.0][..])
        );
    }

    #[test]
    fn sliced_fixed_size_list_keeps_its_offset() {
        let ScalarValue::FixedSizeList(list) = scalar_vector(&[1.0, 2.0]) else {
            unreachable!()
        };
        let array: ArrayRef = list;
        let two = datafusion::arrow::compute::concat(&[array.as_ref(), array.as_ref()]).unwrap();
        let sliced = two.slice(1, 1);
        assert_eq!(
            Vectors::try_new(&sliced, "t").unwrap().row(0),
            Some(&[1.0, 2.0][..])
        );
    }

    #[test]
    fn bad_text_names_the_value() {
        let err = parse_vector_text("[1, x]", "cosine")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'x'"), "{err}");
        let err = parse_vector_text("hello", "cosine")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'hello'"), "{err}");
    }
}
