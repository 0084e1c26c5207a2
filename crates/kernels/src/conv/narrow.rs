//! Direct convolution of narrow layers, vectorized along the output pixels
//! ([`narrow`]), compiled per instruction set ([`crate::simd`]).

use super::geo::{pad_filters, rows_per_task, Geo, SCRATCH};
use crate::fused::{EpilogueArgs, InRegisters};
use crate::simd::{dispatch, Isa, Kernel, Simd};
use crate::util::for_rows;

/// Narrow layers (few filters, few input channels, unit stride along the row, rows of 8 pixels
/// or more) take [`narrow`]: vectors along the pixels (measured with examples/conv_bench: faster
/// there, slower with a stride of 2 or 8 input channels).
pub(super) const NARROW_MAX_F: usize = 8;
pub(super) const NARROW_MAX_C: usize = 4;

/// Direct convolution for few filters (≤ 8) and few input channels, vectorized along the
/// output pixels instead of the filters (which would leave most lanes empty and spend one
/// broadcast per input value and filter vector): each kernel row's input is first laid out
/// planar, one zero-padded line per channel and per phase of the stride, so that the inputs of
/// `L` consecutive pixels for a tap are one contiguous load; then each load meets every filter's
/// weight (broadcast), accumulating `F` vectors of `L` pixels, transposed into the
/// channels-last output at the end of the block.
pub(super) fn narrow(isa: Isa, g: &Geo, x: &[f32], w: &[f32], out: &mut [f32], epi: Option<&EpilogueArgs>) {
    let fb = match g.f {
        0..=2 => 2,
        3..=4 => 4,
        _ => 8,
    };
    let taps = g.taps();
    // Weights as (tap, C, fb), zeros past F.
    let packed = pad_filters(w, g.f, fb);
    let ow = g.out[2];
    let row_len = ow * g.f;
    let per_task = rows_per_task(ow * g.f * taps * g.c);
    // Without a residual, the epilogue is per filter, so it runs on each vector of pixels
    // before the transposition; with one, a pass over each row.
    let fused = epi.and_then(EpilogueArgs::in_registers).filter(|f| f.residual.is_none());
    for_rows(out, row_len, per_task, |r, dst| {
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
    /// The epilogue without a residual, applied to each filter's vector of pixels.
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
                let mut v = acc[fi];
                if let Some(e) = &fused {
                    if let Some(b) = e.bias {
                        v = S::add(v, S::splat(b[fi.min(f - 1)]));
                    }
                    v = e.post.vector::<S>(e.act.vector::<S>(v));
                }
                S::store(v, &mut tmp[fi]);
            }
            let n = l.min(ow - ox0);
            for (p, out) in dst[ox0 * f..(ox0 + n) * f].chunks_exact_mut(f).enumerate() {
                for (fi, o) in out.iter_mut().enumerate() {
                    *o = tmp[fi][p];
                }
            }
            ox0 += l;
        }
    }
}
