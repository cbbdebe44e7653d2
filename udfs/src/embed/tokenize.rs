//! Text → token ids, without the fixed padding shipped tokenizer files often carry.
//!
//! Why: the all-MiniLM tokenizer.json pads every text to 128 tokens; a product title is
//! 15. Padding is left to the batcher, which pads each micro-batch only to its longest
//! text.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::EmbedError;

/// Bytes of text kept per token of the model's maximum before tokenising: far more than
/// any real token needs, so truncating a huge text first never changes its kept tokens,
/// while a megabyte of text costs no more than its first few kilobytes.
const BYTES_PER_TOKEN_KEPT: usize = 64;

/// One tokenised text: ids with `[CLS]`/`[SEP]`, truncated to the model's maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids.
    pub ids: Vec<i64>,
}

impl TokenizedText {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens (never the case with special tokens added).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A model's tokenizer with padding off and truncation at `max_tokens`.
pub struct TextTokenizer {
    inner: Tokenizer,
    model: String,
    max_text_bytes: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` for `model`.
    pub fn load(path: &Path, model: &str, max_tokens: usize) -> Result<Self, EmbedError> {
        let error = |reason: String| EmbedError::Tokenizer {
            model: model.to_string(),
            reason,
        };
        let mut inner =
            Tokenizer::from_file(path).map_err(|e| error(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            inner,
            model: model.to_string(),
            max_text_bytes: max_tokens * BYTES_PER_TOKEN_KEPT,
        })
    }

    /// Tokenises each text.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(|t| self.head(t)).collect();
        let encodings =
            self.inner
                .encode_batch(inputs, true)
                .map_err(|e| EmbedError::Tokenizer {
                    model: self.model.clone(),
                    reason: e.to_string(),
                })?;
        Ok(encodings
            .into_iter()
            .map(|e| TokenizedText {
                ids: e.get_ids().iter().map(|id| *id as i64).collect(),
            })
            .collect())
    }

    /// The part of `text` that can reach the model.
    fn head<'t>(&self, text: &'t str) -> &'t str {
        if text.len() <= self.max_text_bytes {
            return text;
        }
        let mut cut = self.max_text_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        &text[..cut]
    }
}
