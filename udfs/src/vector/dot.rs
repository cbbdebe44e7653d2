//! `dot(a, b)`: the inner product, the score for already-normalised vectors.

use std::sync::OnceLock;

use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, Documentation, DocumentationBuilder,
};

use super::kernels;
use super::pairwise::PairwiseKernel;

/// Inner product of two vectors; NULL when either is NULL.
#[derive(Debug)]
pub struct Dot;

impl PairwiseKernel for Dot {
    const NAME: &'static str = "dot";

    fn documentation() -> &'static Documentation {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Inner product of two vectors (pgvector's <#> is its negative).",
                "dot(a, b)",
            )
            .with_sql_example("SELECT dot('[1,2]', '[3,4]') -- 11")
            .build()
        })
    }

    #[inline]
    fn pair(a: &[f32], b: &[f32]) -> Option<f64> {
        Some(kernels::dot(a, b) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_product() {
        assert_eq!(Dot::pair(&[1.0, 2.0], &[3.0, 4.0]), Some(11.0));
        assert_eq!(Dot::pair(&[], &[]), Some(0.0));
    }
}
