//! The BERT encoder of a sentence-embedding model (all-MiniLM-L6-v2: 6 layers, 384 wide):
//! token + position + type embeddings, post-norm layers of bidirectional attention and a GELU
//! MLP, then the mean of the token vectors, L2-normalised. A batch runs as one matrix of all
//! its texts' tokens — no padding — so every dense layer sees the whole batch, while attention
//! stays within each text.

use std::path::Path;

use serde_json::Value;

use super::linear::{Linear, dot};
use super::safetensors::SafeTensors;
use crate::error::LocalError;

/// The shape of the network, from `config.json`.
#[derive(Clone, Debug)]
pub(crate) struct BertConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

impl BertConfig {
    pub(crate) fn read(path: &Path) -> Result<Self, LocalError> {
        let text = std::fs::read_to_string(path).map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |reason: String| LocalError::corrupt_weights(path, reason);
        let json: Value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("it is not JSON: {e}")))?;
        let size = |key: &str| {
            json[key]
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0 && v <= 1 << 20)
                .ok_or_else(|| corrupt(format!("`{key}` is missing or not a positive size")))
        };
        let config = BertConfig {
            hidden: size("hidden_size")?,
            layers: size("num_hidden_layers")?,
            heads: size("num_attention_heads")?,
            intermediate: size("intermediate_size")?,
            vocab: size("vocab_size")?,
            max_positions: size("max_position_embeddings")?,
            type_vocab: size("type_vocab_size")?,
            eps: json["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
        };
        if json["hidden_act"].as_str().is_some_and(|a| a != "gelu") {
            return Err(corrupt(format!(
                "hidden_act is {}; keel's BERT runs gelu",
                json["hidden_act"]
            )));
        }
        if !config.hidden.is_multiple_of(config.heads) {
            return Err(corrupt(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden, config.heads
            )));
        }
        Ok(config)
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

pub(crate) struct Bert {
    pub config: BertConfig,
    words: Vec<f32>,
    positions: Vec<f32>,
    types: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    pub simd: bool,
}

impl Bert {
    pub(crate) fn load(config: BertConfig, weights: &SafeTensors) -> Result<Self, LocalError> {
        let c = &config;
        let h = c.hidden;
        let norm = |prefix: &str| -> Result<LayerNorm, LocalError> {
            Ok(LayerNorm {
                weight: weights.f32(&format!("{prefix}.weight"), &[h])?,
                bias: weights.f32(&format!("{prefix}.bias"), &[h])?,
            })
        };
        let dense = |prefix: &str, rows: usize, cols: usize| -> Result<Linear, LocalError> {
            Ok(Linear {
                weight: weights.f32(&format!("{prefix}.weight"), &[rows, cols])?,
                bias: weights.f32(&format!("{prefix}.bias"), &[rows])?,
                rows,
                cols,
            })
        };
        let layers = (0..c.layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    query: dense(&format!("{p}.attention.self.query"), h, h)?,
                    key: dense(&format!("{p}.attention.self.key"), h, h)?,
                    value: dense(&format!("{p}.attention.self.value"), h, h)?,
                    attn_out: dense(&format!("{p}.attention.output.dense"), h, h)?,
                    attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                    up: dense(&format!("{p}.intermediate.dense"), c.intermediate, h)?,
                    down: dense(&format!("{p}.output.dense"), h, c.intermediate)?,
                    out_norm: norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<_, LocalError>>()?;
        Ok(Bert {
            words: weights.f32("embeddings.word_embeddings.weight", &[c.vocab, h])?,
            positions: weights.f32(
                "embeddings.position_embeddings.weight",
                &[c.max_positions, h],
            )?,
            types: weights.f32(
                "embeddings.token_type_embeddings.weight",
                &[c.type_vocab, h],
            )?,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
            simd: crate::quant::Kernels::Auto.use_simd(),
            config,
        })
    }

    /// One unit vector per text of `batch` (each a list of token ids, at most
    /// `max_positions` long, every id below `vocab`: the caller's tokenizer ensures both).
    pub(crate) fn embed(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden;
        let total: usize = batch.iter().map(Vec::len).sum();
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for text in batch {
            for (pos, &id) in text.iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                let word = &self.words[id as usize * h..(id as usize + 1) * h];
                let position = &self.positions[pos * h..(pos + 1) * h];
                for i in 0..h {
                    out[i] = word[i] + position[i] + self.types[i];
                }
                row += 1;
            }
        }
        layer_norm(&mut x, &self.embed_norm, c.eps);

        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let mut s = Scratch::new(c, total);
        for layer in &self.layers {
            layer.query.forward(&x, &mut s.q, self.simd);
            layer.key.forward(&x, &mut s.k, self.simd);
            layer.value.forward(&x, &mut s.v, self.simd);
            attention(c, &lens, &s.q, &s.k, &s.v, &mut s.attn, &mut s.scores);
            layer.attn_out.forward(&s.attn, &mut s.proj, self.simd);
            add_assign(&mut x, &s.proj);
            layer_norm(&mut x, &layer.attn_norm, c.eps);

            layer.up.forward(&x, &mut s.up, self.simd);
            s.up.iter_mut().for_each(|v| *v = gelu(*v));
            layer.down.forward(&s.up, &mut s.proj, self.simd);
            add_assign(&mut x, &s.proj);
            layer_norm(&mut x, &layer.out_norm, c.eps);
        }

        let mut start = 0;
        lens.iter()
            .map(|&len| {
                let tokens = &x[start * h..(start + len) * h];
                start += len;
                mean_normalized(tokens, h)
            })
            .collect()
    }
}

/// Buffers for one batch of `tokens` tokens.
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(c: &BertConfig, tokens: usize) -> Self {
        let wide = vec![0.0; tokens * c.hidden];
        Scratch {
            q: wide.clone(),
            k: wide.clone(),
            v: wide.clone(),
            attn: wide.clone(),
            proj: wide,
            up: vec![0.0; tokens * c.intermediate],
            scores: Vec::new(),
        }
    }
}

/// Each token attends to every token of its own text (`lens` gives the texts' lengths).
fn attention(
    c: &BertConfig,
    lens: &[usize],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let (h, hd) = (c.hidden, c.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut start = 0;
    for &len in lens {
        for t in start..start + len {
            for head in 0..c.heads {
                let off = head * hd;
                let qh = &q[t * h + off..t * h + off + hd];
                scores.clear();
                let mut max = f32::NEG_INFINITY;
                for p in start..start + len {
                    let s = dot(qh, &k[p * h + off..p * h + off + hd]) * scale;
                    max = max.max(s);
                    scores.push(s);
                }
                let mut sum = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let oh = &mut out[t * h + off..t * h + off + hd];
                oh.fill(0.0);
                for (i, &w) in scores.iter().enumerate() {
                    let p = start + i;
                    let w = w / sum;
                    for (o, &vi) in oh.iter_mut().zip(&v[p * h + off..p * h + off + hd]) {
                        *o += w * vi;
                    }
                }
            }
        }
        start += len;
    }
}

fn layer_norm(x: &mut [f32], norm: &LayerNorm, eps: f32) {
    let dim = norm.weight.len();
    for row in x.chunks_exact_mut(dim) {
        let mean = row.iter().sum::<f32>() / dim as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// BERT's exact GELU, `x/2 · (1 + erf(x/√2))`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf to about 1e-7 (Abramowitz and Stegun 7.1.26), in f64 for headroom.
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

/// The mean of `tokens` (`[n][dim]`), scaled to unit length.
fn mean_normalized(tokens: &[f32], dim: usize) -> Vec<f32> {
    let n = (tokens.len() / dim).max(1) as f32;
    let mut mean = vec![0f32; dim];
    for row in tokens.chunks_exact(dim) {
        add_assign(&mut mean, row);
    }
    mean.iter_mut().for_each(|v| *v /= n);
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|v| *v /= norm);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }
}
