//! Kernels that write into a caller's buffer without allocating: the planned executor runs
//! these ops in place in its arena. Each covers the common form of its op; the planner sends
//! other forms through the allocating kernel.

use super::PAR_THRESHOLD;
use ir::Op;
use rayon::prelude::*;

/// Whether [`run_into`] handles this op with these operand shapes.
pub fn supports(op: &Op, shapes: &[&[usize]]) -> bool {
    let rank = shapes.first().map(|s| s.len()).unwrap_or(0);
    let last = rank.saturating_sub(1);
    match op {
        Op::Softmax { axes } => rank > 0 && axes.as_slice() == [last],
        Op::LogSoftmax { axis } => rank > 0 && *axis == last,
        Op::LayerNorm { axes, .. } => {
            let c = shapes.first().and_then(|s| s.last()).copied().unwrap_or(0);
            rank > 0
                && axes.as_slice() == [last]
                && shapes[1..].iter().all(|s| s.iter().product::<usize>() == c && s.last() == Some(&c))
        }
        Op::Concat { .. } => true,
        Op::Reduce { axes, .. } => super::reduce::middle_axes(shapes.first().copied().unwrap_or(&[]), axes).is_some(),
        Op::Transpose { perm } => perm.len() <= 8,
        _ => false,
    }
}

/// Runs a supported op into `out`.
pub fn run_into(op: &Op, ins: &[&[f32]], shapes: &[&[usize]], out: &mut [f32], out_shape: &[usize]) {
    match op {
        Op::Softmax { .. } => softmax_last(ins[0], shapes[0].last().copied().unwrap_or(1), out, false),
        Op::LogSoftmax { .. } => softmax_last(ins[0], shapes[0].last().copied().unwrap_or(1), out, true),
        Op::LayerNorm { epsilon, .. } => {
            layer_norm_last(ins[0], ins[1], ins[2], shapes[0].last().copied().unwrap_or(1), *epsilon, out)
        }
        Op::Concat { axis } => concat(ins, shapes, *axis, out, out_shape),
        Op::Reduce { kind, axes, .. } => {
            if let Some(dims) = super::reduce::middle_axes(shapes[0], axes) {
                super::reduce::reduce_middle(*kind, ins[0], dims, out);
            }
        }
        Op::Transpose { perm } => transpose(ins[0], shapes[0], perm, out, out_shape),
        _ => {}
    }
}

fn rows_par(out: &mut [f32], c: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if c == 0 {
        return;
    }
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(c).with_min_len((4096 / c).max(1)).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(c).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// Softmax or log-softmax of each row of `c` elements, stabilised by the row maximum.
fn softmax_last(x: &[f32], c: usize, out: &mut [f32], log: bool) {
    rows_par(out, c, |i, dst| {
        let src = &x[i * c..(i + 1) * c];
        let m = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v - m).exp();
            sum += *d;
        }
        if log {
            let ls = sum.ln();
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v - m - ls);
        } else {
            let inv = 1.0 / sum;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
    });
}

/// Layer normalization of each row of `c` elements with per-element gamma and beta, in
/// Keras's arithmetic (`x·inv + (beta − mean·inv)`).
fn layer_norm_last(x: &[f32], gamma: &[f32], beta: &[f32], c: usize, eps: f32, out: &mut [f32]) {
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

/// Concatenation: for each outer index, each input's block in turn.
fn concat(ins: &[&[f32]], shapes: &[&[usize]], axis: usize, out: &mut [f32], out_shape: &[usize]) {
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let row = out_shape.get(axis).copied().unwrap_or(1) * inner;
    for o in 0..outer {
        let mut at = o * row;
        for (x, s) in ins.iter().zip(shapes) {
            let blk = s.get(axis).copied().unwrap_or(1) * inner;
            out[at..at + blk].copy_from_slice(&x[o * blk..(o + 1) * blk]);
            at += blk;
        }
    }
}

/// Transposition by walking the output in order with an odometer over its coordinates.
fn transpose(x: &[f32], shape: &[usize], perm: &[usize], out: &mut [f32], out_shape: &[usize]) {
    let r = perm.len();
    let mut in_strides = [0usize; 8];
    let mut acc = 1;
    for i in (0..r).rev() {
        in_strides[i] = acc;
        acc *= shape[i];
    }
    // Stride in the input of a step along each output axis.
    let mut step = [0usize; 8];
    for (i, &p) in perm.iter().enumerate() {
        step[i] = in_strides[p];
    }
    let mut idx = [0usize; 8];
    let mut src = 0usize;
    for d in out.iter_mut() {
        *d = x[src];
        for ax in (0..r).rev() {
            idx[ax] += 1;
            src += step[ax];
            if idx[ax] < out_shape[ax] {
                break;
            }
            src -= step[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::run_op;
    use ir::Tensor;

    fn check(op: Op, inputs: Vec<Tensor>) {
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let want = run_op(&op, &refs).unwrap().remove(0);
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        assert!(supports(&op, &shapes), "{op:?}");
        let ins: Vec<&[f32]> = inputs.iter().map(|t| t.as_f32().unwrap()).collect();
        let mut out = vec![f32::NAN; want.len()];
        run_into(&op, &ins, &shapes, &mut out, want.shape());
        for (a, b) in out.iter().zip(want.as_f32().unwrap()) {
            assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{op:?}: {a} vs {b}");
        }
    }

    fn seq(shape: &[usize], s: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|i| ((i as f32) * s).sin()).collect()).unwrap()
    }

    #[test]
    fn match_the_allocating_kernels() {
        check(Op::Softmax { axes: vec![2] }, vec![seq(&[2, 3, 5], 0.7)]);
        check(Op::LogSoftmax { axis: 1 }, vec![seq(&[4, 6], 0.3)]);
        check(
            Op::LayerNorm { axes: vec![2], epsilon: 1e-3 },
            vec![seq(&[2, 3, 4], 0.9), seq(&[4], 0.2), seq(&[4], 0.5)],
        );
        check(Op::Concat { axis: 1 }, vec![seq(&[2, 3, 2], 0.1), seq(&[2, 1, 2], 0.4), seq(&[2, 2, 2], 0.8)]);
        check(Op::Concat { axis: 0 }, vec![seq(&[1, 3], 0.1), seq(&[2, 3], 0.4)]);
        check(Op::Transpose { perm: vec![0, 2, 3, 1] }, vec![seq(&[2, 3, 4, 5], 0.3)]);
        check(Op::Transpose { perm: vec![1, 0] }, vec![seq(&[3, 7], 0.3)]);
        check(
            Op::Reduce { kind: ir::ReduceKind::Mean, axes: vec![1, 2], keepdims: false },
            vec![seq(&[2, 3, 4, 5], 0.3)],
        );
        check(Op::Reduce { kind: ir::ReduceKind::Max, axes: vec![1], keepdims: true }, vec![seq(&[2, 3, 4], 0.7)]);
    }
}
