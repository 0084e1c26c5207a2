//! Normalizations: batch (inference), layer, group and L2.

use crate::reduce::reduction_offsets;
use crate::util::{f32s, map_per_channel, rows_par, strides, tensor};
use crate::KernelError;
use ir::{Op, Tensor};

/// Inference batch normalization along `axis`, as `tf.nn.batch_normalization` computes it.
pub fn batch_norm(op: &Op, inputs: &[&Tensor], axis: usize, eps: f32) -> Result<Tensor, KernelError> {
    let xs = f32s(op, inputs[0])?;
    let gamma = f32s(op, inputs[1])?;
    let beta = f32s(op, inputs[2])?;
    let mean = f32s(op, inputs[3])?;
    let var = f32s(op, inputs[4])?;
    let c = gamma.len();
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    tensor(inputs[0].shape(), map_per_channel(xs, inputs[0].shape(), axis, |ch, v| v * scale[ch] + shift[ch]))
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
    for &b in &bases {
        let gb = param_off(b, &gs);
        let bb = param_off(b, &bs);
        let mean = red.iter().map(|&o| xs[b + o]).sum::<f32>() / n;
        let var = red.iter().map(|&o| (xs[b + o] - mean).powi(2)).sum::<f32>() / n;
        let rs = 1.0 / (var + eps).sqrt();
        for (k, &o) in red.iter().enumerate() {
            let inv = rs * gamma[gb + g_off[k]];
            out[b + o] = xs[b + o] * inv + (beta[bb + b_off[k]] - mean * inv);
        }
    }
    tensor(shape, out)
}

/// Group normalization: statistics per sample and channel group over all other axes, in
/// linear passes over each sample laid out as (outer, channels, inner).
pub fn group_norm(op: &Op, inputs: &[&Tensor], groups: usize, axis: usize, eps: f32) -> Result<Tensor, KernelError> {
    let x = inputs[0];
    let xs = f32s(op, x)?;
    let gamma = f32s(op, inputs[1])?;
    let beta = f32s(op, inputs[2])?;
    let shape = x.shape();
    let c = shape[axis];
    let groups = groups.max(1);
    let cg = c / groups;
    let inner: usize = shape[axis + 1..].iter().product();
    let per_sample: usize = shape[1..].iter().product();
    let mut out = vec![0f32; xs.len()];
    if per_sample == 0 || cg == 0 || gamma.len() < c || beta.len() < c {
        return tensor(shape, out);
    }
    let outer = per_sample / (c * inner);
    let group_of = |ch: usize| (ch / cg).min(groups - 1);
    let count = (per_sample / groups) as f64;
    let each = |f: &mut dyn FnMut(usize, usize)| {
        for o in 0..outer {
            for ch in 0..c {
                let base = (o * c + ch) * inner;
                for i in base..base + inner {
                    f(i, ch);
                }
            }
        }
    };
    rows_par(&mut out, per_sample, |n, dst| {
        let src = &xs[n * per_sample..(n + 1) * per_sample];
        let mut sum = vec![0f64; groups];
        each(&mut |i, ch| sum[group_of(ch)] += f64::from(src[i]));
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let mut sq = vec![0f64; groups];
        each(&mut |i, ch| {
            let d = src[i] - mean[group_of(ch)];
            sq[group_of(ch)] += f64::from(d * d);
        });
        let inv: Vec<f32> = sq.iter().map(|v| 1.0 / ((v / count) as f32 + eps).sqrt()).collect();
        each(&mut |i, ch| {
            let g = group_of(ch);
            dst[i] = ((src[i] - mean[g]) * inv[g]) * gamma[ch] + beta[ch];
        });
    });
    tensor(shape, out)
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
        let mean = src.iter().sum::<f32>() / n;
        let var = src.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let rs = 1.0 / (var + eps).sqrt();
        for (k, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
            let inv = rs * gamma[k];
            *d = v * inv + (beta[k] - mean * inv);
        }
    });
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
