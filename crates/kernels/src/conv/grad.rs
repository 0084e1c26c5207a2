//! The gradients of a convolution with respect to its input and its kernel, on the forward
//! pass's fast paths ([`super::conv_into`], [`super::transposed_into`], `im2col` and GEMM).

use super::geo::Geo;
use super::{conv_into, im2col, transposed_into, COLUMNS, ROW_CHUNK};
use crate::matmul::sgemm;
use crate::util::{f32s, ordered_sum, tensor};
use crate::KernelError;
use ir::{ConvAttrs, Op, Tensor};
use rayon::prelude::*;

/// The gradient of a convolution with respect to its input (of shape `x_shape`): for one group,
/// the transposed convolution of `dy` by the kernel ([`transposed_into`]: one GEMM, then each
/// row of `dx` gathers its products); grouped and depthwise convolutions go channel-vectorized
/// over each batch sample in parallel.
pub fn conv_input_grad(
    op: &Op,
    a: &ConvAttrs,
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let mut dx = vec![0f32; x_shape.iter().product()];
    conv_input_grad_into(op, a, (f32s(op, dy)?, dy.shape()), (f32s(op, w)?, w.shape()), &mut dx, x_shape)?;
    tensor(x_shape, dx)
}

/// [`conv_input_grad`] into `dx` (any prior contents).
pub fn conv_input_grad_into(
    op: &Op,
    a: &ConvAttrs,
    (dys, dy_shape): (&[f32], &[usize]),
    (ws, w_shape): (&[f32], &[usize]),
    dx: &mut [f32],
    x_shape: &[usize],
) -> Result<(), KernelError> {
    check_grad_ranks(op, a, &[dy_shape, w_shape, x_shape])?;
    let g = Geo::of(a, x_shape, w_shape, dy_shape);
    let r = a.strides.len();
    let reach = |i: usize| (g.k[i] - 1) * g.d[i];
    if a.groups <= 1 && g.s == [1, 1, 1] && (0..3).all(|i| g.pad[i] <= reach(i)) {
        // Unit strides: the convolution of `dy` by the kernel turned around (taps reversed,
        // input and output channels swapped), padded by the kernel's reach less the forward
        // padding, on the fast forward paths.
        let taps = g.taps();
        let mut flipped = vec![0f32; ws.len()];
        for t in 0..taps {
            let (src, dst) = (&ws[t * g.c * g.f..(t + 1) * g.c * g.f], (taps - 1 - t) * g.c * g.f);
            for c in 0..g.c {
                for f in 0..g.f {
                    flipped[dst + f * g.c + c] = src[c * g.f + f];
                }
            }
        }
        let pads = (3 - r..3).map(|i| (reach(i) - g.pad[i], 0)).collect();
        let flip = ConvAttrs { strides: vec![1; r], dilations: a.dilations.clone(), pads, groups: 1 };
        let mut fshape = w_shape.to_vec();
        fshape.swap(r, r + 1);
        return conv_into(op, &flip, (dys, dy_shape), (&flipped, &fshape), dx, x_shape, None);
    }
    if a.groups <= 1 {
        // The transposed convolution's geometry: dy's pixels in, x's pixels out.
        let gt = Geo { inp: g.out, out: g.inp, c: g.f, f: g.c, ..g };
        transposed_into(op, &gt, (dys, dy_shape), ws, dx)
    } else {
        dx.fill(0.0);
        grouped_grads(&g, a.groups, dys, ws, GroupedGrad::Input(dx))
    }
}

/// Refuses convolution gradients whose operands are not all of rank `r + 2` for `r` ≤ 3
/// spatial axes.
fn check_grad_ranks(op: &Op, a: &ConvAttrs, shapes: &[&[usize]]) -> Result<(), KernelError> {
    let r = a.strides.len();
    if r > 3 || shapes.iter().any(|s| s.len() != r + 2) {
        return Err(KernelError::new(
            op,
            "convolution gradients of rank > 3 (or of mismatched ranks) are not supported",
        ));
    }
    Ok(())
}

/// The gradient of a convolution with respect to its kernel (of shape `w_shape`): for one group,
/// `im2col(x)ᵀ · dy` over blocks of output pixels in parallel (each block one GEMM into a
/// partial sum); grouped and depthwise convolutions go channel-vectorized.
pub fn conv_filter_grad(
    op: &Op,
    a: &ConvAttrs,
    x: &Tensor,
    dy: &Tensor,
    w_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let mut dw = vec![0f32; w_shape.iter().product()];
    conv_filter_grad_into(op, a, (f32s(op, x)?, x.shape()), (f32s(op, dy)?, dy.shape()), &mut dw, w_shape)?;
    tensor(w_shape, dw)
}

/// [`conv_filter_grad`] into `dw` (any prior contents).
pub fn conv_filter_grad_into(
    op: &Op,
    a: &ConvAttrs,
    (xs, x_shape): (&[f32], &[usize]),
    (dys, dy_shape): (&[f32], &[usize]),
    dw: &mut [f32],
    w_shape: &[usize],
) -> Result<(), KernelError> {
    check_grad_ranks(op, a, &[x_shape, dy_shape, w_shape])?;
    let g = Geo::of(a, x_shape, w_shape, dy_shape);
    let len = dw.len();
    if a.groups > 1 {
        return grouped_grads(&g, a.groups, dys, xs, GroupedGrad::Filter(dw));
    }
    let kc = g.taps() * g.c;
    let rows = g.n * g.out.iter().product::<usize>();
    let blocks = rows.div_ceil(ROW_CHUNK);
    let sum = ordered_sum(blocks, len, |range, acc| {
        COLUMNS.with(|c| {
            let mut col = c.borrow_mut();
            for b in range {
                let row0 = b * ROW_CHUNK;
                let nrows = ROW_CHUNK.min(rows - row0);
                if col.len() < nrows * kc {
                    col.resize(nrows * kc, 0.0);
                }
                let col = &mut col[..nrows * kc];
                im2col(&g, xs, row0, nrows, 0, g.c, col);
                let dyb = &dys[row0 * g.f..(row0 + nrows) * g.f];
                sgemm(kc, g.f, nrows, acc, g.f, col, 1, kc, dyb, g.f, 1, true, 1)?;
            }
            Ok(())
        })
    })?;
    dw.copy_from_slice(&sum);
    Ok(())
}

/// Which gradient [`grouped_grads`] computes, into what.
enum GroupedGrad<'a> {
    /// `dx` from `dy` and the kernel.
    Input(&'a mut [f32]),
    /// `dw` from `x` and `dy`.
    Filter(&'a mut [f32]),
}

/// A grouped convolution's input or filter gradient, one batch sample per task: for every output
/// pixel and tap inside the input, `dx[x, grp·cg + c] += Σ_f dy[y, grp·fg + f] · w[t, c, grp·fg + f]`
/// or `dw[t, c, grp·fg + f] += x[x, grp·cg + c] · dy[y, grp·fg + f]`; depthwise (one input and
/// one output channel per group) as element-wise products over the channels.
fn grouped_grads(g: &Geo, groups: usize, dys: &[f32], other: &[f32], out: GroupedGrad) -> Result<(), KernelError> {
    let (cg, fg) = (g.c / groups, g.f / groups);
    let in_len = g.inp.iter().product::<usize>() * g.c;
    let out_len = g.out.iter().product::<usize>() * g.f;
    // Calls `f(x offset, tap, y offset)` for each pixel pair of sample `n` (offsets within it).
    let pairs = |f: &mut dyn FnMut(usize, usize, usize)| {
        for oz in 0..g.out[0] {
            for oy in 0..g.out[1] {
                for ox in 0..g.out[2] {
                    let yb = ((oz * g.out[1] + oy) * g.out[2] + ox) * g.f;
                    for kz in 0..g.k[0] {
                        for ky in 0..g.k[1] {
                            let Some(row) = g.input_row((0, oz, oy), kz, ky) else { continue };
                            for kx in 0..g.k[2] {
                                let Some(ix) =
                                    (ox * g.s[2] + kx * g.d[2]).checked_sub(g.pad[2]).filter(|&i| i < g.inp[2])
                                else {
                                    continue;
                                };
                                let xb = (row * g.inp[2] + ix) * g.c;
                                f(xb, (kz * g.k[1] + ky) * g.k[2] + kx, yb);
                            }
                        }
                    }
                }
            }
        }
    };
    match out {
        GroupedGrad::Input(dx) => {
            let w = other;
            dx.par_chunks_mut(in_len.max(1)).zip(dys.par_chunks(out_len.max(1))).for_each(|(dx, dy)| {
                pairs(&mut |xb, t, yb| {
                    let (dx, dy) = (&mut dx[xb..xb + g.c], &dy[yb..yb + g.f]);
                    let w = &w[t * cg * g.f..(t + 1) * cg * g.f];
                    if cg == 1 && fg == 1 {
                        for ((d, &v), &k) in dx.iter_mut().zip(dy).zip(w) {
                            *d += v * k;
                        }
                        return;
                    }
                    for grp in 0..groups {
                        let dyg = &dy[grp * fg..(grp + 1) * fg];
                        for c in 0..cg {
                            let wr = &w[c * g.f + grp * fg..c * g.f + (grp + 1) * fg];
                            dx[grp * cg + c] += dyg.iter().zip(wr).map(|(a, b)| a * b).sum::<f32>();
                        }
                    }
                })
            });
        }
        GroupedGrad::Filter(dw) => {
            let x = other;
            let len = dw.len();
            let n = dys.len() / out_len.max(1);
            let total = ordered_sum(n, len, |range, acc| {
                for i in range {
                    let (x, dy) = (&x[i * in_len..(i + 1) * in_len], &dys[i * out_len..(i + 1) * out_len]);
                    pairs(&mut |xb, t, yb| {
                        let (x, dy) = (&x[xb..xb + g.c], &dy[yb..yb + g.f]);
                        let w = &mut acc[t * cg * g.f..(t + 1) * cg * g.f];
                        if cg == 1 && fg == 1 {
                            for ((d, &v), &k) in w.iter_mut().zip(x).zip(dy) {
                                *d += v * k;
                            }
                            return;
                        }
                        for grp in 0..groups {
                            let dyg = &dy[grp * fg..(grp + 1) * fg];
                            for c in 0..cg {
                                let xv = x[grp * cg + c];
                                let wr = &mut w[c * g.f + grp * fg..c * g.f + (grp + 1) * fg];
                                wr.iter_mut().zip(dyg).for_each(|(d, &v)| *d += xv * v);
                            }
                        }
                    });
                }
                Ok(())
            })?;
            dw.copy_from_slice(&total);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::infer_types;

    fn seq(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * s + 0.3).sin()).collect()
    }

    /// Calls `f(x_offset, w_offset, y_offset)` for every multiply-add of the convolution.
    fn conv_taps(g: &Geo, groups: usize, mut f: impl FnMut(usize, usize, usize)) {
        let groups = groups.max(1);
        let (cg, fg) = (g.c / groups, g.f / groups);
        for n in 0..g.n {
            for oz in 0..g.out[0] {
                for oy in 0..g.out[1] {
                    for ox in 0..g.out[2] {
                        let yb = (((n * g.out[0] + oz) * g.out[1] + oy) * g.out[2] + ox) * g.f;
                        for kz in 0..g.k[0] {
                            let iz = (oz * g.s[0] + kz * g.d[0]) as isize - g.pad[0] as isize;
                            if iz < 0 || iz as usize >= g.inp[0] {
                                continue;
                            }
                            for ky in 0..g.k[1] {
                                let iy = (oy * g.s[1] + ky * g.d[1]) as isize - g.pad[1] as isize;
                                if iy < 0 || iy as usize >= g.inp[1] {
                                    continue;
                                }
                                for kx in 0..g.k[2] {
                                    let ix = (ox * g.s[2] + kx * g.d[2]) as isize - g.pad[2] as isize;
                                    if ix < 0 || ix as usize >= g.inp[2] {
                                        continue;
                                    }
                                    let xb = (((n * g.inp[0] + iz as usize) * g.inp[1] + iy as usize) * g.inp[2]
                                        + ix as usize)
                                        * g.c;
                                    let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                                    for grp in 0..groups {
                                        for c in 0..cg {
                                            let wb = (tap * cg + c) * g.f + grp * fg;
                                            for fo in 0..fg {
                                                f(xb + grp * cg + c, wb + fo, yb + grp * fg + fo);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The input and filter gradients against the definition (every multiply-add of the
    /// convolution, [`conv_taps`]): one group through the GEMM paths (strides, dilations,
    /// asymmetric padding, inputs the last taps never reach, 1-D and 3-D, enough pixels for
    /// several blocks of rows), grouped and depthwise (with a depth multiplier) channel-wise.
    #[test]
    fn gradients_match_the_definition() {
        let c2 = |s: [usize; 2], d: [usize; 2], p: [(usize, usize); 2], groups| ConvAttrs {
            strides: s.to_vec(),
            dilations: d.to_vec(),
            pads: p.to_vec(),
            groups,
        };
        let cases: Vec<(Vec<usize>, Vec<usize>, ConvAttrs)> = vec![
            (vec![2, 7, 6, 3], vec![3, 3, 3, 4], c2([1, 1], [1, 1], [(1, 1), (1, 1)], 1)),
            (vec![1, 9, 8, 5], vec![3, 2, 5, 6], c2([2, 3], [1, 1], [(0, 1), (2, 0)], 1)),
            (vec![2, 10, 9, 4], vec![3, 3, 4, 3], c2([2, 2], [2, 1], [(0, 0), (0, 0)], 1)),
            (vec![3, 40, 20, 8], vec![3, 3, 8, 16], c2([1, 1], [1, 1], [(1, 1), (1, 1)], 1)),
            (vec![2, 5, 4, 6], vec![1, 1, 6, 7], c2([1, 1], [1, 1], [(0, 0), (0, 0)], 1)),
            (vec![2, 7, 6, 6], vec![3, 3, 3, 4], c2([1, 2], [1, 1], [(1, 1), (0, 1)], 2)),
            (vec![2, 7, 6, 5], vec![3, 3, 1, 5], c2([1, 1], [1, 1], [(1, 1), (1, 1)], 5)),
            (vec![1, 8, 7, 3], vec![5, 3, 1, 6], c2([2, 1], [1, 2], [(2, 1), (0, 2)], 3)),
            (
                vec![2, 11, 4],
                vec![3, 4, 5],
                ConvAttrs { strides: vec![2], dilations: vec![1], pads: vec![(1, 0)], groups: 1 },
            ),
            (
                vec![1, 4, 5, 6, 3],
                vec![2, 3, 3, 3, 2],
                ConvAttrs {
                    strides: vec![1, 2, 1],
                    dilations: vec![1; 3],
                    pads: vec![(0, 1), (1, 1), (1, 1)],
                    groups: 1,
                },
            ),
        ];
        for (xs, ws, a) in cases {
            let x = Tensor::from_f32(&xs, seq(xs.iter().product(), 0.37)).unwrap();
            let w = Tensor::from_f32(&ws, seq(ws.iter().product(), 0.11)).unwrap();
            let os = infer_types(&Op::Conv(a.clone()), &[x.tensor_type(), w.tensor_type()]).unwrap()[0]
                .shape
                .as_fixed()
                .unwrap();
            let dy = Tensor::from_f32(&os, seq(os.iter().product(), 0.23)).unwrap();
            let g = Geo::of(&a, &xs, &ws, &os);
            let (xv, wv, dyv) = (x.as_f32().unwrap(), w.as_f32().unwrap(), dy.as_f32().unwrap());
            let (mut dx, mut dw) = (vec![0f64; xv.len()], vec![0f64; wv.len()]);
            conv_taps(&g, a.groups, |xo, wo, yo| {
                dx[xo] += f64::from(dyv[yo]) * f64::from(wv[wo]);
                dw[wo] += f64::from(xv[xo]) * f64::from(dyv[yo]);
            });
            let op = Op::ConvInputGrad { conv: a.clone(), input_dims: xs[1..].to_vec() };
            let got = conv_input_grad(&op, &a, &dy, &w, &xs).unwrap();
            let cmp = ir::Tolerance::REDUCTION.compare(&got.to_f64_vec(), &dx);
            assert!(cmp.passed(), "input gradient, {xs:?} {ws:?} {a:?}: {cmp}");
            let got = conv_filter_grad(&op, &a, &x, &dy, &ws).unwrap();
            let cmp = ir::Tolerance::REDUCTION.compare(&got.to_f64_vec(), &dw);
            assert!(cmp.passed(), "filter gradient, {xs:?} {ws:?} {a:?}: {cmp}");
        }
    }
}
