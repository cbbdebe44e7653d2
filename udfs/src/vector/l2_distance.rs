//! `l2_distance(a, b)`: Euclidean distance, pgvector's `<->`.

use std::sync::OnceLock;

use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, Documentation, DocumentationBuilder,
};

use super::kernels;
use super::pairwise::PairwiseKernel;

/// Euclidean distance of two vectors; NULL when either is NULL.
#[derive(Debug)]
pub struct L2Distance;

impl PairwiseKernel for L2Distance {
    const NAME: &'static str = "l2_distance";

    fn documentation() -> &'static Documentation {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Euclidean distance of two vectors (pgvector's <->).",
                "l2_distance(a, b)",
            )
            .with_sql_example("SELECT l2_distance('[0,0]', '[3,4]') -- 5")
            .build()
        })
    }

    #[inline]
    fn pair(a: &[f32], b: &[f32]) -> Option<f64> {
        Some((kernels::squared_l2(a, b) as f64).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pythagoras() {
        assert_eq!(L2Distance::pair(&[0.0, 0.0], &[3.0, 4.0]), Some(5.0));
    }
}
