//! The table from IR element-wise ops to C expressions, shared by every kernel that applies
//! an activation or evaluates a fused expression.

use ir::{BinaryOp, ExprNode, FusedExpr, UnaryOp};

/// A float literal in C (`1.5f`, or a bit pattern for infinities and NaN).
pub fn lit(x: f32) -> String {
    if x.is_finite() {
        format!("{x:?}f")
    } else {
        format!("__int_as_float(0x{:08x})", x.to_bits())
    }
}

/// `u` applied to the C expression `x` (which must be side-effect free; it may be repeated).
pub fn unary(u: UnaryOp, x: &str) -> String {
    match u {
        UnaryOp::Identity => format!("({x})"),
        UnaryOp::Neg => format!("(-({x}))"),
        UnaryOp::Abs => format!("fabsf({x})"),
        UnaryOp::Exp => format!("expf({x})"),
        UnaryOp::Log => format!("logf({x})"),
        UnaryOp::Sqrt => format!("sqrtf({x})"),
        UnaryOp::Rsqrt => format!("(1.f / sqrtf({x}))"),
        UnaryOp::Square => format!("(({x}) * ({x}))"),
        UnaryOp::Reciprocal => format!("(1.f / ({x}))"),
        UnaryOp::Erf => format!("erff({x})"),
        UnaryOp::Floor => format!("floorf({x})"),
        UnaryOp::Ceil => format!("ceilf({x})"),
        UnaryOp::Sign => format!("kc_sign({x})"),
        UnaryOp::Sin => format!("sinf({x})"),
        UnaryOp::Cos => format!("cosf({x})"),
        UnaryOp::Relu => format!("fmaxf({x}, 0.f)"),
        UnaryOp::Relu6 => format!("fminf(fmaxf({x}, 0.f), 6.f)"),
        UnaryOp::ReluClip { max_value, negative_slope, threshold } => format!(
            "kc_relu_clip({x}, {}, {}, {}, {})",
            lit(max_value.unwrap_or(0.0)),
            i32::from(max_value.is_some()),
            lit(negative_slope),
            lit(threshold)
        ),
        UnaryOp::LeakyRelu { alpha } => format!("(({x}) >= 0.f ? ({x}) : {} * ({x}))", lit(alpha)),
        UnaryOp::Elu { alpha } => format!("(({x}) > 0.f ? ({x}) : {} * expm1f({x}))", lit(alpha)),
        UnaryOp::Selu => format!("(({x}) > 0.f ? 1.050701f * ({x}) : 1.7580993f * expm1f({x}))"),
        UnaryOp::ThresholdedRelu { theta } => format!("(({x}) > {} ? ({x}) : 0.f)", lit(theta)),
        UnaryOp::Sigmoid => format!("kc_sigmoid({x})"),
        UnaryOp::HardSigmoid => format!("kc_hard_sigmoid({x})"),
        UnaryOp::HardSigmoidLegacy => format!("fminf(fmaxf(0.2f * ({x}) + 0.5f, 0.f), 1.f)"),
        UnaryOp::HardSilu => format!("(({x}) * kc_hard_sigmoid({x}))"),
        UnaryOp::Tanh => format!("tanhf({x})"),
        UnaryOp::Softplus => format!("kc_softplus({x})"),
        UnaryOp::Softsign => format!("(({x}) / (1.f + fabsf({x})))"),
        UnaryOp::Gelu => format!("(0.5f * ({x}) * (1.f + erff(({x}) * 0.70710677f)))"),
        UnaryOp::GeluTanh => {
            format!("(0.5f * ({x}) * (1.f + tanhf(0.7978846f * (({x}) + 0.044715f * ({x}) * ({x}) * ({x})))))")
        }
        UnaryOp::Silu => format!("(({x}) * kc_sigmoid({x}))"),
        UnaryOp::Mish => format!("(({x}) * tanhf(kc_softplus({x})))"),
        UnaryOp::Affine { scale, offset } => format!("(({x}) * {} + {})", lit(scale), lit(offset)),
        UnaryOp::Clip { lo, hi } => format!("fminf(fmaxf({x}, {}), {})", lit(lo), lit(hi)),
    }
}

/// `b` applied to the C expressions `x` and `y`.
pub fn binary(b: BinaryOp, x: &str, y: &str) -> String {
    match b {
        BinaryOp::Add => format!("({x} + {y})"),
        BinaryOp::Sub => format!("({x} - {y})"),
        BinaryOp::Mul => format!("({x} * {y})"),
        BinaryOp::Div => format!("({x} / {y})"),
        BinaryOp::Max => format!("fmaxf({x}, {y})"),
        BinaryOp::Min => format!("fminf({x}, {y})"),
        BinaryOp::Pow => format!("powf({x}, {y})"),
    }
}

/// The statements computing a fused expression: one `const float e{k}` per step, operands read
/// through `input(k)`; returns the statements and the name of the result.
pub fn fused(e: &FusedExpr, input: impl Fn(usize) -> String) -> (String, String) {
    let mut s = String::new();
    for (k, n) in e.nodes.iter().enumerate() {
        let rhs = match *n {
            ExprNode::Input(i) => input(i),
            ExprNode::Const(c) => lit(c),
            ExprNode::Unary(u, a) => unary(u, &format!("e{a}")),
            ExprNode::Binary(b, x, y) => binary(b, &format!("e{x}"), &format!("e{y}")),
        };
        s.push_str(&format!("    const float e{k} = {rhs};\n"));
    }
    (s, format!("e{}", e.nodes.len().saturating_sub(1)))
}

/// `f'(x)` of `u` as C, for a plain variable `x` (subgradient 0 at kinks, as the CPU kernels
/// and TensorFlow); the backward table of [`unary`].
pub fn unary_derivative(u: UnaryOp, x: &str) -> String {
    match u {
        UnaryOp::Identity => "1.f".into(),
        UnaryOp::Neg => "-1.f".into(),
        UnaryOp::Abs => format!("kc_sign({x})"),
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Sign => "0.f".into(),
        UnaryOp::Exp => format!("expf({x})"),
        UnaryOp::Log => format!("(1.f / {x})"),
        UnaryOp::Sqrt => format!("(0.5f / sqrtf({x}))"),
        UnaryOp::Rsqrt => format!("(-0.5f / ({x} * sqrtf({x})))"),
        UnaryOp::Square => format!("(2.f * {x})"),
        UnaryOp::Reciprocal => format!("(-1.f / ({x} * {x}))"),
        UnaryOp::Erf => format!("(1.1283792f * expf(-{x} * {x}))"),
        UnaryOp::Sin => format!("cosf({x})"),
        UnaryOp::Cos => format!("(-sinf({x}))"),
        UnaryOp::Relu => format!("({x} > 0.f ? 1.f : 0.f)"),
        UnaryOp::Relu6 => format!("({x} > 0.f && {x} < 6.f ? 1.f : 0.f)"),
        UnaryOp::ReluClip { max_value, negative_slope, threshold } => {
            let above = if threshold != 0.0 { format!("{x} > {}", lit(threshold)) } else { format!("{x} > 0.f") };
            let capped = match max_value {
                Some(m) => format!("{x} >= {}", lit(m)),
                None => "false".into(),
            };
            let leak = if negative_slope != 0.0 {
                format!(" + ({x} < {} ? {} : 0.f)", lit(threshold), lit(negative_slope))
            } else {
                String::new()
            };
            format!("((({above}) && !({capped}) ? 1.f : 0.f){leak})")
        }
        UnaryOp::LeakyRelu { alpha } => format!("({x} >= 0.f ? 1.f : {})", lit(alpha)),
        UnaryOp::Elu { alpha } => format!("({x} > 0.f ? 1.f : {} * expf({x}))", lit(alpha)),
        UnaryOp::Selu => format!("({x} > 0.f ? 1.050701f : 1.7580993f * expf({x}))"),
        UnaryOp::ThresholdedRelu { theta } => format!("({x} > {} ? 1.f : 0.f)", lit(theta)),
        UnaryOp::Sigmoid => format!("(kc_sigmoid({x}) * (1.f - kc_sigmoid({x})))"),
        UnaryOp::HardSigmoid => format!("({x} > -3.f && {x} < 3.f ? 0.16666667f : 0.f)"),
        UnaryOp::HardSigmoidLegacy => format!("({x} > -2.5f && {x} < 2.5f ? 0.2f : 0.f)"),
        UnaryOp::HardSilu => format!("({x} < -3.f ? 0.f : ({x} > 3.f ? 1.f : (2.f * {x} + 3.f) / 6.f))"),
        UnaryOp::Tanh => format!("(1.f - tanhf({x}) * tanhf({x}))"),
        UnaryOp::Softplus => format!("kc_sigmoid({x})"),
        UnaryOp::Softsign => format!("(1.f / ((1.f + fabsf({x})) * (1.f + fabsf({x}))))"),
        UnaryOp::Gelu => format!(
            "(0.5f * (1.f + erff({x} * 0.70710677f)) + {x} * expf(-0.5f * {x} * {x}) * 0.39894228f)"
        ),
        UnaryOp::GeluTanh => format!(
            "(0.5f * (1.f + tanhf(0.7978846f * ({x} + 0.044715f * {x} * {x} * {x}))) + 0.5f * {x} * (1.f - tanhf(0.7978846f * ({x} + 0.044715f * {x} * {x} * {x})) * tanhf(0.7978846f * ({x} + 0.044715f * {x} * {x} * {x}))) * 0.7978846f * (1.f + 0.134145f * {x} * {x}))"
        ),
        UnaryOp::Silu => format!("(kc_sigmoid({x}) * (1.f + {x} * (1.f - kc_sigmoid({x}))))"),
        UnaryOp::Mish => format!(
            "(tanhf(kc_softplus({x})) + {x} * (1.f - tanhf(kc_softplus({x})) * tanhf(kc_softplus({x}))) * kc_sigmoid({x}))"
        ),
        UnaryOp::Affine { scale, .. } => lit(scale),
        UnaryOp::Clip { lo, hi } => format!("({x} > {} && {x} < {} ? 1.f : 0.f)", lit(lo), lit(hi)),
    }
}

/// ∂(x ∘ y)/∂(operand `wrt`) as C, for plain variables `x` and `y`.
pub fn binary_partial(b: BinaryOp, wrt: usize, x: &str, y: &str) -> String {
    match (b, wrt) {
        (BinaryOp::Add, _) => "1.f".into(),
        (BinaryOp::Sub, 0) => "1.f".into(),
        (BinaryOp::Sub, _) => "-1.f".into(),
        (BinaryOp::Mul, 0) => y.into(),
        (BinaryOp::Mul, _) => x.into(),
        (BinaryOp::Div, 0) => format!("(1.f / {y})"),
        (BinaryOp::Div, _) => format!("(-{x} / ({y} * {y}))"),
        (BinaryOp::Max, 0) => format!("({x} >= {y} ? 1.f : 0.f)"),
        (BinaryOp::Max, _) => format!("({y} > {x} ? 1.f : 0.f)"),
        (BinaryOp::Min, 0) => format!("({x} <= {y} ? 1.f : 0.f)"),
        (BinaryOp::Min, _) => format!("({y} < {x} ? 1.f : 0.f)"),
        (BinaryOp::Pow, 0) => format!("({y} * powf({x}, {y} - 1.f))"),
        (BinaryOp::Pow, _) => format!("(powf({x}, {y}) * logf({x}))"),
    }
}
