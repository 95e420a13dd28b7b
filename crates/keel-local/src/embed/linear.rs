//! The one kernel the embedding model spends its time in: a dense f32 layer, `y = x Wᵀ + b`,
//! over every token of a batch at once, with `W` stored `[out][in]` as PyTorch saves it. Eight
//! tokens share each weight row load; on x86-64 with AVX2, FMA and F16C (checked at run time, as the
//! chat model's kernels are) the dot products run eight lanes wide.

/// Tokens computed together against one weight row.
const TILE: usize = 8;

/// A dense layer: `rows` outputs of `cols` inputs each.
pub(crate) struct Linear {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Linear {
    /// `out[t][o] = bias[o] + x[t] · weight[o]` for each token `t` of `x` (`[tokens][cols]`).
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], simd: bool) {
        let tokens = x.len() / self.cols;
        assert_eq!(
            x.len(),
            tokens * self.cols,
            "input width must match the layer"
        );
        assert_eq!(
            out.len(),
            tokens * self.rows,
            "output size must be tokens x rows"
        );
        for t0 in (0..tokens).step_by(TILE) {
            let n = TILE.min(tokens - t0);
            let xs = &x[t0 * self.cols..(t0 + n) * self.cols];
            let ys = &mut out[t0 * self.rows..(t0 + n) * self.rows];
            #[cfg(target_arch = "x86_64")]
            if simd && crate::quant::simd_available() {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above); slice sizes are asserted.
                unsafe { x86::tile(self, xs, ys, n) };
                continue;
            }
            let _ = simd;
            self.tile_portable(xs, ys, n);
        }
    }

    fn tile_portable(&self, xs: &[f32], ys: &mut [f32], n: usize) {
        for (o, w) in self.weight.chunks_exact(self.cols).enumerate() {
            for t in 0..n {
                let x = &xs[t * self.cols..(t + 1) * self.cols];
                ys[t * self.rows + o] = self.bias[o] + dot(x, w);
            }
        }
    }
}

/// A dot product in eight lanes, so the compiler vectorizes it without reassociation flags.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Linear, TILE};
    use crate::quant::x86::hsum;

    /// `n` (≤ `TILE`) tokens of `xs` against every row of `layer`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile(layer: &Linear, xs: &[f32], ys: &mut [f32], n: usize) {
        let cols = layer.cols;
        let lanes = cols / 8 * 8;
        for (o, w) in layer.weight.chunks_exact(cols).enumerate() {
            let mut acc = [_mm256_setzero_ps(); TILE];
            for k in (0..lanes).step_by(8) {
                // SAFETY: `k + 8 <= lanes <= cols`, and each row of `xs` holds `cols` values.
                unsafe {
                    let wv = _mm256_loadu_ps(w.as_ptr().add(k));
                    for (t, a) in acc.iter_mut().enumerate().take(n) {
                        let xv = _mm256_loadu_ps(xs.as_ptr().add(t * cols + k));
                        *a = _mm256_fmadd_ps(xv, wv, *a);
                    }
                }
            }
            for (t, a) in acc.iter().enumerate().take(n) {
                let x = &xs[t * cols..(t + 1) * cols];
                let tail: f32 = (lanes..cols).map(|k| x[k] * w[k]).sum();
                ys[t * layer.rows + o] = layer.bias[o] + hsum(*a) + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simd_and_portable_kernels_agree() {
        let (rows, cols, tokens) = (5, 20, 11);
        let value = |i: usize| ((i * 7919) % 97) as f32 / 97.0 - 0.5;
        let layer = Linear {
            weight: (0..rows * cols).map(value).collect(),
            bias: (0..rows).map(|i| i as f32).collect(),
            rows,
            cols,
        };
        let x: Vec<f32> = (0..tokens * cols).map(|i| value(i + 13)).collect();
        let (mut simd, mut portable) = (vec![0.0; tokens * rows], vec![0.0; tokens * rows]);
        layer.forward(&x, &mut simd, true);
        layer.forward(&x, &mut portable, false);
        for t in 0..tokens {
            for o in 0..rows {
                let want = layer.bias[o]
                    + (0..cols)
                        .map(|k| x[t * cols + k] * layer.weight[o * cols + k])
                        .sum::<f32>();
                for got in [simd[t * rows + o], portable[t * rows + o]] {
                    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
                }
            }
        }
    }
}
