//! Depthwise convolution (one input channel per group), compiled per instruction set
//! ([`crate::simd`]): one output row at a time, up to 8 pixels × one vector of `L` channels in
//! registers; for strides 1 and 2 and kernels 3 and 5 wide, the input vectors of a kernel row
//! are loaded once and feed every pixel that reads them. A depth multiplier above 1 first
//! repeats each input channel that many times, so that output channel `o` reads input channel
//! `o` and every load is contiguous. Pixels whose taps cross the border are done one at a time,
//! each tap checked.

// `seq!` and the macros unroll loops into literal indices and strides, where `0 * c`, `1 * c`
// and `q % 1` are the point.
#![allow(clippy::erasing_op, clippy::identity_op, clippy::modulo_one)]

use super::geo::{row_cost, rows_per_task, Geo, PaddedRows, RowSource, Rows, ROWS};
use crate::fused::{EpilogueArgs, InRegisters};
use crate::simd::{dispatch, Isa, Kernel, Simd};
use crate::util::for_row_blocks;
use seq_macro::seq;

/// Depthwise convolution (`C` groups of one input channel, `F = C · dm` outputs) into `out`,
/// then the epilogue.
pub(crate) fn depthwise(
    isa: Isa,
    g: &Geo,
    x: &[f32],
    w: &[f32],
    dm: usize,
    out: &mut [f32],
    epi: Option<&EpilogueArgs>,
) {
    let repeated;
    let (x, g) = if dm == 1 {
        (x, *g)
    } else {
        let mut r = Vec::with_capacity(x.len() * dm);
        for &v in x {
            r.extend(std::iter::repeat_n(v, dm));
        }
        repeated = r;
        (&repeated[..], Geo { c: g.f, ..*g })
    };
    let isa = crate::simd::isa_for_width(isa, g.f);
    let ow = g.out[2];
    let row_len = ow * g.f;
    let per_task = rows_per_task(row_cost(row_len * g.taps(), 4, row_len));
    let fused = epi.and_then(EpilogueArgs::in_registers);
    // Zero-padded row copies ([`PaddedRows`]) where the border pixels, which go one at a time
    // with every tap checked, are 1/32 of the row or more (at 12x12 with a 5x5 kernel, a third).
    let (first, last) = interior(&g, g.inp[2], g.pad[2]);
    let border = ow - last.saturating_sub(first);
    let padded = if border * 32 >= ow { PaddedRows::plan(&g, DW_P) } else { None };
    for_row_blocks(out, row_len, per_task, |r0, block| {
        ROWS.with(|rows| {
            let rows = &mut rows.borrow_mut();
            dispatch(isa, DepthwiseRows { g: &g, x, w, r0, block, rows, padded, fused });
        });
        if let (Some(e), None) = (epi, fused) {
            e.apply(block, r0 * row_len, g.f);
        }
    });
}

/// Whole output rows of [`depthwise`] from row `r0` on (the epilogue's residual is still the
/// whole output's): one micro-kernel entry for all of them.
struct DepthwiseRows<'a> {
    g: &'a Geo,
    x: &'a [f32],
    w: &'a [f32],
    r0: usize,
    block: &'a mut [f32],
    rows: &'a mut Vec<f32>,
    padded: Option<PaddedRows>,
    fused: Option<InRegisters<'a>>,
}

impl Kernel for DepthwiseRows<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let DepthwiseRows { g, x, w, r0, block, rows, padded, fused } = self;
        let row_len = g.out[2] * g.f;
        let mut src = RowSource::new(g, x, padded, rows);
        for (i, dst) in block.chunks_exact_mut(row_len).enumerate() {
            let r = r0 + i;
            let fused = fused.map(|f| f.row(r, row_len));
            let Rows { x, iw, pl, starts } = src.row(r);
            DepthwiseRow { g, x, iw, pl, starts, w, dst, fused }.run::<S>();
        }
    }
}

/// One output row of [`depthwise`]: `dst` is `ow × C`.
struct DepthwiseRow<'a> {
    g: &'a Geo,
    /// The input rows: the input itself, or [`PaddedRows`]' copies.
    x: &'a [f32],
    /// Columns per row of `x` and the padding left of its first column.
    iw: usize,
    pl: usize,
    /// Each kernel row's input row (`kz · kh + ky`): its first value in `x`, if inside.
    starts: &'a [Option<usize>],
    w: &'a [f32],
    dst: &'a mut [f32],
    fused: Option<InRegisters<'a>>,
}

impl DepthwiseRow<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let g = self.g;
        let (c, ow, l) = (g.c, g.out[2], S::L);
        // The pixels whose taps all lie inside the row: blocks of them need no checks.
        let (kw, s2, d2) = (g.k[2], g.s[2], g.d[2]);
        let (first, last) = interior(g, self.iw, self.pl);
        let mut cb = 0;
        while cb < c {
            let nl = l.min(c - cb);
            let mut ox0 = 0;
            while ox0 < ow {
                if ox0 >= first && ox0 < last && nl == l {
                    // Up to 8 pixels whose taps are all inside the row.
                    let n = DW_P.min(last - ox0);
                    let acc = match (s2, d2, kw) {
                        (1, 1, 3) => self.tile_unit_3::<S>(ox0, cb, n),
                        (1, 1, 5) => self.tile_unit_5::<S>(ox0, cb, n),
                        (2, 1, 3) => self.tile_stride2_3::<S>(ox0, cb, n),
                        (2, 1, 5) => self.tile_stride2_5::<S>(ox0, cb, n),
                        _ => self.tile_inside::<S>(ox0, cb, n),
                    };
                    let fused = self.fused;
                    let row = &mut self.dst[ox0 * c + cb..];
                    seq!(p in 0..8 {
                        if p < n {
                            let y = match &fused {
                                Some(f) => f.vector::<S>(acc[p], cb, l, (ox0 + p) * c + cb),
                                None => acc[p],
                            };
                            S::store(y, &mut row[p * c..]);
                        }
                    });
                    ox0 += n;
                } else {
                    let acc = self.pixel_edge::<S>(ox0, cb, nl);
                    let y = match &self.fused {
                        Some(f) => f.vector::<S>(acc, cb, nl, ox0 * c + cb),
                        None => acc,
                    };
                    S::store_part(y, &mut self.dst[ox0 * c + cb..], nl);
                    ox0 += 1;
                }
            }
            cb += l;
        }
    }
}

/// The output columns `first..last` whose taps all lie inside an input row of `iw` columns
/// whose first is `pl` columns left of the input's.
fn interior(g: &Geo, iw: usize, pl: usize) -> (usize, usize) {
    let (s, reach) = (g.s[2], (g.k[2] - 1) * g.d[2]);
    let last = if iw + pl > reach { ((iw + pl - reach - 1) / s + 1).min(g.out[2]) } else { 0 };
    (pl.div_ceil(s), last)
}

/// Pixels per depthwise block (the `seq!` bounds below).
const DW_P: usize = 8;

/// Defines `DepthwiseRow::$name`: [`DepthwiseRow::tile_inside`] for stride `$S`, unit dilation
/// along the row and a kernel `$K` wide, where the `7·$S + $K` input vectors of a kernel row
/// are loaded once and each feeds every pixel that reads it.
macro_rules! depthwise_unit_tile {
    ($name:ident, $K:literal, $S:literal, $J:literal) => {
        #[inline(always)]
        #[allow(unused_assignments)] // the step after the last load
        fn $name<S: Simd>(&self, ox0: usize, cb: usize, n: usize) -> [S::V; DW_P] {
            let g = self.g;
            let c = g.c;
            let mut acc = [S::zero(); DW_P];
            for kz in 0..g.k[0] {
                for ky in 0..g.k[1] {
                    let Some(row) = self.starts[kz * g.k[1] + ky] else { continue };
                    let tap0 = (kz * g.k[1] + ky) * $K;
                    let wv: [S::V; $K] = std::array::from_fn(|kx| S::load(&self.w[(tap0 + kx) * c + cb..]));
                    let x0 = row + (ox0 * $S - self.pl) * c + cb;
                    // The input vectors of columns ox0·S − pad .. (ox0 + n − 1)·S + K − pad.
                    let loads = (n - 1) * $S + $K;
                    let mut xs = &self.x[x0..x0 + (loads - 1) * c + S::L];
                    seq!(j in 0..$J {
                        if j < loads {
                            let xv = S::load(xs);
                            // Column j feeds pixel (j − kx) / S for each tap kx that divides.
                            seq!(kx in 0..$K {
                                let q = (j as usize).wrapping_sub(kx);
                                if q % $S == 0 {
                                    if let Some(a) = acc.get_mut(q / $S) {
                                        *a = S::fma(xv, wv[kx], *a);
                                    }
                                }
                            });
                            if j + 1 < loads {
                                xs = &xs[c..];
                            }
                        }
                    });
                }
            }
            acc
        }
    };
}

impl DepthwiseRow<'_> {
    depthwise_unit_tile!(tile_unit_3, 3, 1, 10);
    depthwise_unit_tile!(tile_unit_5, 5, 1, 12);
    depthwise_unit_tile!(tile_stride2_3, 3, 2, 17);
    depthwise_unit_tile!(tile_stride2_5, 5, 2, 19);

    /// Pixels `ox0..ox0 + n` (n ≤ 8) × channels `cb..cb + L`, every tap inside the input row.
    #[inline(always)]
    fn tile_inside<S: Simd>(&self, ox0: usize, cb: usize, n: usize) -> [S::V; DW_P] {
        let g = self.g;
        let (c, l, s2) = (g.c, S::L, g.s[2]);
        let mut acc = [S::zero(); DW_P];
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                let Some(row) = self.starts[kz * g.k[1] + ky] else { continue };
                for kx in 0..g.k[2] {
                    let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                    let wv = S::load(&self.w[tap * c + cb..]);
                    let x0 = row + (ox0 * s2 + kx * g.d[2] - self.pl) * c + cb;
                    // One pointer stepped by the pixel stride (fewer live addresses).
                    let step = s2 * c;
                    let mut xs = &self.x[x0..x0 + (n - 1) * step + l];
                    seq!(p in 0..8 {
                        if p < n {
                            acc[p] = S::fma(S::load(xs), wv, acc[p]);
                            if p + 1 < n {
                                xs = &xs[step..];
                            }
                        }
                    });
                }
            }
        }
        acc
    }

    /// One pixel at the borders of the row (or past the interior blocks, or the last `nl < L`
    /// channels): each tap checked.
    #[inline(always)]
    fn pixel_edge<S: Simd>(&self, ox: usize, cb: usize, nl: usize) -> S::V {
        let g = self.g;
        let c = g.c;
        let mut acc = S::zero();
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                let Some(row) = self.starts[kz * g.k[1] + ky] else { continue };
                for kx in 0..g.k[2] {
                    let ix = (ox * g.s[2] + kx * g.d[2]).checked_sub(self.pl).filter(|&i| i < self.iw);
                    if let Some(ix) = ix {
                        let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                        let wv = S::load_part(&self.w[tap * c + cb..], nl);
                        let xv = S::load_part(&self.x[row + ix * c + cb..], nl);
                        acc = S::fma(xv, wv, acc);
                    }
                }
            }
        }
        acc
    }
}
