//! The options text of the learning aggregates: `'{"lambda": 400, "top_k": 200}'`.
//!
//! Why JSON text: a training function has many knobs with good defaults, and SQL has no
//! named arguments in aggregates. One text argument keeps the call short, can be built from
//! a column for a grid search (`'{"lambda": ' || l.lambda || '}'`), and an unknown or
//! mistyped knob is an error that names it instead of being ignored.

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::{exec_err, plan_err, Result};
use serde::de::DeserializeOwned;

/// The options of one group, read from its rows: every row must carry the same text.
#[derive(Debug, Default, Clone)]
pub struct OptionsText {
    text: Option<String>,
}

impl OptionsText {
    /// Notes the options of `array`'s rows, rejecting a group whose rows disagree.
    pub fn observe(&mut self, array: &ArrayRef, function: &str) -> Result<()> {
        let array = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
        for value in array.as_string::<i32>().iter().flatten() {
            self.note(value, function)?;
        }
        Ok(())
    }

    /// Merges the options seen by another accumulator of the same group.
    pub fn merge(&mut self, other: Option<&str>, function: &str) -> Result<()> {
        match other {
            Some(value) => self.note(value, function),
            None => Ok(()),
        }
    }

    fn note(&mut self, value: &str, function: &str) -> Result<()> {
        match &self.text {
            Some(seen) if seen == value => Ok(()),
            Some(seen) => exec_err!(
                "{function}: the options must be the same for every row of a group, \
                 got '{seen}' and '{value}'"
            ),
            None => {
                self.text = Some(value.to_string());
                Ok(())
            }
        }
    }

    /// The text seen, for the accumulator state.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Parses the options (the defaults when none were given), naming a bad knob.
    pub fn parse<T: DeserializeOwned + Default>(&self, function: &str) -> Result<T> {
        match &self.text {
            None => Ok(T::default()),
            Some(text) if text.trim().is_empty() => Ok(T::default()),
            Some(text) => serde_json::from_str(text)
                .or_else(|error| exec_err!("{function}: bad options '{text}': {error}")),
        }
    }
}

/// Whether a column of this type is an options text rather than a number or a vector.
pub fn is_options_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Coerces the optional trailing `[weight] [, options]` arguments of a learning aggregate:
/// a number is the weight (as Float64), a text the options.
pub fn coerce_weight_and_options(
    function: &str,
    trailing: &[DataType],
    example: &str,
) -> Result<Vec<DataType>> {
    let is_weight = |t: &DataType| t.is_numeric() || t.is_null();
    match trailing {
        [] => Ok(vec![]),
        [options] if is_options_type(options) => Ok(vec![DataType::Utf8]),
        [weight] if is_weight(weight) => Ok(vec![DataType::Float64]),
        [weight, options] if is_weight(weight) && is_options_type(options) => {
            Ok(vec![DataType::Float64, DataType::Utf8])
        }
        other => plan_err!(
            "{function}: the optional arguments are a numeric weight and an options text \
             such as '{example}', got {other:?}"
        ),
    }
}

/// Where the weight and the options are among the coerced arguments (both come after
/// the `leading` ones).
pub fn weight_and_options_columns(
    fields: &[FieldRef],
    leading: usize,
) -> (Option<usize>, Option<usize>) {
    let weight = fields
        .get(leading)
        .filter(|f| f.data_type() == &DataType::Float64)
        .map(|_| leading);
    let options = fields
        .iter()
        .enumerate()
        .skip(leading)
        .find(|(_, f)| is_options_type(f.data_type()))
        .map(|(i, _)| i);
    (weight, options)
}
