//! Ranking helpers: softmax probabilities within a partition and rank fusion.

pub mod rrf;
pub mod softmax_rank;
