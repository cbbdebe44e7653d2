//! Bandit policies as SQL functions, for re-ranking top candidates from live counts.
//!
//! Why: a ranking learnt yesterday must still explore today. These functions turn the
//! click/impression counts that `INSERT`s keep current into an exploration-aware score,
//! so `ORDER BY thompson(clicks, impressions - clicks) DESC` re-ranks at query time.

pub mod epsilon_greedy;
pub mod thompson;
pub mod ucb;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random source for one row: reproducible from `seed` (ChaCha8, the same stream on
/// every machine and run), or fresh entropy when the query gave no seed.
pub fn row_rng(seed: Option<i64>) -> ChaCha8Rng {
    match seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed as u64),
        None => ChaCha8Rng::from_os_rng(),
    }
}

/// Coerces `arg_types` to `Float64`, except an optional trailing seed to `Int64`.
pub fn coerce_with_seed(
    function: &str,
    arg_types: &[DataType],
    numbers: usize,
    max_numbers: usize,
) -> Result<Vec<DataType>> {
    if arg_types.len() < numbers || arg_types.len() > max_numbers + 1 {
        return plan_err!(
            "{function} takes {numbers} to {} arguments, got {}",
            max_numbers + 1,
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .enumerate()
        .map(|(position, data_type)| {
            if !(data_type.is_numeric() || data_type.is_null()) {
                return plan_err!(
                    "{function}: argument {} must be a number, got {data_type}",
                    position + 1
                );
            }
            let is_seed = position == max_numbers;
            Ok(if is_seed {
                DataType::Int64
            } else {
                DataType::Float64
            })
        })
        .collect()
}
