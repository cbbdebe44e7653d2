//! `cosine(a, b)`: cosine similarity, the score every ranking in rankql starts from.

use std::sync::OnceLock;

use datafusion::logical_expr::{
    scalar_doc_sections::DOC_SECTION_MATH, Documentation, DocumentationBuilder,
};

use super::kernels;
use super::pairwise::PairwiseKernel;

/// Cosine similarity in [-1, 1]; NULL when either vector is NULL or has zero length.
#[derive(Debug)]
pub struct Cosine;

impl PairwiseKernel for Cosine {
    const NAME: &'static str = "cosine";

    fn documentation() -> &'static Documentation {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        DOC.get_or_init(|| {
            DocumentationBuilder::new_with_details(
                DOC_SECTION_MATH,
                "Cosine similarity of two vectors, in [-1, 1]. NULL if either is NULL or a zero vector.",
                "cosine(a, b)",
            )
            .with_sql_example("SELECT cosine(embed('running shoes'), vec) FROM product_vectors")
            .build()
        })
    }

    #[inline]
    fn pair(a: &[f32], b: &[f32]) -> Option<f64> {
        let (dot, norm_a) = kernels::dot_and_norm(a, b);
        kernels::cosine_from_parts(dot, norm_a, kernels::squared_norm(b))
    }

    #[inline]
    fn against_query(row: &[f32], query: &[f32], query_norm_sq: f32) -> Option<f64> {
        let (dot, row_norm) = kernels::dot_and_norm(row, query);
        kernels::cosine_from_parts(dot, row_norm, query_norm_sq)
    }

    fn against_query_rows(rows: &[f32], query: &[f32], query_norm_sq: f32, out: &mut Vec<f64>) {
        let mut parts = vec![(0f32, 0f32); rows.len() / query.len()];
        kernels::dot_and_norm_rows(rows, query, &mut parts);
        out.extend(parts.iter().map(|&(dot, row_norm)| {
            kernels::cosine_from_parts(dot, row_norm, query_norm_sq).unwrap_or(f64::NAN)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_orthogonal_and_opposite() {
        assert!((Cosine::pair(&[1.0, 2.0], &[2.0, 4.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!(Cosine::pair(&[1.0, 0.0], &[0.0, 3.0]).unwrap().abs() < 1e-6);
        assert!((Cosine::pair(&[1.0, 1.0], &[-1.0, -1.0]).unwrap() + 1.0).abs() < 1e-6);
    }

    #[test]
    fn zero_vector_is_undefined() {
        assert_eq!(Cosine::pair(&[0.0, 0.0], &[1.0, 1.0]), None);
        assert_eq!(Cosine::against_query(&[1.0, 1.0], &[0.0, 0.0], 0.0), None);
    }
}
