//! Direct convolution of narrow layers, vectorized along the output pixels
//! ([`narrow`]), compiled per instruction set ([`crate::simd`]).

use super::geo::{pad_filters, row_cost, rows_per_task, Geo};
use crate::fused::{EpilogueArgs, InRegisters};
use crate::simd::{dispatch, Isa, Kernel, Simd};
use crate::util::for_row_blocks;

/// Narrow layers (few filters, up to 16 input channels, a stride of 1 or 2 along the row, rows
/// of 8 pixels or more) take [`narrow`]: vectors along the pixels. Measured on the dev models'
/// layers at batch 8 (resnet_block, pool_pad_up, cnn_mnist: 3-16 channels into 4-8 filters):
/// 1.3-2x faster than vectors along 8 filters, which spend one broadcast per input value and
/// a block's entry per few pixels.
pub(super) const NARROW_MAX_F: usize = 8;
pub(super) const NARROW_MAX_C: usize = 16;
pub(super) const NARROW_MAX_STRIDE: usize = 2;

/// Whether [`narrow`] takes the convolution `g` (group count 1).
pub(super) fn applies(g: &Geo) -> bool {
    // A 1x1 convolution into 8 filters fills 8 lanes of AVX2 exactly along the filters, which
    // beats a planar copy of its input; into fewer it goes along the pixels.
    let pointwise_full = g.taps() == 1 && g.f > 4;
    g.f <= NARROW_MAX_F
        && g.c <= NARROW_MAX_C
        && g.s[2] <= NARROW_MAX_STRIDE
        && g.out[2] >= 8
        && !pointwise_full
        && g.c * g.k[2] <= MAX_WITHIN
        && g.k[0] * g.k[1] <= MAX_KERNEL_ROWS
}

/// Direct convolution for few filters (≤ 8) and few input channels, vectorized along the
/// output pixels instead of the filters (which would leave most lanes empty and spend one
/// broadcast per input value and filter vector): the input is first laid out planar, once per
/// call, one zero-padded line per input row, channel and phase of the stride, so that the
/// inputs of `L` consecutive pixels for a tap are one contiguous load; then each load meets
/// every filter's weight (broadcast), accumulating `F` vectors of `L` pixels, transposed into
/// the channels-last output at the end of the block.
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
    let per_task = rows_per_task(row_cost(ow * g.f * taps * g.c, 1, ow * g.f));
    // Without a residual, the epilogue is per filter, so it runs on each vector of pixels
    // before the transposition; with one, a pass over each block of rows.
    let fused = epi.and_then(EpilogueArgs::in_registers).filter(|f| f.residual.is_none());
    // The planar input, in a buffer kept by this thread between calls (taken out while in use,
    // so that a convolution nested in the pool's wait finds it empty and makes its own).
    let mut planar = PLANAR.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let width = planar_lines(g, x, &mut planar);
    let planar_ref = &planar[..];
    for_row_blocks(out, row_len, per_task, |r0, block| {
        let k = NarrowRows { g, x: planar_ref, width, w: &packed, r0, block, fused };
        match fb {
            2 => dispatch(isa, NarrowKernel::<2>(k)),
            4 => dispatch(isa, NarrowKernel::<4>(k)),
            _ => dispatch(isa, NarrowKernel::<8>(k)),
        }
        if let (Some(e), None) = (epi, fused) {
            e.apply(block, r0 * row_len, g.f);
        }
    });
    PLANAR.with(|p| *p.borrow_mut() = planar);
}

/// The most lanes of any instruction set (the slack at the end of each planar line).
const MAX_LANES: usize = 16;
/// The most (input channel, kernel column) pairs of a kernel row [`narrow`] takes.
const MAX_WITHIN: usize = NARROW_MAX_C * 16;
/// The most kernel rows (depth × height) [`narrow`] takes.
const MAX_KERNEL_ROWS: usize = 64;

thread_local! {
    static PLANAR: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Lays out `x` planar in `planar`: for each input row `(n, z, y)`, channel and phase `ph` of
/// the stride along the row, the line of input columns `j·s + ph − pad` for `j` in
/// `0..width` (zeros outside the input, and slack for the last vector). Returns `width`.
fn planar_lines(g: &Geo, x: &[f32], planar: &mut Vec<f32>) -> usize {
    let (c, kw, s2, d2) = (g.c, g.k[2], g.s[2], g.d[2]);
    let width = g.out[2] + (kw - 1) * d2 / s2 + 1 + MAX_LANES;
    let per_row = c * s2 * width;
    let in_rows = g.n * g.inp[0] * g.inp[1];
    planar.resize(in_rows * per_row, 0.0);
    // Tasks of 2^18 values (a cheap pass: one load and one store each).
    let per_task = ((1 << 18) / per_row.max(1)).max(1);
    for_row_blocks(planar, per_row, per_task, |r0, block| {
        dispatch(crate::simd::isa(), PlanarFill { g, x, width, r0, block });
    });
    width
}

/// Input rows `r0..` of [`planar_lines`] into `block`.
struct PlanarFill<'a> {
    g: &'a Geo,
    x: &'a [f32],
    width: usize,
    r0: usize,
    block: &'a mut [f32],
}

impl Kernel for PlanarFill<'_> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let PlanarFill { g, x, width, r0, block } = self;
        let (c, s2, pad, iw, l) = (g.c, g.s[2], g.pad[2], g.inp[2], S::L);
        let per_row = c * s2 * width;
        for (i, lines) in block.chunks_exact_mut(per_row).enumerate() {
            let xrow = &x[(r0 + i) * iw * c..(r0 + i + 1) * iw * c];
            for ph in 0..s2 {
                // The j whose column j·s + ph − pad lies inside the input.
                let lo = pad.saturating_sub(ph).div_ceil(s2).min(width);
                let hi = if iw + pad > ph { ((iw + pad - ph - 1) / s2 + 1).min(width) } else { 0 }.max(lo);
                let ix0 = (lo * s2 + ph).saturating_sub(pad);
                let step = s2 * c;
                for ci in 0..c {
                    let line = &mut lines[(ci * s2 + ph) * width..][..width];
                    line[..lo].fill(0.0);
                    line[hi..].fill(0.0);
                    let src = &xrow[ix0 * c + ci..];
                    if step == 1 {
                        line[lo..hi].copy_from_slice(&src[..hi - lo]);
                        continue;
                    }
                    // Vectors of L columns gathered at the pixel stride, the rest one by one.
                    let mut j = 0;
                    while j + l <= hi - lo {
                        S::store(S::load_strided(&src[j * step..], step), &mut line[lo + j..]);
                        j += l;
                    }
                    for (k, v) in line[lo + j..hi].iter_mut().enumerate() {
                        *v = src[(j + k) * step];
                    }
                }
            }
        }
    }
}

/// Rows `r0..` of [`narrow`] in `block`.
struct NarrowRows<'a> {
    g: &'a Geo,
    /// The planar input ([`planar_lines`]), lines `width` long.
    x: &'a [f32],
    width: usize,
    /// `(tap, C, FB)`.
    w: &'a [f32],
    r0: usize,
    block: &'a mut [f32],
    /// The epilogue without a residual, applied to each filter's vector of pixels.
    fused: Option<InRegisters<'a>>,
}

/// [`NarrowRows`] with `FB` filter slots (a compile-time count, so the accumulators are registers).
struct NarrowKernel<'a, const FB: usize>(NarrowRows<'a>);

impl<const FB: usize> Kernel for NarrowKernel<'_, FB> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        let NarrowRows { g, x, width, w, r0, block, fused } = self.0;
        let (c, ow, l, f) = (g.c, g.out[2], S::L, g.f);
        let (kw, s2, d2) = (g.k[2], g.s[2], g.d[2]);
        let per_row = c * s2 * width;
        // Within one kernel row, each (input channel, kernel column) as (offset of its inputs
        // from the row's first line, offset of its FB weights from the kernel row's): no
        // division or nested loop left in the pixel loop.
        let mut within = [(0usize, 0usize); MAX_WITHIN];
        let nwithin = (c * kw).min(MAX_WITHIN);
        for ci in 0..c {
            for kx in 0..kw {
                let off = kx * d2;
                if let Some(t) = within.get_mut(ci * kw + kx) {
                    *t = ((ci * s2 + off % s2) * width + off / s2, (kx * c + ci) * FB);
                }
            }
        }
        let within = &within[..nwithin];
        // Value v = j·L + lane of a block of pixels × f filters is filter v % f of pixel v / f,
        // at (v % f)·16 + v / f in `tmp`: below f·16 + L ≤ FB · 16 (f ≤ FB, v / f < L ≤ 16).
        let mut idx = [[0i32; 16]; FB];
        for (j, id) in idx.iter_mut().enumerate() {
            for (lane, o) in id.iter_mut().enumerate().take(l) {
                let v = j * l + lane;
                *o = ((v % f) * MAX_LANES + v / f) as i32;
            }
        }
        // Each block's vectors go to `tmp[slot]` and are gathered into the output one block
        // later (a gather right after the stores it reads would wait for them to reach the
        // cache: store forwarding does not serve gathers).
        let mut tmp = [[[0f32; MAX_LANES]; FB]; 2];
        let mut pending: Option<(usize, usize, usize)> = None; // (slot, offset in block, values)
        let mut slot = 0;
        let rows_in_block = block.len() / (ow * f).max(1);
        // The kernel rows of an output row inside the input: (tap row, first line of its input
        // row); set anew for each row (declared once: clearing it per row cost 10 % on a stem).
        let mut rows = [(0usize, 0usize); MAX_KERNEL_ROWS];
        for i in 0..rows_in_block {
            let pos = g.row_pos(r0 + i);
            let mut nrows = 0;
            for kz in 0..g.k[0] {
                for ky in 0..g.k[1] {
                    if let Some(row) = g.input_row(pos, kz, ky) {
                        if nrows < rows.len() {
                            rows[nrows] = (kz * g.k[1] + ky, row * per_row);
                            nrows += 1;
                        }
                    }
                }
            }
            let mut ox0 = 0;
            while ox0 < ow {
                let mut acc = [S::zero(); FB];
                for &(tap_row, line0) in &rows[..nrows] {
                    let xr = &x[line0 + ox0..];
                    let wk = &w[tap_row * kw * c * FB..];
                    for &(xo, wo) in within {
                        let xv = S::load(&xr[xo..]);
                        let wr = &wk[wo..][..FB];
                        for fi in 0..FB {
                            acc[fi] = S::fma(xv, S::splat(wr[fi]), acc[fi]);
                        }
                    }
                }
                if let Some(e) = &fused {
                    for (fi, v) in acc.iter_mut().enumerate() {
                        if let Some(b) = e.bias {
                            *v = S::add(*v, S::splat(b[fi.min(f - 1)]));
                        }
                        *v = e.post.vector::<S>(e.act.vector::<S>(*v));
                    }
                }
                let n = l.min(ow - ox0);
                let at = (i * ow + ox0) * f;
                // Transposed in registers where the instruction set can, else through `tmp`.
                if let (8, Ok(v8)) = (f, <&[S::V; 8]>::try_from(&acc[..])) {
                    if S::store_transposed8(v8, &mut block[at..], n) {
                        ox0 += l;
                        continue;
                    }
                }
                if let Some((s, at, total)) = pending.take() {
                    flush::<S, FB>(&tmp[s], &idx, &mut block[at..], total);
                }
                for fi in 0..FB {
                    S::store(acc[fi], &mut tmp[slot][fi]);
                }
                pending = Some((slot, at, n * f));
                slot ^= 1;
                ox0 += l;
            }
        }
        if let Some((s, at, total)) = pending {
            flush::<S, FB>(&tmp[s], &idx, &mut block[at..], total);
        }
    }
}

/// Writes a block of pixels × filters from `tmp` (one vector of pixels per filter) as the first
/// `total` values of the channels-last `out`: vector j holds values j·L.., each gathered from
/// `tmp` at `idx[j]`.
#[inline(always)]
fn flush<S: Simd, const FB: usize>(tmp: &[[f32; MAX_LANES]; FB], idx: &[[i32; 16]; FB], out: &mut [f32], total: usize) {
    let l = S::L;
    let tmp_flat = tmp.as_flattened();
    let mut done = 0;
    for id in &idx[..total.div_ceil(l)] {
        // SAFETY: every index is below FB · 16 = tmp_flat.len() (see `idx`).
        let v = unsafe { S::gather(tmp_flat, id) };
        S::store_part(v, &mut out[done..], (total - done).min(l));
        done += l;
    }
}
