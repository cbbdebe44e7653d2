//! The inner loops of every vector function, written once.
//!
//! Why: a brute-force scan of a million 384-d vectors is bound by memory bandwidth only if
//! the arithmetic keeps up. The bodies are plain Rust that LLVM vectorises; on x86_64 the
//! same bodies are compiled a second time with AVX2+FMA enabled and picked at run time, so
//! one binary is fast on every CPU it runs on.

/// Lanes of independent accumulators: enough to hide the latency of an add on AVX2.
const LANES: usize = 16;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            acc[lane] += x[lane] * y[lane];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_and_norm_body(row: &[f32], query: &[f32]) -> (f32, f32) {
    let mut dot = [0f32; LANES];
    let mut norm = [0f32; LANES];
    let (r_chunks, q_chunks) = (row.chunks_exact(LANES), query.chunks_exact(LANES));
    let (mut dot_tail, mut norm_tail) = (0f32, 0f32);
    for (x, y) in r_chunks.remainder().iter().zip(q_chunks.remainder()) {
        dot_tail += x * y;
        norm_tail += x * x;
    }
    for (x, y) in r_chunks.zip(q_chunks) {
        for lane in 0..LANES {
            dot[lane] += x[lane] * y[lane];
            norm[lane] += x[lane] * x[lane];
        }
    }
    (
        dot.iter().sum::<f32>() + dot_tail,
        norm.iter().sum::<f32>() + norm_tail,
    )
}

#[inline(always)]
fn squared_l2_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            let d = x[lane] - y[lane];
            acc[lane] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Defines a public kernel that dispatches to an AVX2+FMA build of `$body` when the CPU
/// has it, and to the portable build otherwise.
macro_rules! dispatched_kernel {
    ($(#[$doc:meta])* $name:ident, $body:ident, ($($arg:ident),+) -> $out:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name($($arg: &[f32]),+) -> $out {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn accelerated($($arg: &[f32]),+) -> $out {
                    $body($($arg),+)
                }
                if has_avx2_fma() {
                    // SAFETY: the CPU supports the features `accelerated` was compiled for.
                    return unsafe { accelerated($($arg),+) };
                }
            }
            $body($($arg),+)
        }
    };
}

dispatched_kernel!(
    /// Inner product of two equally long slices.
    dot, dot_body, (a, b) -> f32
);
dispatched_kernel!(
    /// Squared Euclidean distance of two equally long slices.
    squared_l2, squared_l2_body, (a, b) -> f32
);

/// `(row · query, row · row)` in one pass: cosine against a fixed query reads each row once.
#[inline]
pub fn dot_and_norm(row: &[f32], query: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::dot_and_norm(row, query) };
    }
    dot_and_norm_body(row, query)
}

/// [`dot_and_norm`] of every row of a contiguous column (`query.len()` values per row)
/// against one query, into `out`. One call per column: the CPU check happens once and
/// the row loop is compiled with the vector instructions inlined.
pub fn dot_and_norm_rows(rows: &[f32], query: &[f32], out: &mut [(f32, f32)]) {
    if query.is_empty() {
        out.fill((0.0, 0.0));
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::dot_and_norm_rows(rows, query, out) };
    }
    for (row, slot) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        *slot = dot_and_norm_body(row, query);
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `dot_and_norm` written with AVX2/FMA intrinsics. Why not the portable body: LLVM
/// vectorises its two interleaved accumulators across (dot, norm) pairs in 128-bit
/// registers without FMA, which left the cosine scan at half the memory bandwidth.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehdup_ps,
        _mm_movehl_ps,
    };

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
    }

    /// Two independent accumulators per sum (16 floats per step) hide the FMA latency.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_and_norm(row: &[f32], query: &[f32]) -> (f32, f32) {
        let (mut dot0, mut dot1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut norm0, mut norm1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (row_chunks, query_chunks) = (row.chunks_exact(16), query.chunks_exact(16));
        let (mut dot_tail, mut norm_tail) = (0f32, 0f32);
        for (x, y) in row_chunks.remainder().iter().zip(query_chunks.remainder()) {
            dot_tail += x * y;
            norm_tail += x * x;
        }
        for (r, q) in row_chunks.zip(query_chunks) {
            // SAFETY: each chunk holds 16 floats: loads at 0 and 8 read 8 each, in bounds.
            let (r0, r1, q0, q1) = unsafe {
                (
                    _mm256_loadu_ps(r.as_ptr()),
                    _mm256_loadu_ps(r.as_ptr().add(8)),
                    _mm256_loadu_ps(q.as_ptr()),
                    _mm256_loadu_ps(q.as_ptr().add(8)),
                )
            };
            dot0 = _mm256_fmadd_ps(r0, q0, dot0);
            dot1 = _mm256_fmadd_ps(r1, q1, dot1);
            norm0 = _mm256_fmadd_ps(r0, r0, norm0);
            norm1 = _mm256_fmadd_ps(r1, r1, norm1);
        }
        (
            horizontal_sum(_mm256_add_ps(dot0, dot1)) + dot_tail,
            horizontal_sum(_mm256_add_ps(norm0, norm1)) + norm_tail,
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_and_norm_rows(rows: &[f32], query: &[f32], out: &mut [(f32, f32)]) {
        for (row, slot) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
            *slot = dot_and_norm(row, query);
        }
    }
}

/// Squared L2 norm of a slice.
#[inline]
pub fn squared_norm(a: &[f32]) -> f32 {
    dot(a, a)
}

/// Cosine similarity from its parts; `None` when either vector has zero length, where the
/// angle is undefined.
#[inline]
pub fn cosine_from_parts(dot: f32, norm_a_sq: f32, norm_b_sq: f32) -> Option<f64> {
    let denominator = (norm_a_sq as f64).sqrt() * (norm_b_sq as f64).sqrt();
    (denominator > 0.0).then(|| (dot as f64 / denominator).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (0usize..700).prop_flat_map(|len| {
            (
                prop::collection::vec(-10f32..10f32, len),
                prop::collection::vec(-10f32..10f32, len),
            )
        })
    }

    /// f32 accumulation over `len` terms: allow an error proportional to the magnitudes.
    fn tolerance(a: &[f32], b: &[f32]) -> f64 {
        let magnitude: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 * *y as f64).abs())
            .sum();
        1e-5 * magnitude + 1e-6
    }

    proptest! {
        #[test]
        fn dot_matches_f64_reference((a, b) in pair()) {
            let expected = reference_dot(&a, &b);
            prop_assert!((dot(&a, &b) as f64 - expected).abs() <= tolerance(&a, &b));
        }

        #[test]
        fn dot_and_norm_matches_f64_reference((a, b) in pair()) {
            let (d, n) = dot_and_norm(&a, &b);
            prop_assert!((d as f64 - reference_dot(&a, &b)).abs() <= tolerance(&a, &b));
            prop_assert!((n as f64 - reference_dot(&a, &a)).abs() <= tolerance(&a, &a));
        }

        /// The portable body, which CPUs without AVX2/FMA run (the test machine has them).
        #[test]
        fn portable_dot_and_norm_matches_f64_reference((a, b) in pair()) {
            let (d, n) = dot_and_norm_body(&a, &b);
            prop_assert!((d as f64 - reference_dot(&a, &b)).abs() <= tolerance(&a, &b));
            prop_assert!((n as f64 - reference_dot(&a, &a)).abs() <= tolerance(&a, &a));
        }

        #[test]
        fn squared_l2_matches_f64_reference((a, b) in pair()) {
            let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            let expected = reference_dot(&diff, &diff);
            prop_assert!((squared_l2(&a, &b) as f64 - expected).abs() <= tolerance(&diff, &diff) * 2.0);
        }

        #[test]
        fn cosine_is_within_unit_interval((a, b) in pair()) {
            let (d, na) = dot_and_norm(&a, &b);
            if let Some(c) = cosine_from_parts(d, na, squared_norm(&b)) {
                prop_assert!((-1.0..=1.0).contains(&c));
                let expected = reference_dot(&a, &b)
                    / (reference_dot(&a, &a).sqrt() * reference_dot(&b, &b).sqrt());
                prop_assert!((c - expected).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn column_kernel_matches_the_row_kernel() {
        let query = [0.5f32, -1.0, 2.0];
        let rows = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0, -4.0, 0.25, 1.0];
        let mut out = vec![(0f32, 0f32); 3];
        dot_and_norm_rows(&rows, &query, &mut out);
        for (i, row) in rows.chunks_exact(3).enumerate() {
            assert_eq!(out[i], dot_and_norm(row, &query));
        }
    }

    #[test]
    fn zero_vector_has_no_cosine() {
        assert_eq!(cosine_from_parts(0.0, 0.0, 1.0), None);
    }
}
