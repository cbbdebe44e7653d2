//! `vec_avg(v [, weight])` and `vec_sum(v [, weight])`: behaviour rows → one vector.
//!
//! Why: a user vector is the weighted mean of the vectors of what the user did, with
//! weights per event type and time decay:
//! `vec_avg(p.vec, w.weight * exp(-age_days / 30.0)) ... GROUP BY user_id`.
//! Millions of events into hundreds of thousands of users is a `GroupsAccumulator` job:
//! one flat f64 buffer for all groups, no per-group allocation.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float32Array, Float64Array,
    ListArray, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    aggregate_doc_sections::DOC_SECTION_GENERAL, Accumulator, AggregateUDFImpl, Documentation,
    DocumentationBuilder, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::args::{check_vector_arg, declared_dimension, vector_field, vector_type, Vectors};

/// Which of the two aggregates: they share everything but the final division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VecAggregateKind {
    /// `Σ wᵢ·vᵢ / Σ wᵢ`; NULL when no row or the weights sum to zero.
    Avg,
    /// `Σ wᵢ·vᵢ`; NULL when no row.
    Sum,
}

impl VecAggregateKind {
    fn name(self) -> &'static str {
        match self {
            Self::Avg => "vec_avg",
            Self::Sum => "vec_sum",
        }
    }
}

/// The `vec_avg` / `vec_sum` aggregate UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VecAggregate {
    kind: VecAggregateKind,
    signature: Signature,
}

impl VecAggregate {
    /// The aggregate of the given kind.
    pub fn new(kind: VecAggregateKind) -> Self {
        Self {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for VecAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [vector] => check_vector_arg(self.name(), 1, vector).map(|_| arg_types.to_vec()),
            [vector, weight] => {
                check_vector_arg(self.name(), 1, vector)?;
                if !(weight.is_numeric() || weight.is_null()) {
                    return plan_err!("{}: the weight must be a number, got {weight}", self.name());
                }
                Ok(vec![vector.clone(), DataType::Float64])
            }
            _ => plan_err!(
                "{} takes a vector and an optional weight, got {} arguments",
                self.name(),
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(output_type(declared_dimension(&arg_types[0])))
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let data_type = self.return_type(&[arg_fields[0].data_type().clone()])?;
        Ok(Arc::new(vector_field(self.name(), data_type)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let sums = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(format!("{}[sums]", args.name), sums, true)),
            Arc::new(Field::new(
                format!("{}[weights]", args.name),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format!("{}[rows]", args.name),
                DataType::UInt64,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup(self.groups_accumulator(&args))))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups_accumulator(&args)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static AVG: OnceLock<Documentation> = OnceLock::new();
        static SUM: OnceLock<Documentation> = OnceLock::new();
        Some(match self.kind {
            VecAggregateKind::Avg => AVG.get_or_init(|| {
                DocumentationBuilder::new_with_details(
                    DOC_SECTION_GENERAL,
                    "Weighted mean of vectors: Σ w·v / Σ w. Rows with a NULL vector or weight are skipped.",
                    "vec_avg(v [, weight])",
                )
                .with_sql_example("SELECT user_id, vec_avg(vec, weight) FROM events JOIN ... GROUP BY user_id")
                .build()
            }),
            VecAggregateKind::Sum => SUM.get_or_init(|| {
                DocumentationBuilder::new_with_details(
                    DOC_SECTION_GENERAL,
                    "Weighted sum of vectors: Σ w·v. Rows with a NULL vector or weight are skipped.",
                    "vec_sum(v [, weight])",
                )
                .with_sql_example("SELECT vec_sum(vec) FROM product_vectors")
                .build()
            }),
        })
    }
}

impl VecAggregate {
    fn groups_accumulator(&self, args: &AccumulatorArgs) -> VecGroupsAccumulator {
        VecGroupsAccumulator {
            kind: self.kind,
            function: self.kind.name(),
            dimension: declared_dimension(args.return_field.data_type()),
            output_fixed: matches!(args.return_field.data_type(), DataType::FixedSizeList(..)),
            sums: Vec::new(),
            weights: Vec::new(),
            rows: Vec::new(),
        }
    }
}

fn output_type(dimension: Option<usize>) -> DataType {
    match dimension {
        Some(d) => vector_type(d),
        None => DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
    }
}

/// Per-group running sums in flat buffers: group `g`'s sum is `sums[g*d..(g+1)*d]`.
#[derive(Debug)]
struct VecGroupsAccumulator {
    kind: VecAggregateKind,
    function: &'static str,
    /// Known from the type, or from the first row of a `List` input.
    dimension: Option<usize>,
    output_fixed: bool,
    sums: Vec<f64>,
    weights: Vec<f64>,
    rows: Vec<u64>,
}

impl VecGroupsAccumulator {
    fn resize(&mut self, total_num_groups: usize) {
        self.weights.resize(total_num_groups, 0.0);
        self.rows.resize(total_num_groups, 0);
        if let Some(d) = self.dimension {
            self.sums.resize(total_num_groups * d, 0.0);
        }
    }

    /// Fixes the dimension on the first row seen, and checks every later row against it.
    fn check_dimension(&mut self, len: usize, total_num_groups: usize) -> Result<usize> {
        match self.dimension {
            Some(d) if d == len => Ok(d),
            Some(d) => exec_err!("{}: vector dimensions differ: {d} vs {len}", self.function),
            None => {
                self.dimension = Some(len);
                self.resize(total_num_groups);
                Ok(len)
            }
        }
    }

    fn add(&mut self, group: usize, vector: &[f32], weight: f64, total: usize) -> Result<()> {
        let d = self.check_dimension(vector.len(), total)?;
        let sum = &mut self.sums[group * d..(group + 1) * d];
        for (s, v) in sum.iter_mut().zip(vector) {
            *s += weight * *v as f64;
        }
        self.weights[group] += weight;
        self.rows[group] += 1;
        Ok(())
    }

    fn take(&mut self, emit_to: EmitTo) -> (Vec<f64>, Vec<f64>, Vec<u64>) {
        let weights = emit_to.take_needed(&mut self.weights);
        let rows = emit_to.take_needed(&mut self.rows);
        let d = self.dimension.unwrap_or(0);
        let sums = match emit_to {
            EmitTo::All => std::mem::take(&mut self.sums),
            EmitTo::First(n) => self.sums.drain(..(n * d).min(self.sums.len())).collect(),
        };
        (sums, weights, rows)
    }
}

impl GroupsAccumulator for VecGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let vectors = Vectors::try_new(&values[0], self.function)?;
        let weights = values.get(1).map(|w| w.as_primitive::<Float64Type>());
        for (row, &group) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.value(row) || f.is_null(row)) {
                continue;
            }
            let weight = match weights {
                Some(w) if w.is_null(row) => continue,
                Some(w) => w.value(row),
                None => 1.0,
            };
            if let Some(vector) = vectors.row(row) {
                self.add(group, vector, weight, total_num_groups)?;
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let sums = values[0].as_list::<i32>();
        let weights = values[1].as_primitive::<Float64Type>();
        let rows = values[2].as_primitive::<UInt64Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if sums.is_null(row) {
                continue;
            }
            let partial = sums.value(row);
            let partial = partial.as_primitive::<Float64Type>().values();
            let d = self.check_dimension(partial.len(), total_num_groups)?;
            for (s, p) in self.sums[group * d..(group + 1) * d]
                .iter_mut()
                .zip(partial)
            {
                *s += p;
            }
            self.weights[group] += weights.value(row);
            self.rows[group] += rows.value(row);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (sums, weights, rows) = self.take(emit_to);
        let d = self.dimension.unwrap_or(0);
        let mut values = Vec::with_capacity(sums.len());
        let mut valid = Vec::with_capacity(rows.len());
        for group in 0..rows.len() {
            let divisor = match self.kind {
                VecAggregateKind::Avg => weights[group],
                VecAggregateKind::Sum => 1.0,
            };
            let is_valid = rows[group] > 0 && divisor != 0.0;
            valid.push(is_valid);
            let sum = sums.get(group * d..(group + 1) * d).unwrap_or(&[]);
            if is_valid {
                values.extend(sum.iter().map(|s| (s / divisor) as f32));
            } else if self.output_fixed {
                values.extend(std::iter::repeat_n(0.0, d));
            }
        }
        let nulls = Some(NullBuffer::from(valid.clone()));
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        let values = Arc::new(Float32Array::from(values));
        Ok(if self.output_fixed {
            Arc::new(FixedSizeListArray::try_new(item, d as i32, values, nulls)?)
        } else {
            let lengths = valid.iter().map(|v| if *v { d } else { 0 });
            Arc::new(ListArray::try_new(
                item,
                OffsetBuffer::from_lengths(lengths),
                values,
                nulls,
            )?)
        })
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (sums, weights, rows) = self.take(emit_to);
        let d = self.dimension.unwrap_or(0);
        let valid: Vec<bool> = rows.iter().map(|r| *r > 0).collect();
        let lengths = valid.iter().map(|v| if *v { d } else { 0 });
        let kept: Vec<f64> = (0..rows.len())
            .filter(|g| valid[*g])
            .flat_map(|g| sums[g * d..(g + 1) * d].iter().copied())
            .collect();
        let sums = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(Float64Array::from(kept)),
            Some(NullBuffer::from(valid)),
        )?;
        Ok(vec![
            Arc::new(sums),
            Arc::new(Float64Array::from(weights)),
            Arc::new(UInt64Array::from(rows)),
        ])
    }

    /// Each input row as its own partial state (DataFusion's path for skipping partial
    /// aggregation when groups are nearly unique).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut single = VecGroupsAccumulator {
            kind: self.kind,
            function: self.function,
            dimension: self.dimension,
            output_fixed: self.output_fixed,
            sums: Vec::new(),
            weights: Vec::new(),
            rows: Vec::new(),
        };
        let rows = values[0].len();
        let groups: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &groups, opt_filter, rows)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.sums.capacity() * 8 + self.weights.capacity() * 8 + self.rows.capacity() * 8
    }
}

/// The row-at-a-time [`Accumulator`] DataFusion still asks for (e.g. without GROUP BY):
/// the groups accumulator with a single group.
#[derive(Debug)]
struct SingleGroup(VecGroupsAccumulator);

impl Accumulator for SingleGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0
            .update_batch(values, &vec![0; values[0].len()], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.merge_batch(states, &vec![0; states[0].len()], 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.resize(1);
        ScalarValue::try_from_array(&self.0.evaluate(EmitTo::All)?, 0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.resize(1);
        self.0
            .state(EmitTo::All)?
            .iter()
            .map(|array| ScalarValue::try_from_array(array, 0))
            .collect()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }
}
