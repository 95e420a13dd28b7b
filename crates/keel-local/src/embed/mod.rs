//! Local text embeddings: all-MiniLM-L6-v2 (a sentence-transformers BERT, 384 dimensions)
//! run in-process on the CPU, so memory search works with no provider configured. Its files —
//! weights (`*.safetensors`), `*.config.json`, `*.tokenizer.json` side by side, as `pull`
//! stores them — are read and checked here; a missing or damaged one is an error naming it.

mod bert;
mod linear;
mod safetensors;

use std::path::{Path, PathBuf};

use crate::error::LocalError;
use crate::quant::Kernels;

use bert::{Bert, BertConfig};
use safetensors::SafeTensors;

/// Tokens per text the model was trained on (`sentence_bert_config.json`'s
/// `max_seq_length`); longer texts are cut, as sentence-transformers does.
const MAX_TOKENS: usize = 256;

/// Tokens one forward pass takes at most: a large request runs as several passes, so its
/// activations stay a few tens of megabytes whatever the number of texts.
const TOKENS_PER_PASS: usize = 4096;

/// Where an embedding model's three files are.
#[derive(Clone, Debug)]
pub struct EmbedderFiles {
    pub weights: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
}

impl EmbedderFiles {
    /// The companions stored beside `weights` (`X.safetensors` → `X.config.json`,
    /// `X.tokenizer.json`), as `pull` stores them.
    pub fn beside(weights: &Path) -> Self {
        EmbedderFiles {
            weights: weights.to_path_buf(),
            config: weights.with_extension("config.json"),
            tokenizer: weights.with_extension("tokenizer.json"),
        }
    }
}

/// Texts turned into vectors, and the tokens that took.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    /// One unit-length vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens across all texts (after truncation), for usage accounting.
    pub tokens: u64,
}

/// A loaded embedding model. `embed` takes `&self`: threads may share one.
pub struct Embedder {
    bert: Bert,
    tokenizer: tokenizers::Tokenizer,
    tokenizer_path: PathBuf,
}

impl Embedder {
    pub fn load(files: &EmbedderFiles) -> Result<Self, LocalError> {
        let config = BertConfig::read(&files.config)?;
        let weights = SafeTensors::read(&files.weights)?;
        let bert = Bert::load(config, &weights)?;
        let tokenizer_err = |reason: String| LocalError::Tokenizer {
            path: files.tokenizer.clone(),
            reason,
        };
        if !files.tokenizer.is_file() {
            return Err(LocalError::Io {
                path: files.tokenizer.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| tokenizer_err(e.to_string()))?;
        // The file pads every text to 128 tokens; keel batches without padding instead.
        tokenizer.with_padding(None);
        let max_length = MAX_TOKENS.min(bert.config.max_positions);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| tokenizer_err(e.to_string()))?;
        Ok(Embedder {
            bert,
            tokenizer,
            tokenizer_path: files.tokenizer.clone(),
        })
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.bert.config.hidden
    }

    /// Which kernels run (default: AVX2 where the CPU has it).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.bert.simd = kernels.use_simd();
    }

    /// One vector per text, computed in batches of up to `TOKENS_PER_PASS` tokens.
    pub fn embed(&self, texts: &[&str]) -> Result<Embedded, LocalError> {
        let mut batch = Vec::with_capacity(texts.len());
        for text in texts {
            let encoding =
                self.tokenizer
                    .encode(*text, true)
                    .map_err(|e| LocalError::Tokenizer {
                        path: self.tokenizer_path.clone(),
                        reason: e.to_string(),
                    })?;
            let ids = encoding.get_ids().to_vec();
            if let Some(bad) = ids
                .iter()
                .find(|&&id| id as usize >= self.bert.config.vocab)
            {
                return Err(LocalError::Tokenizer {
                    path: self.tokenizer_path.clone(),
                    reason: format!(
                        "it gave token id {bad}, beyond the model's {} tokens: the tokenizer is not this model's",
                        self.bert.config.vocab
                    ),
                });
            }
            batch.push(ids);
        }
        let tokens = batch.iter().map(|ids| ids.len() as u64).sum();
        let mut vectors = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            let mut end = start + 1;
            let mut size = batch[start].len();
            while end < batch.len() && size + batch[end].len() <= TOKENS_PER_PASS {
                size += batch[end].len();
                end += 1;
            }
            vectors.extend(self.bert.embed(&batch[start..end]));
            start = end;
        }
        Ok(Embedded { vectors, tokens })
    }
}
