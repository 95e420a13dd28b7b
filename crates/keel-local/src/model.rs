//! The llama-family transformer: weights loaded from a GGUF file and the forward pass
//! (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP). It computes only new tokens:
//! everything before them is read from the caller's `KvState`.

use crate::error::LocalError;
use crate::gguf::{GgufFile, TensorKind};
use crate::kv_cache::KvState;
use crate::quant::{QMatrix, QuantizedActs};

/// The shape of the network, from the GGUF metadata.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    pub context_len: usize,
    rms_eps: f32,
    rope_base: f32,
}

impl Config {
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Memory the keys and values of one token take (f32, every layer).
    pub fn kv_bytes_per_token(&self) -> usize {
        self.layers * 2 * self.kv_dim() * std::mem::size_of::<f32>()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

pub(crate) struct LlamaModel {
    pub config: Config,
    embed: QMatrix,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    /// `None` when the output projection is tied to the embedding.
    output: Option<QMatrix>,
    /// Whether the AVX2 kernels run (see `Kernels`).
    pub simd: bool,
}

impl LlamaModel {
    pub fn load(gguf: &mut GgufFile) -> Result<Self, LocalError> {
        let arch = gguf.meta_str("general.architecture")?.to_string();
        if arch != "llama" {
            return Err(LocalError::Unsupported {
                path: gguf.path().to_path_buf(),
                reason: format!(
                    "architecture `{arch}` (keel runs the llama family: Llama, SmolLM, TinyLlama, …)"
                ),
            });
        }
        let dim = gguf.meta_usize("llama.embedding_length")?;
        let heads = gguf.meta_usize("llama.attention.head_count")?;
        let kv_heads = gguf.meta_usize("llama.attention.head_count_kv")?;
        let config = Config {
            layers: gguf.meta_usize("llama.block_count")?,
            dim,
            heads,
            kv_heads,
            head_dim: dim.checked_div(heads).unwrap_or(0),
            ffn_dim: gguf.meta_usize("llama.feed_forward_length")?,
            vocab: gguf.meta_array("tokenizer.ggml.tokens")?.len(),
            context_len: gguf.meta_usize("llama.context_length")?,
            rms_eps: gguf.meta_f32("llama.attention.layer_norm_rms_epsilon")?,
            rope_base: gguf.meta_f32("llama.rope.freq_base").unwrap_or(10_000.0),
        };
        let c = &config;
        if heads == 0
            || kv_heads == 0
            || heads % kv_heads != 0
            || dim % heads != 0
            || !c.head_dim.is_multiple_of(2)
        {
            return Err(LocalError::corrupt(
                gguf.path(),
                format!(
                    "inconsistent attention shape: {dim} dims, {heads} heads, {kv_heads} KV heads"
                ),
            ));
        }
        let embed = matrix(gguf, "token_embd.weight", c.vocab, dim)?;
        let output = if gguf.tensors.contains_key("output.weight") {
            Some(matrix(gguf, "output.weight", c.vocab, dim)?)
        } else {
            None
        };
        // The count comes from metadata: bound it by the tensors that exist before allocating.
        let mut layers = Vec::with_capacity(c.layers.min(gguf.tensors.len()));
        for i in 0..c.layers {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            layers.push(Layer {
                attn_norm: vector(gguf, &name("attn_norm"), dim)?,
                wq: matrix(gguf, &name("attn_q"), dim, dim)?,
                wk: matrix(gguf, &name("attn_k"), c.kv_dim(), dim)?,
                wv: matrix(gguf, &name("attn_v"), c.kv_dim(), dim)?,
                wo: matrix(gguf, &name("attn_output"), dim, dim)?,
                ffn_norm: vector(gguf, &name("ffn_norm"), dim)?,
                gate: matrix(gguf, &name("ffn_gate"), c.ffn_dim, dim)?,
                up: matrix(gguf, &name("ffn_up"), c.ffn_dim, dim)?,
                down: matrix(gguf, &name("ffn_down"), dim, c.ffn_dim)?,
            });
        }
        let out_norm = vector(gguf, "output_norm.weight", dim)?;
        Ok(LlamaModel {
            config,
            embed,
            layers,
            out_norm,
            output,
            simd: crate::quant::simd_available(),
        })
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let layer_bytes: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|m| m.bytes())
                    .sum::<usize>()
            })
            .sum();
        layer_bytes + self.embed.bytes() + self.output.as_ref().map_or(0, QMatrix::bytes)
    }

    /// Runs `tokens` through the network after the `state.len()` tokens already in `state`,
    /// appends their keys and values to it, and returns the logits of the last one.
    pub fn forward(&self, state: &mut KvState, tokens: &[u32]) -> Vec<f32> {
        let c = &self.config;
        let n = tokens.len();
        let start = state.len();
        let mut x = vec![0f32; n * c.dim];
        for (t, &tok) in tokens.iter().enumerate() {
            self.embed
                .dequantize_row(tok as usize, &mut x[t * c.dim..(t + 1) * c.dim]);
        }
        let rope = RopeTable::new(c, start, n);
        let mut s = Scratch::new(c, n);
        for (layer, kv) in self.layers.iter().zip(state.layers.iter_mut()) {
            rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut s.normed);
            s.acts.quantize(&s.normed, c.dim);
            layer.wq.matmul(&s.acts, &mut s.q, self.simd);
            layer.wk.matmul(&s.acts, &mut s.k, self.simd);
            layer.wv.matmul(&s.acts, &mut s.v, self.simd);
            rope.apply(&mut s.q, c.head_dim);
            rope.apply(&mut s.k, c.head_dim);
            kv.keys.extend_from_slice(&s.k);
            kv.values.extend_from_slice(&s.v);
            attention(
                c,
                &s.q,
                &kv.keys,
                &kv.values,
                start,
                &mut s.attn,
                &mut s.scores,
            );
            s.acts.quantize(&s.attn, c.dim);
            layer.wo.matmul(&s.acts, &mut s.normed, self.simd);
            add_assign(&mut x, &s.normed);

            rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut s.normed);
            s.acts.quantize(&s.normed, c.dim);
            layer.gate.matmul(&s.acts, &mut s.gate, self.simd);
            layer.up.matmul(&s.acts, &mut s.up, self.simd);
            for (g, u) in s.gate.iter_mut().zip(&s.up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            s.acts.quantize(&s.gate, c.ffn_dim);
            layer.down.matmul(&s.acts, &mut s.normed, self.simd);
            add_assign(&mut x, &s.normed);
        }
        state.tokens.extend_from_slice(tokens);

        let last = &x[(n - 1) * c.dim..];
        let mut normed = vec![0f32; c.dim];
        rms_norm(last, &self.out_norm, c.rms_eps, &mut normed);
        s.acts.quantize(&normed, c.dim);
        let mut logits = vec![0f32; c.vocab];
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matmul(&s.acts, &mut logits, self.simd);
        logits
    }
}

fn matrix(
    gguf: &mut GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<QMatrix, LocalError> {
    let (kind, data) = gguf.read_tensor(name, &[cols, rows])?;
    QMatrix::new(kind, rows, cols, data).ok_or_else(|| LocalError::Unsupported {
        path: gguf.path().to_path_buf(),
        reason: format!(
            "tensor {name} is {kind:?}; keel runs weight matrices stored as Q4_1 or Q8_0"
        ),
    })
}

fn vector(gguf: &mut GgufFile, name: &str, len: usize) -> Result<Vec<f32>, LocalError> {
    let (kind, data) = gguf.read_tensor(name, &[len])?;
    if kind != TensorKind::F32 {
        return Err(LocalError::Unsupported {
            path: gguf.path().to_path_buf(),
            reason: format!("norm tensor {name} is {kind:?}, expected F32"),
        });
    }
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Buffers for one forward call, sized for `n` tokens.
struct Scratch {
    acts: QuantizedActs,
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    scores: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    fn new(c: &Config, n: usize) -> Self {
        Scratch {
            acts: QuantizedActs::default(),
            normed: vec![0.0; n * c.dim],
            q: vec![0.0; n * c.dim],
            k: vec![0.0; n * c.kv_dim()],
            v: vec![0.0; n * c.kv_dim()],
            attn: vec![0.0; n * c.dim],
            scores: Vec::new(),
            gate: vec![0.0; n * c.ffn_dim],
            up: vec![0.0; n * c.ffn_dim],
        }
    }
}

/// Rotary position embedding (GGUF llama convention: adjacent pairs rotate together).
struct RopeTable {
    /// `[token][pair]` cos and sin.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pairs: usize,
}

impl RopeTable {
    fn new(c: &Config, start: usize, n: usize) -> Self {
        let pairs = c.head_dim / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(n * pairs), Vec::with_capacity(n * pairs));
        for t in 0..n {
            let pos = (start + t) as f32;
            for i in 0..pairs {
                let freq = c.rope_base.powf(-2.0 * i as f32 / c.head_dim as f32);
                let (s, co) = (pos * freq).sin_cos();
                cos.push(co);
                sin.push(s);
            }
        }
        RopeTable { cos, sin, pairs }
    }

    /// Rotates every head of every token in `x` (`[token][head][head_dim]`).
    fn apply(&self, x: &mut [f32], head_dim: usize) {
        let per_token = x.len() / (self.cos.len() / self.pairs);
        for (t, token) in x.chunks_exact_mut(per_token).enumerate() {
            let (cos, sin) = (&self.cos[t * self.pairs..], &self.sin[t * self.pairs..]);
            for head in token.chunks_exact_mut(head_dim) {
                for i in 0..self.pairs {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos[i] - b * sin[i];
                    head[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// Causal attention of the new tokens (at positions `start..`) over every cached position.
fn attention(
    c: &Config,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    start: usize,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let (hd, kv_dim) = (c.head_dim, c.kv_dim());
    let group = c.heads / c.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    for (t, (q_tok, out_tok)) in q
        .chunks_exact(c.dim)
        .zip(out.chunks_exact_mut(c.dim))
        .enumerate()
    {
        let visible = start + t + 1;
        for h in 0..c.heads {
            let kv_off = (h / group) * hd;
            let qh = &q_tok[h * hd..(h + 1) * hd];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for p in 0..visible {
                let k = &keys[p * kv_dim + kv_off..p * kv_dim + kv_off + hd];
                let s = dot(qh, k) * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let oh = &mut out_tok[h * hd..(h + 1) * hd];
            oh.fill(0.0);
            for (p, &w) in scores.iter().enumerate() {
                let v = &values[p * kv_dim + kv_off..p * kv_dim + kv_off + hd];
                let w = w / sum;
                for (o, &vi) in oh.iter_mut().zip(v) {
                    *o += w * vi;
                }
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight lanes so the compiler vectorizes without reassociation flags.
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    acc.iter().sum()
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (xt, ot) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean_sq = xt.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for ((o, &v), &w) in ot.iter_mut().zip(xt).zip(weight) {
            *o = v * inv * w;
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
