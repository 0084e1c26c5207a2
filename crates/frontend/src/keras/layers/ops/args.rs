//! The operands of a `keras.ops` call: tensors, Python numbers, constant tensors, slices, as
//! recorded in the call's positional arguments, and the helpers that read them.

use crate::keras::layers::ctx::{norm_axis, Ctx, LayerCall};
use crate::FrontendError;
use ir::{DType, Dim, Op, Tensor, TensorData, ValueId};
use serde_json::Value;

/// One positional argument of an op call.
#[derive(Debug, Clone)]
pub(super) enum Arg {
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
pub(super) fn args(ctx: &Ctx, lc: &LayerCall) -> Result<Vec<Arg>, FrontendError> {
    let raw = lc.call.map(|c| c.raw_args.as_slice()).unwrap_or(&[]);
    if raw.is_empty() {
        return Ok(lc.inputs.iter().map(|&v| Arg::T(v)).collect());
    }
    let mut next = 0;
    raw.iter().map(|a| parse_arg(ctx, lc, a, &mut next, 0)).collect()
}

pub(super) fn parse_arg(
    ctx: &Ctx,
    lc: &LayerCall,
    a: &Value,
    next: &mut usize,
    depth: usize,
) -> Result<Arg, FrontendError> {
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
pub(super) fn const_tensor(ctx: &Ctx, lc: &LayerCall, cfg: &Value) -> Result<Tensor, FrontendError> {
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
pub(super) fn operand(ctx: &mut Ctx, lc: &LayerCall, a: &Arg, i: usize) -> Result<ValueId, FrontendError> {
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
pub(crate) fn to_f32(ctx: &mut Ctx, lc: &LayerCall, v: ValueId, what: &str) -> Result<ValueId, FrontendError> {
    if ctx.g.value(v).ty.dtype == DType::F32 {
        return Ok(v);
    }
    ctx.node(lc, what, Op::Cast { to: DType::F32 }, &[v])
}

pub(super) fn arg<'a>(ctx: &Ctx, lc: &LayerCall, a: &'a [Arg], i: usize) -> Result<&'a Arg, FrontendError> {
    a.get(i).ok_or_else(|| ctx.err(lc, format!("argument {i} is missing")))
}

/// The first argument as a tensor (the op's main input), as f32.
pub(super) fn main_input(ctx: &mut Ctx, lc: &LayerCall) -> Result<ValueId, FrontendError> {
    let a = args(ctx, lc)?;
    let x = arg(ctx, lc, &a, 0)?.clone();
    operand(ctx, lc, &x, 0)
}

pub(super) fn axis_of(
    ctx: &Ctx,
    lc: &LayerCall,
    v: Option<&Value>,
    rank: usize,
) -> Result<Option<Vec<usize>>, FrontendError> {
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

pub(super) fn one_axis(ctx: &Ctx, lc: &LayerCall, key: &str, rank: usize) -> Result<usize, FrontendError> {
    match axis_of(ctx, lc, lc.config.get(key), rank)? {
        Some(a) if a.len() == 1 => Ok(a[0]),
        _ => Err(ctx.err(lc, format!("'{key}' must be one axis"))),
    }
}

/// Reshapes `x` to `dims` (at most one of them unknown).
pub(super) fn reshape_to(
    ctx: &mut Ctx,
    lc: &LayerCall,
    part: &str,
    x: ValueId,
    dims: &[Dim],
) -> Result<ValueId, FrontendError> {
    if ctx.dims(x) == dims {
        return Ok(x);
    }
    if dims.iter().filter(|d| d.fixed().is_none()).count() > 1 {
        return Err(ctx.err(lc, "cannot reshape with more than one axis of unknown size"));
    }
    let shape = dims.iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
    ctx.node(lc, part, Op::Reshape { shape }, &[x])
}
