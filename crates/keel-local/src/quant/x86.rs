//! The AVX2+FMA+F16C kernels (x86-64, chosen at run time by `Kernels`): the Q4_1 and Q8_0
//! dot products over a tile of activation vectors, with the same results as the portable ones
//! in `quant.rs` up to float rounding.

use std::arch::x86_64::*;

use super::{ActRow, BLOCK, QMatrix, QuantizedActs, matmul_with};

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul_q4_1(m: &QMatrix, acts: &QuantizedActs, out: &mut [f32]) {
    matmul_with(
        m,
        acts,
        out,
        |row, a| unsafe { dot_q4_1_tile(row, [a])[0] },
        |row, a| unsafe { dot_q4_1_tile(row, a) },
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul_q8_0(m: &QMatrix, acts: &QuantizedActs, out: &mut [f32]) {
    matmul_with(
        m,
        acts,
        out,
        |row, a| unsafe { dot_q8_0_tile(row, [a])[0] },
        |row, a| unsafe { dot_q8_0_tile(row, a) },
    )
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Two adjacent f16 values at `p` as the low lanes of an f32 vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16x2(p: *const u8) -> __m128 {
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) }
}

/// The 32 nibbles of a Q4_1 block as bytes, low nibbles first (elements 0..16, 16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    unsafe {
        let packed = _mm_loadu_si128(p as *const __m128i);
        let low_mask = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(packed, low_mask);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);
        _mm256_set_m128i(hi, lo)
    }
}

// SAFETY (both kernels): `row` holds whole blocks and every activation row has as many
// blocks (asserted in `QMatrix::matmul`), so every pointer read is in bounds.
//
// Each activation vector gets two accumulators, for even and odd blocks, so consecutive
// blocks do not wait on each other's FMA. A vector's result does not depend on how many
// others share its tile: a token computed alone (decoding) and in a prompt chunk gives
// bit-identical keys and values, which keeps KV-cache reuse exact.

/// Q4_1 weights against `N` activation vectors, unpacking each weight block once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_tile<const N: usize>(row: &[u8], a: [ActRow<'_>; N]) -> [f32; N] {
    unsafe {
        let blocks = row.len() / 20;
        let ones = _mm256_set1_epi16(1);
        let step = |b: usize, acc: &mut [__m256; N], offset: &mut [__m128; N]| {
            let blk = row.as_ptr().add(b * 20);
            let dm = load_f16x2(blk);
            let m = _mm_movehdup_ps(dm);
            let w = nibbles(blk.add(4));
            for j in 0..N {
                let x = _mm256_loadu_si256(a[j].q.as_ptr().add(b * BLOCK) as *const __m256i);
                let products = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                let scale =
                    _mm256_broadcastss_ps(_mm_mul_ss(dm, _mm_load_ss(a[j].d.as_ptr().add(b))));
                acc[j] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(products), acc[j]);
                offset[j] = _mm_fmadd_ss(m, _mm_load_ss(a[j].s.as_ptr().add(b)), offset[j]);
            }
        };
        let mut acc = [[_mm256_setzero_ps(); N]; 2];
        let mut offset = [[_mm_setzero_ps(); N]; 2];
        let [acc_even, acc_odd] = &mut acc;
        let [off_even, off_odd] = &mut offset;
        let mut b = 0;
        while b + 1 < blocks {
            step(b, acc_even, off_even);
            step(b + 1, acc_odd, off_odd);
            b += 2;
        }
        if b < blocks {
            step(b, acc_even, off_even);
        }
        let mut out = [0f32; N];
        for j in 0..N {
            out[j] = hsum(_mm256_add_ps(acc[0][j], acc[1][j]))
                + _mm_cvtss_f32(_mm_add_ss(offset[0][j], offset[1][j]));
        }
        out
    }
}

/// Q8_0 weights against `N` activation vectors, loading each weight block once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_tile<const N: usize>(row: &[u8], a: [ActRow<'_>; N]) -> [f32; N] {
    unsafe {
        let blocks = row.len() / 34;
        let ones = _mm256_set1_epi16(1);
        let step = |b: usize, acc: &mut [__m256; N]| {
            let blk = row.as_ptr().add(b * 34);
            let d = load_f16x2(blk);
            let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            // maddubs wants unsigned x signed: move w's sign onto x.
            let w_abs = _mm256_sign_epi8(w, w);
            for j in 0..N {
                let x = _mm256_loadu_si256(a[j].q.as_ptr().add(b * BLOCK) as *const __m256i);
                let products = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w));
                let products = _mm256_madd_epi16(products, ones);
                let scale =
                    _mm256_broadcastss_ps(_mm_mul_ss(d, _mm_load_ss(a[j].d.as_ptr().add(b))));
                acc[j] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(products), acc[j]);
            }
        };
        let mut acc = [[_mm256_setzero_ps(); N]; 2];
        let [acc_even, acc_odd] = &mut acc;
        let mut b = 0;
        while b + 1 < blocks {
            step(b, acc_even);
            step(b + 1, acc_odd);
            b += 2;
        }
        if b < blocks {
            step(b, acc_even);
        }
        let mut out = [0f32; N];
        for j in 0..N {
            out[j] = hsum(_mm256_add_ps(acc[0][j], acc[1][j]));
        }
        out
    }
}
