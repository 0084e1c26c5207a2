use super::{f32s, map_per_channel, strides, tensor, PAR_THRESHOLD};
use crate::RuntimeError;
use ir::{BinaryOp, Op, Tensor, TensorData, UnaryOp};
use rayon::prelude::*;

pub(crate) const SQRT_2_OVER_PI: f32 = 0.797_884_6;
pub(crate) const SELU_ALPHA: f32 = 1.673_263_2;
pub(crate) const SELU_SCALE: f32 = 1.050_701;

pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub(crate) fn softplus(x: f32) -> f32 {
    (-x.abs()).exp().ln_1p() + x.max(0.0)
}

/// The scalar definition of every unary op (Keras's formulas).
pub fn unary_scalar(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Identity => x,
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Erf => libm::erff(x),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Relu6 => x.clamp(0.0, 6.0),
        UnaryOp::ReluClip { max_value, negative_slope, threshold } => {
            let mut y = if threshold != 0.0 {
                if x > threshold {
                    x
                } else {
                    0.0
                }
            } else {
                x.max(0.0)
            };
            if let Some(m) = max_value {
                y = y.clamp(0.0, m);
            }
            if negative_slope != 0.0 {
                y -= negative_slope * (threshold - x).max(0.0);
            }
            y
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        UnaryOp::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                alpha * x.exp_m1()
            }
        }
        UnaryOp::Selu => {
            if x > 0.0 {
                SELU_SCALE * x
            } else {
                SELU_SCALE * SELU_ALPHA * x.exp_m1()
            }
        }
        UnaryOp::ThresholdedRelu { theta } => {
            if x > theta {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        UnaryOp::HardSigmoidLegacy => (0.2 * x + 0.5).clamp(0.0, 1.0),
        UnaryOp::HardSilu => x * ((x + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Softplus => softplus(x),
        UnaryOp::Softsign => x / (1.0 + x.abs()),
        UnaryOp::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh()),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Mish => x * softplus(x).tanh(),
        UnaryOp::Affine { scale, offset } => x * scale + offset,
        UnaryOp::Clip { lo, hi } => x.max(lo).min(hi),
    }
}

/// Applies a unary op element-wise.
pub fn unary(op: UnaryOp, x: &[f32], shape: &[usize]) -> Result<Tensor, RuntimeError> {
    let mut out = vec![0f32; x.len()];
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(4096).zip(x.par_chunks(4096)).for_each(|(d, s)| super::fused::map_unary(op, s, d));
    } else {
        super::fused::map_unary(op, x, &mut out);
    }
    tensor(shape, out)
}

pub(crate) fn apply_f32(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => a.powf(b),
    }
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

/// Offsets into an input for every output element under broadcasting, computed row by row.
pub(crate) fn broadcast_strides(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let r = out_shape.len();
    let s = strides(in_shape);
    let mut bs = vec![0; r];
    for i in 0..in_shape.len() {
        let o = r - in_shape.len() + i;
        bs[o] = if in_shape[i] == 1 { 0 } else { s[i] };
    }
    bs
}

/// Generic broadcast driver: calls `f(out_index_base, a_off, b_off, inner_len, a_inner_stride, b_inner_stride)` per row.
fn for_rows(
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
pub fn binary(op_: &Op, op: BinaryOp, a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Result<Tensor, RuntimeError> {
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
        (TensorData::I32(_) | TensorData::I64(_), TensorData::I32(_) | TensorData::I64(_)) => {
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
        _ => Err(RuntimeError::kernel(op_, format!("unsupported dtypes {} and {}", a.dtype(), b.dtype()))),
    }
}

/// Adds a 1-D bias along `axis`.
pub fn bias_add(op: &Op, x: &Tensor, bias: &Tensor, axis: usize) -> Result<Tensor, RuntimeError> {
    let b = f32s(op, bias)?;
    tensor(x.shape(), map_per_channel(f32s(op, x)?, x.shape(), axis, |c, v| v + b[c]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_match_reference_values() {
        let close = |a: f32, b: f64| assert!((a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        close(unary_scalar(UnaryOp::Gelu, 1.0), 0.841_344_746_068_543);
        close(unary_scalar(UnaryOp::GeluTanh, 1.0), 0.841_191_990_607_477);
        close(unary_scalar(UnaryOp::Silu, 2.0), 2.0 / (1.0 + (-2.0f64).exp()));
        close(unary_scalar(UnaryOp::Softplus, -3.0), (1.0 + (-3.0f64).exp()).ln());
        close(unary_scalar(UnaryOp::Softplus, 30.0), 30.0);
        close(
            unary_scalar(UnaryOp::Selu, -1.0),
            1.050_700_987_355_480_5 * 1.673_263_242_354_377_3 * ((-1.0f64).exp() - 1.0),
        );
        close(unary_scalar(UnaryOp::HardSigmoid, 1.0), 4.0 / 6.0);
        close(unary_scalar(UnaryOp::HardSigmoidLegacy, 1.0), 0.7);
        close(unary_scalar(UnaryOp::HardSilu, -1.0), -2.0 / 6.0);
        close(unary_scalar(UnaryOp::Mish, 1.0), 1.0 * ((1.0 + 1.0f64.exp()).ln()).tanh());
        close(unary_scalar(UnaryOp::Softsign, 3.0), 0.75);
        close(unary_scalar(UnaryOp::Elu { alpha: 0.5 }, -2.0), 0.5 * ((-2.0f64).exp() - 1.0));
        close(unary_scalar(UnaryOp::LeakyRelu { alpha: 0.2 }, -2.0), -0.4);
        close(unary_scalar(UnaryOp::ThresholdedRelu { theta: 1.0 }, 1.0), 0.0);
        close(unary_scalar(UnaryOp::Relu6, 7.0), 6.0);
        close(unary_scalar(UnaryOp::Sigmoid, -40.0), 1.0 / (1.0 + 40.0f64.exp()));
    }

    #[test]
    fn relu_clip_follows_keras() {
        let f = |x| unary_scalar(UnaryOp::ReluClip { max_value: Some(4.0), negative_slope: 0.1, threshold: 1.0 }, x);
        assert_eq!(f(5.0), 4.0);
        assert_eq!(f(2.0), 2.0);
        assert!((f(0.0) - (-0.1)).abs() < 1e-7);
        assert!((f(-1.0) - (-0.2)).abs() < 1e-7);
    }

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
