//! Keras 3 `keras.ops` calls recorded as layers of a functional model (`module` is
//! `keras.src.ops.*`): `x / 255.0`, `ops.mean(x, axis=1)`, `x[:, -1]`, `ops.einsum(...)`. Their
//! attributes are in the layer config; their operands (tensors, Python numbers, constant tensors,
//! slices) in the call's positional arguments. Keras does not carry masks through them.

use super::{cfg_bool, cfg_f32, norm_axis, Ctx, LayerCall, LowerFn};
use crate::FrontendError;
use ir::{BinaryOp, DType, Dim, Op, ReduceKind, Tensor, TensorData, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

/// The table of supported `keras.ops` classes.
pub(crate) fn registry(class: &str) -> Option<LowerFn> {
    Some(match class {
        "Add" | "Subtract" | "Multiply" | "Divide" | "TrueDivide" | "Power" | "Maximum" | "Minimum" | "FloorDivide"
        | "Mod" => binary,
        "NotEqual" | "Equal" | "Greater" | "GreaterEqual" | "Less" | "LessEqual" | "LogicalOr" | "LogicalAnd"
        | "LogicalNot" | "Any" | "All" => logic,
        "ConvertToTensor" | "StopGradient" | "Copy" => identity,
        "Mean" | "Sum" | "Max" | "Min" | "Amax" | "Amin" | "Prod" | "Var" | "Std" | "Norm" => reduce,
        "Reshape" | "ExpandDims" | "Squeeze" => reshape,
        "Transpose" | "Swapaxes" | "Moveaxis" => transpose,
        "Concatenate" | "Stack" => concatenate,
        "Split" => split,
        "GetItem" => get_item,
        "Take" => take,
        "Tile" | "Repeat" | "Flip" => tile_repeat_flip,
        "Clip" => clip,
        "Where" => select,
        "Cast" => cast,
        "ZerosLike" | "OnesLike" | "FullLike" => like,
        "Matmul" | "Dot" => matmul,
        "Einsum" => einsum_layer,
        "Softmax" | "LogSoftmax" => softmax,
        c if unary_op(c, &Value::Null).is_some() => unary,
        _ => return None,
    })
}

// ---- operands -----------------------------------------------------------------------------------

/// One positional argument of an op call.
#[derive(Debug, Clone)]
enum Arg {
    T(ValueId),
    Num(f64),
    Const(Tensor),
    List(Vec<Arg>),
    /// `start:stop:step`
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `None` in an index: a new axis.
    NewAxis,
    Ellipsis,
    Other(String),
}

/// The call's positional arguments, keras tensors resolved to the layer's inputs in order.
fn args(ctx: &Ctx, lc: &LayerCall) -> Result<Vec<Arg>, FrontendError> {
    let raw = lc.call.map(|c| c.raw_args.as_slice()).unwrap_or(&[]);
    if raw.is_empty() {
        return Ok(lc.inputs.iter().map(|&v| Arg::T(v)).collect());
    }
    let mut next = 0;
    raw.iter().map(|a| parse_arg(ctx, lc, a, &mut next, 0)).collect()
}

fn parse_arg(ctx: &Ctx, lc: &LayerCall, a: &Value, next: &mut usize, depth: usize) -> Result<Arg, FrontendError> {
    if depth > 16 {
        return Err(ctx.err(lc, "arguments nested too deeply"));
    }
    Ok(match a {
        Value::Null => Arg::NewAxis,
        Value::Bool(b) => Arg::Num(f64::from(u8::from(*b))),
        Value::Number(n) => Arg::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Arg::Other(s.clone()),
        Value::Array(xs) => {
            Arg::List(xs.iter().map(|x| parse_arg(ctx, lc, x, next, depth + 1)).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => {
            let cfg = o.get("config").unwrap_or(&Value::Null);
            match o.get("class_name").and_then(Value::as_str).unwrap_or("") {
                "__keras_tensor__" => {
                    let v = lc.inputs.get(*next).copied().ok_or_else(|| ctx.err(lc, "missing tensor argument"))?;
                    *next += 1;
                    Arg::T(v)
                }
                "__slice__" => {
                    let f = |k: &str| cfg.get(k).and_then(Value::as_i64);
                    Arg::Slice(f("start"), f("stop"), f("step"))
                }
                "__ellipsis__" => Arg::Ellipsis,
                "__tensor__" | "__numpy__" => Arg::Const(const_tensor(ctx, lc, cfg)?),
                other => Arg::Other(other.to_string()),
            }
        }
    })
}

/// A serialized constant tensor: a nested list of numbers and a dtype.
fn const_tensor(ctx: &Ctx, lc: &LayerCall, cfg: &Value) -> Result<Tensor, FrontendError> {
    let value = cfg.get("value").ok_or_else(|| ctx.err(lc, "constant tensor without a value"))?;
    let mut shape = Vec::new();
    let mut v = value;
    while let Value::Array(a) = v {
        shape.push(a.len());
        match a.first() {
            Some(x) => v = x,
            None => break,
        }
    }
    let n: usize = shape.iter().product();
    let mut flat = Vec::with_capacity(n.min(1 << 24));
    fn walk(v: &Value, out: &mut Vec<f64>) -> bool {
        match v {
            Value::Array(a) => a.iter().all(|x| walk(x, out)),
            Value::Number(x) => {
                out.push(x.as_f64().unwrap_or(f64::NAN));
                true
            }
            Value::Bool(b) => {
                out.push(f64::from(u8::from(*b)));
                true
            }
            _ => false,
        }
    }
    if !walk(value, &mut flat) || flat.len() != n {
        return Err(ctx.err(lc, "a constant tensor argument is not a rectangular array of numbers"));
    }
    let data = match cfg.get("dtype").and_then(Value::as_str).unwrap_or("float32") {
        "int32" | "int16" | "int8" | "uint8" | "uint16" => TensorData::I32(flat.iter().map(|&x| x as i32).collect()),
        "int64" | "uint32" | "uint64" => TensorData::I64(flat.iter().map(|&x| x as i64).collect()),
        _ => TensorData::F32(flat.iter().map(|&x| x as f32).collect()),
    };
    Tensor::new(shape, data).map_err(|e| ctx.err(lc, e.to_string()))
}

/// A float32 value for an operand: a tensor (cast when it is not float32), a number or a constant.
fn operand(ctx: &mut Ctx, lc: &LayerCall, a: &Arg, i: usize) -> Result<ValueId, FrontendError> {
    let v = match a {
        Arg::T(v) => *v,
        // Keras's `where(mask, x, -inf)`-style constants: a product with 0 must stay finite.
        Arg::Num(x) => {
            let x = (*x as f32).clamp(f32::MIN, f32::MAX);
            return Ok(ctx.konst(lc, &format!("arg{i}"), Tensor::scalar(x)));
        }
        Arg::Const(t) => {
            let mut t = t.cast(DType::F32);
            if let Some(d) = t.as_f32_mut() {
                d.iter_mut().for_each(|x| *x = x.clamp(f32::MIN, f32::MAX));
            }
            return Ok(ctx.konst(lc, &format!("arg{i}"), t));
        }
        Arg::Other(what) => return Err(ctx.err(lc, format!("argument {i} ('{what}') is not a tensor or a number"))),
        other => return Err(ctx.err(lc, format!("argument {i} ({other:?}) is not a tensor or a number"))),
    };
    to_f32(ctx, lc, v, &format!("arg{i}/float"))
}

/// As f32 (integers converted, booleans as 0/1).
pub(super) fn to_f32(ctx: &mut Ctx, lc: &LayerCall, v: ValueId, what: &str) -> Result<ValueId, FrontendError> {
    if ctx.g.value(v).ty.dtype == DType::F32 {
        return Ok(v);
    }
    ctx.node(lc, what, Op::Cast { to: DType::F32 }, &[v])
}

fn arg<'a>(ctx: &Ctx, lc: &LayerCall, a: &'a [Arg], i: usize) -> Result<&'a Arg, FrontendError> {
    a.get(i).ok_or_else(|| ctx.err(lc, format!("argument {i} is missing")))
}

/// The first argument as a tensor (the op's main input), as f32.
fn main_input(ctx: &mut Ctx, lc: &LayerCall) -> Result<ValueId, FrontendError> {
    let a = args(ctx, lc)?;
    let x = arg(ctx, lc, &a, 0)?.clone();
    operand(ctx, lc, &x, 0)
}

fn axis_of(ctx: &Ctx, lc: &LayerCall, v: Option<&Value>, rank: usize) -> Result<Option<Vec<usize>>, FrontendError> {
    let bad = || ctx.err(lc, format!("axis {v:?} is out of range for rank {rank}"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(vec![norm_axis(n.as_i64().ok_or_else(bad)?, rank).ok_or_else(bad)?])),
        Some(Value::Array(a)) => {
            let mut axes = a
                .iter()
                .map(|x| x.as_i64().and_then(|x| norm_axis(x, rank)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            axes.sort_unstable();
            axes.dedup();
            Ok(Some(axes))
        }
        Some(_) => Err(bad()),
    }
}

fn one_axis(ctx: &Ctx, lc: &LayerCall, key: &str, rank: usize) -> Result<usize, FrontendError> {
    match axis_of(ctx, lc, lc.config.get(key), rank)? {
        Some(a) if a.len() == 1 => Ok(a[0]),
        _ => Err(ctx.err(lc, format!("'{key}' must be one axis"))),
    }
}

/// Reshapes `x` to `dims` (at most one of them unknown).
fn reshape_to(ctx: &mut Ctx, lc: &LayerCall, part: &str, x: ValueId, dims: &[Dim]) -> Result<ValueId, FrontendError> {
    if ctx.dims(x) == dims {
        return Ok(x);
    }
    if dims.iter().filter(|d| d.fixed().is_none()).count() > 1 {
        return Err(ctx.err(lc, "cannot reshape with more than one axis of unknown size"));
    }
    let shape = dims.iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
    ctx.node(lc, part, Op::Reshape { shape }, &[x])
}

// ---- element-wise -------------------------------------------------------------------------------

fn unary_op(class: &str, c: &Value) -> Option<UnaryOp> {
    Some(match class {
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
        "Elu" => UnaryOp::Elu { alpha: cfg_f32(c, "alpha", 1.0) },
        "LeakyRelu" => UnaryOp::LeakyRelu { alpha: cfg_f32(c, "negative_slope", 0.2) },
        "Gelu" => {
            if cfg_bool(c, "approximate", true) {
                UnaryOp::GeluTanh
            } else {
                UnaryOp::Gelu
            }
        }
        // Composites, lowered in `unary`.
        "Log1p" | "Expm1" | "LogSigmoid" => UnaryOp::Identity,
        _ => return None,
    })
}

fn unary(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
            let u = unary_op(c, lc.config).ok_or_else(|| ctx.err(lc, "not an element-wise op"))?;
            ctx.unary(lc, "", u, x)?
        }
    };
    Ok(vec![y])
}

fn binary(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
        // Python's modulo: x − y·floor(x / y), with the sign of y.
        _ => {
            let q = ctx.binary(lc, "div", BinaryOp::Div, x, y)?;
            let f = ctx.unary(lc, "floor", UnaryOp::Floor, q)?;
            let p = ctx.binary(lc, "mul", BinaryOp::Mul, y, f)?;
            ctx.binary(lc, "", BinaryOp::Sub, x, p)?
        }
    };
    Ok(vec![out])
}

/// Comparisons and logic (NotEqual, LogicalOr, Any, ...) as arithmetic on float 0/1:
/// `a != b` is `|sign(a − b)|`.
fn logic(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

fn identity(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    match a.first() {
        Some(Arg::T(v)) => Ok(vec![*v]),
        _ => Err(ctx.err(lc, "expects a tensor")),
    }
}

fn clip(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
fn select(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

fn cast(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

fn like(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

// ---- reductions ---------------------------------------------------------------------------------

fn reduce(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let r = ctx.rank(x);
    let axes = axis_of(ctx, lc, lc.config.get("axis"), r)?.unwrap_or_else(|| (0..r).collect());
    let keepdims = cfg_bool(lc.config, "keepdims", false);
    if lc.config.get("initial").is_some_and(|v| !v.is_null()) {
        return Err(ctx.err(lc, "max/min with an 'initial' value is not supported"));
    }
    let red = |ctx: &mut Ctx, part: &str, kind: ReduceKind, v: ValueId, keep: bool| {
        ctx.node(lc, part, Op::Reduce { kind, axes: axes.clone(), keepdims: keep }, &[v])
    };
    let y = match lc.class {
        "Mean" => red(ctx, "", ReduceKind::Mean, x, keepdims)?,
        "Sum" => red(ctx, "", ReduceKind::Sum, x, keepdims)?,
        "Max" | "Amax" => red(ctx, "", ReduceKind::Max, x, keepdims)?,
        "Min" | "Amin" => red(ctx, "", ReduceKind::Min, x, keepdims)?,
        "Prod" => red(ctx, "", ReduceKind::Prod, x, keepdims)?,
        "Norm" => {
            let ord = lc.config.get("ord").unwrap_or(&Value::Null);
            match ord {
                Value::Null => {}
                Value::String(s) if s == "fro" && axes.len() == 2 => {}
                Value::Number(n) if n.as_f64() == Some(2.0) && axes.len() == 1 => {}
                Value::Number(n) if n.as_f64() == Some(1.0) && axes.len() == 1 => {
                    let a = ctx.unary(lc, "abs", UnaryOp::Abs, x)?;
                    return Ok(vec![red(ctx, "", ReduceKind::Sum, a, keepdims)?]);
                }
                other => return Err(ctx.err(lc, format!("norm with ord={other} is not supported"))),
            }
            let sq = ctx.unary(lc, "square", UnaryOp::Square, x)?;
            let s = red(ctx, "sum", ReduceKind::Sum, sq, keepdims)?;
            ctx.unary(lc, "", UnaryOp::Sqrt, s)?
        }
        // Var / Std: the mean squared deviation (population variance, as numpy's default).
        _ => {
            let m = red(ctx, "mean", ReduceKind::Mean, x, true)?;
            let d = ctx.binary(lc, "dev", BinaryOp::Sub, x, m)?;
            let sq = ctx.unary(lc, "dev2", UnaryOp::Square, d)?;
            let part = if lc.class == "Var" { "" } else { "var" };
            let v = red(ctx, part, ReduceKind::Mean, sq, keepdims)?;
            if lc.class == "Var" {
                v
            } else {
                ctx.unary(lc, "", UnaryOp::Sqrt, v)?
            }
        }
    };
    Ok(vec![y])
}

fn softmax(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let r = ctx.rank(x);
    let axes = axis_of(ctx, lc, lc.config.get("axis"), r)?.unwrap_or_else(|| (0..r).collect());
    if lc.class == "LogSoftmax" {
        if axes.len() != 1 {
            return Err(ctx.err(lc, "log_softmax over several axes is not supported"));
        }
        return Ok(vec![ctx.node(lc, "", Op::LogSoftmax { axis: axes[0] }, &[x])?]);
    }
    Ok(vec![ctx.node(lc, "", Op::Softmax { axes }, &[x])?])
}

// ---- shapes -------------------------------------------------------------------------------------

fn reshape(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let dims = ctx.dims(x);
    let r = dims.len();
    let c = lc.config;
    let out: Vec<Dim> = match lc.class {
        "Reshape" => {
            let shape: Vec<i64> = match c.get("newshape").or_else(|| c.get("new_shape")) {
                Some(Value::Array(s)) => s.iter().map(Value::as_i64).collect::<Option<_>>(),
                Some(Value::Number(n)) => n.as_i64().map(|n| vec![n]),
                _ => None,
            }
            .ok_or_else(|| ctx.err(lc, "reshape without a list of ints as 'newshape'"))?;
            if shape.iter().any(|&s| s == 0 || s < -1) {
                return Err(ctx.err(lc, format!("invalid reshape target {shape:?}")));
            }
            return Ok(vec![ctx.node(lc, "", Op::Reshape { shape }, &[x])?]);
        }
        "ExpandDims" => {
            let mut axes = axis_of(ctx, lc, c.get("axis"), r + 1)?.ok_or_else(|| ctx.err(lc, "no 'axis'"))?;
            let n_out = r + axes.len();
            if axes.len() > 1 {
                axes = axis_of(ctx, lc, c.get("axis"), n_out)?.unwrap_or_default();
            }
            let mut it = dims.iter();
            (0..n_out)
                .map(|i| if axes.contains(&i) { Dim::Fixed(1) } else { *it.next().unwrap_or(&Dim::Fixed(1)) })
                .collect()
        }
        _ => {
            // Squeeze
            let axes = match axis_of(ctx, lc, c.get("axis"), r)? {
                Some(a) => a,
                None => (0..r).filter(|&i| dims[i] == Dim::Fixed(1)).collect(),
            };
            if let Some(&bad) = axes.iter().find(|&&i| dims[i] != Dim::Fixed(1)) {
                return Err(ctx.err(lc, format!("cannot squeeze axis {bad} of size {:?}", dims[bad])));
            }
            dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect()
        }
    };
    Ok(vec![reshape_to(ctx, lc, "", x, &out)?])
}

fn transpose(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let r = ctx.rank(x);
    let c = lc.config;
    let perm: Vec<usize> = match lc.class {
        "Transpose" => match c.get("axes") {
            None | Some(Value::Null) => (0..r).rev().collect(),
            Some(Value::Array(p)) => p
                .iter()
                .map(|v| v.as_i64().and_then(|v| norm_axis(v, r)))
                .collect::<Option<_>>()
                .ok_or_else(|| ctx.err(lc, "invalid 'axes'"))?,
            Some(_) => return Err(ctx.err(lc, "invalid 'axes'")),
        },
        "Swapaxes" => {
            let (a1, a2) = (one_axis(ctx, lc, "axis1", r)?, one_axis(ctx, lc, "axis2", r)?);
            let mut p: Vec<usize> = (0..r).collect();
            p.swap(a1, a2);
            p
        }
        _ => {
            // Moveaxis
            let src = axis_of(ctx, lc, c.get("source"), r)?.unwrap_or_default();
            let dst = axis_of(ctx, lc, c.get("destination"), r)?.unwrap_or_default();
            if src.len() != 1 || dst.len() != 1 {
                return Err(ctx.err(lc, "moveaxis of several axes is not supported"));
            }
            let mut p: Vec<usize> = (0..r).filter(|&i| i != src[0]).collect();
            p.insert(dst[0], src[0]);
            p
        }
    };
    Ok(vec![ctx.node(lc, "", Op::Transpose { perm }, &[x])?])
}

fn concatenate(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let items = match a.first() {
        Some(Arg::List(items)) => items.clone(),
        _ => return Err(ctx.err(lc, "expects a list of tensors")),
    };
    let mut vs = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        vs.push(operand(ctx, lc, it, i)?);
    }
    let r = vs.first().map(|&v| ctx.rank(v)).ok_or_else(|| ctx.err(lc, "nothing to concatenate"))?;
    if lc.class == "Stack" {
        let axis = one_axis(ctx, lc, "axis", r + 1)?;
        for (i, v) in vs.iter_mut().enumerate() {
            let mut d = ctx.dims(*v);
            d.insert(axis, Dim::Fixed(1));
            *v = reshape_to(ctx, lc, &format!("expand{i}"), *v, &d)?;
        }
        return Ok(vec![ctx.node(lc, "", Op::Concat { axis }, &vs)?]);
    }
    let axis = match lc.config.get("axis") {
        Some(Value::Null) => return Err(ctx.err(lc, "concatenate with axis=None (flattened) is not supported")),
        _ => one_axis(ctx, lc, "axis", r).or_else(|_| norm_axis(0, r).ok_or_else(|| ctx.err(lc, "bad axis")))?,
    };
    Ok(vec![ctx.node(lc, "", Op::Concat { axis }, &vs)?])
}

fn slice_axis(
    ctx: &mut Ctx,
    lc: &LayerCall,
    part: &str,
    x: ValueId,
    axis: usize,
    start: i64,
    end: i64,
) -> Result<ValueId, FrontendError> {
    let op = Op::Slice { axes: vec![axis], starts: vec![start], ends: vec![end], steps: vec![1] };
    ctx.node(lc, part, op, &[x])
}

fn split(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let r = ctx.rank(x);
    let axis = one_axis(ctx, lc, "axis", r)?;
    let n = ctx.dims(x)[axis].fixed().ok_or_else(|| ctx.err(lc, "cannot split an axis of unknown size"))?;
    let bounds: Vec<usize> = match lc.config.get("indices_or_sections") {
        Some(Value::Number(k)) => {
            let k = k
                .as_u64()
                .filter(|&k| k > 0 && n % k as usize == 0)
                .ok_or_else(|| ctx.err(lc, format!("cannot split {n} into {k} equal sections")))?
                as usize;
            (0..=k).map(|i| i * n / k).collect()
        }
        Some(Value::Array(idx)) => {
            let mut b = vec![0];
            for v in idx {
                let i = v.as_i64().ok_or_else(|| ctx.err(lc, "split indices must be ints"))?;
                let i = if i < 0 { i + n as i64 } else { i }.clamp(0, n as i64) as usize;
                b.push(i.max(*b.last().unwrap_or(&0)));
            }
            b.push(n);
            b
        }
        _ => return Err(ctx.err(lc, "split without 'indices_or_sections'")),
    };
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| slice_axis(ctx, lc, &format!("part{i}"), x, axis, w[0] as i64, w[1] as i64))
        .collect()
}

/// `x[key]`: slices, integer indices, `None` (new axes) and `...`.
fn get_item(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let key = match a.get(1) {
        Some(Arg::List(k)) => k.clone(),
        Some(k) => vec![k.clone()],
        None => return Err(ctx.err(lc, "no index")),
    };
    let dims = ctx.dims(x);
    let r = dims.len();
    let used = key.iter().filter(|k| !matches!(k, Arg::NewAxis | Arg::Ellipsis)).count();
    if used > r || key.iter().filter(|k| matches!(k, Arg::Ellipsis)).count() > 1 {
        return Err(ctx.err(lc, format!("too many indices for a tensor of rank {r}")));
    }
    let mut expanded = Vec::new();
    for k in &key {
        if matches!(k, Arg::Ellipsis) {
            expanded.extend(std::iter::repeat_n(Arg::Slice(None, None, None), r - used));
        } else {
            expanded.push(k.clone());
        }
    }
    while expanded.iter().filter(|k| !matches!(k, Arg::NewAxis)).count() < r {
        expanded.push(Arg::Slice(None, None, None));
    }
    let (mut axes, mut starts, mut ends, mut steps) = (vec![], vec![], vec![], vec![]);
    let mut out: Vec<Dim> = Vec::new();
    let mut axis = 0;
    // Output dims are computed after the slice; remember where new axes go.
    let mut plan: Vec<Option<usize>> = Vec::new();
    for k in &expanded {
        match k {
            Arg::NewAxis => plan.push(None),
            Arg::Slice(s, e, st) => {
                let step = st.unwrap_or(1);
                if step == 0 {
                    return Err(ctx.err(lc, "slice step 0"));
                }
                let (s, e) = if step > 0 {
                    (s.unwrap_or(0), e.unwrap_or(i64::MAX))
                } else {
                    (s.unwrap_or(-1), e.unwrap_or(i64::MIN))
                };
                if !(step == 1 && s == 0 && e == i64::MAX) {
                    axes.push(axis);
                    starts.push(s);
                    ends.push(e);
                    steps.push(step);
                }
                plan.push(Some(axis));
                axis += 1;
            }
            Arg::Num(i) if i.fract() == 0.0 => {
                let i = *i as i64;
                if let Dim::Fixed(n) = dims[axis] {
                    if i >= n as i64 || i < -(n as i64) {
                        return Err(ctx.err(lc, format!("index {i} is out of range for an axis of size {n}")));
                    }
                }
                axes.push(axis);
                starts.push(i);
                ends.push(if i == -1 { i64::MAX } else { i + 1 });
                steps.push(1);
                axis += 1;
            }
            Arg::T(_) | Arg::Const(_) | Arg::List(_) => {
                return Err(ctx.err(lc, "indexing with a tensor or a list (gather) is not supported; use ops.take"))
            }
            other => return Err(ctx.err(lc, format!("unsupported index {other:?}"))),
        }
    }
    let mut y = x;
    if !axes.is_empty() {
        y = ctx.node(lc, "slice", Op::Slice { axes, starts, ends, steps }, &[x])?;
    }
    let sliced = ctx.dims(y);
    for p in plan {
        match p {
            None => out.push(Dim::Fixed(1)),
            Some(ax) => out.push(sliced[ax]),
        }
    }
    // Integer-indexed axes are not in `plan`: they are dropped.
    Ok(vec![reshape_to(ctx, lc, "", y, &out)?])
}

fn take(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let r = ctx.rank(x);
    if lc.config.get("axis").is_none_or(Value::is_null) {
        return Err(ctx.err(lc, "take without an axis (from the flattened tensor) is not supported"));
    }
    let axis = one_axis(ctx, lc, "axis", r)?;
    let idx = match arg(ctx, lc, &a, 1)? {
        Arg::T(v) => {
            let v = *v;
            if ctx.g.value(v).ty.dtype.is_float() {
                ctx.node(lc, "indices", Op::Cast { to: DType::I32 }, &[v])?
            } else {
                v
            }
        }
        Arg::Num(i) => {
            let t = Tensor::new(vec![], TensorData::I32(vec![*i as i32])).map_err(|e| ctx.err(lc, e.to_string()))?;
            ctx.konst(lc, "indices", t)
        }
        Arg::Const(t) => {
            let t = t.cast(DType::I32);
            ctx.konst(lc, "indices", t)
        }
        other => return Err(ctx.err(lc, format!("unsupported indices {other:?}"))),
    };
    Ok(vec![ctx.node(lc, "", Op::Gather { axis }, &[x, idx])?])
}

fn tile_repeat_flip(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let Some(Arg::T(x)) = a.first() else { return Err(ctx.err(lc, "expects a tensor")) };
    let x = *x;
    let r = ctx.rank(x);
    let c = lc.config;
    let y = match lc.class {
        "Tile" => {
            let reps: Vec<usize> = match c.get("repeats") {
                Some(Value::Array(v)) => v.iter().map(|x| x.as_u64().map(|x| x as usize)).collect::<Option<_>>(),
                Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as usize]),
                _ => None,
            }
            .ok_or_else(|| ctx.err(lc, "tile without 'repeats'"))?;
            if reps.len() > r {
                return Err(ctx.err(lc, "tile with more repeats than axes is not supported"));
            }
            let mut full = vec![1; r - reps.len()];
            full.extend(reps);
            ctx.node(lc, "", Op::Tile { repeats: full }, &[x])?
        }
        "Repeat" => {
            if c.get("axis").is_none_or(Value::is_null) {
                return Err(ctx.err(lc, "repeat without an axis (flattened) is not supported"));
            }
            let axis = one_axis(ctx, lc, "axis", r)?;
            let repeats =
                c.get("repeats").and_then(Value::as_u64).ok_or_else(|| ctx.err(lc, "repeat needs one int 'repeats'"))?
                    as usize;
            ctx.node(lc, "", Op::RepeatInterleave { axis, repeats }, &[x])?
        }
        _ => {
            let axes = axis_of(ctx, lc, c.get("axis"), r)?.unwrap_or_else(|| (0..r).collect());
            let n = axes.len();
            let op = Op::Slice { axes, starts: vec![-1; n], ends: vec![i64::MIN; n], steps: vec![-1; n] };
            ctx.node(lc, "", op, &[x])?
        }
    };
    Ok(vec![y])
}

// ---- products -----------------------------------------------------------------------------------

fn matmul(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let x = operand(ctx, lc, arg(ctx, lc, &a, 0)?, 0)?;
    let y = operand(ctx, lc, arg(ctx, lc, &a, 1)?, 1)?;
    let (rx, ry) = (ctx.rank(x), ctx.rank(y));
    if rx == 0 || ry == 0 {
        return Ok(vec![ctx.binary(lc, "", BinaryOp::Mul, x, y)?]);
    }
    if lc.class == "Dot" && ry > 2 {
        return Err(ctx.err(lc, "dot with a second operand of rank > 2 is not supported; use matmul or einsum"));
    }
    if rx.max(ry) > 12 {
        return Err(ctx.err(lc, "matmul of rank > 12 is not supported"));
    }
    let batch = |r: usize| -> String { (0..r.saturating_sub(2)).map(|i| (b'a' + i as u8) as char).collect() };
    // numpy matmul with a vector operand, as an einsum (the vector's axis is dropped).
    let eq = match (rx, ry) {
        (1, 1) => "k,k->".to_string(),
        (1, _) => format!("k,{b}kn->{b}n", b = batch(ry)),
        (_, 1) => format!("{b}mk,k->{b}m", b = batch(rx)),
        _ => return Ok(vec![ctx.node(lc, "", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, y])?]),
    };
    Ok(vec![einsum(ctx, lc, &eq, &[x, y])?])
}

fn einsum_layer(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let eq = lc
        .config
        .get("subscripts")
        .and_then(Value::as_str)
        .ok_or_else(|| ctx.err(lc, "einsum without 'subscripts'"))?
        .to_string();
    let mut vs = Vec::new();
    for (i, x) in a.iter().enumerate() {
        vs.push(operand(ctx, lc, x, i)?);
    }
    Ok(vec![einsum(ctx, lc, &eq, &vs)?])
}

/// Lowers a one- or two-operand einsum to transposes, reshapes, sums and one batched matmul.
pub(super) fn einsum(ctx: &mut Ctx, lc: &LayerCall, eq: &str, xs: &[ValueId]) -> Result<ValueId, FrontendError> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (eq.clone(), None),
    };
    let mut terms: Vec<String> = lhs.split(',').map(str::to_string).collect();
    if terms.len() != xs.len() || terms.is_empty() || terms.len() > 2 {
        return Err(ctx.err(lc, format!("einsum '{eq}' with {} operand(s) is not supported", xs.len())));
    }
    // Ellipses become fresh letters (aligned from the right, as broadcasting does).
    let fresh: Vec<char> = ('A'..='Z').filter(|c| !eq.contains(*c)).collect();
    let mut ell_len = 0;
    for (t, &x) in terms.iter_mut().zip(xs) {
        if let Some(pos) = t.find("...") {
            let n = ctx.rank(x) + 3 - t.chars().count();
            ell_len = ell_len.max(n);
            let fill: String = fresh[fresh.len().saturating_sub(n)..].iter().collect();
            t.replace_range(pos..pos + 3, &fill);
        }
    }
    let ell: String = fresh[fresh.len().saturating_sub(ell_len)..].iter().collect();
    let out: Vec<char> = match out {
        Some(o) => o.replace("...", &ell).chars().collect(),
        None => {
            // Implicit output: the ellipsis, then letters seen once, sorted.
            let all: String = terms.concat();
            let mut once: Vec<char> =
                all.chars().filter(|c| c.is_ascii_lowercase() && all.matches(*c).count() == 1).collect();
            once.sort_unstable();
            ell.chars().chain(once).collect()
        }
    };
    let terms: Vec<Vec<char>> = terms.iter().map(|t| t.chars().collect()).collect();
    for (t, &x) in terms.iter().zip(xs) {
        if t.len() != ctx.rank(x) {
            return Err(ctx.err(
                lc,
                format!("einsum '{eq}': '{}' does not match an operand of rank {}", String::from_iter(t), ctx.rank(x)),
            ));
        }
        if t.iter().any(|c| t.iter().filter(|d| *d == c).count() > 1) {
            return Err(ctx.err(lc, format!("einsum '{eq}': repeated indices (diagonals) are not supported")));
        }
    }
    if out.iter().any(|c| !terms.iter().any(|t| t.contains(c))) {
        return Err(ctx.err(lc, format!("einsum '{eq}': an output index appears in no operand")));
    }
    // Sum away letters found only in one operand and not in the output.
    let mut vals: Vec<ValueId> = xs.to_vec();
    let mut terms = terms;
    for k in 0..terms.len() {
        let others: Vec<char> =
            terms.iter().enumerate().filter(|(j, _)| *j != k).flat_map(|(_, t)| t.clone()).collect();
        let axes: Vec<usize> =
            (0..terms[k].len()).filter(|&i| !out.contains(&terms[k][i]) && !others.contains(&terms[k][i])).collect();
        if !axes.is_empty() {
            vals[k] = ctx.node(
                lc,
                &format!("sum{k}"),
                Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims: false },
                &[vals[k]],
            )?;
            terms[k] = terms[k].iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, c)| *c).collect();
        }
    }
    let size_of = |ctx: &Ctx, c: char| -> Dim {
        for (t, &v) in terms.iter().zip(&vals) {
            if let Some(i) = t.iter().position(|d| *d == c) {
                let d = ctx.dims(v)[i];
                if d != Dim::Fixed(1) {
                    return d;
                }
            }
        }
        Dim::Fixed(1)
    };
    let permute =
        |ctx: &mut Ctx, part: &str, v: ValueId, from: &[char], to: &[char]| -> Result<ValueId, FrontendError> {
            let perm: Vec<usize> = to.iter().map(|c| from.iter().position(|d| d == c).unwrap_or(0)).collect();
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Ok(v);
            }
            ctx.node(lc, part, Op::Transpose { perm }, &[v])
        };
    if terms.len() == 1 {
        return permute(ctx, "", vals[0], &terms[0], &out);
    }
    let (ta, tb) = (&terms[0], &terms[1]);
    let batch: Vec<char> = out.iter().copied().filter(|c| ta.contains(c) && tb.contains(c)).collect();
    let contract: Vec<char> = ta.iter().copied().filter(|c| tb.contains(c) && !out.contains(c)).collect();
    let free_a: Vec<char> = ta.iter().copied().filter(|c| !tb.contains(c)).collect();
    let free_b: Vec<char> = tb.iter().copied().filter(|c| !ta.contains(c)).collect();
    let prod = |ctx: &Ctx, cs: &[char]| -> Option<usize> { cs.iter().map(|&c| size_of(ctx, c).fixed()).product() };
    let merged = |ctx: &Ctx, cs: &[char]| -> Dim {
        match prod(ctx, cs) {
            Some(n) => Dim::Fixed(n),
            None => Dim::Batch,
        }
    };
    // A: (batch, free_a, contract) → (batch, M, K); B: (batch, contract, free_b) → (batch, K, N).
    let order_a: Vec<char> = batch.iter().chain(&free_a).chain(&contract).copied().collect();
    let order_b: Vec<char> = batch.iter().chain(&contract).chain(&free_b).copied().collect();
    let a = permute(ctx, "lhs/transpose", vals[0], ta, &order_a)?;
    let b = permute(ctx, "rhs/transpose", vals[1], tb, &order_b)?;
    let bdims = |ctx: &Ctx, v: ValueId| -> Vec<Dim> { ctx.dims(v)[..batch.len()].to_vec() };
    let mut da = bdims(ctx, a);
    da.extend([merged(ctx, &free_a), merged(ctx, &contract)]);
    let mut db = bdims(ctx, b);
    db.extend([merged(ctx, &contract), merged(ctx, &free_b)]);
    let a = reshape_to(ctx, lc, "lhs/reshape", a, &da)?;
    let b = reshape_to(ctx, lc, "rhs/reshape", b, &db)?;
    let m = ctx.node(lc, "matmul", Op::MatMul { transpose_a: false, transpose_b: false }, &[a, b])?;
    let mut dm = ctx.dims(m)[..batch.len()].to_vec();
    dm.extend(free_a.iter().chain(&free_b).map(|&c| size_of(ctx, c)));
    let y = reshape_to(ctx, lc, "reshape", m, &dm)?;
    let order: Vec<char> = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
    permute(ctx, "", y, &order, &out)
}
