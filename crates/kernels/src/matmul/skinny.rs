//! Products with few rows — a training batch or a few tokens times a weight matrix, `m` from 8 to
//! [`MAX_M`] — compiled per instruction set ([`crate::simd`]). The `gemm` crate's blocking is
//! made for large `m`; here each column panel of `rhs` (two vectors wide) is packed once,
//! contiguous along `k` (from either layout: a transposed weight is read row by row), and every
//! row of `lhs` runs against it from the L2 cache, `MR` rows × 2 vectors of sums in registers.
//! Panels run in parallel, each into its own block of a scratch buffer, copied into place
//! after. Each output is one running sum over `k` in order, whatever the thread count.

use crate::simd::{dispatch, isa, Isa, Kernel, Simd};
use rayon::prelude::*;
use std::cell::RefCell;

/// The most rows this path takes.
pub(crate) const MAX_M: usize = 64;

thread_local! {
    /// One packed panel of `rhs` (`k` × 2 vectors).
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The panels' results (`panels` × `m` × 2 vectors), before they are copied into place.
    static OUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`gemm`] takes an `(m, k) · (k, n)` product whose `lhs` has column stride `lhs_cs`.
pub(crate) fn takes(m: usize, n: usize, k: usize, lhs_cs: usize) -> bool {
    isa() != Isa::Portable && (8..=MAX_M).contains(&m) && n >= 64 && k >= 32 && lhs_cs == 1
}

/// The operands of one product, as [`super::sgemm`] has them (`lhs`'s column stride is 1).
pub(crate) struct Product<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lhs: &'a [f32],
    pub lhs_rs: usize,
    pub rhs: &'a [f32],
    pub rhs_rs: usize,
    pub rhs_cs: usize,
}

/// `dst[m, n] (+)= lhs · rhs`; the operands' extents are checked by the caller.
pub(crate) fn gemm(p: &Product, dst: &mut [f32], dst_rs: usize, accumulate: bool, threads: usize) {
    let isa = isa();
    let l = if isa == Isa::Avx512 { 16 } else { 8 };
    let nr = 2 * l;
    let panels = p.n.div_ceil(nr);
    let block = p.m * nr;
    OUT.with(|o| {
        let out = &mut o.borrow_mut();
        if out.len() < panels * block {
            out.resize(panels * block, 0.0);
        }
        let out = &mut out[..panels * block];
        let one = |(j, o): (usize, &mut [f32])| {
            PANEL.with(|pk| {
                let panel = &mut pk.borrow_mut();
                pack(p, j * nr, nr, panel);
                dispatch(isa, Tiles { p, panel, out: o, nr });
            })
        };
        if threads > 1 && panels > 1 {
            // Tasks of at least ~2^19 multiply-adds: a few microseconds, well above what handing
            // one to another thread costs.
            let per = ((1usize << 19) / (p.m * p.k * nr).max(1)).max(1);
            out.par_chunks_mut(block).enumerate().with_min_len(per).for_each(one);
        } else {
            out.chunks_mut(block).enumerate().for_each(one);
        }
        for (i, row) in dst.chunks_mut(dst_rs).take(p.m).enumerate() {
            for (j, o) in out.chunks(block).enumerate() {
                let j0 = j * nr;
                let w = nr.min(p.n - j0);
                let src = &o[i * nr..i * nr + w];
                let d = &mut row[j0..j0 + w];
                if accumulate {
                    d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    d.copy_from_slice(src);
                }
            }
        }
    });
}

/// Columns `j0..j0 + nr` of `rhs` (zeros past `n`), `nr` consecutive values per `k`. The
/// buffer is reused: every value is written once, nothing zeroed first.
fn pack(p: &Product, j0: usize, nr: usize, panel: &mut Vec<f32>) {
    panel.resize(p.k * nr, 0.0);
    let w = nr.min(p.n - j0);
    if w < nr {
        panel.chunks_exact_mut(nr).for_each(|row| row[w..].fill(0.0));
    }
    if p.rhs_cs == 1 {
        for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
            let s = kk * p.rhs_rs + j0;
            dst[..w].copy_from_slice(&p.rhs[s..s + w]);
        }
    } else {
        // Along `k` a transposed weight's column is one of its rows: read them in blocks of
        // `KB` values, so that the block's panel lines stay in L1 while every column fills them.
        const KB: usize = 64;
        for (b, block) in panel.chunks_mut(KB * nr).enumerate() {
            let k0 = b * KB;
            for jj in 0..w {
                let base = (j0 + jj) * p.rhs_cs + k0 * p.rhs_rs;
                for (kk, dst) in block.chunks_exact_mut(nr).enumerate() {
                    dst[jj] = p.rhs[base + kk * p.rhs_rs];
                }
            }
        }
    }
}

/// Every row of `lhs` against one packed panel, into `out` (`m` rows of `nr`).
struct Tiles<'a> {
    p: &'a Product<'a>,
    panel: &'a [f32],
    out: &'a mut [f32],
    nr: usize,
}

impl Kernel for Tiles<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let Tiles { p, panel, out, nr } = self;
        // Rows per block: sums in 16 of AVX-512's 32 registers, 12 of AVX2's 16.
        let mr = if S::L == 16 { 8 } else { 6 };
        let mut r0 = 0;
        while r0 < p.m {
            let left = p.m - r0;
            let o = &mut out[r0 * nr..];
            r0 += match left {
                _ if left >= 8 && mr == 8 => tile::<S, 8>(p, r0, panel, o),
                _ if left >= 6 => tile::<S, 6>(p, r0, panel, o),
                4 | 5 => tile::<S, 4>(p, r0, panel, o),
                2 | 3 => tile::<S, 2>(p, r0, panel, o),
                _ => tile::<S, 1>(p, r0, panel, o),
            };
        }
    }
}

/// Rows `r0..r0 + MR` against the panel into `out` (rows of 2 vectors): returns `MR`.
#[inline(always)]
fn tile<S: Simd, const MR: usize>(p: &Product, r0: usize, panel: &[f32], out: &mut [f32]) -> usize {
    let l = S::L;
    let k = p.k;
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &p.lhs[(r0 + r) * p.lhs_rs..(r0 + r) * p.lhs_rs + k]);
    let mut acc = [[S::zero(); 2]; MR];
    for (kk, b) in panel[..k * 2 * l].chunks_exact(2 * l).enumerate() {
        let b0 = S::load(b);
        let b1 = S::load(&b[l..]);
        for r in 0..MR {
            let x = &rows[r][kk];
            acc[r][0] = S::fma_bcast(x, b0, acc[r][0]);
            acc[r][1] = S::fma_bcast(x, b1, acc[r][1]);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        S::store(a[0], &mut out[r * 2 * l..]);
        S::store(a[1], &mut out[r * 2 * l + l..]);
    }
    MR
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set, row counts that leave each remainder, widths that end mid-panel,
    /// both `rhs` layouts, written and accumulated: the plain triple loop's sums in the same
    /// order (so within rounding of FMA's single rounding).
    #[test]
    fn skinny_products_are_the_plain_ones() {
        for &(m, n, k) in &[(8, 64, 32), (13, 100, 77), (32, 1024, 256), (61, 70, 40), (64, 96, 33)] {
            let lhs: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.11).cos()).collect();
            for transposed in [false, true] {
                // `rhs` is (k, n): row-major, or a (n, k) matrix read transposed.
                let (rhs_rs, rhs_cs) = if transposed { (1, k) } else { (n, 1) };
                let b = |kk: usize, j: usize| w[kk * rhs_rs + j * rhs_cs];
                for accumulate in [false, true] {
                    let init: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32).collect();
                    let mut want = init.clone();
                    for i in 0..m {
                        for j in 0..n {
                            let s: f64 = (0..k).map(|kk| lhs[i * k + kk] as f64 * b(kk, j) as f64).sum();
                            want[i * n + j] = if accumulate { init[i * n + j] + s as f32 } else { s as f32 };
                        }
                    }
                    let p = Product { m, n, k, lhs: &lhs, lhs_rs: k, rhs: &w, rhs_rs, rhs_cs };
                    for threads in [1, 2] {
                        let mut got = init.clone();
                        gemm(&p, &mut got, n, accumulate, threads);
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{m}x{k}x{n} transposed {transposed} accumulate {accumulate}: [{i}] {g} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
