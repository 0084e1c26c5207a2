//! Element-wise `keras.ops`: math and `nn` functions, arithmetic with broadcasting,
//! comparisons and logic (as 0/1 floats), where, cast, clip, the `*_like` fills.

use super::args::{arg, args, axis_of, main_input, operand, to_f32, Arg};
use crate::keras::layers::ctx::{cfg_bool, cfg_f32, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, DType, Op, ReduceKind, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

/// The element-wise op of a `keras.ops` class (`None`: not one); a bad parameter is an error.
pub(super) fn unary_op(class: &str, c: &Value) -> Result<Option<UnaryOp>, String> {
    Ok(Some(match class {
        "Negative" => UnaryOp::Neg,
        "Absolute" | "Abs" => UnaryOp::Abs,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Rsqrt" => UnaryOp::Rsqrt,
        "Square" => UnaryOp::Square,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Erf" => UnaryOp::Erf,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Sign" => UnaryOp::Sign,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tanh" => UnaryOp::Tanh,
        "Relu" => UnaryOp::Relu,
        "Relu6" => UnaryOp::Relu6,
        "Sigmoid" => UnaryOp::Sigmoid,
        "HardSigmoid" => UnaryOp::HardSigmoid,
        "HardSilu" | "HardSwish" => UnaryOp::HardSilu,
        "Silu" | "Swish" => UnaryOp::Silu,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Selu" => UnaryOp::Selu,
        "Mish" => UnaryOp::Mish,
        "Elu" => UnaryOp::Elu { alpha: cfg_f32(c, "alpha", 1.0)? },
        "LeakyRelu" => UnaryOp::LeakyRelu { alpha: cfg_f32(c, "negative_slope", 0.2)? },
        "Gelu" => {
            if cfg_bool(c, "approximate", true) {
                UnaryOp::GeluTanh
            } else {
                UnaryOp::Gelu
            }
        }
        // Composites, lowered in `unary`.
        "Log1p" | "Expm1" | "LogSigmoid" => UnaryOp::Identity,
        _ => return Ok(None),
    }))
}

pub(super) fn unary(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let y = match lc.class {
        "Log1p" => {
            let p = ctx.unary(lc, "plus1", UnaryOp::Affine { scale: 1.0, offset: 1.0 }, x)?;
            ctx.unary(lc, "", UnaryOp::Log, p)?
        }
        "Expm1" => {
            let e = ctx.unary(lc, "exp", UnaryOp::Exp, x)?;
            ctx.unary(lc, "", UnaryOp::Affine { scale: 1.0, offset: -1.0 }, e)?
        }
        "LogSigmoid" => {
            // log σ(x) = −softplus(−x)
            let n = ctx.unary(lc, "neg", UnaryOp::Neg, x)?;
            let s = ctx.unary(lc, "softplus", UnaryOp::Softplus, n)?;
            ctx.unary(lc, "", UnaryOp::Neg, s)?
        }
        c => {
            let u = unary_op(c, lc.config)
                .map_err(|e| ctx.err(lc, e))?
                .ok_or_else(|| ctx.err(lc, "not an element-wise op"))?;
            ctx.unary(lc, "", u, x)?
        }
    };
    Ok(vec![y])
}

pub(super) fn binary(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let (x, y) = (arg(ctx, lc, &a, 0)?.clone(), arg(ctx, lc, &a, 1)?.clone());
    let x = operand(ctx, lc, &x, 0)?;
    let y = operand(ctx, lc, &y, 1)?;
    let out = match lc.class {
        "Add" => ctx.binary(lc, "", BinaryOp::Add, x, y)?,
        "Subtract" => ctx.binary(lc, "", BinaryOp::Sub, x, y)?,
        "Multiply" => ctx.binary(lc, "", BinaryOp::Mul, x, y)?,
        "Divide" | "TrueDivide" => ctx.binary(lc, "", BinaryOp::Div, x, y)?,
        "Power" => ctx.binary(lc, "", BinaryOp::Pow, x, y)?,
        "Maximum" => ctx.binary(lc, "", BinaryOp::Max, x, y)?,
        "Minimum" => ctx.binary(lc, "", BinaryOp::Min, x, y)?,
        "FloorDivide" => {
            let q = ctx.binary(lc, "div", BinaryOp::Div, x, y)?;
            ctx.unary(lc, "", UnaryOp::Floor, q)?
        }
        _ => ctx.floor_mod(lc, "", x, y)?,
    };
    Ok(vec![out])
}

/// Comparisons and logic (NotEqual, LogicalOr, Any, ...) as arithmetic on float 0/1:
/// `a != b` is `|sign(a − b)|`.
pub(super) fn logic(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let x = operand(ctx, lc, arg(ctx, lc, &a, 0)?, 0)?;
    let not = UnaryOp::Affine { scale: -1.0, offset: 1.0 };
    let y = match lc.class {
        "LogicalNot" => ctx.unary(lc, "", not, x)?,
        "Any" | "All" => {
            let r = ctx.rank(x);
            let kw = |k: &str| lc.config.get(k).or_else(|| lc.call.and_then(|c| c.kwargs.get(k)));
            let axes = axis_of(ctx, lc, kw("axis"), r)?.unwrap_or_else(|| (0..r).collect());
            let keepdims = kw("keepdims").and_then(Value::as_bool).unwrap_or(false);
            let s = ctx.unary(lc, "nonzero", UnaryOp::Abs, x)?;
            let s = ctx.unary(lc, "nonzero_sign", UnaryOp::Sign, s)?;
            let kind = if lc.class == "Any" { ReduceKind::Max } else { ReduceKind::Min };
            ctx.node(lc, "", Op::Reduce { kind, axes, keepdims }, &[s])?
        }
        _ => {
            let b = operand(ctx, lc, arg(ctx, lc, &a, 1)?, 1)?;
            match lc.class {
                "LogicalOr" => ctx.binary(lc, "", BinaryOp::Max, x, b)?,
                "LogicalAnd" => ctx.binary(lc, "", BinaryOp::Mul, x, b)?,
                _ => {
                    // d > 0 exactly when the relation holds.
                    let (p, q) = if matches!(lc.class, "Less" | "GreaterEqual") { (b, x) } else { (x, b) };
                    let d = ctx.binary(lc, "diff", BinaryOp::Sub, p, q)?;
                    let s = ctx.unary(lc, "sign", UnaryOp::Sign, d)?;
                    match lc.class {
                        "Greater" | "Less" => ctx.unary(lc, "", UnaryOp::Relu, s)?,
                        "NotEqual" => ctx.unary(lc, "", UnaryOp::Abs, s)?,
                        "Equal" => {
                            let m = ctx.unary(lc, "abs", UnaryOp::Abs, s)?;
                            ctx.unary(lc, "", not, m)?
                        }
                        // a >= b: not (a < b); a <= b: not (a > b).
                        _ => {
                            let gt = ctx.unary(lc, "strict", UnaryOp::Relu, s)?;
                            ctx.unary(lc, "", not, gt)?
                        }
                    }
                }
            }
        }
    };
    Ok(vec![y])
}

pub(super) fn identity(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    match a.first() {
        Some(Arg::T(v)) => Ok(vec![*v]),
        _ => Err(ctx.err(lc, "expects a tensor")),
    }
}

pub(super) fn clip(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let a = args(ctx, lc)?;
    // Bounds from the config (Keras 3) or, failing that, the call.
    let bound = |k: &str, i: usize, default: f32| -> f32 {
        match lc.config.get(k).and_then(Value::as_f64) {
            Some(v) => v as f32,
            None => match a.get(i) {
                Some(Arg::Num(v)) => *v as f32,
                _ => default,
            },
        }
    };
    let (lo, hi) = (bound("x_min", 1, f32::NEG_INFINITY), bound("x_max", 2, f32::INFINITY));
    Ok(vec![ctx.unary(lc, "", UnaryOp::Clip { lo, hi }, x)?])
}

/// `where(c, x, y)` as `y + c·(x − y)` on 0/1 conditions (infinite constants are clamped to the
/// largest finite floats so that the product stays finite).
pub(super) fn select(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    if a.len() != 3 {
        return Err(ctx.err(lc, "where(condition) without x and y (the indices of nonzero elements) is not supported"));
    }
    let c = operand(ctx, lc, &a[0], 0)?;
    let c = ctx.unary(lc, "cond", UnaryOp::Abs, c)?;
    let c = ctx.unary(lc, "cond01", UnaryOp::Sign, c)?;
    let x = operand(ctx, lc, &a[1], 1)?;
    let y = operand(ctx, lc, &a[2], 2)?;
    let nc = ctx.unary(lc, "not_cond", UnaryOp::Affine { scale: -1.0, offset: 1.0 }, c)?;
    let px = ctx.binary(lc, "x", BinaryOp::Mul, c, x)?;
    let py = ctx.binary(lc, "y", BinaryOp::Mul, nc, y)?;
    Ok(vec![ctx.binary(lc, "", BinaryOp::Add, px, py)?])
}

pub(super) fn cast(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let dtype = lc.config.get("dtype").and_then(Value::as_str).unwrap_or("float32");
    let to = match dtype {
        "float32" | "float16" | "bfloat16" | "float64" => DType::F32,
        "int32" | "int16" | "int8" | "uint8" | "uint16" => DType::I32,
        "int64" | "uint32" | "uint64" => DType::I64,
        "bool" => {
            let f = to_f32(ctx, lc, x, "float")?;
            let m = ctx.unary(lc, "abs", UnaryOp::Abs, f)?;
            return Ok(vec![ctx.unary(lc, "", UnaryOp::Sign, m)?]);
        }
        other => return Err(ctx.err(lc, format!("cast to {other} is not supported"))),
    };
    if ctx.g.value(x).ty.dtype == to {
        return Ok(vec![x]);
    }
    Ok(vec![ctx.node(lc, "", Op::Cast { to }, &[x])?])
}

pub(super) fn like(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let x = operand(ctx, lc, arg(ctx, lc, &a, 0)?, 0)?;
    let v = match lc.class {
        "ZerosLike" => 0.0,
        "OnesLike" => 1.0,
        _ => match a.get(1) {
            Some(Arg::Num(v)) => *v as f32,
            _ => return Err(ctx.err(lc, "full_like needs a number fill value")),
        },
    };
    Ok(vec![ctx.unary(lc, "", UnaryOp::Affine { scale: 0.0, offset: v }, x)?])
}
