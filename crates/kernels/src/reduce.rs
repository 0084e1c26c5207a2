//! Reductions (sum, mean, max, min, prod), softmax and log-softmax, and the mean's gradient.

use crate::util::{f32s, rows_par, strides, tensor};
use crate::KernelError;
use ir::{Op, ReduceKind, Tensor};

/// Splits a shape into (outer, reduced, inner) index maps: for every kept position the base
/// offset, and for every reduced position its offset relative to the base.
pub(crate) fn reduction_offsets(shape: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let st = strides(shape);
    let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
    let red: Vec<usize> = (0..shape.len()).filter(|a| axes.contains(a)).collect();
    let enumerate = |dims: &[usize]| -> Vec<usize> {
        let mut offs = vec![0usize];
        for &d in dims {
            let mut next = Vec::with_capacity(offs.len() * shape[d]);
            for &o in &offs {
                for i in 0..shape[d] {
                    next.push(o + i * st[d]);
                }
            }
            offs = next;
        }
        offs
    };
    (enumerate(&kept), enumerate(&red))
}

/// `(outer, reduced, inner)` sizes when `axes` are consecutive and at least one axis is kept
/// after them (global pooling: a reduction over the spatial axes of `(N, H, W, C)`).
pub fn middle_axes(shape: &[usize], axes: &[usize]) -> Option<(usize, usize, usize)> {
    let (&first, &last) = (axes.first()?, axes.last()?);
    let consecutive = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if !consecutive || last + 1 >= shape.len() {
        return None;
    }
    Some((shape[..first].iter().product(), shape[first..=last].iter().product(), shape[last + 1..].iter().product()))
}

/// A reduction over the middle of `(outer, reduced, inner)`, accumulating whole inner rows at a
/// time (vectorisable) into `out` (`outer × inner`).
pub fn reduce_middle(kind: ReduceKind, x: &[f32], (outer, mid, inner): (usize, usize, usize), out: &mut [f32]) {
    let init = match kind {
        ReduceKind::Sum | ReduceKind::Mean => 0.0,
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Min => f32::INFINITY,
        ReduceKind::Prod => 1.0,
    };
    for o in 0..outer {
        let dst = &mut out[o * inner..(o + 1) * inner];
        dst.fill(init);
        for m in 0..mid {
            let src = &x[(o * mid + m) * inner..(o * mid + m + 1) * inner];
            let pairs = dst.iter_mut().zip(src);
            match kind {
                ReduceKind::Sum | ReduceKind::Mean => pairs.for_each(|(d, &v)| *d += v),
                ReduceKind::Max => pairs.for_each(|(d, &v)| *d = d.max(v)),
                ReduceKind::Min => pairs.for_each(|(d, &v)| *d = d.min(v)),
                ReduceKind::Prod => pairs.for_each(|(d, &v)| *d *= v),
            }
        }
        if kind == ReduceKind::Mean {
            let inv = if mid == 0 { f32::NAN } else { 1.0 / mid as f32 };
            dst.iter_mut().for_each(|d| *d *= inv);
        }
    }
}

/// Reductions over `axes`; the output is laid out in the kept axes' order.
pub fn reduce(
    op: &Op,
    kind: ReduceKind,
    x: &Tensor,
    axes: &[usize],
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let xs = f32s(op, x)?;
    if let Some((outer, mid, inner)) = middle_axes(x.shape(), axes) {
        let mut out = vec![0f32; outer * inner];
        reduce_middle(kind, xs, (outer, mid, inner), &mut out);
        return tensor(out_shape, out);
    }
    let (bases, red) = reduction_offsets(x.shape(), axes);
    let n = red.len();
    let out: Vec<f32> = bases
        .iter()
        .map(|&b| {
            let it = red.iter().map(|&o| xs[b + o]);
            match kind {
                ReduceKind::Sum => it.sum(),
                ReduceKind::Mean => {
                    if n == 0 {
                        f32::NAN
                    } else {
                        it.sum::<f32>() / n as f32
                    }
                }
                ReduceKind::Max => it.fold(f32::NEG_INFINITY, f32::max),
                ReduceKind::Min => it.fold(f32::INFINITY, f32::min),
                ReduceKind::Prod => it.product(),
            }
        })
        .collect();
    tensor(out_shape, out)
}

/// Softmax (or log-softmax) over `axes`, numerically stabilised by the maximum.
pub fn softmax(op: &Op, x: &Tensor, axes: &[usize], log: bool) -> Result<Tensor, KernelError> {
    let xs = f32s(op, x)?;
    let mut out = vec![0f32; xs.len()];
    let last = x.rank().saturating_sub(1);
    if axes == [last] && x.rank() > 0 {
        let c = x.shape()[last];
        if c > 0 {
            for (src, dst) in xs.chunks(c).zip(out.chunks_mut(c)) {
                softmax_row(src.iter().copied(), dst, log);
            }
        }
        return tensor(x.shape(), out);
    }
    let (bases, red) = reduction_offsets(x.shape(), axes);
    let mut buf = vec![0f32; red.len()];
    for &b in &bases {
        softmax_row(red.iter().map(|&o| xs[b + o]), &mut buf, log);
        for (&o, &v) in red.iter().zip(&buf) {
            out[b + o] = v;
        }
    }
    tensor(x.shape(), out)
}

fn softmax_row(src: impl Iterator<Item = f32> + Clone, dst: &mut [f32], log: bool) {
    let m = src.clone().fold(f32::NEG_INFINITY, f32::max);
    for (d, v) in dst.iter_mut().zip(src.clone()) {
        *d = v - m;
    }
    // Exponentials in vectors (`simd::VectorFn::Exp`), then their sum.
    crate::simd::map_vector(crate::simd::VectorFn::Exp, None, dst);
    let sum: f32 = dst.iter().sum();
    if log {
        let ls = sum.ln();
        for (d, v) in dst.iter_mut().zip(src) {
            *d = v - m - ls;
        }
    } else {
        let inv = 1.0 / sum;
        for d in dst.iter_mut() {
            *d *= inv;
        }
    }
}

/// The gradient of a mean over `axes`: `dy` broadcast to `out_shape` and divided by the count
/// averaged.
pub fn mean_grad(op: &Op, dy: &Tensor, axes: &[usize], out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; out_shape.iter().product()];
    mean_grad_into(op, f32s(op, dy)?, dy.shape(), axes, &mut out, out_shape)?;
    tensor(out_shape, out)
}

/// [`mean_grad`] into `out`: `dy` broadcast back over the reduced axes a row at a time.
pub fn mean_grad_into(
    op: &Op,
    v: &[f32],
    dy_shape: &[usize],
    axes: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    if dy_shape.len() > out_shape.len() || axes.iter().any(|&a| a >= out_shape.len()) {
        return Err(KernelError::new(op, "the mean's gradient does not broadcast to the input's shape"));
    }
    let count: usize = axes.iter().map(|&a| out_shape[a]).product();
    let inv = 1.0 / count.max(1) as f32;
    let sv = crate::util::broadcast_strides(dy_shape, out_shape);
    // The trailing axes along which `dy` is contiguous (its values copied as runs), then the
    // leading ones, walked with an odometer.
    let os = strides(out_shape);
    let r = out_shape.len();
    let k = (0..=r).rev().take_while(|&k| k == r || (sv[k] == os[k] || out_shape[k] == 1)).last().unwrap_or(r);
    let run: usize = out_shape[k..].iter().product();
    if run == 0 || out.is_empty() {
        return Ok(());
    }
    for (dst, o) in out.chunks_exact_mut(run).zip(crate::util::box_offsets(&out_shape[..k], &sv[..k], 0)) {
        dst.iter_mut().zip(&v[o..o + run]).for_each(|(t, &v)| *t = v * inv);
    }
    Ok(())
}

/// Softmax or log-softmax of each row of `c` elements, stabilised by the row maximum.
pub(crate) fn softmax_last(x: &[f32], c: usize, out: &mut [f32], log: bool) {
    rows_par(out, c, |i, dst| softmax_row(x[i * c..(i + 1) * c].iter().copied(), dst, log));
}

/// ArgMax / ArgMin along `axis` (int64 indices; the first of equal elements, or the last).
pub fn arg_reduce(x: &Tensor, max: bool, axis: usize, last: bool, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let sh = x.shape();
    let (outer, mid, inner) =
        (sh[..axis].iter().product::<usize>(), sh[axis], sh[axis + 1..].iter().product::<usize>());
    let v = x.to_f64_vec();
    let mut out = vec![0i64; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0usize;
            for j in 1..mid {
                let (a, b) = (v[(o * mid + j) * inner + i], v[(o * mid + best) * inner + i]);
                let better = if max { a > b || (last && a == b) } else { a < b || (last && a == b) };
                if better {
                    best = j;
                }
            }
            out[o * inner + i] = best as i64;
        }
    }
    Ok(Tensor::new(out_shape.to_vec(), ir::TensorData::I64(out))?)
}

#[cfg(test)]
mod tests {

    /// `mean_grad` broadcasts `dy` as numpy does (runs of contiguous values, axes of size 1,
    /// a full-shaped `dy`), divided by the count averaged.
    #[test]
    fn mean_grad_broadcasts_like_the_definition() {
        use super::*;
        let op = Op::MeanGrad { axes: vec![] };
        for (dy_shape, out_shape, axes) in [
            (vec![1, 1, 1, 5], vec![2, 3, 4, 5], vec![0, 1, 2]),
            (vec![2, 1, 4, 1], vec![2, 3, 4, 5], vec![1, 3]),
            (vec![], vec![3, 2], vec![0, 1]),
            (vec![3, 1], vec![3, 4], vec![1]),
            (vec![2, 3], vec![2, 3], vec![]),
        ] {
            let n: usize = dy_shape.iter().product();
            let dy = Tensor::from_f32(&dy_shape, (0..n).map(|i| i as f32 + 0.5).collect()).unwrap();
            let got = mean_grad(&op, &dy, &axes, &out_shape).unwrap().to_f32_vec();
            let count: usize = axes.iter().map(|&a| out_shape[a]).product();
            let idx = crate::util::broadcast_index(&dy_shape, &out_shape);
            let want: Vec<f32> = (0..got.len()).map(|i| dy.as_f32().unwrap()[idx(i)] / count.max(1) as f32).collect();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{dy_shape:?} -> {out_shape:?}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn middle_axis_fast_path_matches_the_general_reduction() {
        let shape = [2usize, 3, 4, 5];
        let x: Vec<f32> = (0..120).map(|i| ((i as f32) * 0.37).sin()).collect();
        for (axes, kind) in [(vec![1, 2], ReduceKind::Mean), (vec![1], ReduceKind::Max), (vec![2], ReduceKind::Prod)] {
            let dims = middle_axes(&shape, &axes).unwrap();
            let mut fast = vec![0f32; dims.0 * dims.2];
            reduce_middle(kind, &x, dims, &mut fast);
            let (bases, red) = reduction_offsets(&shape, &axes);
            for (k, &b) in bases.iter().enumerate() {
                let it = red.iter().map(|&o| x[b + o]);
                let want = match kind {
                    ReduceKind::Mean => it.sum::<f32>() / red.len() as f32,
                    ReduceKind::Max => it.fold(f32::NEG_INFINITY, f32::max),
                    _ => it.product(),
                };
                assert!((fast[k] - want).abs() <= 1e-6, "{axes:?} {kind:?} at {k}: {} vs {want}", fast[k]);
            }
        }
        assert!(middle_axes(&shape, &[3]).is_none());
        assert!(middle_axes(&shape, &[1, 3]).is_none());
    }

    use super::*;

    #[test]
    fn reduce_over_middle_axis() {
        let x = Tensor::from_f32(&[2, 3, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        let op = Op::Reduce { kind: ReduceKind::Sum, axes: vec![1], keepdims: false };
        let y = reduce(&op, ReduceKind::Sum, &x, &[1], &[2, 2]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[6.0, 9.0, 24.0, 27.0]);
        let y = reduce(&op, ReduceKind::Max, &x, &[0, 2], &[3]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[7.0, 9.0, 11.0]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_formula() {
        let x = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 1000.0]).unwrap();
        let op = Op::Softmax { axes: vec![1] };
        let y = softmax(&op, &x, &[1], false).unwrap();
        let v = y.as_f32().unwrap();
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|a| a.exp()).collect();
        let s: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((v[i] as f64 - e[i] / s).abs() < 1e-6);
        }
        assert!((v[5] - 1.0).abs() < 1e-6);
        let over0 = softmax(&op, &x, &[0], false).unwrap();
        let w = over0.as_f32().unwrap();
        assert!((w[0] + w[3] - 1.0).abs() < 1e-6);
        let ls = softmax(&op, &x, &[1], true).unwrap();
        assert!((ls.as_f32().unwrap()[0] as f64 - (e[0] / s).ln()).abs() < 1e-5);
    }
}
