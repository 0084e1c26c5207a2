//! CPU kernels of the training ops: derivatives of element-wise functions, the backward passes
//! of convolution and pooling, broadcasting, and softmax cross-entropy with its gradient.

use super::elementwise::{broadcast_strides, sigmoid, softplus, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI};
use super::{f32s, strides, tensor};
use crate::RuntimeError;
use ir::{BinaryOp, ConvAttrs, Op, PoolAttrs, PoolKind, Tensor, UnaryOp};

/// `f'(x)` for every unary op (subgradient 0 at kinks, as TensorFlow).
pub fn unary_derivative(op: UnaryOp, x: f32) -> f32 {
    let sg = sigmoid(x);
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
        UnaryOp::Sigmoid => sg * (1.0 - sg),
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
        UnaryOp::Softplus => sg,
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
        UnaryOp::Silu => sg * (1.0 + x * (1.0 - sg)),
        UnaryOp::Mish => {
            let sp = softplus(x);
            let t = sp.tanh();
            t + x * (1.0 - t * t) * sg
        }
        UnaryOp::Affine { scale, .. } => scale,
        UnaryOp::Clip { lo, hi } => f32::from(x > lo && x < hi),
    }
}

/// The output index space of `out_shape` mapped to flat offsets into an operand of `shape`.
fn broadcast_index(shape: &[usize], out_shape: &[usize]) -> impl Fn(usize) -> usize {
    let st = broadcast_strides(shape, out_shape);
    let out_st = strides(out_shape);
    let dims = out_shape.to_vec();
    move |i| {
        let mut off = 0;
        for ax in 0..dims.len() {
            off += ((i / out_st[ax]) % dims[ax].max(1)) * st[ax];
        }
        off
    }
}

fn binary_partial(op: BinaryOp, wrt: usize, a: f32, b: f32) -> f32 {
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

/// Runs one training op.
pub fn run_grad_op(op: &Op, inputs: &[&Tensor], out_shape: &[usize]) -> Result<Tensor, RuntimeError> {
    let n: usize = out_shape.iter().product();
    match op {
        Op::BroadcastTo => {
            let v = f32s(op, inputs[0])?;
            let idx = broadcast_index(inputs[0].shape(), out_shape);
            tensor(out_shape, (0..n).map(|i| v[idx(i)]).collect())
        }
        Op::GatherGrad { axis, .. } => {
            let ids: Vec<i64> = inputs[0].to_f64_vec().iter().map(|&v| v as i64).collect();
            let dy = f32s(op, inputs[1])?;
            let (outer, d, inner) = (
                out_shape[..*axis].iter().product::<usize>(),
                out_shape[*axis],
                out_shape[*axis + 1..].iter().product::<usize>(),
            );
            let mut dx = vec![0f32; n];
            for o in 0..outer {
                for (k, &i) in ids.iter().enumerate() {
                    if i < 0 || i as usize >= d {
                        return Err(RuntimeError::kernel(op, format!("index {i} is out of range [0, {d})")));
                    }
                    let src = &dy[(o * ids.len() + k) * inner..(o * ids.len() + k + 1) * inner];
                    let dst = &mut dx[(o * d + i as usize) * inner..(o * d + i as usize + 1) * inner];
                    dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                }
            }
            tensor(out_shape, dx)
        }
        Op::MeanGrad { axes } => {
            let v = f32s(op, inputs[0])?;
            let idx = broadcast_index(inputs[0].shape(), out_shape);
            let count: usize = axes.iter().map(|&a| out_shape[a]).product();
            let inv = 1.0 / count.max(1) as f32;
            tensor(out_shape, (0..n).map(|i| v[idx(i)] * inv).collect())
        }
        Op::UnaryGrad(u) => {
            let (x, dy) = (f32s(op, inputs[0])?, f32s(op, inputs[1])?);
            tensor(out_shape, x.iter().zip(dy).map(|(&x, &d)| d * unary_derivative(*u, x)).collect())
        }
        Op::BinaryGrad { op: b, wrt } => {
            let (a, bb, dy) = (f32s(op, inputs[0])?, f32s(op, inputs[1])?, f32s(op, inputs[2])?);
            let ia = broadcast_index(inputs[0].shape(), out_shape);
            let ib = broadcast_index(inputs[1].shape(), out_shape);
            tensor(out_shape, (0..n).map(|i| dy[i] * binary_partial(*b, *wrt, a[ia(i)], bb[ib(i)])).collect())
        }
        Op::ConvInputGrad { conv, .. } => conv_input_grad(op, conv, inputs[0], inputs[1], out_shape),
        Op::ConvFilterGrad { conv, .. } => conv_filter_grad(op, conv, inputs[0], inputs[1], out_shape),
        Op::PoolGrad(a) => pool_grad(op, a, inputs[0], inputs[1]),
        Op::SoftmaxCrossEntropy { sparse } => cross_entropy(op, *sparse, inputs[0], inputs[1], None, out_shape),
        Op::SoftmaxCrossEntropyGrad { sparse } => {
            cross_entropy(op, *sparse, inputs[0], inputs[1], Some(inputs[2]), out_shape)
        }
        _ => Err(RuntimeError::kernel(op, "not a training op")),
    }
}

/// Convolution geometry lifted to three spatial axes.
struct Geo {
    n: usize,
    inp: [usize; 3],
    out: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    d: [usize; 3],
    p: [usize; 3],
    c: usize,
    f: usize,
    groups: usize,
}

fn lift(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

fn geo(a: &ConvAttrs, x: &[usize], w: &[usize], y: &[usize]) -> Geo {
    let r = a.strides.len();
    Geo {
        n: x[0],
        inp: lift(&x[1..=r], 1),
        out: lift(&y[1..=r], 1),
        k: lift(&w[..r], 1),
        s: lift(&a.strides, 1),
        d: lift(&a.dilations, 1),
        p: lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
        c: x[r + 1],
        f: w[r + 1],
        groups: a.groups.max(1),
    }
}

/// Calls `f(x_offset, w_offset, y_offset)` for every multiply-add of the convolution.
fn conv_taps(g: &Geo, mut f: impl FnMut(usize, usize, usize)) {
    let (cg, fg) = (g.c / g.groups, g.f / g.groups);
    for n in 0..g.n {
        for oz in 0..g.out[0] {
            for oy in 0..g.out[1] {
                for ox in 0..g.out[2] {
                    let yb = (((n * g.out[0] + oz) * g.out[1] + oy) * g.out[2] + ox) * g.f;
                    for kz in 0..g.k[0] {
                        let iz = (oz * g.s[0] + kz * g.d[0]) as isize - g.p[0] as isize;
                        if iz < 0 || iz as usize >= g.inp[0] {
                            continue;
                        }
                        for ky in 0..g.k[1] {
                            let iy = (oy * g.s[1] + ky * g.d[1]) as isize - g.p[1] as isize;
                            if iy < 0 || iy as usize >= g.inp[1] {
                                continue;
                            }
                            for kx in 0..g.k[2] {
                                let ix = (ox * g.s[2] + kx * g.d[2]) as isize - g.p[2] as isize;
                                if ix < 0 || ix as usize >= g.inp[2] {
                                    continue;
                                }
                                let xb = (((n * g.inp[0] + iz as usize) * g.inp[1] + iy as usize) * g.inp[2]
                                    + ix as usize)
                                    * g.c;
                                let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                                for grp in 0..g.groups {
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

fn conv_input_grad(op: &Op, a: &ConvAttrs, dy: &Tensor, w: &Tensor, x_shape: &[usize]) -> Result<Tensor, RuntimeError> {
    let (dys, ws) = (f32s(op, dy)?, f32s(op, w)?);
    let g = geo(a, x_shape, w.shape(), dy.shape());
    let mut dx = vec![0f32; x_shape.iter().product()];
    conv_taps(&g, |xo, wo, yo| dx[xo] += dys[yo] * ws[wo]);
    tensor(x_shape, dx)
}

fn conv_filter_grad(
    op: &Op,
    a: &ConvAttrs,
    x: &Tensor,
    dy: &Tensor,
    w_shape: &[usize],
) -> Result<Tensor, RuntimeError> {
    let (xs, dys) = (f32s(op, x)?, f32s(op, dy)?);
    let g = geo(a, x.shape(), w_shape, dy.shape());
    let mut dw = vec![0f32; w_shape.iter().product()];
    conv_taps(&g, |xo, wo, yo| dw[wo] += xs[xo] * dys[yo]);
    tensor(w_shape, dw)
}

fn pool_grad(op: &Op, a: &PoolAttrs, x: &Tensor, dy: &Tensor) -> Result<Tensor, RuntimeError> {
    let (xs, dys) = (f32s(op, x)?, f32s(op, dy)?);
    let r = a.window.len();
    let (sh, ysh) = (x.shape(), dy.shape());
    let (inp, out, k, s, p) = (
        lift(&sh[1..=r], 1),
        lift(&ysh[1..=r], 1),
        lift(&a.window, 1),
        lift(&a.strides, 1),
        lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
    );
    let c = sh[r + 1];
    let mut dx = vec![0f32; xs.len()];
    for n in 0..sh[0] {
        for o in 0..out.iter().product::<usize>() {
            let (oz, oy, ox) = (o / (out[1] * out[2]), (o / out[2]) % out[1], o % out[2]);
            for ch in 0..c {
                let mut cells = Vec::new();
                for kz in 0..k[0] {
                    let iz = (oz * s[0] + kz) as isize - p[0] as isize;
                    for ky in 0..k[1] {
                        let iy = (oy * s[1] + ky) as isize - p[1] as isize;
                        for kx in 0..k[2] {
                            let ix = (ox * s[2] + kx) as isize - p[2] as isize;
                            let inside = iz >= 0
                                && iy >= 0
                                && ix >= 0
                                && (iz as usize) < inp[0]
                                && (iy as usize) < inp[1]
                                && (ix as usize) < inp[2];
                            if inside {
                                let xi = (((n * inp[0] + iz as usize) * inp[1] + iy as usize) * inp[2] + ix as usize)
                                    * c
                                    + ch;
                                cells.push(xi);
                            }
                        }
                    }
                }
                let g = dys[(n * out.iter().product::<usize>() + o) * c + ch];
                match a.kind {
                    PoolKind::Max => {
                        // The first maximum takes the gradient.
                        let mut best: Option<usize> = None;
                        for &xi in &cells {
                            if best.is_none_or(|b| xs[xi] > xs[b]) {
                                best = Some(xi);
                            }
                        }
                        if let Some(b) = best {
                            dx[b] += g;
                        }
                    }
                    PoolKind::Avg => {
                        let share = g / cells.len().max(1) as f32;
                        for &xi in &cells {
                            dx[xi] += share;
                        }
                    }
                }
            }
        }
    }
    tensor(sh, dx)
}

fn cross_entropy(
    op: &Op,
    sparse: bool,
    logits: &Tensor,
    labels: &Tensor,
    dloss: Option<&Tensor>,
    out_shape: &[usize],
) -> Result<Tensor, RuntimeError> {
    let z = f32s(op, logits)?;
    let c = *logits.shape().last().unwrap_or(&1);
    let rows = z.len() / c.max(1);
    let ids: Vec<i64> = if sparse { labels.to_f64_vec().iter().map(|&v| v as i64).collect() } else { Vec::new() };
    let probs: Vec<f32> = if sparse { Vec::new() } else { labels.to_f32_vec() };
    let dl = match dloss {
        Some(t) => Some(f32s(op, t)?),
        None => None,
    };
    let mut out = vec![0f32; out_shape.iter().product()];
    for r in 0..rows {
        let zr = &z[r * c..(r + 1) * c];
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = zr.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + sum.ln();
        if sparse && (ids[r] < 0 || ids[r] as usize >= c) {
            return Err(RuntimeError::kernel(op, format!("label {} is out of range [0, {c})", ids[r])));
        }
        match dl {
            None => {
                out[r] = if sparse {
                    lse - zr[ids[r] as usize]
                } else {
                    -(0..c).map(|j| probs[r * c + j] * (zr[j] - lse)).sum::<f32>()
                };
            }
            Some(dl) => {
                // d/dz_j of -Σ p·(z − lse) is (Σp)·softmax_j − p_j (Σp = 1 for one-hot labels).
                let mass: f32 = if sparse { 1.0 } else { probs[r * c..(r + 1) * c].iter().sum() };
                for j in 0..c {
                    let sm = (zr[j] - lse).exp();
                    let target = if sparse { f32::from(ids[r] as usize == j) } else { probs[r * c + j] };
                    out[r * c + j] = (mass * sm - target) * dl[r];
                }
            }
        }
    }
    tensor(out_shape, out)
}
