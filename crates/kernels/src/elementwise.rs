//! Element-wise ops: unary functions, binary ops with broadcasting, bias adds, the optimizer's
//! fused expressions, and the derivatives of the unary and binary ops.

use crate::fused::{self, Operand};
use crate::scalar::{apply_f32, binary_partial, map_unary, unary_derivative, unary_derivative_inline};
use crate::util::{broadcast_strides, f32s, map_per_channel, tensor, PAR_THRESHOLD};
use crate::KernelError;
use ir::{BinaryOp, FusedExpr, Op, Tensor, TensorData, UnaryOp};
use rayon::prelude::*;

/// Applies a unary op element-wise.
pub fn unary(op: UnaryOp, x: &[f32], shape: &[usize]) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; x.len()];
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(4096).zip(x.par_chunks(4096)).for_each(|(d, s)| map_unary(op, s, d));
    } else {
        map_unary(op, x, &mut out);
    }
    tensor(shape, out)
}

fn apply_i64(op: BinaryOp, a: i64, b: i64) -> i64 {
    match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => {
            if b == 0 {
                0
            } else {
                a.div_euclid(b)
            }
        }
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => a.wrapping_pow(b.clamp(0, u32::MAX as i64) as u32),
    }
}

/// Generic broadcast driver: calls `f(out_index_base, a_off, b_off, inner_len, a_inner_stride, b_inner_stride)` per row.
pub(crate) fn for_rows(
    out_shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let r = out_shape.len();
    if r == 0 {
        f(0, 0, 0, 1, 0, 0);
        return;
    }
    let inner = out_shape[r - 1];
    let rows: usize = out_shape[..r - 1].iter().product();
    let mut idx = vec![0usize; r.saturating_sub(1)];
    for row in 0..rows {
        let mut ao = 0;
        let mut bo = 0;
        for (k, &i) in idx.iter().enumerate() {
            ao += i * sa[k];
            bo += i * sb[k];
        }
        f(row * inner, ao, bo, inner, sa[r - 1], sb[r - 1]);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Element-wise binary op with numpy broadcasting.
pub fn binary(op_: &Op, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let sa = broadcast_strides(a.shape(), out_shape);
    let sb = broadcast_strides(b.shape(), out_shape);
    let n: usize = out_shape.iter().product();
    match (a.data(), b.data()) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let mut out = vec![0f32; n];
            if a.shape() == out_shape && b.shape() == out_shape {
                if n >= PAR_THRESHOLD {
                    out.par_iter_mut()
                        .zip(x.par_iter().zip(y.par_iter()))
                        .for_each(|(o, (&p, &q))| *o = apply_f32(op, p, q));
                } else {
                    for ((o, &p), &q) in out.iter_mut().zip(x).zip(y) {
                        *o = apply_f32(op, p, q);
                    }
                }
            } else {
                for_rows(out_shape, &sa, &sb, |base, ao, bo, len, sai, sbi| {
                    let dst = &mut out[base..base + len];
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = apply_f32(op, x[ao + j * sai], y[bo + j * sbi]);
                    }
                });
            }
            tensor(out_shape, out)
        }
        (TensorData::I32(_) | TensorData::I64(_), TensorData::I32(_) | TensorData::I64(_))
        | (TensorData::U8(_), TensorData::U8(_)) => {
            // In i64, then back to the first operand's type (wrapping, as uint8 arithmetic does).
            let x = a.to_i64_vec();
            let y = b.to_i64_vec();
            let mut out = vec![0i64; n];
            for_rows(out_shape, &sa, &sb, |base, ao, bo, len, sai, sbi| {
                for j in 0..len {
                    out[base + j] = apply_i64(op, x[ao + j * sai], y[bo + j * sbi]);
                }
            });
            let t = Tensor::new(out_shape.to_vec(), TensorData::I64(out))?;
            Ok(t.cast(a.dtype()))
        }
        _ => Err(KernelError::new(op_, format!("unsupported dtypes {} and {}", a.dtype(), b.dtype()))),
    }
}

/// A fused element-wise expression over broadcast inputs.
pub fn fused(op: &Op, expr: &FusedExpr, inputs: &[&Tensor], out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; out_shape.iter().product()];
    let operands = inputs
        .iter()
        .map(|t| Ok(Operand { data: Some(f32s(op, t)?), shape: t.shape() }))
        .collect::<Result<Vec<_>, KernelError>>()?;
    fused::eval(expr, &operands, &mut out, out_shape);
    tensor(out_shape, out)
}

/// Adds a 1-D bias along `axis`.
pub fn bias_add(op: &Op, x: &Tensor, bias: &Tensor, axis: usize) -> Result<Tensor, KernelError> {
    let b = f32s(op, bias)?;
    tensor(x.shape(), map_per_channel(f32s(op, x)?, x.shape(), axis, |c, v| v + b[c]))
}

/// `dy · f'(x)` for the unary function `f`.
pub fn unary_grad(op: &Op, u: UnaryOp, x: &Tensor, dy: &Tensor, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let (x, dy) = (f32s(op, x)?, f32s(op, dy)?);
    let mut out = vec![0f32; out_shape.iter().product()];
    unary_grad_into(op, u, x, dy, &mut out)?;
    tensor(out_shape, out)
}

/// [`unary_grad`] into `out` (the shape of `x` and `dy`).
pub fn unary_grad_into(op: &Op, u: UnaryOp, x: &[f32], dy: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    if x.len() != out.len() || dy.len() != out.len() {
        return Err(KernelError::new(op, "operand and output sizes differ"));
    }
    let run = |(o, (x, d)): (&mut [f32], (&[f32], &[f32]))| match u {
        // The common ones as plain loops (vectorized); the rest through the scalar derivative.
        UnaryOp::Relu => o.iter_mut().zip(x).zip(d).for_each(|((o, &x), &d)| *o = if x > 0.0 { d } else { 0.0 }),
        UnaryOp::Square => o.iter_mut().zip(x).zip(d).for_each(|((o, &x), &d)| *o = d * (2.0 * x)),
        UnaryOp::Identity => o.copy_from_slice(d),
        UnaryOp::Relu6 => o.iter_mut().zip(x).zip(d).for_each(|((o, &x), &d)| *o = d * f32::from(x > 0.0 && x < 6.0)),
        // The derivative's own formula with its parameters fixed, so the loop has no dispatch.
        UnaryOp::ReluClip { .. } | UnaryOp::LeakyRelu { .. } | UnaryOp::Elu { .. } => {
            o.iter_mut().zip(x).zip(d).for_each(|((o, &x), &d)| *o = d * unary_derivative_inline(u, x))
        }
        _ => o.iter_mut().zip(x).zip(d).for_each(|((o, &x), &d)| *o = d * unary_derivative(u, x)),
    };
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(4096).zip(x.par_chunks(4096).zip(dy.par_chunks(4096))).for_each(run);
    } else {
        run((out, (x, dy)));
    }
    Ok(())
}

/// The gradient of `b(a, bb)` with respect to operand `wrt`, in the broadcast output shape
/// (`dy`'s), row by row: sums and differences pass `±dy` on, a product `dy` times the other
/// operand, the rest `dy` times the op's partial derivative.
pub fn binary_grad(
    op: &Op,
    b: BinaryOp,
    wrt: usize,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; out_shape.iter().product()];
    let operand = |k: usize| Ok::<_, KernelError>((f32s(op, inputs[k])?, inputs[k].shape()));
    binary_grad_into(op, b, wrt, operand(0)?, operand(1)?, f32s(op, inputs[2])?, &mut out, out_shape)?;
    tensor(out_shape, out)
}

/// [`binary_grad`] into `out` (the broadcast output's shape, which is `dy`'s).
#[allow(clippy::too_many_arguments)]
pub fn binary_grad_into(
    op: &Op,
    b: BinaryOp,
    wrt: usize,
    (a, a_shape): (&[f32], &[usize]),
    (bb, b_shape): (&[f32], &[usize]),
    dy: &[f32],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    if dy.len() != out.len() || a_shape.len() > out_shape.len() || b_shape.len() > out_shape.len() {
        return Err(KernelError::new(op, "the output gradient does not have the output's shape"));
    }
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    for_rows(out_shape, &sa, &sb, |base, ao, bo, len, sai, sbi| {
        let (dst, d) = (&mut out[base..base + len], &dy[base..base + len]);
        match (b, wrt) {
            (BinaryOp::Add, _) | (BinaryOp::Sub, 0) => dst.copy_from_slice(d),
            (BinaryOp::Sub, _) => dst.iter_mut().zip(d).for_each(|(t, &d)| *t = -d),
            _ => {
                for (j, (t, &d)) in dst.iter_mut().zip(d).enumerate() {
                    *t = d * binary_partial(b, wrt, a[ao + j * sai], bb[bo + j * sbi]);
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_binary() {
        let op = Op::Binary(BinaryOp::Sub);
        let a = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = Tensor::from_f32(&[2, 1], vec![1.0, 10.0]).unwrap();
        let c = binary(&op, BinaryOp::Sub, &a, &b, &[2, 3]).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[0.0, 1.0, 2.0, -6.0, -5.0, -4.0]);
        let d = Tensor::from_f32(&[3], vec![1.0, 0.0, -1.0]).unwrap();
        let e = binary(&op, BinaryOp::Mul, &b, &d, &[2, 3]).unwrap();
        assert_eq!(e.as_f32().unwrap(), &[1.0, 0.0, -1.0, 10.0, 0.0, -10.0]);
    }

    #[test]
    fn bias_add_on_middle_axis() {
        let op = Op::BiasAdd { axis: 1 };
        let x = Tensor::zeros(&[1, 2, 2]);
        let b = Tensor::from_f32(&[2], vec![1.0, 2.0]).unwrap();
        assert_eq!(bias_add(&op, &x, &b, 1).unwrap().as_f32().unwrap(), &[1.0, 1.0, 2.0, 2.0]);
    }
}
