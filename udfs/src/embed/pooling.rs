//! Token vectors → one sentence vector: mean over real tokens or the `[CLS]` token, then
//! optional L2 normalisation.

use super::config::Pooling;

/// Pools row `row` of a `[batch, seq, dim]` hidden-state tensor whose first `tokens`
/// positions are real (the rest padding).
pub fn pool(
    hidden: &[f32],
    seq: usize,
    dim: usize,
    row: usize,
    tokens: usize,
    pooling: Pooling,
    normalize: bool,
) -> Vec<f32> {
    let start = row * seq * dim;
    let mut vector = match pooling {
        Pooling::Cls => hidden[start..start + dim].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0f32; dim];
            for token in 0..tokens {
                let offset = start + token * dim;
                for (s, h) in sum.iter_mut().zip(&hidden[offset..offset + dim]) {
                    *s += h;
                }
            }
            let count = tokens.max(1) as f32;
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        }
    };
    if normalize {
        normalize_in_place(&mut vector);
    }
    vector
}

/// Scales `vector` to unit length (a zero vector stays zero).
pub fn normalize_in_place(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_ignores_padding() {
        // batch 1, seq 3 (2 real tokens), dim 2
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(
            pool(&hidden, 3, 2, 0, 2, Pooling::Mean, false),
            vec![2.0, 3.0]
        );
        assert_eq!(
            pool(&hidden, 3, 2, 0, 2, Pooling::Cls, false),
            vec![1.0, 2.0]
        );
        let unit = pool(&hidden, 3, 2, 0, 2, Pooling::Mean, true);
        assert!((unit.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
