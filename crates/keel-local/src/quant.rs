//! Quantized weight matrices and the dot products that dominate inference time. Activations
//! are quantized to 8 bits per block of 32 (llama.cpp's Q8_1 scheme) so each weight block is
//! an integer dot product; AVX2+FMA+F16C kernels are chosen at run time, with a portable fallback.

use crate::gguf::TensorKind;

pub(crate) const BLOCK: usize = 32;

/// A weight matrix stored row by row in GGUF block format (Q4_1 or Q8_0).
pub(crate) struct QMatrix {
    kind: TensorKind,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

/// Activations of `n` vectors quantized per block of 32: `q` values, scale `d`, and
/// `s = d * sum(q)` (what Q4_1's offset term needs).
#[derive(Default)]
pub(crate) struct QuantizedActs {
    blocks_per_row: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// One quantized activation vector.
#[derive(Clone, Copy)]
struct ActRow<'a> {
    q: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
}

impl QuantizedActs {
    /// Quantizes `n = x.len() / cols` vectors of length `cols` (a multiple of 32).
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        let blocks = cols / BLOCK;
        let n = x.len() / cols;
        self.blocks_per_row = blocks;
        self.q.resize(n * cols, 0);
        self.d.resize(n * blocks, 0.0);
        self.s.resize(n * blocks, 0.0);
        for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let q = &mut self.q[b * BLOCK..(b + 1) * BLOCK];
            let mut sum = 0i32;
            for (qi, &v) in q.iter_mut().zip(chunk) {
                *qi = round_small(v * id) as i8;
                sum += *qi as i32;
            }
            self.d[b] = d;
            self.s[b] = d * sum as f32;
        }
    }

    fn row(&self, t: usize) -> ActRow<'_> {
        let b = self.blocks_per_row;
        ActRow {
            q: &self.q[t * b * BLOCK..(t + 1) * b * BLOCK],
            d: &self.d[t * b..(t + 1) * b],
            s: &self.s[t * b..(t + 1) * b],
        }
    }

    fn len(&self) -> usize {
        self.d.len().checked_div(self.blocks_per_row).unwrap_or(0)
    }
}

impl QMatrix {
    /// `data` holds `rows` rows of `cols` elements in `kind`'s block format; the caller has
    /// checked the size against the file's tensor directory.
    pub fn new(kind: TensorKind, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        if !matches!(kind, TensorKind::Q4_1 | TensorKind::Q8_0) || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let row_bytes = cols / BLOCK * kind.block().1;
        (data.len() == rows * row_bytes).then_some(QMatrix {
            kind,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn row_data(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Writes row `r`, dequantized, into `out` (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = self.row_data(r);
        let block_bytes = self.kind.block().1;
        for (blk, o) in row
            .chunks_exact(block_bytes)
            .zip(out.chunks_exact_mut(BLOCK))
        {
            let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            match self.kind {
                TensorKind::Q4_1 => {
                    let m = f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]));
                    for (i, &byte) in blk[4..20].iter().enumerate() {
                        o[i] = d * (byte & 0x0f) as f32 + m;
                        o[i + 16] = d * (byte >> 4) as f32 + m;
                    }
                }
                _ => {
                    for (oi, &q) in o.iter_mut().zip(&blk[2..34]) {
                        *oi = d * q as i8 as f32;
                    }
                }
            }
        }
    }

    /// `out[t * rows + r] = dot(row r, activation t)` for every activation vector.
    /// `simd`: use the AVX2 kernels; the caller has checked `simd_available()`.
    pub fn matmul(&self, acts: &QuantizedActs, out: &mut [f32], simd: bool) {
        assert_eq!(
            acts.blocks_per_row * BLOCK,
            self.cols,
            "activation width must match the matrix"
        );
        assert_eq!(
            out.len(),
            acts.len() * self.rows,
            "output size must be rows x activations"
        );
        #[cfg(target_arch = "x86_64")]
        if simd && simd_available() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked above); slice sizes are asserted.
            unsafe {
                match self.kind {
                    TensorKind::Q4_1 => x86::matmul_q4_1(self, acts, out),
                    _ => x86::matmul_q8_0(self, acts, out),
                }
            }
            return;
        }
        self.matmul_portable(acts, out);
    }

    pub(crate) fn matmul_portable(&self, acts: &QuantizedActs, out: &mut [f32]) {
        match self.kind {
            TensorKind::Q4_1 => matmul_with(self, acts, out, dot_q4_1, |row, a| {
                a.map(|x| dot_q4_1(row, x))
            }),
            _ => matmul_with(self, acts, out, dot_q8_0, |row, a| {
                a.map(|x| dot_q8_0(row, x))
            }),
        }
    }
}

/// Which dot-product kernels the local model uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// AVX2+FMA+F16C where the CPU has them (checked at run time), portable otherwise.
    #[default]
    Auto,
    /// Plain Rust everywhere: for comparison, and what CPUs without AVX2 run.
    Portable,
}

impl Kernels {
    pub(crate) fn use_simd(self) -> bool {
        self == Kernels::Auto && simd_available()
    }
}

/// Whether the AVX2+FMA+F16C kernels run on this CPU (detected once, cached by std).
pub(crate) fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows outer, activations inner: a weight row is loaded once and stays in L1 while every
/// activation vector of a prompt chunk uses it, four at a time so each weight block is
/// unpacked once per four tokens.
#[inline(always)]
fn matmul_with(
    m: &QMatrix,
    acts: &QuantizedActs,
    out: &mut [f32],
    dot: impl Fn(&[u8], ActRow<'_>) -> f32,
    dot4: impl Fn(&[u8], [ActRow<'_>; 4]) -> [f32; 4],
) {
    let n = acts.len();
    for r in 0..m.rows {
        let row = m.row_data(r);
        let mut t = 0;
        while t + 4 <= n {
            let tile = [
                acts.row(t),
                acts.row(t + 1),
                acts.row(t + 2),
                acts.row(t + 3),
            ];
            for (j, v) in dot4(row, tile).into_iter().enumerate() {
                out[(t + j) * m.rows + r] = v;
            }
            t += 4;
        }
        for t in t..n {
            out[t * m.rows + r] = dot(row, acts.row(t));
        }
    }
}

#[inline(always)]
fn dot_q4_1(row: &[u8], a: ActRow<'_>) -> f32 {
    let mut total = 0f32;
    for (b, blk) in row.chunks_exact(20).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let m = f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]));
        let q = &a.q[b * BLOCK..(b + 1) * BLOCK];
        let mut sum = 0i32;
        for i in 0..16 {
            sum += (blk[4 + i] & 0x0f) as i32 * q[i] as i32
                + (blk[4 + i] >> 4) as i32 * q[i + 16] as i32;
        }
        total += d * a.d[b] * sum as f32 + m * a.s[b];
    }
    total
}

#[inline(always)]
fn dot_q8_0(row: &[u8], a: ActRow<'_>) -> f32 {
    let mut total = 0f32;
    for (b, blk) in row.chunks_exact(34).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let q = &a.q[b * BLOCK..(b + 1) * BLOCK];
        let sum: i32 = blk[2..34]
            .iter()
            .zip(q)
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        total += d * a.d[b] * sum as f32;
    }
    total
}

/// Rounds `x` (|x| <= 127) to the nearest integer, ties to even, in two adds: baseline
/// x86-64 has no rounding instruction and `f32::round` would be a libm call per element.
#[inline(always)]
fn round_small(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: adding it leaves no fraction bits
    (x + SHIFT) - SHIFT
}

/// IEEE half to single precision, subnormals included.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        31 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Random blocks with sane f16 scales (0.01 .. 0.02) in the first bytes.
    fn random_matrix(kind: TensorKind, rows: usize, cols: usize) -> QMatrix {
        let block_bytes = kind.block().1;
        let mut data = pseudo_random(rows * cols / BLOCK * block_bytes, 7);
        for blk in data.chunks_exact_mut(block_bytes) {
            let d = 0x2000u16 + blk[0] as u16;
            blk[0..2].copy_from_slice(&d.to_le_bytes());
            if kind == TensorKind::Q4_1 {
                let m = 0xa000u16 + blk[2] as u16;
                blk[2..4].copy_from_slice(&m.to_le_bytes());
            }
        }
        QMatrix::new(kind, rows, cols, data).expect("consistent sizes")
    }

    fn reference(m: &QMatrix, x: &[f32]) -> Vec<f32> {
        let mut row = vec![0f32; m.cols];
        let mut out = Vec::new();
        for t in x.chunks_exact(m.cols) {
            for r in 0..m.rows {
                m.dequantize_row(r, &mut row);
                out.push(row.iter().zip(t).map(|(a, b)| a * b).sum());
            }
        }
        // reorder to [t][r] (already in that order)
        out
    }

    fn check_kind(kind: TensorKind) {
        let m = random_matrix(kind, 37, 192);
        let x: Vec<f32> = pseudo_random(7 * 192, 99)
            .iter()
            .map(|&b| (b as f32 - 128.0) / 50.0)
            .collect();
        let mut acts = QuantizedActs::default();
        acts.quantize(&x, 192);
        let want = reference(&m, &x);
        // Seven vectors: one tile of four and a tail of three.
        let mut fast = vec![0f32; 7 * 37];
        let mut portable = vec![0f32; 7 * 37];
        m.matmul(&acts, &mut fast, true);
        m.matmul_portable(&acts, &mut portable);
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for i in 0..want.len() {
            assert!(
                (fast[i] - portable[i]).abs() <= 1e-4 * scale,
                "{kind:?} simd vs portable at {i}"
            );
            assert!(
                (portable[i] - want[i]).abs() <= 0.02 * scale,
                "{kind:?} quantized vs f32 at {i}"
            );
        }
    }

    #[test]
    fn q4_1_kernels_agree_with_dequantized_reference() {
        check_kind(TensorKind::Q4_1);
    }

    #[test]
    fn q8_0_kernels_agree_with_dequantized_reference() {
        check_kind(TensorKind::Q8_0);
    }

    #[test]
    fn small_values_round_to_the_nearest_integer() {
        for (x, want) in [
            (0.4, 0.0),
            (0.6, 1.0),
            (-0.6, -1.0),
            (126.7, 127.0),
            (-127.0, -127.0),
            (2.5, 2.0),
        ] {
            assert_eq!(round_small(x), want, "{x}");
        }
    }

    #[test]
    fn half_precision_decodes_normal_subnormal_and_special_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x0000), 0.0);
    }
}
