//! `ease_fit(user, item [, weight] [, options])`: EASE, the closed-form item-item model.
//!
//! Why: on implicit feedback, EASE (Steck 2019) is the strongest simple collaborative
//! model, ahead of neighbourhood methods such as ItemKNN and RP3beta, and it has no
//! training loop to tune: with the item Gram matrix G = XᵀX of the (user × item)
//! interactions and P = (G + λI)⁻¹, the item-item weights are
//! B = I − P·diag(1/diag(P)), i.e. Bᵢⱼ = −Pᵢⱼ / Pⱼⱼ with a zero diagonal. A user's score
//! for item j is Σᵢ Xᵤᵢ·Bᵢⱼ over the items the user has — a join and a `sum` in SQL.
//!
//! The aggregate returns, per group, a list of `{item, neighbour, weight}` rows: for every
//! item its `top_k` neighbours by |weight| (negative weights matter: they push an item
//! down). The inverse is faer's Cholesky (G + λI is symmetric positive definite for
//! λ > 0), not hand-written; the Gram matrix is summed from each user's item pairs, so its
//! cost grows with Σ (items per user)², not users × items². Memory is about 24·n² bytes for
//! n items, hence `max_items`.
//!
//! Options (JSON text): `lambda` (L2 penalty, default 400), `top_k` (neighbours kept per
//! item, default 200), `max_items` (default 10000).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    aggregate_doc_sections::DOC_SECTION_GENERAL, Accumulator, AggregateUDFImpl, Documentation,
    DocumentationBuilder, Signature, Volatility,
};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use serde::Deserialize;

use super::options::{coerce_weight_and_options, weight_and_options_columns, OptionsText};

const NAME: &str = "ease_fit";

/// The `ease_fit` aggregate UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EaseFit {
    signature: Signature,
}

impl Default for EaseFit {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The knobs of one fit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EaseOptions {
    /// The L2 penalty λ added to the Gram matrix's diagonal; larger means smoother.
    pub lambda: f64,
    /// How many neighbours each item keeps, by |weight|.
    pub top_k: usize,
    /// The most distinct items a fit accepts (memory is about 24·n² bytes).
    pub max_items: usize,
}

impl Default for EaseOptions {
    fn default() -> Self {
        Self {
            lambda: 400.0,
            top_k: 200,
            max_items: 10_000,
        }
    }
}

/// The type of one result row: which item, which neighbour, how much.
fn pair_fields() -> Fields {
    Fields::from(vec![
        Field::new("item", DataType::Int64, false),
        Field::new("neighbour", DataType::Int64, false),
        Field::new("weight", DataType::Float64, false),
    ])
}

fn output_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(pair_fields()),
        true,
    )))
}

fn list_of(data_type: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(data_type, true)))
}

impl AggregateUDFImpl for EaseFit {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=4).contains(&arg_types.len()) {
            return plan_err!(
                "{NAME} takes (user, item [, weight] [, options]), got {} arguments",
                arg_types.len()
            );
        }
        let mut coerced = Vec::with_capacity(arg_types.len());
        for (position, data_type) in arg_types[..2].iter().enumerate() {
            if !(data_type.is_integer() || data_type.is_null()) {
                return plan_err!(
                    "{NAME}: argument {} (the {}) must be an integer id, got {data_type}; \
                     map text ids to numbers first, e.g. with dense_rank() OVER (ORDER BY id)",
                    position + 1,
                    ["user", "item"][position]
                );
            }
            coerced.push(DataType::Int64);
        }
        coerced.extend(coerce_weight_and_options(
            NAME,
            &arg_types[2..],
            "{\"lambda\": 400}",
        )?);
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(output_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[users]", args.name),
                list_of(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[items]", args.name),
                list_of(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[weights]", args.name),
                list_of(DataType::Float64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[options]", args.name),
                DataType::Utf8,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let (weight_column, options_column) = weight_and_options_columns(args.expr_fields, 2);
        Ok(Box::new(EaseAccumulator {
            weight_column,
            options_column,
            ..Default::default()
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOCUMENTATION: OnceLock<Documentation> = OnceLock::new();
        Some(DOCUMENTATION.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_GENERAL,
                "EASE item-item model of (user, item[, weight]) rows: a list of \
                 {item, neighbour, weight}, each item's top_k neighbours. Score a user's \
                 candidate j as the sum of weight over the items the user has.",
                "ease_fit(user, item [, weight] [, '{\"lambda\": 400, \"top_k\": 200}'])",
            )
            .with_sql_example(
                "SELECT unnest(ease_fit(user_id, product_id, '{\"lambda\": 400}')) AS e FROM purchases",
            )
            .build()
        }))
    }
}

/// The interactions of one group, gathered until the fit at `evaluate`.
#[derive(Debug, Default)]
struct EaseAccumulator {
    weight_column: Option<usize>,
    options_column: Option<usize>,
    users: Vec<i64>,
    items: Vec<i64>,
    weights: Vec<f64>,
    options: OptionsText,
}

impl Accumulator for EaseAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(column) = self.options_column {
            self.options.observe(&values[column], NAME)?;
        }
        let users = values[0].as_primitive::<Int64Type>();
        let items = values[1].as_primitive::<Int64Type>();
        let weights = self
            .weight_column
            .map(|column| values[column].as_primitive::<Float64Type>());
        for row in 0..users.len() {
            if users.is_null(row) || items.is_null(row) {
                continue;
            }
            let weight = match weights {
                Some(w) if w.is_null(row) => continue,
                Some(w) => w.value(row),
                None => 1.0,
            };
            if !weight.is_finite() {
                return exec_err!("{NAME}: weights must be finite numbers, got {weight}");
            }
            self.users.push(users.value(row));
            self.items.push(items.value(row));
            self.weights.push(weight);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                [Some(self.users.iter().copied().map(Some))],
            ))),
            ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                [Some(self.items.iter().copied().map(Some))],
            ))),
            ScalarValue::List(Arc::new(
                ListArray::from_iter_primitive::<Float64Type, _, _>([Some(
                    self.weights.iter().copied().map(Some),
                )]),
            )),
            ScalarValue::Utf8(self.options.text().map(str::to_string)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let users = states[0].as_list::<i32>();
        let items = states[1].as_list::<i32>();
        let weights = states[2].as_list::<i32>();
        let options = states[3].as_string::<i32>();
        for row in 0..users.len() {
            if !options.is_null(row) {
                self.options.merge(Some(options.value(row)), NAME)?;
            }
            if users.is_null(row) {
                continue;
            }
            let user_values = users.value(row);
            self.users
                .extend(user_values.as_primitive::<Int64Type>().values().iter());
            let item_values = items.value(row);
            self.items
                .extend(item_values.as_primitive::<Int64Type>().values().iter());
            let weight_values = weights.value(row);
            self.weights
                .extend(weight_values.as_primitive::<Float64Type>().values().iter());
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.users.is_empty() {
            return ScalarValue::try_from(output_type());
        }
        let options: EaseOptions = self.options.parse(NAME)?;
        let interactions = Interactions::new(&self.users, &self.items, &self.weights);
        let pairs = fit(&interactions, &options)?;
        Ok(ScalarValue::List(Arc::new(pairs_to_list(&pairs))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.users.capacity() * 8
            + self.items.capacity() * 8
            + self.weights.capacity() * 8
    }
}

/// (user, item, weight) rows made canonical: sorted, duplicates summed, ids made dense.
#[derive(Debug)]
pub struct Interactions {
    /// Distinct item ids, ascending; an item's dense index is its position here.
    pub item_ids: Vec<i64>,
    /// Per user (in ascending id order), its (dense item index, weight) entries.
    pub user_rows: Vec<Vec<(usize, f64)>>,
}

impl Interactions {
    /// Canonical form of the rows, whatever order they arrived in (so the fit is the same
    /// on every run and every partitioning).
    pub fn new(users: &[i64], items: &[i64], weights: &[f64]) -> Self {
        let mut rows: Vec<(i64, i64, f64)> = users
            .iter()
            .zip(items)
            .zip(weights)
            .map(|((&u, &i), &w)| (u, i, w))
            .collect();
        rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
        let mut item_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        item_ids.sort_unstable();
        item_ids.dedup();
        let mut user_rows: Vec<Vec<(usize, f64)>> = Vec::new();
        let mut previous: Option<(i64, i64)> = None;
        for (user, item, weight) in rows {
            let index = item_ids.binary_search(&item).unwrap_or_default();
            match previous {
                Some((u, i)) if u == user && i == item => {
                    if let Some(last) = user_rows.last_mut().and_then(|r| r.last_mut()) {
                        last.1 += weight;
                    }
                }
                Some((u, _)) if u == user => {
                    if let Some(row) = user_rows.last_mut() {
                        row.push((index, weight));
                    }
                }
                _ => user_rows.push(vec![(index, weight)]),
            }
            previous = Some((user, item));
        }
        Self {
            item_ids,
            user_rows,
        }
    }
}

/// One item-item weight of the fitted model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemPair {
    /// The item a user has.
    pub item: i64,
    /// The item it recommends (or, with a negative weight, holds back).
    pub neighbour: i64,
    /// Bᵢⱼ: how much having `item` adds to `neighbour`'s score.
    pub weight: f64,
}

/// Fits EASE and keeps each item's `top_k` neighbours by |weight|.
pub fn fit(interactions: &Interactions, options: &EaseOptions) -> Result<Vec<ItemPair>> {
    let n = interactions.item_ids.len();
    if n > options.max_items {
        return exec_err!(
            "{NAME}: {n} distinct items is more than max_items {} (EASE needs about 24·n² bytes); \
             fit on the most popular items, or raise max_items in the options",
            options.max_items
        );
    }
    if !(options.lambda > 0.0 && options.lambda.is_finite()) {
        return exec_err!(
            "{NAME}: lambda must be a positive number, got {}",
            options.lambda
        );
    }
    let mut gram = Mat::<f64>::zeros(n, n);
    for row in &interactions.user_rows {
        for &(j, wj) in row {
            let column = gram.col_as_slice_mut(j);
            for &(i, wi) in row {
                column[i] += wi * wj;
            }
        }
    }
    for i in 0..n {
        gram[(i, i)] += options.lambda;
    }
    let precision = match gram.llt(Side::Lower) {
        Ok(factor) => factor.inverse(),
        Err(error) => {
            return exec_err!(
                "{NAME}: the Gram matrix plus lambda is not positive definite ({error:?}); \
                 check that the weights are not negative"
            )
        }
    };
    drop(gram);
    let top_k = options.top_k.min(n.saturating_sub(1));
    let mut pairs = Vec::with_capacity(n * top_k);
    let mut row: Vec<(usize, f64)> = Vec::with_capacity(n);
    for i in 0..n {
        row.clear();
        let column = precision.col_as_slice(i);
        row.extend(
            (0..n)
                .filter(|&j| j != i)
                .map(|j| (j, -column[j] / precision[(j, j)]))
                .filter(|(_, weight)| *weight != 0.0),
        );
        let by_strength = |a: &(usize, f64), b: &(usize, f64)| {
            b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0))
        };
        if row.len() > top_k && top_k > 0 {
            row.select_nth_unstable_by(top_k - 1, by_strength);
        }
        row.truncate(top_k);
        row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs.extend(row.iter().map(|&(j, weight)| ItemPair {
            item: interactions.item_ids[i],
            neighbour: interactions.item_ids[j],
            weight,
        }));
    }
    Ok(pairs)
}

fn pairs_to_list(pairs: &[ItemPair]) -> ListArray {
    let items = Int64Array::from_iter_values(pairs.iter().map(|p| p.item));
    let neighbours = Int64Array::from_iter_values(pairs.iter().map(|p| p.neighbour));
    let weights = Float64Array::from_iter_values(pairs.iter().map(|p| p.weight));
    let rows = StructArray::new(
        pair_fields(),
        vec![
            Arc::new(items) as ArrayRef,
            Arc::new(neighbours),
            Arc::new(weights),
        ],
        None,
    );
    ListArray::new(
        Arc::new(Field::new_list_field(DataType::Struct(pair_fields()), true)),
        OffsetBuffer::from_lengths([pairs.len()]),
        Arc::new(rows),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formula on a tiny matrix, computed by hand with numpy-like steps.
    #[test]
    fn matches_the_closed_form() {
        // Users: 1 has items 10, 20; 2 has 10, 20, 30; 3 has 30.
        let users = [1, 1, 2, 2, 2, 3];
        let items = [10, 20, 10, 20, 30, 30];
        let weights = [1.0; 6];
        let interactions = Interactions::new(&users, &items, &weights);
        let options = EaseOptions {
            lambda: 1.0,
            top_k: 10,
            ..Default::default()
        };
        let pairs = fit(&interactions, &options).unwrap();
        // G + I = [[3,2,1],[2,3,1],[1,1,3]]; its inverse times 13:
        // [[8,-5,-1],[-5,8,-1],[-1,-1,5]].
        let p = [[8.0, -5.0, -1.0], [-5.0, 8.0, -1.0], [-1.0, -1.0, 5.0]];
        let ids = [10, 20, 30];
        for pair in &pairs {
            let i = ids.iter().position(|&x| x == pair.item).unwrap();
            let j = ids.iter().position(|&x| x == pair.neighbour).unwrap();
            let expected = -p[i][j] / p[j][j];
            assert!(
                (pair.weight - expected).abs() < 1e-12,
                "{pair:?} vs {expected}"
            );
        }
        assert_eq!(pairs.len(), 6);
        assert_eq!(pairs[0].item, 10);
        assert_eq!(pairs[0].neighbour, 20);
    }

    #[test]
    fn duplicates_sum_and_order_does_not_matter() {
        let a = Interactions::new(&[1, 1, 2], &[5, 5, 6], &[1.0, 2.0, 1.0]);
        let b = Interactions::new(&[2, 1, 1], &[6, 5, 5], &[1.0, 2.0, 1.0]);
        assert_eq!(a.user_rows, vec![vec![(0, 3.0)], vec![(1, 1.0)]]);
        assert_eq!(a.user_rows, b.user_rows);
    }

    #[test]
    fn too_many_items_names_the_option() {
        let interactions = Interactions::new(&[1, 1, 1], &[1, 2, 3], &[1.0; 3]);
        let options = EaseOptions {
            max_items: 2,
            ..Default::default()
        };
        let err = fit(&interactions, &options).unwrap_err().to_string();
        assert!(
            err.contains("3 distinct items") && err.contains("max_items"),
            "{err}"
        );
    }

    #[test]
    fn top_k_keeps_the_strongest() {
        let users = [1, 1, 1, 2, 2, 3, 3];
        let items = [1, 2, 3, 1, 2, 1, 4];
        let interactions = Interactions::new(&users, &items, &[1.0; 7]);
        let options = EaseOptions {
            lambda: 0.5,
            top_k: 1,
            ..Default::default()
        };
        let pairs = fit(&interactions, &options).unwrap();
        assert_eq!(pairs.len(), 4);
    }
}
