//! Convolution micro-kernels without im2col, compiled per instruction set ([`crate::simd`]).
//!
//! Both work on channels-last data, one output row `(n, z, y)` at a time, and keep a block of
//! output pixels × output channels in registers across every tap and input channel:
//! - [`direct`] (every group count 1 convolution): `P` pixels × `V` vectors of `L` output
//!   channels; for each tap and input channel, the `V` weight vectors are loaded once and each
//!   pixel's input value is broadcast against them. The kernel `(taps, C, F)` is already laid out
//!   as the kernel reads it when `F` is a multiple of `L`; otherwise it is repacked once per call
//!   into `(taps, C, F rounded up to L)`, zeros in the padding (the weights are small next to the
//!   work: a packed weight is read once per output pixel).
//! - [`depthwise`] (one input channel per group): `P` pixels × one vector of `L` channels; a
//!   depth multiplier above 1 first repeats each input channel that many times, so that output
//!   channel `o` reads input channel `o` and every load is contiguous.
//!
//! Taps outside the input (padding) read a row of zeros, so the inner loops have no branch.
//! The epilogue (bias, activation, residual) runs on each finished row while it is in cache.

// `seq!` unrolls loops into literal indices, where `0 * c` and `1 * c` are the point.
#![allow(clippy::erasing_op, clippy::identity_op)]

use crate::fused::{EpilogueArgs, InRegisters};
use crate::simd::{dispatch, Isa, Kernel, Simd};
use crate::util::for_rows;
use seq_macro::seq;

/// A convolution's geometry lifted to three spatial axes (leading 1s for 1-D and 2-D).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    pub n: usize,
    pub inp: [usize; 3],
    pub out: [usize; 3],
    pub k: [usize; 3],
    pub s: [usize; 3],
    pub d: [usize; 3],
    pub pad: [usize; 3],
    pub c: usize,
    pub f: usize,
}

impl Geo {
    fn taps(&self) -> usize {
        self.k.iter().product()
    }

    /// The position `(n, z, y)` of output row `r`.
    #[inline(always)]
    fn row_pos(&self, r: usize) -> (usize, usize, usize) {
        let [od, oh, _] = self.out;
        (r / (oh * od), (r / oh) % od, r % oh)
    }

    /// The input row `(n, z, y)` read by tap row `(kz, ky)` of the output row at `pos`, if inside.
    #[inline(always)]
    fn input_row(&self, (n, oz, oy): (usize, usize, usize), kz: usize, ky: usize) -> Option<usize> {
        let iz = (oz * self.s[0] + kz * self.d[0]).checked_sub(self.pad[0])?;
        let iy = (oy * self.s[1] + ky * self.d[1]).checked_sub(self.pad[1])?;
        (iz < self.inp[0] && iy < self.inp[1]).then(|| (n * self.inp[0] + iz) * self.inp[1] + iy)
    }

    /// The input column read by tap column `kx` of output column `ox`, if inside.
    #[inline(always)]
    fn input_col(&self, ox: usize, kx: usize) -> Option<usize> {
        let ix = (ox * self.s[2] + kx * self.d[2]).checked_sub(self.pad[2])?;
        (ix < self.inp[2]).then_some(ix)
    }
}

/// Work (multiply-adds) below which a task is not split further: splitting costs a few
/// microseconds of scheduling, which a task this size (~10 µs on one core) pays for.
const MIN_TASK_MACS: usize = 1 << 16;

/// Output rows per task for rows of `macs_per_row` multiply-adds each.
fn rows_per_task(macs_per_row: usize) -> usize {
    (MIN_TASK_MACS / macs_per_row.max(1)).max(1)
}

/// Direct convolution (group count 1) into `out` (`(n, od, oh, ow, F)`), then the epilogue.
pub(crate) fn direct(isa: Isa, g: &Geo, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&EpilogueArgs>) {
    if g.f <= NARROW_MAX_F && g.c <= NARROW_MAX_C && g.s[2] == 1 && g.out[2] >= 8 {
        return narrow(isa, g, x, w, out, epi);
    }
    let isa = crate::simd::isa_for_width(isa, g.f);
    let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
    let fp = g.f.div_ceil(lanes) * lanes;
    let taps = g.taps();
    let packed;
    let w = if fp == g.f {
        w
    } else {
        let mut p = vec![0f32; taps * g.c * fp];
        for (dst, src) in p.chunks_exact_mut(fp).zip(w.chunks_exact(g.f)) {
            dst[..g.f].copy_from_slice(src);
        }
        packed = p;
        &packed
    };
    let ow = g.out[2];
    let row_len = ow * g.f;
    let per_task = rows_per_task(ow * g.f * taps * g.c);
    // The epilogue in registers where the rows are not padded, else a pass over each row.
    let fused = if fp == g.f { epi.and_then(EpilogueArgs::in_registers) } else { None };
    for_rows(out, row_len, per_task, |r, dst| {
        let fused = fused.map(|f| f.row(r, row_len));
        SCRATCH.with(|s| {
            let (mut scratch, mut row) = (s.0.borrow_mut(), s.1.borrow_mut());
            if fp == g.f {
                dispatch(isa, DirectRow { g, x, w, fp, r, dst, scratch: &mut scratch, fused });
            } else {
                row.resize(ow * fp, 0.0);
                dispatch(isa, DirectRow { g, x, w, fp, r, dst: &mut row, scratch: &mut scratch, fused });
                for (d, s) in dst.chunks_exact_mut(g.f).zip(row.chunks_exact(fp)) {
                    d.copy_from_slice(&s[..g.f]);
                }
            }
        });
        if let (Some(e), None) = (epi, fused) {
            e.apply(dst, r * row_len, g.f);
        }
    });
}

/// Narrow layers (few filters, few input channels, unit stride along the row, rows of 8 pixels
/// or more) take [`narrow`]: vectors along the pixels (measured with examples/conv_bench: faster
/// there, slower with a stride of 2 or 8 input channels).
const NARROW_MAX_F: usize = 8;
const NARROW_MAX_C: usize = 4;

/// Direct convolution for few filters (≤ 8) and few input channels, vectorized along the
/// output pixels instead of the filters (which would leave most lanes empty and spend one
/// broadcast per input value and filter vector): each kernel row's input is first laid out
/// planar, one zero-padded line per channel and per phase of the stride, so that the inputs of
/// `L` consecutive pixels for a tap are one contiguous load; then each load meets every filter's
/// weight (broadcast), accumulating `F` vectors of `L` pixels, transposed into the
/// channels-last output at the end of the block.
fn narrow(isa: Isa, g: &Geo, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&EpilogueArgs>) {
    let fb = match g.f {
        0..=2 => 2,
        3..=4 => 4,
        _ => 8,
    };
    let taps = g.taps();
    // Weights as (tap, C, fb), zeros past F.
    let mut packed = vec![0f32; taps * g.c * fb];
    for (dst, src) in packed.chunks_exact_mut(fb).zip(w.chunks_exact(g.f)) {
        dst[..g.f].copy_from_slice(src);
    }
    let ow = g.out[2];
    let row_len = ow * g.f;
    let per_task = rows_per_task(ow * g.f * taps * g.c);
    let fused = epi.and_then(EpilogueArgs::in_registers);
    for_rows(out, row_len, per_task, |r, dst| {
        let fused = fused.map(|f| f.row(r, row_len));
        SCRATCH.with(|s| {
            let mut planar = s.0.borrow_mut();
            let k = NarrowRow { g, x, w: &packed, r, dst, planar: &mut planar, fused };
            match fb {
                2 => dispatch(isa, NarrowKernel::<2>(k)),
                4 => dispatch(isa, NarrowKernel::<4>(k)),
                _ => dispatch(isa, NarrowKernel::<8>(k)),
            }
        });
        if let (Some(e), None) = (epi, fused) {
            e.apply(dst, r * row_len, g.f);
        }
    });
}

/// One output row of [`narrow`].
struct NarrowRow<'a> {
    g: &'a Geo,
    x: &'a [f32],
    /// `(tap, C, FB)`.
    w: &'a [f32],
    r: usize,
    dst: &'a mut [f32],
    planar: &'a mut Vec<f32>,
    fused: Option<InRegisters<'a>>,
}

/// [`NarrowRow`] with `FB` filter slots (a compile-time count, so the accumulators are registers).
struct NarrowKernel<'a, const FB: usize>(NarrowRow<'a>);

impl<const FB: usize> Kernel for NarrowKernel<'_, FB> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let NarrowRow { g, x, w, r, dst, planar, fused } = self.0;
        let (c, ow, l) = (g.c, g.out[2], S::L);
        let (kw, s2, d2, pad) = (g.k[2], g.s[2], g.d[2], g.pad[2]);
        // Planar lines: for each kernel row inside the input, channel and stride phase, input
        // columns `j·s + phase − pad` for j in 0..width (zeros outside), with slack for the
        // last vector.
        let width = ow + (kw - 1) * d2 / s2 + 1 + l;
        let pos = g.row_pos(r);
        let mut rows = [(0usize, 0usize); 64];
        let mut nrows = 0;
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                if let Some(row) = g.input_row(pos, kz, ky) {
                    if nrows < rows.len() {
                        rows[nrows] = (kz * g.k[1] + ky, row * g.inp[2]);
                        nrows += 1;
                    }
                }
            }
        }
        let lines = nrows * c * s2;
        planar.clear();
        planar.resize(lines * width, 0.0);
        for (t, &(_, xrow)) in rows[..nrows].iter().enumerate() {
            for ph in 0..s2 {
                // The j whose column j·s + ph − pad lies inside the input.
                let lo = pad.saturating_sub(ph).div_ceil(s2);
                let hi = if g.inp[2] + pad > ph { ((g.inp[2] + pad - ph - 1) / s2 + 1).min(width) } else { 0 };
                if lo >= hi {
                    continue;
                }
                let ix0 = lo * s2 + ph - pad;
                if c == 1 && s2 == 1 {
                    let line = t * width;
                    planar[line + lo..line + hi].copy_from_slice(&x[xrow + ix0..xrow + ix0 + (hi - lo)]);
                    continue;
                }
                let src = &x[(xrow + ix0) * c..];
                for ci in 0..c {
                    let line = &mut planar[((t * c + ci) * s2 + ph) * width..][lo..hi];
                    for (k, v) in line.iter_mut().enumerate() {
                        *v = src[k * s2 * c + ci];
                    }
                }
            }
        }
        let f = g.f;
        let mut ox0 = 0;
        while ox0 < ow {
            let mut acc = [S::zero(); FB];
            for (t, &(tap_row, _)) in rows[..nrows].iter().enumerate() {
                for ci in 0..c {
                    for kx in 0..kw {
                        let off = kx * d2;
                        let line = ((t * c + ci) * s2 + off % s2) * width;
                        let xv = S::load(&planar[line + ox0 + off / s2..]);
                        let wr = &w[((tap_row * kw + kx) * c + ci) * FB..][..FB];
                        for fi in 0..FB {
                            acc[fi] = S::fma(xv, S::splat(wr[fi]), acc[fi]);
                        }
                    }
                }
            }
            // Transpose the block into the channels-last row.
            let mut tmp = [[0f32; 16]; FB];
            for fi in 0..FB {
                S::store(acc[fi], &mut tmp[fi]);
            }
            let n = l.min(ow - ox0);
            for (p, out) in dst[ox0 * f..(ox0 + n) * f].chunks_exact_mut(f).enumerate() {
                for (fi, o) in out.iter_mut().enumerate() {
                    *o = match &fused {
                        Some(e) => e.scalar(tmp[fi][p], fi, (ox0 + p) * f + fi),
                        None => tmp[fi][p],
                    };
                }
            }
            ox0 += l;
        }
    }
}

type Buffers = (std::cell::RefCell<Vec<f32>>, std::cell::RefCell<Vec<f32>>);

thread_local! {
    /// Each thread's buffers: the zero-padded input spans of the pixels at the borders, and a
    /// padded output row for filter counts that are not a multiple of the lanes.
    static SCRATCH: Buffers = const { (std::cell::RefCell::new(Vec::new()), std::cell::RefCell::new(Vec::new())) };
}

/// One output row of [`direct`]: `dst` is `ow × fp`.
///
/// The reduction runs over segments of contiguous input: with a width dilation of 1, the taps of
/// one kernel row read `kw · C` consecutive values for each pixel (and the kernel's rows for
/// them are consecutive too), so each segment is one pointer per pixel and a straight loop;
/// otherwise one segment per tap. A pixel whose segment crosses the border reads a zero-padded
/// copy of it.
struct DirectRow<'a> {
    g: &'a Geo,
    x: &'a [f32],
    w: &'a [f32],
    fp: usize,
    r: usize,
    dst: &'a mut [f32],
    scratch: &'a mut Vec<f32>,
    /// The epilogue, applied before each store (only when `fp` is `F`).
    fused: Option<InRegisters<'a>>,
}

impl Kernel for DirectRow<'_> {
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

/// `acc[p][v] += xp[p][i] · wt[i][fb + v·L..]` over the rows `i` of `wt` (`fp` wide).
macro_rules! fma_rows {
    ($S:ident, $P:literal, $V:literal, $xp:ident, $wt:ident, $fp:ident, $fb:ident, $acc:ident) => {
        for (i, wrow) in $wt.chunks_exact($fp).enumerate() {
            let wrow = &wrow[$fb..$fb + $V * $S::L];
            let wv: [$S::V; $V] = std::array::from_fn(|v| $S::load(&wrow[v * $S::L..]));
            seq!(p in 0..$P {
                // SAFETY: every `xp[p]` holds as many values as `wt` has rows.
                let xv = $S::splat(unsafe { *$xp[p].get_unchecked(i) });
                seq!(v in 0..$V {
                    $acc[p][v] = $S::fma(xv, wv[v], $acc[p][v]);
                });
            });
        }
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
            // Border pixels' zero-padded segments, then one segment of zeros for the pixels
            // past the end of the row.
            if self.scratch.len() < (P + 1) * seg {
                self.scratch.resize((P + 1) * seg, 0.0);
            }
            self.scratch[P * seg..(P + 1) * seg].fill(0.0);
            let pos = g.row_pos(self.r);
            {
                let mut acc = [[S::zero(); V]; P];
                for kz in 0..g.k[0] {
                    for ky in 0..g.k[1] {
                        let Some(row) = g.input_row(pos, kz, ky) else { continue };
                        let xrow = row * g.inp[2];
                        for j in 0..segs {
                            // Input column of each pixel's segment; inside or not.
                            let mut start = [0usize; P];
                            let mut inside = [false; P];
                            let col0 = (ox0 * g.s[2] + j * g.d[2]) as isize - g.pad[2] as isize;
                            if col0 >= 0 && ox0 + P <= ow && col0 as usize + (P - 1) * g.s[2] + cols <= g.inp[2] {
                                // The whole block inside: no per-pixel checks.
                                let b = (xrow + col0 as usize) * c;
                                let xp: [&[f32]; P] = std::array::from_fn(|p| &self.x[b + p * g.s[2] * c..][..seg]);
                                let w0 = ((kz * g.k[1] + ky) * g.k[2] + j) * c * fp;
                                let wt = &self.w[w0..w0 + seg * fp];
                                fma_rows!(S, $P, $V, xp, wt, fp, fb, acc);
                                continue;
                            }
                            for p in 0..P {
                                let col = ((ox0 + p) * g.s[2] + j * g.d[2]) as isize - g.pad[2] as isize;
                                if ox0 + p >= ow {
                                    start[p] = P * seg;
                                } else if col >= 0 && col as usize + cols <= g.inp[2] {
                                    start[p] = (xrow + col as usize) * c;
                                    inside[p] = true;
                                } else {
                                    let pad = &mut self.scratch[p * seg..(p + 1) * seg];
                                    for t in 0..cols {
                                        let ic = col + t as isize;
                                        let cell = &mut pad[t * c..(t + 1) * c];
                                        if ic >= 0 && (ic as usize) < g.inp[2] {
                                            let from = (xrow + ic as usize) * c;
                                            cell.copy_from_slice(&self.x[from..from + c]);
                                        } else {
                                            cell.fill(0.0);
                                        }
                                    }
                                    start[p] = p * seg;
                                }
                            }
                            let scratch = &self.scratch[..];
                            let xp: [&[f32]; P] = std::array::from_fn(|p| {
                                if inside[p] {
                                    &self.x[start[p]..start[p] + seg]
                                } else {
                                    &scratch[start[p]..start[p] + seg]
                                }
                            });
                            let w0 = ((kz * g.k[1] + ky) * g.k[2] + j) * c * fp;
                            let wt = &self.w[w0..w0 + seg * fp];
                            fma_rows!(S, $P, $V, xp, wt, fp, fb, acc);
                        }
                    }
                }
                // A full unroll over the block (constant indices), so `acc` stays in registers.
                let n = ow - ox0;
                seq!(p in 0..$P {
                    if p < n {
                        seq!(v in 0..$V {
                            let at = (ox0 + p) * fp + fb + v * l;
                            let y = match &self.fused {
                                Some(f) => f.vector::<S>(acc[p][v], fb + v * l, l, at),
                                None => acc[p][v],
                            };
                            S::store(y, &mut self.dst[at..]);
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
    let per_task = rows_per_task(row_len * g.taps());
    let fused = epi.and_then(EpilogueArgs::in_registers);
    for_rows(out, row_len, per_task, |r, dst| {
        let fused = fused.map(|f| f.row(r, row_len));
        dispatch(isa, DepthwiseRow { g: &g, x, w, r, dst, fused });
        if let (Some(e), None) = (epi, fused) {
            e.apply(dst, r * row_len, g.f);
        }
    });
}

/// One output row of [`depthwise`]: `dst` is `ow × C`.
struct DepthwiseRow<'a> {
    g: &'a Geo,
    x: &'a [f32],
    w: &'a [f32],
    r: usize,
    dst: &'a mut [f32],
    fused: Option<InRegisters<'a>>,
}

impl Kernel for DepthwiseRow<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let g = self.g;
        let (c, ow, l) = (g.c, g.out[2], S::L);
        // The pixels whose taps all lie inside the row: blocks of them need no checks.
        let (kw, s2, d2, pad) = (g.k[2], g.s[2], g.d[2], g.pad[2]);
        let first = pad.div_ceil(s2);
        let reach = (kw - 1) * d2;
        let last = if g.inp[2] + pad > reach { ((g.inp[2] + pad - reach - 1) / s2 + 1).min(ow) } else { 0 };
        let pos = g.row_pos(self.r);
        let mut cb = 0;
        while cb < c {
            let nl = l.min(c - cb);
            let mut ox0 = 0;
            while ox0 < ow {
                if ox0 >= first && ox0 < last && nl == l {
                    // Up to 8 pixels whose taps are all inside the row.
                    let n = DW_P.min(last - ox0);
                    let acc = match (s2, d2, kw) {
                        (1, 1, 3) => self.tile_unit_3::<S>(pos, ox0, cb, n),
                        (1, 1, 5) => self.tile_unit_5::<S>(pos, ox0, cb, n),
                        _ => self.tile_inside::<S>(pos, ox0, cb, n),
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
                    let acc = self.pixel_edge::<S>(pos, ox0, cb, nl);
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

/// Pixels per depthwise block (the `seq!` bounds below).
const DW_P: usize = 8;

/// Defines `DepthwiseRow::$name`: [`DepthwiseRow::tile_inside`] for unit stride and dilation
/// along the row and a kernel `$K` wide, where the `8 + $K − 1` input vectors of a kernel row
/// are loaded once and each feeds the `$K` pixels that read it.
macro_rules! depthwise_unit_tile {
    ($name:ident, $K:literal, $J:literal) => {
        #[inline(always)]
        #[allow(unused_assignments)] // the step after the last load
        fn $name<S: Simd>(&self, pos: (usize, usize, usize), ox0: usize, cb: usize, n: usize) -> [S::V; DW_P] {
            let g = self.g;
            let c = g.c;
            let mut acc = [S::zero(); DW_P];
            for kz in 0..g.k[0] {
                for ky in 0..g.k[1] {
                    let Some(row) = g.input_row(pos, kz, ky) else { continue };
                    let tap0 = (kz * g.k[1] + ky) * $K;
                    let wv: [S::V; $K] = std::array::from_fn(|kx| S::load(&self.w[(tap0 + kx) * c + cb..]));
                    let x0 = (row * g.inp[2] + ox0 - g.pad[2]) * c + cb;
                    // The input vectors of pixels ox0 − pad .. ox0 + n + K − 1 − pad.
                    let loads = n + $K - 1;
                    let mut xs = &self.x[x0..x0 + (loads - 1) * c + S::L];
                    seq!(j in 0..$J {
                        if j < loads {
                            let xv = S::load(xs);
                            seq!(kx in 0..$K {
                                if let Some(a) = acc.get_mut((j as usize).wrapping_sub(kx)) {
                                    *a = S::fma(xv, wv[kx], *a);
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
    depthwise_unit_tile!(tile_unit_3, 3, 10);
    depthwise_unit_tile!(tile_unit_5, 5, 12);

    /// Pixels `ox0..ox0 + n` (n ≤ 8) × channels `cb..cb + L`, every tap inside the input row.
    #[inline(always)]
    fn tile_inside<S: Simd>(&self, pos: (usize, usize, usize), ox0: usize, cb: usize, n: usize) -> [S::V; DW_P] {
        let g = self.g;
        let (c, l, s2) = (g.c, S::L, g.s[2]);
        let mut acc = [S::zero(); DW_P];
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                let Some(row) = g.input_row(pos, kz, ky) else { continue };
                let xrow = row * g.inp[2];
                for kx in 0..g.k[2] {
                    let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                    let wv = S::load(&self.w[tap * c + cb..]);
                    let x0 = (xrow + ox0 * s2 + kx * g.d[2] - g.pad[2]) * c + cb;
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
    fn pixel_edge<S: Simd>(&self, pos: (usize, usize, usize), ox: usize, cb: usize, nl: usize) -> S::V {
        let g = self.g;
        let c = g.c;
        let mut acc = S::zero();
        for kz in 0..g.k[0] {
            for ky in 0..g.k[1] {
                let Some(row) = g.input_row(pos, kz, ky) else { continue };
                let xrow = row * g.inp[2];
                for kx in 0..g.k[2] {
                    if let Some(ix) = g.input_col(ox, kx) {
                        let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                        let wv = S::load_part(&self.w[tap * c + cb..], nl);
                        let xv = S::load_part(&self.x[(xrow + ix) * c + cb..], nl);
                        acc = S::fma(xv, wv, acc);
                    }
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook loop nest: `y[n, o..., f] = Σ x[n, o·s + k·d − pad, c] · w[k, c, f]`
    /// (`groups` groups of `c/groups` input and `f/groups` output channels).
    fn reference(g: &Geo, groups: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (cg, fg) = (g.c / groups, g.f / groups);
        let [od, oh, ow] = g.out;
        let mut y = vec![0f32; g.n * od * oh * ow * g.f];
        for n in 0..g.n {
            for oz in 0..od {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for f in 0..g.f {
                            let grp = f / fg;
                            let mut s = 0f64;
                            for kz in 0..g.k[0] {
                                for ky in 0..g.k[1] {
                                    for kx in 0..g.k[2] {
                                        let iz = (oz * g.s[0] + kz * g.d[0]) as isize - g.pad[0] as isize;
                                        let iy = (oy * g.s[1] + ky * g.d[1]) as isize - g.pad[1] as isize;
                                        let ix = (ox * g.s[2] + kx * g.d[2]) as isize - g.pad[2] as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz as usize >= g.inp[0]
                                            || iy as usize >= g.inp[1]
                                            || ix as usize >= g.inp[2]
                                        {
                                            continue;
                                        }
                                        let xb = (((n * g.inp[0] + iz as usize) * g.inp[1] + iy as usize) * g.inp[2]
                                            + ix as usize)
                                            * g.c;
                                        let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                                        for ci in 0..cg {
                                            s += x[xb + grp * cg + ci] as f64 * w[(tap * cg + ci) * g.f + f] as f64;
                                        }
                                    }
                                }
                            }
                            y[(((n * od + oz) * oh + oy) * ow + ox) * g.f + f] = s as f32;
                        }
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn out_size(i: usize, k: usize, s: usize, d: usize, pad: usize) -> usize {
        (i + 2 * pad - d * (k - 1) - 1) / s + 1
    }

    /// Geometries that reach every path: filter counts that are and are not multiples of 8 and
    /// 16 (full blocks of 4, 2 and 1 vectors and the padded tail), rows shorter and longer than
    /// a pixel block, padding on every side, strides, dilations, 1-D, 2-D and 3-D.
    fn geometries() -> Vec<Geo> {
        let mut v = Vec::new();
        type Case = ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], usize, usize);
        let cases: [Case; 14] = [
            ([1, 9, 11], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 1, 1], 3, 8),
            ([1, 16, 16], [1, 3, 3], [1, 2, 2], [1, 1, 1], [0, 1, 1], 3, 32),
            ([1, 7, 5], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0], 5, 70),
            ([1, 6, 20], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0], 24, 24),
            ([1, 8, 8], [1, 5, 5], [1, 1, 1], [1, 2, 2], [0, 4, 4], 4, 16),
            ([1, 1, 30], [1, 1, 5], [1, 1, 3], [1, 1, 1], [0, 0, 2], 6, 9),
            ([4, 5, 6], [3, 3, 3], [1, 2, 1], [1, 1, 1], [1, 1, 1], 2, 12),
            ([1, 4, 4], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 2, 2], 16, 64),
            ([1, 3, 40], [1, 2, 7], [1, 1, 2], [1, 1, 1], [0, 1, 3], 1, 17),
            ([1, 2, 2], [1, 2, 2], [1, 1, 1], [1, 1, 1], [0, 0, 0], 33, 48),
            ([1, 6, 21], [1, 5, 5], [1, 1, 1], [1, 1, 1], [0, 2, 2], 20, 20),
            ([1, 5, 20], [1, 3, 3], [1, 1, 1], [1, 2, 2], [0, 2, 2], 1, 5),
            ([1, 3, 11], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0], 8, 144),
            ([2, 4, 12], [2, 2, 3], [1, 2, 1], [1, 1, 1], [1, 0, 1], 4, 2),
        ];
        for (inp, k, s, d, pad, c, f) in cases {
            let out: [usize; 3] = std::array::from_fn(|i| out_size(inp[i], k[i], s[i], d[i], pad[i]));
            v.push(Geo { n: 2, inp, out, k, s, d, pad, c, f });
        }
        v
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what}: element {i}: {a} vs {b}");
        }
    }

    #[test]
    fn direct_matches_the_loop_nest_on_every_instruction_set() {
        for (i, g) in geometries().into_iter().enumerate() {
            let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
            let w = values(g.taps() * g.c * g.f, 100 + i as u32);
            let want = reference(&g, 1, &x, &w);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; want.len()];
                direct(isa, &g, &x, &w, &mut y, None);
                close(&y, &want, &format!("{isa:?} {g:?}"));
            }
        }
    }

    #[test]
    fn depthwise_matches_the_loop_nest_on_every_instruction_set() {
        for (i, g0) in geometries().into_iter().enumerate() {
            for dm in [1, 3] {
                let g = Geo { f: g0.c * dm, ..g0 };
                let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
                let w = values(g.taps() * g.f, 200 + i as u32);
                let want = reference(&g, g.c, &x, &w);
                for isa in Isa::available() {
                    let mut y = vec![f32::NAN; want.len()];
                    depthwise(isa, &g, &x, &w, dm, &mut y, None);
                    close(&y, &want, &format!("{isa:?} dm {dm} {g:?}"));
                }
            }
        }
    }

    /// The epilogue applied in registers (bias, a clip, a residual, a ReLU) and after the
    /// kernel (an activation it does not do in registers) gives `post(act(y + b) + r)` of the
    /// loop nest's `y`, on every kernel and instruction set.
    #[test]
    fn epilogues_match_in_registers_and_after() {
        use ir::{Epilogue, UnaryOp};
        let clip = Epilogue {
            bias: true,
            activation: Some(UnaryOp::Relu6),
            residual: true,
            post_activation: Some(UnaryOp::Relu),
        };
        let sigmoid =
            Epilogue { bias: true, activation: Some(UnaryOp::Sigmoid), residual: false, post_activation: None };
        let act = |u: Option<UnaryOp>, v: f32| match u {
            None => v,
            Some(UnaryOp::Relu6) => v.clamp(0.0, 6.0),
            Some(UnaryOp::Relu) => v.max(0.0),
            Some(u) => crate::scalar::unary_scalar(u, v),
        };
        for (i, g0) in geometries().into_iter().enumerate() {
            for depthwise_kernel in [false, true] {
                let g = if depthwise_kernel { Geo { f: g0.c * 2, ..g0 } } else { g0 };
                let groups = if depthwise_kernel { g.c } else { 1 };
                let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
                let w = values(g.taps() * g.c / groups * g.f, 300 + i as u32);
                let y = reference(&g, groups, &x, &w);
                let bias: Vec<f32> = values(g.f, 400 + i as u32).iter().map(|v| v * 4.0).collect();
                let res = values(y.len(), 500 + i as u32);
                for e in [&clip, &sigmoid] {
                    let want: Vec<f32> = y
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| {
                            let mut v = act(e.activation, v + bias[k % g.f]);
                            if e.residual {
                                v += res[k];
                            }
                            act(e.post_activation, v)
                        })
                        .collect();
                    let args =
                        EpilogueArgs { epilogue: e, bias: Some(&bias), residual: e.residual.then_some(&res[..]) };
                    for isa in Isa::available() {
                        let mut got = vec![f32::NAN; y.len()];
                        if depthwise_kernel {
                            depthwise(isa, &g, &x, &w, 2, &mut got, Some(&args));
                        } else {
                            direct(isa, &g, &x, &w, &mut got, Some(&args));
                        }
                        close(&got, &want, &format!("{isa:?} {e:?} depthwise {depthwise_kernel} {g:?}"));
                    }
                }
            }
        }
    }
}
