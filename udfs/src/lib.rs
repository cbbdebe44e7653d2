//! rankql's SQL functions for Apache DataFusion: vector math, ranking, bandits,
//! experiments, learning from behaviour and `embed()`.
//!
//! Everything a DataFusion node needs to evaluate rankql SQL lives in this crate, so the
//! single-node server and any other DataFusion (or Ballista) process register the same
//! functions with one call to [`register_all`].

pub mod bandit;
pub mod blocking;
pub mod columnar;
pub mod embed;
pub mod experiment;
pub mod interrupt;
pub mod learn;
pub mod rank;
pub mod vector;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

use embed::models_table::Models;
use embed::stats::EmbedStats;
use embed::udf::Embed;
use embed::ModelRegistry;
use vector::pairwise::PairwiseUdf;
use vector::vec_aggregate::{VecAggregate, VecAggregateKind};

/// The scalar functions that need no model: vector math, fusion, bandits, experiments.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(PairwiseUdf::<vector::cosine::Cosine>::default()),
        ScalarUDF::new_from_impl(PairwiseUdf::<vector::dot::Dot>::default()),
        ScalarUDF::new_from_impl(PairwiseUdf::<vector::l2_distance::L2Distance>::default()),
        ScalarUDF::new_from_impl(vector::l2_normalize::L2Normalize::default()),
        ScalarUDF::new_from_impl(vector::vector_dims::VectorDims::default()),
        ScalarUDF::new_from_impl(rank::rrf::Rrf::default()),
        ScalarUDF::new_from_impl(bandit::thompson::Thompson::default()),
        ScalarUDF::new_from_impl(bandit::ucb::Ucb::default()),
        ScalarUDF::new_from_impl(bandit::epsilon_greedy::EpsilonGreedy::default()),
        ScalarUDF::new_from_impl(experiment::ab_bucket::AbBucket::default()),
        ScalarUDF::new_from_impl(learn::adapt::Adapt::default()),
    ]
}

/// The aggregate functions: `vec_avg`, `vec_sum`, `adapter_fit`, `ease_fit`.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(VecAggregate::new(VecAggregateKind::Avg)),
        AggregateUDF::new_from_impl(VecAggregate::new(VecAggregateKind::Sum)),
        AggregateUDF::new_from_impl(learn::adapter_fit::AdapterFit::default()),
        AggregateUDF::new_from_impl(learn::ease::EaseFit::default()),
    ]
}

/// The window functions: `softmax_rank`.
pub fn window_functions() -> Vec<WindowUDF> {
    vec![WindowUDF::new_from_impl(
        rank::softmax_rank::SoftmaxRank::default(),
    )]
}

/// Registers every rankql function in `ctx`; `embed()` and `embed_stats()` use the
/// models of `models`.
pub fn register_all(ctx: &SessionContext, models: Arc<ModelRegistry>) {
    for udf in scalar_functions() {
        ctx.register_udf(udf);
    }
    for udaf in aggregate_functions() {
        ctx.register_udaf(udaf);
    }
    for udwf in window_functions() {
        ctx.register_udwf(udwf);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Embed::new(models.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(Embed::query(models.clone())));
    ctx.register_udtf("models", Arc::new(Models::new(models.clone())));
    ctx.register_udtf("embed_stats", Arc::new(EmbedStats::new(models)));
}
