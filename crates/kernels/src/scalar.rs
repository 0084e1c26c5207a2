//! The scalar math of the element-wise ops (Keras's formulas), their derivatives, and loops
//! that apply one op over a slice; every element-wise kernel, fused or not, is built on these.

use ir::{BinaryOp, UnaryOp};

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

/// Applies `u` to every element of `src` into `dst`, with the common cases unswitched.
pub fn map_unary(u: UnaryOp, src: &[f32], dst: &mut [f32]) {
    match simplified(u) {
        UnaryOp::Clip { lo, hi } => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x.clamp(lo, hi)),
        UnaryOp::Relu => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x.max(0.0)),
        UnaryOp::Relu6 => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x.clamp(0.0, 6.0)),
        UnaryOp::Identity => dst.copy_from_slice(src),
        UnaryOp::Neg => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = -x),
        UnaryOp::Affine { scale, offset } => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x * scale + offset),
        _ => match vector_fn(u) {
            Some(f) => crate::simd::map_vector(f, Some(src), dst),
            None => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = unary_scalar(u, x)),
        },
    }
}

pub(crate) fn map_binary(b: BinaryOp, x: &[f32], y: &[f32], dst: &mut [f32]) {
    let it = dst.iter_mut().zip(x.iter().zip(y));
    match b {
        BinaryOp::Add => it.for_each(|(d, (&p, &q))| *d = p + q),
        BinaryOp::Sub => it.for_each(|(d, (&p, &q))| *d = p - q),
        BinaryOp::Mul => it.for_each(|(d, (&p, &q))| *d = p * q),
        _ => it.for_each(|(d, (&p, &q))| *d = apply_f32(b, p, q)),
    }
}

/// The same function in a form with a fast loop, where one exists.
pub(crate) fn simplified(u: UnaryOp) -> UnaryOp {
    match u {
        UnaryOp::ReluClip { max_value: None, negative_slope: 0.0, threshold: 0.0 } => UnaryOp::Relu,
        UnaryOp::ReluClip { max_value: Some(m), negative_slope: 0.0, threshold: 0.0 } if m >= 0.0 => {
            UnaryOp::Clip { lo: 0.0, hi: m }
        }
        UnaryOp::Relu6 => UnaryOp::Clip { lo: 0.0, hi: 6.0 },
        other => other,
    }
}

pub(crate) fn in_place_unary(u: UnaryOp, v: &mut [f32]) {
    match simplified(u) {
        UnaryOp::Clip { lo, hi } => v.iter_mut().for_each(|x| *x = x.clamp(lo, hi)),
        UnaryOp::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        UnaryOp::Relu6 => v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        _ => match vector_fn(u) {
            Some(f) => crate::simd::map_vector(f, None, v),
            None => v.iter_mut().for_each(|x| *x = unary_scalar(u, *x)),
        },
    }
}

/// The vector form of `u`, where it has one ([`crate::simd::VectorFn`]).
pub(crate) fn vector_fn(u: UnaryOp) -> Option<crate::simd::VectorFn> {
    match u {
        UnaryOp::Exp => Some(crate::simd::VectorFn::Exp),
        UnaryOp::Sigmoid => Some(crate::simd::VectorFn::Sigmoid),
        UnaryOp::Silu => Some(crate::simd::VectorFn::Silu),
        UnaryOp::Tanh => Some(crate::simd::VectorFn::Tanh),
        _ => None,
    }
}

/// `f'(x)` for every unary op (subgradient 0 at kinks, as TensorFlow).
pub fn unary_derivative(op: UnaryOp, x: f32) -> f32 {
    unary_derivative_inline(op, x)
}

/// [`unary_derivative`], inlined into a caller's loop (where the op is fixed, the match is
/// decided once).
#[inline(always)]
pub(crate) fn unary_derivative_inline(op: UnaryOp, x: f32) -> f32 {
    // The logistic function, evaluated only by the arms that use it.
    let sg = || sigmoid(x);
    match op {
        UnaryOp::Identity => 1.0,
        UnaryOp::Neg => -1.0,
        UnaryOp::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => 1.0 / x,
        UnaryOp::Sqrt => 0.5 / x.sqrt(),
        UnaryOp::Rsqrt => -0.5 / (x * x.sqrt()),
        UnaryOp::Square => 2.0 * x,
        UnaryOp::Reciprocal => -1.0 / (x * x),
        UnaryOp::Erf => std::f32::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Sign => 0.0,
        UnaryOp::Sin => x.cos(),
        UnaryOp::Cos => -x.sin(),
        UnaryOp::Relu => f32::from(x > 0.0),
        UnaryOp::Relu6 => f32::from(x > 0.0 && x < 6.0),
        UnaryOp::ReluClip { max_value, negative_slope, threshold } => {
            let above = if threshold != 0.0 { x > threshold } else { x > 0.0 };
            let capped = max_value.is_some_and(|m| x >= m);
            let mut d = if above && !capped { 1.0 } else { 0.0 };
            if negative_slope != 0.0 && x < threshold {
                d += negative_slope;
            }
            d
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x >= 0.0 {
                1.0
            } else {
                alpha
            }
        }
        UnaryOp::Elu { alpha } => {
            if x > 0.0 {
                1.0
            } else {
                alpha * x.exp()
            }
        }
        UnaryOp::Selu => {
            if x > 0.0 {
                SELU_SCALE
            } else {
                SELU_SCALE * SELU_ALPHA * x.exp()
            }
        }
        UnaryOp::ThresholdedRelu { theta } => f32::from(x > theta),
        UnaryOp::Sigmoid => {
            let sg = sg();
            sg * (1.0 - sg)
        }
        UnaryOp::HardSigmoid => {
            if x > -3.0 && x < 3.0 {
                1.0 / 6.0
            } else {
                0.0
            }
        }
        UnaryOp::HardSigmoidLegacy => {
            if x > -2.5 && x < 2.5 {
                0.2
            } else {
                0.0
            }
        }
        UnaryOp::HardSilu => {
            if x < -3.0 {
                0.0
            } else if x > 3.0 {
                1.0
            } else {
                (2.0 * x + 3.0) / 6.0
            }
        }
        UnaryOp::Tanh => 1.0 - x.tanh().powi(2),
        UnaryOp::Softplus => sg(),
        UnaryOp::Softsign => 1.0 / (1.0 + x.abs()).powi(2),
        UnaryOp::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
            cdf + x * pdf
        }
        UnaryOp::GeluTanh => {
            let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
            let t = u.tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x)
        }
        UnaryOp::Silu => {
            let sg = sg();
            sg * (1.0 + x * (1.0 - sg))
        }
        UnaryOp::Mish => {
            let sp = softplus(x);
            let t = sp.tanh();
            t + x * (1.0 - t * t) * sg()
        }
        UnaryOp::Affine { scale, .. } => scale,
        UnaryOp::Clip { lo, hi } => f32::from(x > lo && x < hi),
    }
}

pub(crate) fn binary_partial(op: BinaryOp, wrt: usize, a: f32, b: f32) -> f32 {
    match (op, wrt) {
        (BinaryOp::Add, _) => 1.0,
        (BinaryOp::Sub, 0) => 1.0,
        (BinaryOp::Sub, _) => -1.0,
        (BinaryOp::Mul, 0) => b,
        (BinaryOp::Mul, _) => a,
        (BinaryOp::Div, 0) => 1.0 / b,
        (BinaryOp::Div, _) => -a / (b * b),
        (BinaryOp::Max, 0) => f32::from(a >= b),
        (BinaryOp::Max, _) => f32::from(b > a),
        (BinaryOp::Min, 0) => f32::from(a <= b),
        (BinaryOp::Min, _) => f32::from(b < a),
        (BinaryOp::Pow, 0) => b * a.powf(b - 1.0),
        (BinaryOp::Pow, _) => a.powf(b) * a.ln(),
    }
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
}
