//! `adapter_fit(a, b [, weight] [, options])`: learn a linear adapter from pairs of
//! vectors that belong together.
//!
//! Why: a pre-trained embedding model knows language, not this shop. Pairs such as
//! (query, clicked product) or (product, co-purchased product) say which vectors should
//! be close; a d × d map W trained on them with an in-batch contrastive loss (see
//! [`super::contrastive`]) moves the space towards the shop's behaviour while the model
//! stays as it is — the parameter-efficient form of fine-tuning, with no GPU and no
//! Python. The result is W as a `float4[]` of d² values (row-major), to keep in a table;
//! `adapt(adapter, v)` applies it.
//!
//! Options (JSON text): `epochs` (5), `batch_size` (256), `learning_rate` (0.001),
//! `temperature` (0.05), `regularization` (0), `seed` (42), `max_pairs` (250000).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    aggregate_doc_sections::DOC_SECTION_GENERAL, Accumulator, AggregateUDFImpl, Documentation,
    DocumentationBuilder, Signature, Volatility,
};

use super::contrastive::{train, AdapterOptions, Pairs};
use super::options::{coerce_weight_and_options, weight_and_options_columns, OptionsText};
use crate::vector::args::{check_vector_arg, Vectors};

const NAME: &str = "adapter_fit";

/// The `adapter_fit` aggregate UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AdapterFit {
    signature: Signature,
}

impl Default for AdapterFit {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The adapter's type: W as a list of d² floats.
pub fn adapter_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
}

impl AggregateUDFImpl for AdapterFit {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=4).contains(&arg_types.len()) {
            return plan_err!(
                "{NAME} takes (a, b [, weight] [, options]), got {} arguments",
                arg_types.len()
            );
        }
        check_vector_arg(NAME, 1, &arg_types[0])?;
        check_vector_arg(NAME, 2, &arg_types[1])?;
        let mut coerced = arg_types[..2].to_vec();
        coerced.extend(coerce_weight_and_options(
            NAME,
            &arg_types[2..],
            "{\"epochs\": 5}",
        )?);
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(adapter_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let floats = adapter_type();
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[a]", args.name),
                floats.clone(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[b]", args.name),
                floats.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[weights]", args.name), floats, true)),
            Arc::new(Field::new(
                format!("{}[options]", args.name),
                DataType::Utf8,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let (weight_column, options_column) = weight_and_options_columns(args.expr_fields, 2);
        Ok(Box::new(AdapterAccumulator {
            weight_column,
            options_column,
            pairs: Pairs::default(),
            options: OptionsText::default(),
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: OnceLock<Documentation> = OnceLock::new();
        Some(DOCUMENTATION.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_GENERAL,
                "Trains a linear adapter W (d × d, from the identity) on pairs of vectors that \
                 belong together, with an in-batch contrastive loss; returns W as d² floats \
                 for adapt(adapter, v).",
                "adapter_fit(a, b [, weight] [, '{\"epochs\": 5, \"seed\": 42}'])",
            )
            .with_sql_example(
                "CREATE TABLE adapters AS SELECT 'search' AS name, adapter_fit(q.vec, p.vec) AS w \
                 FROM clicks c JOIN query_vectors q USING (query) JOIN product_vectors p USING (product_id)",
            )
            .build()
        }))
    }
}

/// The pairs of one group, gathered until training at `evaluate`.
#[derive(Debug)]
struct AdapterAccumulator {
    weight_column: Option<usize>,
    options_column: Option<usize>,
    pairs: Pairs,
    options: OptionsText,
}

/// Where a pair comes from: a row (any length) or another accumulator's state (unit length).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Row,
    State,
}

impl AdapterAccumulator {
    fn add(
        &mut self,
        left: &[f32],
        right: &[f32],
        weight: f32,
        max_pairs: usize,
        source: Source,
    ) -> Result<()> {
        if left.len() != right.len() {
            return exec_err!(
                "{NAME}: the two vectors of a pair differ in dimension: {} vs {}",
                left.len(),
                right.len()
            );
        }
        if self.pairs.dimension == 0 {
            self.pairs.dimension = left.len();
        } else if self.pairs.dimension != left.len() {
            return exec_err!(
                "{NAME}: vector dimensions differ between pairs: {} vs {}",
                self.pairs.dimension,
                left.len()
            );
        }
        if self.pairs.len() >= max_pairs {
            return exec_err!(
                "{NAME}: more than max_pairs {max_pairs} pairs; sample them \
                 (e.g. WHERE random() < 0.5) or raise max_pairs in the options"
            );
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return exec_err!("{NAME}: weights must be finite and not negative, got {weight}");
        }
        match source {
            Source::Row => self.pairs.push(left, right, weight),
            Source::State => self.pairs.push_unit(left, right, weight),
        }
        Ok(())
    }
}

impl Accumulator for AdapterAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(column) = self.options_column {
            self.options.observe(&values[column], NAME)?;
        }
        let max_pairs = self.options.parse::<AdapterOptions>(NAME)?.max_pairs;
        let left = Vectors::try_new(&values[0], NAME)?;
        let right = Vectors::try_new(&values[1], NAME)?;
        let weights = self
            .weight_column
            .map(|column| values[column].as_primitive::<Float64Type>());
        for row in 0..left.len() {
            let (Some(a), Some(b)) = (left.row(row), right.row(row)) else {
                continue;
            };
            let weight = match weights {
                Some(w) if w.is_null(row) => continue,
                Some(w) => w.value(row) as f32,
                None => 1.0,
            };
            self.add(a, b, weight, max_pairs, Source::Row)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = |values: &[f32]| {
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                OffsetBuffer::from_lengths([values.len()]),
                Arc::new(Float32Array::from(values.to_vec())),
                None,
            )))
        };
        Ok(vec![
            list(&self.pairs.left),
            list(&self.pairs.right),
            list(&self.pairs.weights),
            ScalarValue::Utf8(self.options.text().map(str::to_string)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let options = states[3].as_string::<i32>();
        for row in 0..options.len() {
            if !options.is_null(row) {
                self.options.merge(Some(options.value(row)), NAME)?;
            }
        }
        let max_pairs = self.options.parse::<AdapterOptions>(NAME)?.max_pairs;
        let [left, right, weights] = [0, 1, 2].map(|i| states[i].as_list::<i32>());
        for row in 0..weights.len() {
            if weights.is_null(row) {
                continue;
            }
            let weight_values = weights.value(row);
            let weight_values = weight_values.as_primitive::<Float32Type>().values();
            if weight_values.is_empty() {
                continue;
            }
            let left_values = left.value(row);
            let left_values = left_values.as_primitive::<Float32Type>().values();
            let right_values = right.value(row);
            let right_values = right_values.as_primitive::<Float32Type>().values();
            let d = left_values.len() / weight_values.len();
            for (i, &weight) in weight_values.iter().enumerate() {
                let range = i * d..(i + 1) * d;
                self.add(
                    &left_values[range.clone()],
                    &right_values[range],
                    weight,
                    max_pairs,
                    Source::State,
                )?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.pairs.len() < 2 {
            return ScalarValue::try_from(adapter_type());
        }
        let options: AdapterOptions = self.options.parse(NAME)?;
        if options.temperature <= 0.0 || options.learning_rate <= 0.0 {
            return exec_err!(
                "{NAME}: temperature and learning_rate must be positive, got {} and {}",
                options.temperature,
                options.learning_rate
            );
        }
        let started = std::time::Instant::now();
        let trained = train(&self.pairs, &options);
        tracing::info!(
            pairs = self.pairs.len(),
            dimension = self.pairs.dimension,
            seconds = started.elapsed().as_secs_f64(),
            losses = ?trained.epoch_losses,
            "adapter_fit trained"
        );
        let values = Arc::new(Float32Array::from(trained.weights)) as ArrayRef;
        Ok(ScalarValue::List(Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::Float32, true)),
            OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        ))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + 4 * (self.pairs.left.capacity()
                + self.pairs.right.capacity()
                + self.pairs.weights.capacity())
    }
}
