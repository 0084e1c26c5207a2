//! Winograd F(2×2, 3×3) for 3×3 convolutions of stride 1 and dilation 1 (2-D, group count 1):
//! each 2×2 block of output pixels from a 4×4 block of input in 16 multiplications per channel
//! pair instead of 36. The kernel is transformed once per call (`U = G·g·Gᵀ`, 16 × C × F), each
//! block of tiles' input is transformed (`V = Bᵀ·d·B`, 16 × tiles × C), the 16 products
//! `V[ξ]·U[ξ]` are GEMMs, and the output transform (`Y = Aᵀ·M·A`) writes the tiles' pixels,
//! then the epilogue runs on those rows while they are in cache.

use super::geo::{row_cost, rows_per_task, Geo};
use crate::fused::EpilogueArgs;
use crate::KernelError;
use rayon::prelude::*;
use std::cell::RefCell;

/// Whether the geometry is one this kernel computes and one where it measured faster than the
/// direct kernel: 3×3, stride 1, dilation 1, 2-D, at least 64 input and output channels and
/// [`MIN_TILES`] tiles. Measured with examples/conv_bench, one thread, best of five interleaved
/// runs against the direct kernel: 64→64 at 64×64 1.34× faster, at 32×32 1.25×, at batch 8 of
/// 16×16 1.4×, at batch 8 of 8×8 1.1×; 32→32 at batch 8 of 32×32 0.8× (the transforms cost
/// more than the multiplications they save below 64 channels).
pub(super) fn applies(g: &Geo) -> bool {
    g.k == [1, 3, 3]
        && g.s == [1, 1, 1]
        && g.d == [1, 1, 1]
        && g.inp[0] == 1
        && g.c >= MIN_CHANNELS
        && g.f >= MIN_CHANNELS
        && g.n * g.out[1].div_ceil(2) * g.out[2].div_ceil(2) >= MIN_TILES
}

/// Fewest 2×2 tiles per task, and in all: an 8×8 image of 64 channels (16 tiles) took twice the
/// direct kernel's time.
const MIN_TILES: usize = 128;

/// Fewest input and output channels for [`applies`].
const MIN_CHANNELS: usize = 64;

thread_local! {
    /// Each thread's transformed input (16 × tiles × C) and products (16 × tiles × F).
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `U[ξ][c][f]` (16 × C × F) of the kernel `(3, 3, C, F)`: `G·g·Gᵀ` per channel pair.
fn kernel_transform(w: &[f32], c: usize, f: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * c * f];
    let at = |ky: usize, kx: usize, ci: usize, fi: usize| w[((ky * 3 + kx) * c + ci) * f + fi];
    for ci in 0..c {
        for fi in 0..f {
            // t = G·g (4 × 3), then t·Gᵀ (4 × 4); G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
            let col = |kx: usize| {
                let (g0, g1, g2) = (at(0, kx, ci, fi), at(1, kx, ci, fi), at(2, kx, ci, fi));
                [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
            };
            let cols = [col(0), col(1), col(2)];
            let t: [[f32; 3]; 4] = std::array::from_fn(|i| [cols[0][i], cols[1][i], cols[2][i]]);
            for (i, row) in t.iter().enumerate() {
                let v = [row[0], 0.5 * (row[0] + row[1] + row[2]), 0.5 * (row[0] - row[1] + row[2]), row[2]];
                for (j, &vj) in v.iter().enumerate() {
                    u[((i * 4 + j) * c + ci) * f + fi] = vj;
                }
            }
        }
    }
    u
}

/// The convolution into `out` (`(n, 1, oh, ow, F)`), then the epilogue; `Err` only if a GEMM
/// refuses its operands.
pub(super) fn winograd(
    g: &Geo,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    epi: Option<&EpilogueArgs>,
) -> Result<(), KernelError> {
    let (c, f) = (g.c, g.f);
    let (ih, iw) = (g.inp[1], g.inp[2]);
    let (oh, ow) = (g.out[1], g.out[2]);
    let (ph, pw) = (g.pad[1] as isize, g.pad[2] as isize);
    let tiles_w = ow.div_ceil(2);
    let tile_rows = oh.div_ceil(2);
    let u = kernel_transform(w, c, f);
    let row_len = ow * f;
    // Tasks of whole tile rows (two output rows), sized by the multiply-adds they replace, and
    // of at least MIN_TILES tiles (the products are 1x1 convolutions over the task's tiles,
    // slow over a few pixels).
    let per_task = rows_per_task(row_cost(2 * row_len * 9 * c, 1, 2 * row_len)).max(MIN_TILES.div_ceil(tiles_w));
    let image = oh * row_len;
    // (image, first tile row, output rows) per task.
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (n, img) in out.chunks_mut(image).enumerate() {
        let mut rest = img;
        let mut tr = 0;
        while tr < tile_rows {
            let k = per_task.min(tile_rows - tr);
            let rows = (2 * (tr + k)).min(oh) - 2 * tr;
            let (head, tail) = rest.split_at_mut(rows * row_len);
            tasks.push((n, tr, head));
            rest = tail;
            tr += k;
        }
    }
    let run = |(n, tr0, dst): &mut (usize, usize, &mut [f32])| -> Result<(), KernelError> {
        let rows = dst.len() / row_len;
        let trs = rows.div_ceil(2);
        let t = trs * tiles_w;
        BUFFERS.with(|b| {
            let (v, m) = &mut *b.borrow_mut();
            // Laid out (ξ, tile, channel): each transform is a loop along the channels, and each
            // product a 1x1 convolution of `t` pixels (the direct kernel's fastest case).
            v.resize(16 * t * c, 0.0);
            m.resize(16 * t * f, 0.0);
            let zeros = vec![0f32; c];
            let mut e = vec![0f32; 16 * c];
            for r in 0..trs {
                let y0 = (2 * (*tr0 + r)) as isize - ph;
                for tx in 0..tiles_w {
                    let x0 = (2 * tx) as isize - pw;
                    let tile = r * tiles_w + tx;
                    // The tile's 4×4 input pixels (zeros outside).
                    let d: [[&[f32]; 4]; 4] = std::array::from_fn(|dy| {
                        std::array::from_fn(|dx| {
                            let (yy, xx) = (y0 + dy as isize, x0 + dx as isize);
                            if yy >= 0 && xx >= 0 && (yy as usize) < ih && (xx as usize) < iw {
                                let o = ((*n * ih + yy as usize) * iw + xx as usize) * c;
                                &x[o..o + c]
                            } else {
                                &zeros[..]
                            }
                        })
                    });
                    // Bᵀ·d down the columns, Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1] ...
                    for dx in 0..4 {
                        let col = [d[0][dx], d[1][dx], d[2][dx], d[3][dx]];
                        for (i, (p, q, sign)) in
                            [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)].into_iter().enumerate()
                        {
                            comb(&mut e[(i * 4 + dx) * c..(i * 4 + dx + 1) * c], col[p], col[q], sign);
                        }
                    }
                    // ... then ·B along the rows.
                    for i in 0..4 {
                        let row = |k: usize| &e[(i * 4 + k) * c..(i * 4 + k + 1) * c];
                        for (j, (p, q, sign)) in
                            [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)].into_iter().enumerate()
                        {
                            let at = ((i * 4 + j) * t + tile) * c;
                            comb(&mut v[at..at + c], row(p), row(q), sign);
                        }
                    }
                }
            }
            // The 16 products M[ξ] = V[ξ] (t × C) · U[ξ] (C × F): 1x1 convolutions.
            let pg =
                Geo { n: 1, inp: [1, 1, t], out: [1, 1, t], k: [1, 1, 1], s: [1; 3], d: [1; 3], pad: [0; 3], c, f };
            for xi in 0..16 {
                let (vx, ux) = (&v[xi * t * c..(xi + 1) * t * c], &u[xi * c * f..(xi + 1) * c * f]);
                super::direct::direct(crate::simd::isa(), &pg, vx, ux, &mut m[xi * t * f..(xi + 1) * t * f], None);
            }
            // Output transform: Y = Aᵀ·M·A, Aᵀ = [1 1 1 0; 0 1 −1 −1], the tile's 2×2 pixels.
            let mut s = vec![0f32; 8 * f];
            for r in 0..trs {
                for tx in 0..tiles_w {
                    let tile = r * tiles_w + tx;
                    let row = |i: usize, j: usize| {
                        let at = ((i * 4 + j) * t + tile) * f;
                        &m[at..at + f]
                    };
                    for j in 0..4 {
                        let (s0, s1) = s.split_at_mut(4 * f);
                        sum3(&mut s0[j * f..(j + 1) * f], row(0, j), row(1, j), row(2, j), 1.0);
                        sum3(&mut s1[j * f..(j + 1) * f], row(1, j), row(2, j), row(3, j), -1.0);
                    }
                    for dy in 0..2 {
                        let yy = 2 * r + dy;
                        if yy >= rows {
                            continue;
                        }
                        let sr = |j: usize| &s[(dy * 4 + j) * f..(dy * 4 + j + 1) * f];
                        for dx in 0..2 {
                            let xx = 2 * tx + dx;
                            if xx < ow {
                                let px = &mut dst[(yy * ow + xx) * f..(yy * ow + xx + 1) * f];
                                if dx == 0 {
                                    sum3(px, sr(0), sr(1), sr(2), 1.0);
                                } else {
                                    sum3(px, sr(1), sr(2), sr(3), -1.0);
                                }
                            }
                        }
                    }
                }
            }
            Ok::<(), KernelError>(())
        })?;
        if let Some(e) = epi {
            e.apply(dst, (*n * oh + 2 * *tr0) * row_len, f);
        }
        Ok(())
    };
    if tasks.len() <= 1 || rayon::current_num_threads() == 1 {
        tasks.iter_mut().try_for_each(run)
    } else {
        tasks.par_iter_mut().try_for_each(run)
    }
}

/// `out = a + sign · b`, element by element.
#[inline]
fn comb(out: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + sign * y;
    }
}

/// `out = a + sign · (b + c)` where `sign` is 1 (`a + b + c`) or −1 (`a − b − c`).
#[inline]
fn sum3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], sign: f32) {
    for (((o, &x), &y), &z) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = x + sign * (y + z);
    }
}
