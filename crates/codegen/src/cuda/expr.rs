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
