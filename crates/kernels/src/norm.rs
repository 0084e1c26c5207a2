//! Normalizations: batch (inference, and the batch statistics and sums of training), layer,
//! group and L2.

use crate::reduce::reduction_offsets;
use crate::util::{f32s, ordered_sum, rows_par, strides, tensor};
use crate::KernelError;
use ir::{Op, Tensor};

/// Inference batch normalization along `axis`, as `tf.nn.batch_normalization` computes it.
pub fn batch_norm(op: &Op, inputs: &[&Tensor], axis: usize, eps: f32) -> Result<Tensor, KernelError> {
    let ins: Vec<&[f32]> = inputs.iter().map(|t| f32s(op, t)).collect::<Result<_, _>>()?;
    if !batch_stats_fit(op, &inputs.iter().map(|t| t.shape()).collect::<Vec<_>>()) {
        return Err(KernelError::new(op, "gamma, beta, mean and variance must have one value per channel"));
    }
    let mut out = vec![0f32; ins[0].len()];
    batch_norm_into(&ins, inputs[0].shape(), axis, eps, &mut out);
    tensor(inputs[0].shape(), out)
}

/// [`batch_norm`] into `out`, for tensors with channels at `axis` (`ins`: x, gamma, beta,
/// mean, variance).
pub(crate) fn batch_norm_into(ins: &[&[f32]], shape: &[usize], axis: usize, eps: f32, out: &mut [f32]) {
    let c = shape[axis];
    let scale: Vec<f32> = (0..c).map(|i| ins[1][i] / (ins[4][i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| ins[2][i] - ins[3][i] * scale[i]).collect();
    affine_per_channel(ins[0], shape, axis, &scale, &shift, out);
}

/// `out = x·a[ch] + b[ch]` for x with channels at `axis`, in parallel over rows.
fn affine_per_channel(x: &[f32], shape: &[usize], axis: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    let (_, c, inner) = channel_layout(shape, axis);
    if inner == 1 {
        rows_par(out, c, |r, dst| {
            let src = &x[r * c..(r + 1) * c];
            for (((y, &v), &a), &b) in dst.iter_mut().zip(src).zip(a).zip(b) {
                *y = v * a + b;
            }
        });
    } else {
        rows_par(out, inner, |r, dst| {
            let (a, b) = (a[r % c], b[r % c]);
            dst.iter_mut().zip(&x[r * inner..(r + 1) * inner]).for_each(|(y, &v)| *y = v * a + b);
        });
    }
}

/// A tensor with channels at `axis` seen as (outer, C, inner).
fn channel_layout(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer: usize = shape[..axis].iter().product();
    (outer, shape[axis], shape[axis + 1..].iter().product())
}

/// Per-channel sums over (outer, C, inner) data of the two terms `f(a, b, shift[ch])` gives:
/// in f32 over blocks of at most 256 rows, in f64 across blocks, the outer rows split into a
/// fixed number of groups summed in order (the same bits on any number of threads).
fn channel_sums2(
    a: &[f32],
    b: &[f32],
    shape: &[usize],
    axis: usize,
    shift: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    const BLOCK: usize = 256;
    let (outer, c, inner) = channel_layout(shape, axis);
    let run = |rows: std::ops::Range<usize>, acc: &mut [f64]| {
        let (t0, t1) = acc.split_at_mut(c);
        let (mut s0, mut s1) = (vec![0f32; c], vec![0f32; c]);
        if inner == 1 {
            let mut r = rows.start;
            while r < rows.end {
                let end = (r + BLOCK).min(rows.end);
                s0.fill(0.0);
                s1.fill(0.0);
                for k in r..end {
                    let (ar, br) = (&a[k * c..(k + 1) * c], &b[k * c..(k + 1) * c]);
                    for ((((p, q), &av), &bv), &sh) in s0.iter_mut().zip(s1.iter_mut()).zip(ar).zip(br).zip(shift) {
                        let (u, v) = f(av, bv, sh);
                        *p += u;
                        *q += v;
                    }
                }
                t0.iter_mut().zip(&s0).for_each(|(t, &s)| *t += f64::from(s));
                t1.iter_mut().zip(&s1).for_each(|(t, &s)| *t += f64::from(s));
                r = end;
            }
        } else {
            for o in rows {
                for ch in 0..c {
                    let base = (o * c + ch) * inner;
                    let (ar, br) = (&a[base..base + inner], &b[base..base + inner]);
                    for (ab, bb) in ar.chunks(BLOCK).zip(br.chunks(BLOCK)) {
                        let (mut p, mut q) = (0f32, 0f32);
                        for (&av, &bv) in ab.iter().zip(bb) {
                            let (u, v) = f(av, bv, shift[ch]);
                            p += u;
                            q += v;
                        }
                        t0[ch] += f64::from(p);
                        t1[ch] += f64::from(q);
                    }
                }
            }
        }
    };
    let sums = ordered_sum(outer, 2 * c, |rows, acc| {
        run(rows, acc);
        Ok::<(), KernelError>(())
    })
    .unwrap_or_else(|_| vec![0.0; 2 * c]);
    let (s0, s1) = sums.split_at(c);
    (s0.to_vec(), s1.to_vec())
}

/// [`Op::Moments`] into `out` (`[2, C]`): each channel's mean over the other axes, then the
/// mean of the squared deviations from it.
pub(crate) fn moments_into(x: &[f32], shape: &[usize], axis: usize, out: &mut [f32]) {
    let c = shape[axis];
    let count = (shape.iter().product::<usize>() / c.max(1)).max(1) as f64;
    let zero = vec![0f32; c];
    let (sum, _) = channel_sums2(x, x, shape, axis, &zero, |v, _, _| (v, 0.0));
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let (sq, _) = channel_sums2(x, x, shape, axis, &mean, |v, _, m| ((v - m) * (v - m), 0.0));
    out[..c].copy_from_slice(&mean);
    out[c..2 * c].iter_mut().zip(&sq).for_each(|(o, s)| *o = (s / count) as f32);
}

/// [`Op::MomentsGrad`] into `out`: `dx = dmean/M + dvar·2(x − mean)/M`.
pub(crate) fn moments_grad_into(ins: &[&[f32]], shape: &[usize], axis: usize, out: &mut [f32]) {
    let c = shape[axis];
    let m = (shape.iter().product::<usize>() / c.max(1)).max(1) as f32;
    let (mom, dm) = (ins[1], ins[2]);
    let a: Vec<f32> = (0..c).map(|k| 2.0 * dm[c + k] / m).collect();
    let b: Vec<f32> = (0..c).map(|k| dm[k] / m - a[k] * mom[k]).collect();
    affine_per_channel(ins[0], shape, axis, &a, &b, out);
}

/// [`Op::BatchNormSums`] into `out` (`[2, C]`): `Σ dy` and `Σ dy·(x − mean)` per channel.
pub(crate) fn batch_norm_sums_into(ins: &[&[f32]], shape: &[usize], axis: usize, out: &mut [f32]) {
    let c = shape[axis];
    let (s0, s1) = channel_sums2(ins[0], ins[1], shape, axis, ins[2], |dy, x, m| (dy, dy * (x - m)));
    out[..c].iter_mut().zip(&s0).for_each(|(o, &s)| *o = s as f32);
    out[c..2 * c].iter_mut().zip(&s1).for_each(|(o, &s)| *o = s as f32);
}

/// The allocating form of the batch-statistics ops ([`Op::Moments`], [`Op::MomentsGrad`],
/// [`Op::BatchNormSums`]), after checking their operands' sizes.
pub fn batch_stats(op: &Op, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    let ins: Vec<&[f32]> = inputs.iter().map(|t| f32s(op, t)).collect::<Result<_, _>>()?;
    let shape = inputs.first().map(|t| t.shape()).unwrap_or(&[]);
    if !batch_stats_fit(op, &inputs.iter().map(|t| t.shape()).collect::<Vec<_>>()) {
        return Err(KernelError::new(op, "operand shapes do not fit the op"));
    }
    let (axis, out_shape) = match op {
        Op::Moments { axis } | Op::BatchNormSums { axis } => (*axis, vec![2, shape[*axis]]),
        Op::MomentsGrad { axis } => (*axis, shape.to_vec()),
        _ => return Err(KernelError::new(op, "not a batch-statistics op")),
    };
    let mut out = vec![0f32; out_shape.iter().product()];
    match op {
        Op::Moments { .. } => moments_into(ins[0], shape, axis, &mut out),
        Op::MomentsGrad { .. } => moments_grad_into(&ins, shape, axis, &mut out),
        _ => batch_norm_sums_into(&ins, shape, axis, &mut out),
    }
    tensor(&out_shape, out)
}

/// Whether the operand shapes suit a batch-statistics op or an inference batch normalization
/// (the kernels index by them without further checks).
pub(crate) fn batch_stats_fit(op: &Op, shapes: &[&[usize]]) -> bool {
    let Some(x) = shapes.first() else { return false };
    let (axis, n) = match op {
        Op::Moments { axis } => (*axis, 1),
        Op::MomentsGrad { axis } | Op::BatchNormSums { axis } => (*axis, 3),
        Op::BatchNorm { axis, .. } => (*axis, 5),
        _ => return false,
    };
    let Some(&c) = x.get(axis) else { return false };
    let len = |s: &[usize]| s.iter().product::<usize>();
    shapes.len() == n
        && match op {
            Op::MomentsGrad { .. } => shapes[1..].iter().all(|s| len(s) == 2 * c),
            Op::BatchNormSums { .. } => shapes[1] == *x && len(shapes[2]) == c,
            Op::BatchNorm { .. } => shapes[1..].iter().all(|s| len(s) == c),
            _ => true,
        }
}

/// Layer normalization over `axes` with broadcastable gamma and beta (Keras's arithmetic:
/// `x·inv + (beta − mean·inv)` with `inv = gamma / sqrt(var + eps)`).
pub fn layer_norm(op: &Op, inputs: &[&Tensor], axes: &[usize], eps: f32) -> Result<Tensor, KernelError> {
    let x = inputs[0];
    let xs = f32s(op, x)?;
    let gamma = f32s(op, inputs[1])?;
    let beta = f32s(op, inputs[2])?;
    let shape = x.shape();
    let bstr = |t: &Tensor| -> Vec<usize> {
        let st = strides(t.shape());
        let off = shape.len() - t.rank();
        (0..shape.len()).map(|i| if i < off || t.shape()[i - off] == 1 { 0 } else { st[i - off] }).collect()
    };
    let (gs, bs) = (bstr(inputs[1]), bstr(inputs[2]));
    let xst = strides(shape);
    let param_off = |flat: usize, s: &[usize]| -> usize {
        xst.iter().zip(shape).zip(s).map(|((&st, &d), &ps)| ((flat / st) % d.max(1)) * ps).sum()
    };
    let (bases, red) = reduction_offsets(shape, axes);
    let n = red.len().max(1) as f32;
    let mut out = vec![0f32; xs.len()];
    // Offsets of each reduced position into gamma/beta do not depend on the base.
    let g_off: Vec<usize> = red.iter().map(|&o| param_off(o, &gs)).collect();
    let b_off: Vec<usize> = red.iter().map(|&o| param_off(o, &bs)).collect();
    // Each row's values gathered, summed as `layer_norm_last` sums them (the same result).
    let mut row = vec![0f32; red.len()];
    for &b in &bases {
        let gb = param_off(b, &gs);
        let bb = param_off(b, &bs);
        row.iter_mut().zip(&red).for_each(|(r, &o)| *r = xs[b + o]);
        let mean = sum8(&row, |v| v) / n;
        let var = sum8(&row, |v| (v - mean) * (v - mean)) / n;
        let rs = 1.0 / (var + eps).sqrt();
        for (k, &o) in red.iter().enumerate() {
            let inv = rs * gamma[gb + g_off[k]];
            out[b + o] = xs[b + o] * inv + (beta[bb + b_off[k]] - mean * inv);
        }
    }
    tensor(shape, out)
}

/// Group normalization: statistics per sample and channel group over all other axes.
pub fn group_norm(op: &Op, inputs: &[&Tensor], groups: usize, axis: usize, eps: f32) -> Result<Tensor, KernelError> {
    let x = inputs[0];
    let (xs, gamma, beta) = (f32s(op, x)?, f32s(op, inputs[1])?, f32s(op, inputs[2])?);
    let shape = x.shape();
    let mut out = vec![0f32; xs.len()];
    if gamma.len() < shape[axis] || beta.len() < shape[axis] {
        return Err(KernelError::new(op, "gamma and beta must have one value per channel"));
    }
    group_norm_into(xs, gamma, beta, shape, groups, axis, eps, &mut out);
    tensor(shape, out)
}

/// [`group_norm`] into `out`: each sample laid out as (outer, C, inner) with the channels at
/// `axis`, in three linear passes (per-channel sums, then per-channel sums of squared
/// deviations from the group's mean, then `x · a[ch] + b[ch]`), each a plain loop over
/// contiguous values the compiler vectorizes ([`sums_per_channel`]). `gamma` and `beta` hold
/// at least C values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_into(
    xs: &[f32],
    gamma: &[f32],
    beta: &[f32],
    shape: &[usize],
    groups: usize,
    axis: usize,
    eps: f32,
    out: &mut [f32],
) {
    let c = shape[axis];
    let groups = groups.max(1);
    let cg = c / groups;
    let inner: usize = shape[axis + 1..].iter().product();
    let per_sample: usize = shape[1..].iter().product();
    if per_sample == 0 || cg == 0 {
        return;
    }
    let count = (per_sample / groups) as f64;
    let group_of = |ch: usize| (ch / cg).min(groups - 1);
    // Per-channel sums added up per group, divided by the group's count.
    let group_means = |per_channel: Vec<f64>| {
        let mut g = vec![0f64; groups];
        for (ch, s) in per_channel.iter().enumerate() {
            g[group_of(ch)] += s;
        }
        g.iter_mut().for_each(|m| *m /= count);
        g
    };
    rows_par(out, per_sample, |n, dst| {
        let src = &xs[n * per_sample..(n + 1) * per_sample];
        let zero = vec![0f32; c];
        let mean = group_means(sums_per_channel(src, c, inner, &zero, false));
        let mean_ch: Vec<f32> = (0..c).map(|ch| mean[group_of(ch)] as f32).collect();
        let var = group_means(sums_per_channel(src, c, inner, &mean_ch, true));
        // y = (x - mean) * inv * gamma + beta = x * a + b.
        let a: Vec<f32> = (0..c).map(|ch| gamma[ch] / (var[group_of(ch)] as f32 + eps).sqrt()).collect();
        let b: Vec<f32> = (0..c).map(|ch| beta[ch] - mean_ch[ch] * a[ch]).collect();
        if inner == 1 {
            for (d, s) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                for (((y, &v), &a), &b) in d.iter_mut().zip(s).zip(&a).zip(&b) {
                    *y = v * a + b;
                }
            }
        } else {
            for (k, (d, s)) in dst.chunks_exact_mut(inner).zip(src.chunks_exact(inner)).enumerate() {
                let (a, b) = (a[k % c], b[k % c]);
                d.iter_mut().zip(s).for_each(|(y, &v)| *y = v * a + b);
            }
        }
    });
}

/// Per-channel sums over one sample laid out as (outer, C, inner) of `x - shift[ch]`, or of its
/// square when `squares`, in f32 over blocks of at most 256 values and in f64 across them.
fn sums_per_channel(src: &[f32], c: usize, inner: usize, shift: &[f32], squares: bool) -> Vec<f64> {
    const BLOCK: usize = 256;
    let term = |v: f32, s: f32| if squares { (v - s) * (v - s) } else { v - s };
    let mut total = vec![0f64; c];
    if inner == 1 {
        // Channels last: each pixel is a row of C values, summed into a row of C f32 sums.
        let mut acc = vec![0f32; c];
        for block in src.chunks(BLOCK * c) {
            acc.fill(0.0);
            for px in block.chunks_exact(c) {
                for ((a, &v), &s) in acc.iter_mut().zip(px).zip(shift) {
                    *a += term(v, s);
                }
            }
            total.iter_mut().zip(&acc).for_each(|(t, &a)| *t += f64::from(a));
        }
    } else {
        for (k, run) in src.chunks_exact(inner).enumerate() {
            let s = shift[k % c];
            for block in run.chunks(BLOCK) {
                total[k % c] += f64::from(block.iter().map(|&v| term(v, s)).sum::<f32>());
            }
        }
    }
    total
}

/// `x · rsqrt(max(sum(x²), eps))` over `axes`.
pub fn l2_normalize(op: &Op, x: &Tensor, axes: &[usize], eps: f32) -> Result<Tensor, KernelError> {
    let xs = f32s(op, x)?;
    let (bases, red) = reduction_offsets(x.shape(), axes);
    let mut out = vec![0f32; xs.len()];
    for &b in &bases {
        let ss: f32 = red.iter().map(|&o| xs[b + o] * xs[b + o]).sum();
        let inv = 1.0 / ss.max(eps).sqrt();
        for &o in &red {
            out[b + o] = xs[b + o] * inv;
        }
    }
    tensor(x.shape(), out)
}

/// Layer normalization of each row of `c` elements with per-element gamma and beta, in
/// Keras's arithmetic (`x·inv + (beta − mean·inv)`).
pub(crate) fn layer_norm_last(x: &[f32], gamma: &[f32], beta: &[f32], c: usize, eps: f32, out: &mut [f32]) {
    let n = c as f32;
    rows_par(out, c, |i, dst| {
        let src = &x[i * c..(i + 1) * c];
        let mean = sum8(src, |v| v) / n;
        let var = sum8(src, |v| (v - mean) * (v - mean)) / n;
        let rs = 1.0 / (var + eps).sqrt();
        for (k, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
            let inv = rs * gamma[k];
            *d = v * inv + (beta[k] - mean * inv);
        }
    });
}

/// `Σ f(x)` in 8 partial sums (an order the compiler may vectorize; one running sum is a chain
/// of dependent adds it must keep in order).
#[inline]
fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_formula() {
        let x = Tensor::from_f32(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let p = |v: Vec<f32>| Tensor::from_f32(&[2], v).unwrap();
        let (g, b, m, v) = (p(vec![2.0, 1.0]), p(vec![0.5, 0.0]), p(vec![1.0, 2.0]), p(vec![4.0, 1.0]));
        let op = Op::BatchNorm { axis: 1, epsilon: 0.0 };
        let y = batch_norm(&op, &[&x, &g, &b, &m, &v], 1, 0.0).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[0.5, 0.0, 2.5, 2.0]);
    }

    #[test]
    fn batch_statistics_match_their_definitions() {
        let shape = [3usize, 4, 5];
        let x: Vec<f32> = (0..60).map(|i| (i as f32 * 0.37).sin() * 2.0 + 0.5).collect();
        let dy: Vec<f32> = (0..60).map(|i| (i as f32 * 0.91).cos()).collect();
        let t = |v: &[f32]| Tensor::from_f32(&shape, v.to_vec()).unwrap();
        for axis in [1, 2] {
            let c = shape[axis];
            let st = strides(&shape);
            let chan = |i: usize| (i / st[axis]) % c;
            let m = (60 / c) as f64;
            let mom = batch_stats(&Op::Moments { axis }, &[&t(&x)]).unwrap().to_f64_vec();
            let mean = Tensor::from_f32(&[c], mom[..c].iter().map(|&v| v as f32).collect()).unwrap();
            let sums = batch_stats(&Op::BatchNormSums { axis }, &[&t(&dy), &t(&x), &mean]).unwrap().to_f64_vec();
            for ch in 0..c {
                let idx: Vec<usize> = (0..60).filter(|&i| chan(i) == ch).collect();
                let mu = idx.iter().map(|&i| f64::from(x[i])).sum::<f64>() / m;
                let var = idx.iter().map(|&i| (f64::from(x[i]) - mu).powi(2)).sum::<f64>() / m;
                let s0: f64 = idx.iter().map(|&i| f64::from(dy[i])).sum();
                let s1: f64 = idx.iter().map(|&i| f64::from(dy[i]) * (f64::from(x[i]) - mu)).sum();
                for (got, want) in [(mom[ch], mu), (mom[c + ch], var), (sums[ch], s0), (sums[c + ch], s1)] {
                    assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "axis {axis} ch {ch}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn layer_norm_normalises_each_row() {
        let x = Tensor::from_f32(&[2, 4], vec![1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 8.0]).unwrap();
        let g = Tensor::full(&[4], 1.0);
        let b = Tensor::zeros(&[4]);
        let op = Op::LayerNorm { axes: vec![1], epsilon: 0.0 };
        let y = layer_norm(&op, &[&x, &g, &b], &[1], 0.0).unwrap();
        for row in y.as_f32().unwrap().chunks(4) {
            let m: f32 = row.iter().sum::<f32>() / 4.0;
            let v: f32 = row.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 4.0;
            assert!(m.abs() < 1e-6 && (v - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn group_norm_matches_the_definition_on_either_channel_axis() {
        let data: Vec<f32> = (0..2 * 4 * 3 * 2).map(|i| (i as f32 * 0.37).cos() * 3.0).collect();
        let x = Tensor::from_f32(&[2, 4, 3, 2], data.clone()).unwrap();
        let g = Tensor::from_f32(&[4], vec![1.0, 2.0, 0.5, -1.0]).unwrap();
        let b = Tensor::from_f32(&[4], vec![0.0, 1.0, 0.0, -1.0]).unwrap();
        for axis in [1, 3] {
            let c = x.shape()[axis];
            let op = Op::GroupNorm { groups: 2, axis, epsilon: 1e-3 };
            let y = group_norm(&op, &[&x, &g, &b], 2, axis, 1e-3).unwrap().to_f64_vec();
            // The definition: per sample, the elements of each channel group, by index.
            let st = strides(x.shape());
            let (gv, bv) = (g.to_f64_vec(), b.to_f64_vec());
            for n in 0..2 {
                let idx: Vec<usize> = (n * 24..(n + 1) * 24).collect();
                let chan = |i: usize| (i / st[axis]) % c;
                for grp in 0..2 {
                    let m: Vec<usize> = idx.iter().copied().filter(|&i| chan(i) / (c / 2) == grp).collect();
                    let mean = m.iter().map(|&i| f64::from(data[i])).sum::<f64>() / m.len() as f64;
                    let var = m.iter().map(|&i| (f64::from(data[i]) - mean).powi(2)).sum::<f64>() / m.len() as f64;
                    for &i in &m {
                        let want = (f64::from(data[i]) - mean) / (var + 1e-3).sqrt() * gv[chan(i)] + bv[chan(i)];
                        assert!((y[i] - want).abs() < 1e-4, "axis {axis} index {i}: {} vs {want}", y[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn group_norm_matches_layer_norm_with_one_group() {
        let data: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).sin()).collect();
        let x = Tensor::from_f32(&[2, 3, 4], data).unwrap();
        let g = Tensor::from_f32(&[4], vec![1.0, 2.0, 0.5, 1.0]).unwrap();
        let b = Tensor::from_f32(&[4], vec![0.0, 1.0, 0.0, -1.0]).unwrap();
        let gn = group_norm(&Op::GroupNorm { groups: 1, axis: 2, epsilon: 1e-3 }, &[&x, &g, &b], 1, 2, 1e-3).unwrap();
        let ln = layer_norm(&Op::LayerNorm { axes: vec![1, 2], epsilon: 1e-3 }, &[&x, &g, &b], &[1, 2], 1e-3).unwrap();
        let c = ir::Tolerance::REDUCTION.compare(&gn.to_f64_vec(), &ln.to_f64_vec());
        assert!(c.passed(), "{c}");
    }

    #[test]
    fn l2_normalize_unit_norm() {
        let x = Tensor::from_f32(&[1, 2], vec![3.0, 4.0]).unwrap();
        let y = l2_normalize(&Op::L2Normalize { axes: vec![1], epsilon: 1e-12 }, &x, &[1], 1e-12).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[0.6, 0.8]);
    }
}
