//! Micro-batch planning: which texts run through the model together.
//!
//! Why: a transformer's cost grows with batch × longest sequence, so mixing a 5-token
//! title with a 250-token description wastes most of the batch on padding. Texts are
//! sorted by token count and cut into micro-batches whose padded size stays under a
//! token budget (the approach of text-embeddings-inference's `max_batch_tokens`).

/// Most texts in one micro-batch even when they are short: beyond this, larger batches
/// stop paying on a CPU and only raise latency.
pub const MAX_BATCH_TEXTS: usize = 64;

/// Splits texts (given by their token counts) into micro-batches of indices, each sorted
/// by length, each with `texts × longest ≤ max_batch_tokens` (a single over-long text
/// still gets a batch of its own).
pub fn plan_batches(token_counts: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..token_counts.len()).collect();
    order.sort_by_key(|&i| token_counts[i]);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for index in order {
        let longest = token_counts[index];
        let padded = (current.len() + 1) * longest;
        if !current.is_empty() && (padded > max_batch_tokens || current.len() == MAX_BATCH_TEXTS) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_once_within_budget() {
        let counts: Vec<usize> = (0..500).map(|i| 3 + (i * 37) % 200).collect();
        let batches = plan_batches(&counts, 2048);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
        for batch in &batches {
            let longest = batch.iter().map(|&i| counts[i]).max().unwrap();
            assert!(batch.len() == 1 || batch.len() * longest <= 2048);
            assert!(batch.len() <= MAX_BATCH_TEXTS);
        }
    }

    #[test]
    fn over_long_text_gets_its_own_batch() {
        assert_eq!(plan_batches(&[5000, 3], 100), vec![vec![1], vec![0]]);
    }
}
