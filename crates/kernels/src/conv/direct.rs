//! Direct convolution (group count 1) without im2col, compiled per instruction set
//! ([`crate::simd`]): one output row at a time, `P` pixels × `V` vectors of `L` output channels
//! in registers; for each tap and input channel the `V` weight vectors are loaded once and each
//! pixel's input value is broadcast against them. The kernel `(taps, C, F)` is already laid out
//! as the kernel reads it when `F` is a multiple of `L`; otherwise it is repacked once per call
//! into `(taps, C, F rounded up to L)`, zeros in the padding. Narrow layers go to
//! [`super::narrow`].

// `seq!` unrolls loops into literal indices, where `0 * c` and `1 * c` are the point.
#![allow(clippy::erasing_op, clippy::identity_op)]

use super::geo::{pad_filters, row_cost, rows_per_task, Geo, PaddedRows, RowSource, Rows, ROWS, SCRATCH};
use crate::fused::{Act, EpilogueArgs, InRegisters};
use crate::simd::{dispatch, Isa, Kernel, Simd};
use crate::util::for_row_blocks;
use seq_macro::seq;

/// Direct convolution (group count 1) into `out` (`(n, od, oh, ow, F)`), then the epilogue.
pub(crate) fn direct(isa: Isa, g: &Geo, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&EpilogueArgs>) {
    if super::narrow::applies(g) {
        return super::narrow::narrow(isa, g, x, w, out, epi);
    }
    let isa = crate::simd::isa_for_width(isa, g.f);
    let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
    let fp = g.f.div_ceil(lanes) * lanes;
    let taps = g.taps();
    let packed;
    let w = if fp == g.f {
        w
    } else {
        packed = pad_filters(w, g.f, fp);
        &packed
    };
    let ow = g.out[2];
    let row_len = ow * g.f;
    let per_task = rows_per_task(row_cost(ow * g.f * taps * g.c, 1, row_len));
    // The epilogue in registers, before each store.
    let fused = epi.and_then(EpilogueArgs::in_registers);
    let padded = PaddedRows::plan(g, 16);
    for_row_blocks(out, row_len, per_task, |r0, block| {
        SCRATCH.with(|s| {
            ROWS.with(|rows| {
                let scratch = &mut s.borrow_mut();
                let rows = &mut rows.borrow_mut();
                dispatch(isa, DirectRows { g, x, w, fp, r0, block, scratch, rows, padded, fused });
            })
        });
        if let (Some(e), None) = (epi, fused) {
            e.apply(block, r0 * row_len, g.f);
        }
    });
}

/// A block of whole output rows of [`direct`] from row `r0` on (the epilogue's residual is
/// still the whole output's): one micro-kernel entry for all of them.
struct DirectRows<'a> {
    g: &'a Geo,
    x: &'a [f32],
    w: &'a [f32],
    fp: usize,
    r0: usize,
    block: &'a mut [f32],
    scratch: &'a mut Vec<f32>,
    rows: &'a mut Vec<f32>,
    padded: Option<PaddedRows>,
    fused: Option<InRegisters<'a>>,
}

impl Kernel for DirectRows<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let DirectRows { g, x, w, fp, r0, block, scratch, rows, padded, fused } = self;
        let row_len = g.out[2] * g.f;
        let mut src = RowSource::new(g, x, padded, rows);
        for (i, dst) in block.chunks_exact_mut(row_len).enumerate() {
            let r = r0 + i;
            let fused = fused.map(|f| f.row(r, row_len));
            let Rows { x, iw, pl, starts } = src.row(r);
            DirectRow { g, x, iw, pl, starts, w, fp, dst, scratch: &mut *scratch, fused }.run::<S>();
        }
    }
}

/// One output row of [`direct`]: `dst` is `ow × F`.
///
/// The reduction runs over segments of contiguous input: with a width dilation of 1, the taps of
/// one kernel row read `kw · C` consecutive values for each pixel (and the kernel's rows for
/// them are consecutive too), so each segment is one pointer per pixel and a straight loop;
/// otherwise one segment per tap. A pixel whose segment crosses the border reads a zero-padded
/// copy of it.
struct DirectRow<'a> {
    g: &'a Geo,
    /// The input rows: `x` itself, or [`PaddedRows`]' copies.
    x: &'a [f32],
    /// Columns per row of `x` and the padding left of its first column.
    iw: usize,
    pl: usize,
    /// Each kernel row's input row (`kz · kh + ky`): its first value in `x`, if inside.
    starts: &'a [Option<usize>],
    w: &'a [f32],
    fp: usize,
    dst: &'a mut [f32],
    scratch: &'a mut Vec<f32>,
    /// The epilogue, applied before each store.
    fused: Option<InRegisters<'a>>,
}

impl DirectRow<'_> {
    #[inline(always)]
    fn run<S: Simd>(mut self) {
        let mut fb = 0;
        let l = S::L;
        let ow = self.g.out[2];
        // The widest register block that fits the filters left (4, 2 or 1 vectors), with as
        // many pixels as leave registers for the weights (32 registers with AVX-512, 16
        // otherwise), fewer where the row has fewer pixels left.
        let wide = l == 16;
        while fb < self.fp {
            let left = (self.fp - fb) / l;
            // Multiples of 3 vectors (48, 96, 144 filters) in blocks of 3, the rest by 4, 2, 1.
            let v = match left {
                _ if !wide => left.min(2),
                n if n.is_multiple_of(4) => 4,
                n if n.is_multiple_of(3) => 3,
                n => n.min(4),
            };
            let mut ox0 = 0;
            while ox0 < ow {
                let rem = ow - ox0;
                ox0 += match (wide, v) {
                    (true, 4) if rem >= 6 => self.block_6x4::<S>(fb, ox0),
                    (true, 4) => self.block_3x4::<S>(fb, ox0),
                    (true, 3) if rem >= 8 => self.block_8x3::<S>(fb, ox0),
                    (true, 3) => self.block_4x3::<S>(fb, ox0),
                    (true, 2) if rem >= 12 => self.block_12x2::<S>(fb, ox0),
                    (true, 2) if rem >= 6 => self.block_6x2::<S>(fb, ox0),
                    (true, 2) => self.block_3x2::<S>(fb, ox0),
                    (true, _) if rem >= 16 => self.block_16x1::<S>(fb, ox0),
                    (true, _) if rem >= 8 => self.block_8x1::<S>(fb, ox0),
                    (true, _) => self.block_4x1::<S>(fb, ox0),
                    (false, 2) if rem >= 6 => self.block_6x2::<S>(fb, ox0),
                    (false, 2) => self.block_3x2::<S>(fb, ox0),
                    (false, _) if rem >= 12 => self.block_12x1::<S>(fb, ox0),
                    (false, _) if rem >= 6 => self.block_6x1::<S>(fb, ox0),
                    (false, _) => self.block_3x1::<S>(fb, ox0),
                };
            }
            fb += v * l;
        }
    }
}

/// The most kernel-row segments (one per tap row, or per tap with a width dilation) listed
/// for a block; more go the general way.
const MAX_SEGMENTS: usize = 64;

/// `acc[p][v] += xp[p][i] · wt[i][fb + v·L..]` over the rows `i` of `wt` (`fp` wide).
macro_rules! fma_rows {
    ($S:ident, $P:literal, $V:literal, $xp:ident, $wt:ident, $fp:ident, $fb:ident, $acc:ident) => {
        for (i, wrow) in $wt.chunks_exact($fp).enumerate() {
            let wrow = &wrow[$fb..$fb + $V * $S::L];
            let wv: [$S::V; $V] = seq!(v in 0..$V { [ #( $S::load(&wrow[v * $S::L..]), )* ] });
            seq!(p in 0..$P {
                // SAFETY: every `xp[p]` holds as many values as `wt` has rows.
                let x = unsafe { $xp[p].get_unchecked(i) };
                seq!(v in 0..$V {
                    $acc[p][v] = $S::fma_bcast(x, wv[v], $acc[p][v]);
                });
            });
        }
    };
}

/// An activation on every vector of a register block: one branch for the block, each arm fully
/// unrolled (a branch per vector puts each result through the stack; a loop over the block, an
/// array in memory).
macro_rules! act_block {
    ($S:ident, $P:literal, $V:literal, $acc:ident, $act:expr) => {
        match $act {
            Act::Identity => {}
            Act::Relu => { seq!(p in 0..$P { seq!(v in 0..$V { $acc[p][v] = $S::relu($acc[p][v]); }); }); }
            Act::Clip(lo, hi) => {
                seq!(p in 0..$P { seq!(v in 0..$V { $acc[p][v] = $S::clamp($acc[p][v], lo, hi); }); });
            }
            Act::Vector(f) => { seq!(p in 0..$P { seq!(v in 0..$V { $acc[p][v] = f.apply::<$S>($acc[p][v]); }); }); }
        }
    };
}

/// The fused epilogue `post(act(acc + bias) + residual)` ([`InRegisters`]) of a register block of
/// `P` pixels (the first `n` real, the first at `at` in a row of `f` channels) × `V` vectors of
/// channels from `fb` (`lanes[v]` of vector `v` real), in registers.
macro_rules! epilogue_block {
    ($S:ident, $P:literal, $V:literal, $acc:ident, $e:ident, $lanes:ident, $fb:expr, $at:expr, $n:expr, $f:expr) => {
        if let Some(b) = $e.bias {
            seq!(v in 0..$V {
                if $lanes[v] > 0 {
                    let bv = $S::load_part(&b[$fb + v * $S::L..], $lanes[v]);
                    seq!(p in 0..$P { $acc[p][v] = $S::add($acc[p][v], bv); });
                }
            });
        }
        act_block!($S, $P, $V, $acc, $e.act);
        if let Some(r) = $e.residual {
            seq!(p in 0..$P {
                if p < $n {
                    seq!(v in 0..$V {
                        if $lanes[v] > 0 {
                            let at = $at + p * $f + $fb + v * $S::L;
                            $acc[p][v] = $S::add($acc[p][v], $S::load_part(&r[at..], $lanes[v]));
                        }
                    });
                }
            });
        }
        act_block!($S, $P, $V, $acc, $e.post);
    };
}

/// Defines `DirectRow::$name`, the block of `$P` pixels × `$V` vectors, its loops over the block
/// unrolled in the source (`seq!`) so that the accumulators are registers from the start.
macro_rules! direct_block {
    ($name:ident, $P:literal, $V:literal) => {
    /// Output channels `fb..fb + V·L` of the row, `P` pixels at a time.
        #[inline(always)]
        fn $name<S: Simd>(&mut self, fb: usize, ox0: usize) -> usize {
            const P: usize = $P;
            const V: usize = $V;
            let g = self.g;
            let l = S::L;
            let (c, fp, ow) = (g.c, self.fp, g.out[2]);
            let joined = g.d[2] == 1;
            // Columns and values per segment; segments per kernel row.
            let cols = if joined { g.k[2] } else { 1 };
            let seg = cols * c;
            let segs = g.k[2] / cols;
            // Every segment of every pixel of the block inside the row (the rows may still be
            // outside, which only skips them): a loop with no copies, whose accumulators stay
            // in registers (a copy is a call, around which all of them would be spilled).
            let (iw, pl) = (self.iw, self.pl);
            let interior = ox0 + P <= ow && {
                let first = (ox0 * g.s[2]) as isize - pl as isize;
                let end = ((ox0 + P - 1) * g.s[2] + (segs - 1) * g.d[2] + cols) as isize - pl as isize;
                first >= 0 && end <= iw as isize
            };
            // The segments (first input value, first kernel row) listed first, so that the
            // accumulation is two plain loops (around a deeper nest the compiler spills them).
            let listed = interior && g.k[0] * g.k[1] * segs <= MAX_SEGMENTS;
            let acc = if listed {
                let mut list = [(0usize, 0usize); MAX_SEGMENTS];
                let mut count = 0;
                for kz in 0..g.k[0] {
                    for ky in 0..g.k[1] {
                        let Some(xrow) = self.starts[kz * g.k[1] + ky] else { continue };
                        for j in 0..segs {
                            let col0 = ox0 * g.s[2] + j * g.d[2] - pl;
                            list[count] = (xrow + col0 * c, ((kz * g.k[1] + ky) * g.k[2] + j) * c * fp);
                            count += 1;
                        }
                    }
                }
                let mut acc = [[S::zero(); V]; P];
                for &(b, w0) in &list[..count] {
                    let xp: [&[f32]; P] = seq!(p in 0..$P { [ #( &self.x[b + p * g.s[2] * c..][..seg], )* ] });
                    let wt = &self.w[w0..w0 + seg * fp];
                    fma_rows!(S, $P, $V, xp, wt, fp, fb, acc);
                }
                acc
            } else {
                // Border pixels' zero-padded segments, then one segment of zeros for the pixels
                // past the end of the row.
                if self.scratch.len() < (P + 1) * seg {
                    self.scratch.resize((P + 1) * seg, 0.0);
                }
                self.scratch[P * seg..(P + 1) * seg].fill(0.0);
                let mut acc = [[S::zero(); V]; P];
                for kz in 0..g.k[0] {
                    for ky in 0..g.k[1] {
                        let Some(xrow) = self.starts[kz * g.k[1] + ky] else { continue };
                        for j in 0..segs {
                            // Input column of each pixel's segment; inside or not.
                            let mut start = [0usize; P];
                            let mut inside = [false; P];
                            let col0 = (ox0 * g.s[2] + j * g.d[2]) as isize - pl as isize;
                            if col0 >= 0 && col0 as usize + (P - 1) * g.s[2] + cols <= iw {
                                // The whole block inside: no per-pixel checks (pixels past the
                                // row's end read values inside the row, or the zeros past a
                                // padded copy, and are not stored).
                                let b = xrow + col0 as usize * c;
                                let xp: [&[f32]; P] = seq!(p in 0..$P { [ #( &self.x[b + p * g.s[2] * c..][..seg], )* ] });
                                let w0 = ((kz * g.k[1] + ky) * g.k[2] + j) * c * fp;
                                let wt = &self.w[w0..w0 + seg * fp];
                                fma_rows!(S, $P, $V, xp, wt, fp, fb, acc);
                                continue;
                            }
                            for p in 0..P {
                                let col = ((ox0 + p) * g.s[2] + j * g.d[2]) as isize - pl as isize;
                                if ox0 + p >= ow {
                                    start[p] = P * seg;
                                } else if col >= 0 && col as usize + cols <= iw {
                                    start[p] = xrow + col as usize * c;
                                    inside[p] = true;
                                } else {
                                    let pad = &mut self.scratch[p * seg..(p + 1) * seg];
                                    for t in 0..cols {
                                        let ic = col + t as isize;
                                        let cell = &mut pad[t * c..(t + 1) * c];
                                        if ic >= 0 && (ic as usize) < iw {
                                            let from = xrow + ic as usize * c;
                                            cell.copy_from_slice(&self.x[from..from + c]);
                                        } else {
                                            cell.fill(0.0);
                                        }
                                    }
                                    start[p] = p * seg;
                                }
                            }
                            let scratch = &self.scratch[..];
                            let pick = |p: usize| -> &[f32] {
                                if inside[p] {
                                    &self.x[start[p]..start[p] + seg]
                                } else {
                                    &scratch[start[p]..start[p] + seg]
                                }
                            };
                            let xp: [&[f32]; P] = seq!(p in 0..$P { [ #( pick(p), )* ] });
                            let w0 = ((kz * g.k[1] + ky) * g.k[2] + j) * c * fp;
                            let wt = &self.w[w0..w0 + seg * fp];
                            fma_rows!(S, $P, $V, xp, wt, fp, fb, acc);
                        }
                    }
                }
                acc
            };
            {
                // The lanes of each vector that are output channels (none past F: the padding
                // of the last vector is not stored), the epilogue on the whole block, then a
                // full unroll of the stores (constant indices), so `acc` stays in registers.
                let mut acc = acc;
                let n = ow - ox0;
                let lanes: [usize; V] = seq!(v in 0..$V { [ #( g.f.saturating_sub(fb + v * l).min(l), )* ] });
                if let Some(f) = &self.fused {
                    epilogue_block!(S, $P, $V, acc, f, lanes, fb, ox0 * g.f, n, g.f);
                }
                seq!(p in 0..$P {
                    if p < n {
                        seq!(v in 0..$V {
                            if lanes[v] > 0 {
                                S::store_part(acc[p][v], &mut self.dst[(ox0 + p) * g.f + fb + v * l..], lanes[v]);
                            }
                        });
                    }
                });
            }
            P
        }
    };
}

impl DirectRow<'_> {
    direct_block!(block_6x4, 6, 4);
    direct_block!(block_3x4, 3, 4);
    direct_block!(block_8x3, 8, 3);
    direct_block!(block_4x3, 4, 3);
    direct_block!(block_12x2, 12, 2);
    direct_block!(block_6x2, 6, 2);
    direct_block!(block_3x2, 3, 2);
    direct_block!(block_16x1, 16, 1);
    direct_block!(block_12x1, 12, 1);
    direct_block!(block_8x1, 8, 1);
    direct_block!(block_6x1, 6, 1);
    direct_block!(block_4x1, 4, 1);
    direct_block!(block_3x1, 3, 1);
}
