//! Training of a linear adapter W (d × d, started at the identity) with an in-batch
//! contrastive (InfoNCE) loss — the kernel behind `adapter_fit`.
//!
//! Why this loss: pairs that belong together — (query, clicked product), (product,
//! co-purchased product) — are all a shop has; InfoNCE needs no negatives of its own, as
//! every other pair in the batch is one. Both vectors of a pair go through the same W, so
//! `adapt(adapter, v)` applies to queries and products alike and stays a cosine space.
//!
//! For a batch of m pairs with weights ω (normalised to sum 1): uᵢ = W aᵢ/‖W aᵢ‖,
//! vⱼ = W bⱼ/‖W bⱼ‖, S = U Vᵀ / τ, and the loss is the symmetric cross-entropy
//! ½ Σᵢ ωᵢ (−log softmax_row(S)ᵢᵢ) + ½ Σⱼ ωⱼ (−log softmax_col(S)ⱼⱼ), plus
//! `regularization`·½‖W − I‖² to keep the map near the pre-trained space. Gradients are
//! written out below (no autodiff crate) and the step is Adam. Matrix products go through
//! faer, which parallelises over the output with rayon (each output is summed in a fixed
//! order, so a seed gives the same adapter on every run).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// The knobs of one training run; the defaults suit 384-d sentence embeddings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterOptions {
    /// Passes over the pairs.
    pub epochs: usize,
    /// Pairs per batch (each pair's negatives are the other pairs of its batch).
    pub batch_size: usize,
    /// Adam's step size.
    pub learning_rate: f32,
    /// The softmax temperature τ: smaller sharpens the contrast.
    pub temperature: f32,
    /// Pull of W towards the identity (0 = none).
    pub regularization: f32,
    /// Seeds the shuffling: the same seed and pairs give the same adapter.
    pub seed: u64,
    /// The most pairs one fit accepts (memory is 8·d bytes per pair).
    pub max_pairs: usize,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 256,
            learning_rate: 1e-3,
            temperature: 0.05,
            regularization: 0.0,
            seed: 42,
            max_pairs: 250_000,
        }
    }
}

/// Pairs of unit vectors with weights, in a canonical order.
#[derive(Debug, Default, Clone)]
pub struct Pairs {
    /// The dimension d.
    pub dimension: usize,
    /// Row-major n × d.
    pub left: Vec<f32>,
    /// Row-major n × d.
    pub right: Vec<f32>,
    /// n weights.
    pub weights: Vec<f32>,
}

impl Pairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Adds one pair, normalising both vectors; a zero vector has no direction and is skipped.
    pub fn push(&mut self, left: &[f32], right: &[f32], weight: f32) {
        let (Some(l), Some(r)) = (unit(left), unit(right)) else {
            return;
        };
        self.left.extend(l);
        self.right.extend(r);
        self.weights.push(weight);
    }

    /// Adds a pair that is already of unit length (from another accumulator's state).
    pub fn push_unit(&mut self, left: &[f32], right: &[f32], weight: f32) {
        self.left.extend_from_slice(left);
        self.right.extend_from_slice(right);
        self.weights.push(weight);
    }

    /// Sorts the pairs by their content, so the arrival order (which depends on how the
    /// rows were partitioned) does not change the result.
    fn canonical_order(&self) -> Vec<usize> {
        let d = self.dimension;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&i, &j| {
            row_bits(&self.left, i, d)
                .cmp(row_bits(&self.left, j, d))
                .then_with(|| row_bits(&self.right, i, d).cmp(row_bits(&self.right, j, d)))
                .then(self.weights[i].to_bits().cmp(&self.weights[j].to_bits()))
        });
        order
    }
}

/// Row `k`'s values as bit patterns, for a total order on vectors.
fn row_bits(values: &[f32], k: usize, d: usize) -> impl Iterator<Item = u32> + '_ {
    values[k * d..(k + 1) * d].iter().map(|x| x.to_bits())
}

fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
}

/// A trained adapter and how training went.
#[derive(Debug, Clone)]
pub struct TrainedAdapter {
    /// W, row-major d × d.
    pub weights: Vec<f32>,
    /// The mean loss of each epoch (the first is measured while training starts).
    pub epoch_losses: Vec<f32>,
}

/// Trains W on `pairs`.
pub fn train(pairs: &Pairs, options: &AdapterOptions) -> TrainedAdapter {
    let d = pairs.dimension;
    let order = pairs.canonical_order();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut w = Mat::<f32>::identity(d, d);
    let mut adam = Adam::new(d, options.learning_rate);
    let batch = options.batch_size.max(2);
    let par = Par::rayon(0);
    let mut epoch_losses = Vec::with_capacity(options.epochs);
    let mut shuffled = order.clone();
    for _ in 0..options.epochs {
        shuffled.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for chunk in shuffled.chunks(batch) {
            if chunk.len() < 2 {
                continue;
            }
            let (loss, mut gradient) = loss_and_gradient(pairs, chunk, w.as_ref(), options, par);
            if options.regularization > 0.0 {
                for j in 0..d {
                    for i in 0..d {
                        let target = if i == j { 1.0 } else { 0.0 };
                        gradient[(i, j)] += options.regularization * (w[(i, j)] - target);
                    }
                }
            }
            adam.step(&mut w, &gradient);
            loss_sum += loss;
            batches += 1;
        }
        epoch_losses.push(if batches > 0 {
            loss_sum / batches as f32
        } else {
            0.0
        });
    }
    let mut weights = Vec::with_capacity(d * d);
    for i in 0..d {
        for j in 0..d {
            weights.push(w[(i, j)]);
        }
    }
    TrainedAdapter {
        weights,
        epoch_losses,
    }
}

fn gather(rows: &[f32], d: usize, indices: &[usize]) -> Mat<f32> {
    Mat::from_fn(indices.len(), d, |i, k| rows[indices[i] * d + k])
}

/// X = rows · Wᵀ, then each row scaled to unit length; returns (U, norms).
fn project(rows: MatRef<'_, f32>, w: MatRef<'_, f32>, par: Par) -> (Mat<f32>, Vec<f32>) {
    let mut x = Mat::<f32>::zeros(rows.nrows(), w.nrows());
    matmul(&mut x, Accum::Replace, rows, w.transpose(), 1.0, par);
    let mut norms = vec![0.0f32; x.nrows()];
    for j in 0..x.ncols() {
        for (i, value) in x.col_as_slice(j).iter().enumerate() {
            norms[i] += value * value;
        }
    }
    for norm in &mut norms {
        *norm = norm.sqrt().max(1e-12);
    }
    for j in 0..x.ncols() {
        for (i, value) in x.col_as_slice_mut(j).iter_mut().enumerate() {
            *value /= norms[i];
        }
    }
    (x, norms)
}

/// The gradient through the normalisation: (g − u (u·g)) / ‖x‖, row by row, in place.
fn through_normalisation(gradient: &mut Mat<f32>, units: &Mat<f32>, norms: &[f32]) {
    let m = gradient.nrows();
    let mut along = vec![0.0f32; m];
    for j in 0..gradient.ncols() {
        let g = gradient.col_as_slice(j);
        let u = units.col_as_slice(j);
        for i in 0..m {
            along[i] += g[i] * u[i];
        }
    }
    for j in 0..gradient.ncols() {
        let u = units.col_as_slice(j).to_vec();
        for (i, g) in gradient.col_as_slice_mut(j).iter_mut().enumerate() {
            *g = (*g - u[i] * along[i]) / norms[i];
        }
    }
}

fn loss_and_gradient(
    pairs: &Pairs,
    chunk: &[usize],
    w: MatRef<'_, f32>,
    options: &AdapterOptions,
    par: Par,
) -> (f32, Mat<f32>) {
    let d = pairs.dimension;
    let m = chunk.len();
    let a = gather(&pairs.left, d, chunk);
    let b = gather(&pairs.right, d, chunk);
    let (u, u_norms) = project(a.as_ref(), w, par);
    let (v, v_norms) = project(b.as_ref(), w, par);
    let tau = options.temperature;
    let mut scores = Mat::<f32>::zeros(m, m);
    matmul(
        &mut scores,
        Accum::Replace,
        &u,
        v.transpose(),
        1.0 / tau,
        par,
    );

    let total_weight: f32 = chunk.iter().map(|&i| pairs.weights[i]).sum();
    let omega: Vec<f32> = chunk
        .iter()
        .map(|&i| pairs.weights[i] / total_weight.max(f32::MIN_POSITIVE))
        .collect();
    let rows = softmax_rows(&scores);
    let columns = softmax_rows(&scores.transpose().to_owned());
    let mut loss = 0.0;
    let mut g = Mat::<f32>::zeros(m, m);
    for j in 0..m {
        for i in 0..m {
            let delta = if i == j { 1.0 } else { 0.0 };
            g[(i, j)] = 0.5 * omega[i] * (rows[(i, j)] - delta)
                + 0.5 * omega[j] * (columns[(j, i)] - delta);
        }
        loss -= 0.5 * omega[j] * (rows[(j, j)].max(1e-30).ln() + columns[(j, j)].max(1e-30).ln());
    }
    let mut du = Mat::<f32>::zeros(m, d);
    matmul(&mut du, Accum::Replace, &g, &v, 1.0 / tau, par);
    let mut dv = Mat::<f32>::zeros(m, d);
    matmul(&mut dv, Accum::Replace, g.transpose(), &u, 1.0 / tau, par);
    through_normalisation(&mut du, &u, &u_norms);
    through_normalisation(&mut dv, &v, &v_norms);
    let mut gradient = Mat::<f32>::zeros(d, d);
    matmul(&mut gradient, Accum::Replace, du.transpose(), &a, 1.0, par);
    matmul(&mut gradient, Accum::Add, dv.transpose(), &b, 1.0, par);
    (loss, gradient)
}

/// Softmax of each row, computed stably.
fn softmax_rows(scores: &Mat<f32>) -> Mat<f32> {
    let (m, n) = (scores.nrows(), scores.ncols());
    let mut out = Mat::<f32>::zeros(m, n);
    for i in 0..m {
        let max = (0..n)
            .map(|j| scores[(i, j)])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for j in 0..n {
            let e = (scores[(i, j)] - max).exp();
            out[(i, j)] = e;
            sum += e;
        }
        for j in 0..n {
            out[(i, j)] /= sum;
        }
    }
    out
}

/// Adam's moment estimates for W.
struct Adam {
    learning_rate: f32,
    first: Mat<f32>,
    second: Mat<f32>,
    steps: i32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;

    fn new(d: usize, learning_rate: f32) -> Self {
        Self {
            learning_rate,
            first: Mat::zeros(d, d),
            second: Mat::zeros(d, d),
            steps: 0,
        }
    }

    fn step(&mut self, w: &mut Mat<f32>, gradient: &Mat<f32>) {
        self.steps += 1;
        let correction1 = 1.0 - Self::BETA1.powi(self.steps);
        let correction2 = 1.0 - Self::BETA2.powi(self.steps);
        for j in 0..w.ncols() {
            let g = gradient.col_as_slice(j);
            let first = self.first.col_as_slice_mut(j);
            for (m, g) in first.iter_mut().zip(g) {
                *m = Self::BETA1 * *m + (1.0 - Self::BETA1) * g;
            }
            let second = self.second.col_as_slice_mut(j);
            for (v, g) in second.iter_mut().zip(g) {
                *v = Self::BETA2 * *v + (1.0 - Self::BETA2) * g * g;
            }
            let first = self.first.col_as_slice(j);
            let second = self.second.col_as_slice(j);
            for ((x, m), v) in w.col_as_slice_mut(j).iter_mut().zip(first).zip(second) {
                let step = (m / correction1) / ((v / correction2).sqrt() + Self::EPSILON);
                *x -= self.learning_rate * step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Pairs whose halves agree only on a hidden subspace: the pre-trained space mixes in
    /// noise dimensions, and training must learn to weigh them down.
    fn raw_pairs(n: usize, d: usize, seed: u64) -> Vec<(Vec<f32>, Vec<f32>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let signal: Vec<f32> = (0..d / 2).map(|_| rng.random_range(-1.0..1.0)).collect();
                let mut left = signal.clone();
                let mut right = signal;
                left.extend((0..d - d / 2).map(|_| rng.random_range(-3.0f32..3.0)));
                right.extend((0..d - d / 2).map(|_| rng.random_range(-3.0f32..3.0)));
                (left, right)
            })
            .collect()
    }

    fn to_pairs<'a>(raw: impl Iterator<Item = &'a (Vec<f32>, Vec<f32>)>, d: usize) -> Pairs {
        let mut pairs = Pairs {
            dimension: d,
            ..Default::default()
        };
        for (left, right) in raw {
            pairs.push(left, right, 1.0);
        }
        pairs
    }

    fn noisy_pairs(n: usize, d: usize, seed: u64) -> Pairs {
        to_pairs(raw_pairs(n, d, seed).iter(), d)
    }

    fn top1_accuracy(pairs: &Pairs, w: Option<&[f32]>) -> f32 {
        let d = pairs.dimension;
        let apply = |x: &[f32]| -> Vec<f32> {
            let y: Vec<f32> = match w {
                Some(w) => (0..d)
                    .map(|i| (0..d).map(|k| w[i * d + k] * x[k]).sum())
                    .collect(),
                None => x.to_vec(),
            };
            unit(&y).unwrap()
        };
        let lefts: Vec<Vec<f32>> = (0..pairs.len())
            .map(|i| apply(&pairs.left[i * d..(i + 1) * d]))
            .collect();
        let rights: Vec<Vec<f32>> = (0..pairs.len())
            .map(|i| apply(&pairs.right[i * d..(i + 1) * d]))
            .collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let hits = (0..pairs.len())
            .filter(|&i| {
                let best = (0..pairs.len())
                    .max_by(|&x, &y| {
                        dot(&lefts[i], &rights[x]).total_cmp(&dot(&lefts[i], &rights[y]))
                    })
                    .unwrap();
                best == i
            })
            .count();
        hits as f32 / pairs.len() as f32
    }

    #[test]
    fn training_lowers_the_loss_and_generalises() {
        let train_pairs = noisy_pairs(2048, 16, 1);
        let held_out = noisy_pairs(200, 16, 2);
        let options = AdapterOptions {
            epochs: 8,
            batch_size: 128,
            learning_rate: 0.01,
            temperature: 0.1,
            ..Default::default()
        };
        let trained = train(&train_pairs, &options);
        let losses = &trained.epoch_losses;
        assert!(losses.last().unwrap() < &(losses[0] * 0.8), "{losses:?}");
        let before = top1_accuracy(&held_out, None);
        let after = top1_accuracy(&held_out, Some(&trained.weights));
        assert!(after > before + 0.1, "held-out top-1 {before} -> {after}");
    }

    #[test]
    fn a_seed_gives_the_same_adapter_whatever_the_row_order() {
        let raw = raw_pairs(600, 32, 3);
        let pairs = to_pairs(raw.iter(), 32);
        let reversed = to_pairs(raw.iter().rev(), 32);
        let options = AdapterOptions {
            epochs: 2,
            batch_size: 64,
            ..Default::default()
        };
        let a = train(&pairs, &options);
        let b = train(&reversed, &options);
        assert_eq!(a.weights, b.weights);
        let other_seed = train(&pairs, &AdapterOptions { seed: 7, ..options });
        assert_ne!(a.weights, other_seed.weights);
    }
}
