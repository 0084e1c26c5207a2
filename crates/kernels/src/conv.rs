//! Convolutions: direct (`direct.rs`, `narrow.rs`), depthwise (`depthwise.rs`), Winograd
//! F(2x2, 3x3) for 3x3 stride-1 layers of 64 channels and more (`winograd.rs`), 1x1 over few
//! channels and grouped (im2col) forms through GEMM, with a fused epilogue; transposed
//! convolution; and the gradients with respect to the input and the kernel (`grad.rs`). The
//! micro-kernels work on channels-last data one output row `(n, z, y)` at a time, a block of
//! output pixels × channels in registers across every tap and input channel, the epilogue
//! applied before each store.

use crate::fused::EpilogueArgs;
use crate::matmul::sgemm;
use crate::util::{f32s, lift, tensor};
use crate::KernelError;
use ir::{ConvAttrs, ConvTransposeAttrs, Epilogue, Op, Tensor};
use rayon::prelude::*;

mod depthwise;
mod direct;
mod geo;
mod grad;
mod narrow;
#[cfg(test)]
mod simd_tests;
mod winograd;

use geo::Geo;
pub use grad::{conv_filter_grad, conv_filter_grad_into, conv_input_grad, conv_input_grad_into};

impl Geo {
    /// The geometry of a convolution with attributes `a` of an input `x` by a kernel `w`
    /// (`(k..., C/groups, F)`) giving `y` (all channels-last shapes).
    fn of(a: &ConvAttrs, x: &[usize], w: &[usize], y: &[usize]) -> Geo {
        let r = a.strides.len();
        Geo {
            n: x[0],
            inp: lift(&x[1..=r], 1),
            out: lift(&y[1..=r], 1),
            k: lift(&w[..r], 1),
            s: lift(&a.strides, 1),
            d: lift(&a.dilations, 1),
            pad: lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
            c: x[r + 1],
            f: w[r + 1],
        }
    }
}

const ROW_CHUNK: usize = 1024;
/// Below this many output pixels a 1x1 convolution is one `gemm` call.
const POINTWISE_GEMM_ROWS: usize = 64;
/// Input channels up to which a 1x1 convolution into more than 8 filters goes through `gemm`
/// in blocks of pixels. Measured with examples/conv_bench (one thread, bias and ReLU, best of
/// five interleaved runs) against the direct kernel: 8→48 and 16→96 at 18,432 pixels 1.2×
/// faster, 24→144 1.24×, 32→96 1.13×, 48→96 and 64→128 1.09×; from 96 channels on the direct
/// kernel is ahead (96→16 0.96×, 144→24 0.86×).
const POINTWISE_GEMM_MAX_C: usize = 64;

thread_local! {
    /// Each thread's im2col buffer, grown once and reused by every later convolution.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Convolution (direct for depthwise, a plain GEMM for 1x1, im2col + GEMM otherwise), with the
/// optimizer's epilogue when one is given: `inputs` are `[x, kernel, (bias), (residual)]`.
pub fn conv(
    op: &Op,
    a: &ConvAttrs,
    epilogue: Option<&Epilogue>,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let epi = epilogue.map(|e| EpilogueArgs::from_tensors(op, e, &inputs[2..])).transpose()?;
    let (x, w) = (inputs[0], inputs[1]);
    let mut out = vec![0f32; out_shape.iter().product()];
    conv_into(op, a, (f32s(op, x)?, x.shape()), (f32s(op, w)?, w.shape()), &mut out, out_shape, epi.as_ref())?;
    tensor(out_shape, out)
}

/// Convolution into `out` (any prior contents), then the epilogue if one is given.
pub fn conv_into(
    op: &Op,
    a: &ConvAttrs,
    (xs, sh): (&[f32], &[usize]),
    (ws, ksh): (&[f32], &[usize]),
    out: &mut [f32],
    out_shape: &[usize],
    epi: Option<&EpilogueArgs>,
) -> Result<(), KernelError> {
    let r = a.strides.len();
    if r > 3 {
        return Err(KernelError::new(op, "convolutions of rank > 3 are not supported"));
    }
    let g = Geo::of(a, sh, ksh, out_shape);
    let groups = a.groups;
    let cg = g.c / groups;
    let fg = g.f / groups;
    let rows = g.n * g.out.iter().product::<usize>();
    let kprod: usize = g.k.iter().product();
    if rows == 0 || g.f == 0 {
        return Ok(());
    }
    if groups > 1 && cg == 1 {
        depthwise::depthwise(crate::simd::isa(), &g, xs, ws, fg, out, epi);
        return Ok(());
    }
    if groups == 1 && winograd::applies(&g) {
        return winograd::winograd(&g, xs, ws, out, epi);
    }
    let pointwise = kprod == 1 && g.s == [1, 1, 1] && g.pad == [0, 0, 0];
    // 1x1 through the `gemm` crate: for a few pixels in one call on the calling thread (it
    // reads a large kernel once, packed; the direct kernel reads it once per block of pixels),
    // and over few input channels into more filters than the narrow kernel takes in blocks of
    // pixels (its packed micro-kernel beats the direct kernel's per-block costs on reductions
    // this short); the direct kernel otherwise (measured with examples/conv_bench).
    if pointwise && groups == 1 {
        let few_rows = rows < POINTWISE_GEMM_ROWS;
        if few_rows || (g.c <= POINTWISE_GEMM_MAX_C && g.f > narrow::NARROW_MAX_F) {
            let per_task = if few_rows { rows } else { geo::rows_per_task(geo::row_cost(g.c * g.f, 1, g.f)) };
            return pointwise_gemm(&g, xs, ws, out, epi, per_task);
        }
    }
    if groups == 1 {
        let g = if pointwise { g.pointwise_rows() } else { g };
        direct::direct(crate::simd::isa(), &g, xs, ws, out, epi);
        return Ok(());
    }
    let kc = kprod * cg;
    out.par_chunks_mut(ROW_CHUNK * g.f).enumerate().try_for_each(|(chunk, dst)| {
        let row0 = chunk * ROW_CHUNK;
        let nrows = dst.len() / g.f;
        COLUMNS.with(|c| {
            let mut col = c.borrow_mut();
            if col.len() < nrows * kc {
                col.resize(nrows * kc, 0.0);
            }
            let col = &mut col[..nrows * kc];
            for grp in 0..groups {
                im2col(&g, xs, row0, nrows, grp * cg, cg, col);
                sgemm(nrows, fg, kc, &mut dst[grp * fg..], g.f, col, kc, 1, &ws[grp * fg..], g.f, 1, false, 1)?;
            }
            Ok::<(), KernelError>(())
        })?;
        if let Some(e) = epi {
            e.apply(dst, row0 * g.f, g.f);
        }
        Ok(())
    })
}

/// A 1x1 convolution (unit strides, no padding, group count 1) as `gemm` over blocks of
/// `per_task` output pixels or more ([`crate::util::for_row_blocks`]), each block's epilogue
/// applied after it while it is in cache.
fn pointwise_gemm(
    g: &Geo,
    xs: &[f32],
    ws: &[f32],
    out: &mut [f32],
    epi: Option<&EpilogueArgs>,
    per_task: usize,
) -> Result<(), KernelError> {
    let failed = std::sync::Mutex::new(None);
    crate::util::for_row_blocks(out, g.f, per_task, |r0, block| {
        let m = block.len() / g.f;
        let x = &xs[r0 * g.c..(r0 + m) * g.c];
        match sgemm(m, g.f, g.c, block, g.f, x, g.c, 1, ws, g.f, 1, false, 1) {
            Ok(()) => {
                if let Some(e) = epi {
                    e.apply(block, r0 * g.f, g.f);
                }
            }
            Err(e) => *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
        }
    });
    failed.into_inner().unwrap_or_else(|p| p.into_inner()).map_or(Ok(()), Err)
}

/// Fills `col[row, (kd, kh, kw, c)]` for output rows `row0..row0+nrows`, channels `c0..c0+cg`.
fn im2col(g: &Geo, x: &[f32], row0: usize, nrows: usize, c0: usize, cg: usize, col: &mut [f32]) {
    let kc = g.k.iter().product::<usize>() * cg;
    let [od, oh, ow] = g.out;
    for r in 0..nrows {
        let row = row0 + r;
        let ox = row % ow;
        let oy = (row / ow) % oh;
        let oz = (row / (ow * oh)) % od;
        let n = row / (ow * oh * od);
        let dst = &mut col[r * kc..(r + 1) * kc];
        let mut p = 0;
        for kz in 0..g.k[0] {
            let iz = (oz * g.s[0] + kz * g.d[0]) as isize - g.pad[0] as isize;
            for ky in 0..g.k[1] {
                let iy = (oy * g.s[1] + ky * g.d[1]) as isize - g.pad[1] as isize;
                for kx in 0..g.k[2] {
                    let ix = (ox * g.s[2] + kx * g.d[2]) as isize - g.pad[2] as isize;
                    let inside = iz >= 0
                        && iy >= 0
                        && ix >= 0
                        && (iz as usize) < g.inp[0]
                        && (iy as usize) < g.inp[1]
                        && (ix as usize) < g.inp[2];
                    let seg = &mut dst[p..p + cg];
                    if inside {
                        let base = (((n * g.inp[0] + iz as usize) * g.inp[1] + iy as usize) * g.inp[2] + ix as usize)
                            * g.c
                            + c0;
                        seg.copy_from_slice(&x[base..base + cg]);
                    } else {
                        seg.iter_mut().for_each(|v| *v = 0.0);
                    }
                    p += cg;
                }
            }
        }
    }
}

/// Transposed convolution into a new tensor ([`conv_transpose_into`]).
pub fn conv_transpose(
    op: &Op,
    a: &ConvTransposeAttrs,
    x: &Tensor,
    w: &Tensor,
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; out_shape.iter().product()];
    conv_transpose_into(op, a, (f32s(op, x)?, x.shape()), (f32s(op, w)?, w.shape()), &mut out, out_shape)?;
    tensor(out_shape, out)
}

/// Transposed convolution into `out` (any prior contents): every input pixel times every
/// kernel tap as one 1x1 convolution into `taps × F` channels (the fast paths of
/// [`conv_into`], in parallel over pixels), then each output row gathers the products that
/// land on it (in parallel over rows; a row of a stride-k kernel-k layer, U-Net's up-sampling,
/// takes one product per pixel).
pub fn conv_transpose_into(
    op: &Op,
    a: &ConvTransposeAttrs,
    (xs, sh): (&[f32], &[usize]),
    (ws, ksh): (&[f32], &[usize]),
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    let r = a.strides.len();
    if r > 3 {
        return Err(KernelError::new(op, "transposed convolutions of rank > 3 are not supported"));
    }
    let pads: Vec<usize> = (0..r).map(|i| a.geometry(i, sh[i + 1], ksh[i]).1).collect();
    let g = Geo {
        n: sh[0],
        inp: lift(&sh[1..=r], 1),
        out: lift(&out_shape[1..=r], 1),
        k: lift(&ksh[..r], 1),
        s: lift(&a.strides, 1),
        d: lift(&a.dilations, 1),
        pad: lift(&pads, 0),
        c: sh[r + 1],
        f: ksh[r],
    };
    transposed_into(op, &g, (xs, sh), ws, out)
}

/// The transposed convolution of geometry `g` (input `xs` of shape `sh`, `g.inp` pixels of `g.c`
/// channels; output `g.out` pixels of `g.f`) by the kernel `ws` laid out `(taps, F, C)`, into
/// `out`: every input pixel times every tap as one 1x1 convolution into `taps × F` channels,
/// then each output row gathers the products that land on it.
fn transposed_into(
    op: &Op,
    g: &Geo,
    (xs, sh): (&[f32], &[usize]),
    ws: &[f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let r = sh.len() - 2;
    let g = *g;
    let taps = g.taps();
    let kf = taps * g.f;
    let in_pos: usize = g.inp.iter().product();
    let out_row = g.out[2] * g.f;
    if g.n * in_pos == 0 || out_row == 0 {
        out.fill(0.0);
        return Ok(());
    }
    // The 1x1 kernel (C, taps · F): wmat[c, t·F + f] = w[t, f, c].
    let mut wmat = vec![0f32; g.c * kf];
    for (t, wt) in ws.chunks_exact(g.f * g.c).enumerate() {
        for (f, wf) in wt.chunks_exact(g.c).enumerate() {
            for (c, &v) in wf.iter().enumerate() {
                wmat[c * kf + t * g.f + f] = v;
            }
        }
    }
    let pointwise = ConvAttrs { strides: vec![1; r], dilations: vec![1; r], pads: vec![(0, 0); r], groups: 1 };
    let mut col_shape = sh.to_vec();
    col_shape[r + 1] = kf;
    let mut wshape = vec![1; r];
    wshape.extend([g.c, kf]);
    // The products in the calling thread's buffer (a fresh one if that is in use: a nested
    // call from work this thread took on while waiting).
    let len = g.n * in_pos * kf;
    let mut run = |col: &mut Vec<f32>| -> Result<(), KernelError> {
        if col.len() < len {
            col.resize(len, 0.0);
        }
        let col = &mut col[..len];
        conv_into(op, &pointwise, (xs, sh), (&wmat, &wshape), col, &col_shape, None)?;
        let col = &*col;
        let cost = geo::row_cost(0, 1, out_row * (1 + taps.div_ceil(g.s.iter().product())));
        crate::util::for_row_blocks(out, out_row, geo::rows_per_task(cost), |r0, block| {
            for (i, row) in block.chunks_exact_mut(out_row).enumerate() {
                gather_row(&g, g.row_pos(r0 + i), col, row);
            }
        });
        Ok(())
    };
    TRANSPOSED.with(|c| match c.try_borrow_mut() {
        Ok(mut col) => run(&mut col),
        Err(_) => run(&mut Vec::new()),
    })
}

thread_local! {
    /// Each thread's buffer of a transposed convolution's products ([`conv_transpose_into`]).
    static TRANSPOSED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One output row `(n, oz, oy)` of a transposed convolution: the sum of the products
/// `col[(n, iz, iy, ix), tap]` of the input pixels whose taps land on it
/// (`o = i·s + k·d − pad` along each axis).
fn gather_row(g: &Geo, (n, oz, oy): (usize, usize, usize), col: &[f32], row: &mut [f32]) {
    row.fill(0.0);
    let kf = g.taps() * g.f;
    // The input index `i` with `i·s + k·d = o + pad`, if there is one inside.
    let source = |o: usize, k: usize, axis: usize| -> Option<usize> {
        let t = (o + g.pad[axis]).checked_sub(k * g.d[axis])?;
        (t.is_multiple_of(g.s[axis]) && t / g.s[axis] < g.inp[axis]).then(|| t / g.s[axis])
    };
    for kz in 0..g.k[0] {
        let Some(iz) = source(oz, kz, 0) else { continue };
        for ky in 0..g.k[1] {
            let Some(iy) = source(oy, ky, 1) else { continue };
            let base = ((n * g.inp[0] + iz) * g.inp[1] + iy) * g.inp[2];
            for kx in 0..g.k[2] {
                let t = (kz * g.k[1] + ky) * g.k[2] + kx;
                // The input columns whose tap `kx` lands inside the row, `ox = ix·s + kx·d − pad`.
                let (s, off) = (g.s[2], kx * g.d[2]);
                let first = g.pad[2].saturating_sub(off).div_ceil(s);
                let Some(ox0) = (first * s + off).checked_sub(g.pad[2]).filter(|&o| o < g.out[2]) else { continue };
                let count = g.inp[2].saturating_sub(first).min(g.out[2].saturating_sub(ox0).div_ceil(s));
                let dst = row[ox0 * g.f..].chunks_mut(s * g.f);
                let src = col[(base + first) * kf + t * g.f..].chunks(kf);
                for (d, v) in dst.zip(src).take(count) {
                    for (d, &v) in d[..g.f].iter_mut().zip(&v[..g.f]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{infer_types, PaddingMode};

    fn seq(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * s + 0.3).sin()).collect()
    }

    /// Plain 2-D convolution straight from the definition.
    fn reference(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4], a: &ConvAttrs, os: &[usize]) -> Vec<f32> {
        let (cg, f) = (ws[2], ws[3]);
        let fg = f / a.groups;
        let mut out = vec![0f32; os.iter().product()];
        for n in 0..os[0] {
            for oy in 0..os[1] {
                for ox in 0..os[2] {
                    for o in 0..f {
                        let grp = o / fg;
                        let mut acc = 0f32;
                        for ky in 0..ws[0] {
                            for kx in 0..ws[1] {
                                let iy = (oy * a.strides[0] + ky * a.dilations[0]) as isize - a.pads[0].0 as isize;
                                let ix = (ox * a.strides[1] + kx * a.dilations[1]) as isize - a.pads[1].0 as isize;
                                if iy < 0 || ix < 0 || iy as usize >= xs[1] || ix as usize >= xs[2] {
                                    continue;
                                }
                                for c in 0..cg {
                                    let xi = ((n * xs[1] + iy as usize) * xs[2] + ix as usize) * xs[3] + grp * cg + c;
                                    let wi = ((ky * ws[1] + kx) * cg + c) * f + o;
                                    acc += x[xi] * w[wi];
                                }
                            }
                        }
                        out[((n * os[1] + oy) * os[2] + ox) * f + o] = acc;
                    }
                }
            }
        }
        out
    }

    fn check(xs: [usize; 4], ws: [usize; 4], a: ConvAttrs) {
        let x = Tensor::from_f32(&xs, seq(xs.iter().product(), 0.37)).unwrap();
        let w = Tensor::from_f32(&ws, seq(ws.iter().product(), 0.11)).unwrap();
        let op = Op::Conv(a.clone());
        let os = infer_types(&op, &[x.tensor_type(), w.tensor_type()]).unwrap()[0].shape.as_fixed().unwrap();
        let got = conv(&op, &a, None, &[&x, &w], &os).unwrap();
        let want = reference(x.as_f32().unwrap(), xs, w.as_f32().unwrap(), ws, &a, &os);
        let cmp =
            ir::Tolerance::REDUCTION.compare(&got.to_f64_vec(), &want.iter().map(|&v| v as f64).collect::<Vec<_>>());
        assert!(cmp.passed(), "{a:?}: {cmp}");
    }

    #[test]
    fn conv_variants_match_reference() {
        check(
            [2, 7, 6, 3],
            [3, 3, 3, 4],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 },
        );
        check(
            [1, 9, 8, 2],
            [3, 2, 2, 5],
            ConvAttrs { strides: vec![2, 3], dilations: vec![1, 1], pads: vec![(0, 1), (1, 0)], groups: 1 },
        );
        check(
            [1, 9, 9, 2],
            [3, 3, 2, 3],
            ConvAttrs { strides: vec![1, 1], dilations: vec![2, 2], pads: vec![(0, 0), (0, 0)], groups: 1 },
        );
        check(
            [1, 5, 5, 4],
            [3, 3, 2, 6],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 2 },
        );
        check(
            [2, 6, 6, 3],
            [3, 3, 1, 6],
            ConvAttrs { strides: vec![2, 2], dilations: vec![1, 1], pads: vec![(0, 1), (0, 1)], groups: 3 },
        );
        check(
            [2, 4, 4, 3],
            [1, 1, 3, 5],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(0, 0), (0, 0)], groups: 1 },
        );
        // The direct kernel's unrolled filter counts (8, 16) with padding wider than the reach
        // of some taps, and the im2col path (a reduction over more than 32 elements).
        check(
            [2, 5, 7, 1],
            [3, 3, 1, 8],
            ConvAttrs { strides: vec![1, 2], dilations: vec![1, 1], pads: vec![(2, 1), (1, 2)], groups: 1 },
        );
        check(
            [1, 6, 5, 3],
            [2, 3, 3, 16],
            ConvAttrs { strides: vec![2, 1], dilations: vec![2, 1], pads: vec![(1, 0), (0, 1)], groups: 1 },
        );
        check(
            [1, 6, 6, 8],
            [3, 3, 8, 16],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 },
        );
    }

    /// A 1x1 convolution over few channels goes through `gemm` in blocks of pixels, each
    /// block's epilogue (bias, clip, the residual at the block's own offset, ReLU) after it:
    /// the same values as the definition, with enough pixels for several blocks.
    #[test]
    fn pointwise_gemm_blocks_apply_the_epilogue_at_their_offsets() {
        let (xs, ws) = ([2, 40, 30, 12], [1, 1, 12, 20]);
        let a = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(0, 0), (0, 0)], groups: 1 };
        let e = Epilogue {
            bias: true,
            activation: Some(ir::UnaryOp::Relu6),
            residual: true,
            post_activation: Some(ir::UnaryOp::Relu),
        };
        let x = Tensor::from_f32(&xs, seq(xs.iter().product(), 0.37)).unwrap();
        let w = Tensor::from_f32(&ws, seq(ws.iter().product(), 0.11)).unwrap();
        let os = [2, 40, 30, 20];
        let b = Tensor::from_f32(&[20], seq(20, 0.7).iter().map(|v| v * 3.0).collect()).unwrap();
        let r = Tensor::from_f32(&os, seq(os.iter().product(), 0.23)).unwrap();
        let op = Op::FusedConv { conv: a.clone(), epilogue: e.clone() };
        let got = conv(&op, &a, Some(&e), &[&x, &w, &b, &r], &os).unwrap();
        let y = reference(x.as_f32().unwrap(), xs, w.as_f32().unwrap(), ws, &a, &os);
        let (bv, rv) = (b.as_f32().unwrap(), r.as_f32().unwrap());
        let want: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(k, &v)| f64::from(((v + bv[k % 20]).clamp(0.0, 6.0) + rv[k]).max(0.0)))
            .collect();
        let cmp = ir::Tolerance::REDUCTION.compare(&got.to_f64_vec(), &want);
        assert!(cmp.passed(), "{cmp}");
    }

    /// 3x3 stride-1 convolutions of 64 channels and more go through Winograd F(2x2, 3x3): odd
    /// and even output sizes, symmetric, asymmetric and no padding, several images.
    #[test]
    fn winograd_matches_reference() {
        for (xs, pads) in [
            ([2, 7, 6, 64], vec![(1, 1), (1, 1)]),
            ([1, 8, 9, 64], vec![(0, 0), (0, 0)]),
            ([1, 6, 5, 64], vec![(0, 1), (1, 0)]),
        ] {
            let a = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads, groups: 1 };
            check(xs, [3, 3, 64, 72], a);
        }
    }

    #[test]
    fn depthwise_rows_match_reference() {
        // Unit width stride takes the row kernel: pads wider than the kernel's reach, dilation,
        // a height stride, and a row narrower than the kernel.
        for (xs, k, strides, dil, pads) in [
            ([2, 6, 7, 4], 3, [1, 1], [1, 1], [(1, 1), (1, 1)]),
            ([1, 5, 8, 3], 3, [2, 1], [1, 2], [(0, 2), (3, 2)]),
            ([1, 4, 2, 2], 3, [1, 1], [1, 1], [(1, 1), (2, 2)]),
            ([1, 3, 9, 5], 1, [1, 1], [1, 1], [(0, 0), (0, 0)]),
            ([2, 7, 9, 3], 3, [2, 2], [1, 1], [(0, 1), (0, 1)]),
            ([1, 6, 11, 2], 3, [1, 3], [1, 2], [(1, 1), (2, 3)]),
        ] {
            let c = xs[3];
            let a = ConvAttrs { strides: strides.to_vec(), dilations: dil.to_vec(), pads: pads.to_vec(), groups: c };
            check(xs, [k, k, 1, c], a);
        }
    }

    #[test]
    fn transposed_conv_is_the_adjoint_of_conv() {
        // <conv(y; w), x> == <conv_transpose(x; w'), y> where w'[k, f, c] = w[k, c, f].
        // (stride, padding, kernel, input channels, filters, batch): the last two reach the
        // products' fast 1x1 paths (U-Net's up-sampling: kernel 2, stride 2).
        for (stride, pad_mode, k, cin, cout, n) in [
            (2usize, PaddingMode::Same, 3usize, 3usize, 2usize, 1usize),
            (2, PaddingMode::Valid, 3, 3, 2, 1),
            (1, PaddingMode::Same, 2, 3, 2, 1),
            (3, PaddingMode::Valid, 2, 3, 2, 1),
            (2, PaddingMode::Valid, 2, 24, 16, 2),
            (2, PaddingMode::Same, 3, 20, 24, 2),
        ] {
            let ta = ConvTransposeAttrs {
                strides: vec![stride, stride],
                dilations: vec![1, 1],
                padding: pad_mode,
                output_padding: None,
            };
            let xs = [n, 4, 5, cin];
            let wt = [k, k, cout, cin];
            let x = Tensor::from_f32(&xs, seq(xs.iter().product(), 0.21)).unwrap();
            let wtt = Tensor::from_f32(&wt, seq(wt.iter().product(), 0.13)).unwrap();
            let op = Op::ConvTranspose(ta.clone());
            let os = infer_types(&op, &[x.tensor_type(), wtt.tensor_type()]).unwrap()[0].shape.as_fixed().unwrap();
            let y_t = conv_transpose(&op, &ta, &x, &wtt, &os).unwrap();
            // forward conv from the transposed output's space back to x's space
            let mut wf = vec![0f32; k * k * cout * cin];
            let wv = wtt.as_f32().unwrap();
            for t in 0..k * k {
                for f in 0..cout {
                    for c in 0..cin {
                        wf[(t * cout + f) * cin + c] = wv[(t * cout + f) * cin + c];
                    }
                }
            }
            let wf = Tensor::from_f32(&[k, k, cout, cin], wf).unwrap();
            let pads: Vec<(usize, usize)> = (0..2)
                .map(|i| {
                    let (_, before) = ta.geometry(i, xs[i + 1], k);
                    let after = ((xs[i + 1] - 1) * stride + k).saturating_sub(os[i + 1] + before);
                    (before, after)
                })
                .collect();
            let ca = ConvAttrs { strides: vec![stride, stride], dilations: vec![1, 1], pads, groups: 1 };
            let y = Tensor::from_f32(&os, seq(os.iter().product(), 0.07)).unwrap();
            let cop = Op::Conv(ca.clone());
            let cs = infer_types(&cop, &[y.tensor_type(), wf.tensor_type()]).unwrap()[0].shape.as_fixed().unwrap();
            assert_eq!(cs, xs.to_vec(), "geometry for stride {stride} {pad_mode:?}");
            let cy = conv(&cop, &ca, None, &[&y, &wf], &cs).unwrap();
            let lhs: f64 = cy.to_f64_vec().iter().zip(x.to_f64_vec()).map(|(a, b)| a * b).sum();
            let rhs: f64 = y_t.to_f64_vec().iter().zip(y.to_f64_vec()).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }
}
