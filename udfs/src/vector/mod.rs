//! Vector math over `FixedSizeList<Float32>` (and lists and pgvector text): similarities,
//! normalisation and the aggregates that turn behaviour into user vectors.

pub mod args;
pub mod cosine;
pub mod dot;
pub mod kernels;
pub mod l2_distance;
pub mod l2_normalize;
pub mod pairwise;
pub mod vec_aggregate;
pub mod vector_dims;
