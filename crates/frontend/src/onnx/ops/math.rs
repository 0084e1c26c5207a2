//! Element-wise ops, comparisons and logic (bools held as f32 0/1), casts, constants.

use crate::onnx::ctx::{attr_f, attr_i, attr_s, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::Val;
use ir::{BinaryOp, DType, Op, UnaryOp, ValueId};

fn op_of(op: &str) -> BinaryOp {
    match op {
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    }
}

/// Add/Sub/Mul/Div/Pow/Max/Min and the variadic Sum/Mean.
pub fn binary(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let op = node.op_type.as_deref().unwrap_or("");
    let n = node.input.len();
    if n == 0 {
        return Err("no inputs".into());
    }
    // Before opset 7 a broadcast was asked for (`broadcast=1`) and could align the smaller
    // operand at `axis`; aligned at the end it is numpy's, which is what kerasc does.
    if ctx.opset < 7 && crate::onnx::ctx::attr(node, "axis").is_some() {
        return Err("the legacy broadcast along an `axis` (opset < 7) is not supported".into());
    }
    let mut acc = ctx.ir(&ctx.req(node, 0)?)?;
    let dtype = ctx.dtype(&Val::Ir(acc));
    let int = |t: DType| matches!(t, DType::I32 | DType::I64 | DType::U8);
    if int(dtype) && op == "Div" && n == 2 {
        // ONNX divides integers towards zero: through float32 (exact below 2^24), truncated.
        let b = ctx.ir(&ctx.req(node, 1)?)?;
        let af = ctx.tmp(name, Op::Cast { to: DType::F32 }, &[acc])?;
        let bf = ctx.tmp(name, Op::Cast { to: DType::F32 }, &[b])?;
        let q = ctx.tmp(name, Op::Binary(BinaryOp::Div), &[af, bf])?;
        return Ok(vec![Val::Ir(ctx.add(name, Op::Cast { to: dtype }, &[q])?)]);
    }
    if op == "Pow" && n == 2 {
        // Mixed types: the exponent takes the base's type; an integer base goes through
        // float32 and back (ONNX's result has the base's type).
        let e = ctx.ir(&ctx.req(node, 1)?)?;
        let et = ctx.dtype(&Val::Ir(e));
        if int(dtype) != int(et) {
            let (b, e) = if int(dtype) {
                (ctx.tmp(name, Op::Cast { to: DType::F32 }, &[acc])?, e)
            } else {
                (acc, ctx.tmp(name, Op::Cast { to: DType::F32 }, &[e])?)
            };
            if int(dtype) {
                let p = ctx.tmp(name, Op::Binary(BinaryOp::Pow), &[b, e])?;
                return Ok(vec![Val::Ir(ctx.add(name, Op::Cast { to: dtype }, &[p])?)]);
            }
            return Ok(vec![Val::Ir(ctx.add(name, Op::Binary(BinaryOp::Pow), &[b, e])?)]);
        }
    }
    let b = match op {
        "Sum" | "Mean" => BinaryOp::Add,
        o => op_of(o),
    };
    for i in 1..n {
        let y = ctx.ir(&ctx.req(node, i)?)?;
        let nm = if i + 1 == n && op != "Mean" { name.to_string() } else { ctx.fresh(name) };
        acc = ctx.add(&nm, Op::Binary(b), &[acc, y])?;
    }
    if op == "Mean" && n > 1 {
        acc = ctx.add(name, Op::Unary(UnaryOp::Affine { scale: 1.0 / n as f32, offset: 0.0 }), &[acc])?;
    }
    Ok(vec![Val::Ir(acc)])
}

fn unary_of(node: &NodeProto, op: &str) -> Result<UnaryOp, String> {
    Ok(match op {
        "Relu" => UnaryOp::Relu,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Erf" => UnaryOp::Erf,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Sign" => UnaryOp::Sign,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Identity" => UnaryOp::Identity,
        "Mish" => UnaryOp::Mish,
        "Elu" => UnaryOp::Elu { alpha: attr_f(node, "alpha", 1.0) },
        "LeakyRelu" => UnaryOp::LeakyRelu { alpha: attr_f(node, "alpha", 0.01) },
        "ThresholdedRelu" => UnaryOp::ThresholdedRelu { theta: attr_f(node, "alpha", 1.0) },
        "HardSwish" => UnaryOp::HardSilu,
        "Selu" => {
            let (a, g) = (attr_f(node, "alpha", 1.673_263_2), attr_f(node, "gamma", 1.050_701));
            if (a - 1.673_263_2).abs() > 1e-6 || (g - 1.050_701).abs() > 1e-6 {
                return Err(format!("Selu with alpha {a}, gamma {g} is gamma·elu(alpha)"));
            }
            UnaryOp::Selu
        }
        "Gelu" => match attr_s(node, "approximate", "none").as_str() {
            "none" => UnaryOp::Gelu,
            "tanh" => UnaryOp::GeluTanh,
            other => return Err(format!("Gelu approximate '{other}'")),
        },
        "HardSigmoid" => {
            let (a, b) = (attr_f(node, "alpha", 0.2), attr_f(node, "beta", 0.5));
            if (a - 0.2).abs() < 1e-7 && (b - 0.5).abs() < 1e-7 {
                UnaryOp::HardSigmoidLegacy
            } else if (a - 1.0 / 6.0).abs() < 1e-7 && (b - 0.5).abs() < 1e-7 {
                UnaryOp::HardSigmoid
            } else {
                return Err(format!("HardSigmoid alpha {a} beta {b}"));
            }
        }
        other => return Err(format!("no unary op {other}")),
    })
}

/// One-input activations and math functions.
pub fn unary(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let op = node.op_type.as_deref().unwrap_or("");
    let x = ctx.req(node, 0)?;
    if op == "Identity" {
        return Ok(vec![x]);
    }
    let xi = ctx.ir(&x)?;
    if op == "Celu" {
        // celu(x) = max(0, x) + min(0, alpha·(exp(x/alpha) − 1)) = elu(x/alpha)·alpha.
        let a = attr_f(node, "alpha", 1.0);
        let s = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: 1.0 / a, offset: 0.0 }), &[xi])?;
        let e = ctx.tmp(name, Op::Unary(UnaryOp::Elu { alpha: 1.0 }), &[s])?;
        return Ok(vec![Val::Ir(ctx.add(name, Op::Unary(UnaryOp::Affine { scale: a, offset: 0.0 }), &[e])?)]);
    }
    if op == "HardSigmoid" && unary_of(node, op).is_err() {
        // General alpha/beta: clip(alpha·x + beta, 0, 1).
        let (a, b) = (attr_f(node, "alpha", 0.2), attr_f(node, "beta", 0.5));
        let s = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: a, offset: b }), &[xi])?;
        return Ok(vec![Val::Ir(ctx.add(name, Op::Unary(UnaryOp::Clip { lo: 0.0, hi: 1.0 }), &[s])?)]);
    }
    if op == "Selu" && unary_of(node, op).is_err() {
        // Other constants: gamma·elu_alpha(x).
        let (a, g) = (attr_f(node, "alpha", 1.673_263_2), attr_f(node, "gamma", 1.050_701));
        let e = ctx.tmp(name, Op::Unary(UnaryOp::Elu { alpha: a }), &[xi])?;
        return Ok(vec![Val::Ir(ctx.add(name, Op::Unary(UnaryOp::Affine { scale: g, offset: 0.0 }), &[e])?)]);
    }
    let u = unary_of(node, op)?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Unary(u), &[xi])?)])
}

/// Clip: bounds from inputs (opset ≥ 11) or attributes; [0, 6] becomes relu6.
pub fn clip(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.ir(&ctx.req(node, 0)?)?;
    let dtype = ctx.g.value(x).ty.dtype;
    if !dtype.is_float() {
        // Integers: max with the lower bound, min with the upper, in their own type.
        let mut y = x;
        for (i, b) in [(1, BinaryOp::Max), (2, BinaryOp::Min)] {
            let Some(v) = ctx.input(node, i) else { continue };
            let k = ctx.need(&v, "Clip bounds")?;
            let t = k.to_tensor()?.cast(dtype);
            let cname = ctx.fresh(name);
            let c = ctx.g.add_constant(cname, t);
            y = ctx.tmp(name, Op::Binary(b), &[y, c])?;
        }
        return Ok(vec![Val::Ir(y)]);
    }
    let bound = |ctx: &Ctx, i: usize, attr: &str, d: f32| -> Result<f32, String> {
        match ctx.input(node, i) {
            Some(v) => {
                let k = ctx.need(&v, "Clip bounds")?;
                Ok(k.nums("a clip bound")?.first().copied().unwrap_or(d as f64) as f32)
            }
            None => Ok(attr_f(node, attr, d)),
        }
    };
    let lo = bound(ctx, 1, "min", f32::NEG_INFINITY)?;
    let hi = bound(ctx, 2, "max", f32::INFINITY)?;
    let u = match (lo, hi) {
        (l, h) if l == 0.0 && h == 6.0 => UnaryOp::Relu6,
        (l, h) if l == 0.0 && h == f32::INFINITY => UnaryOp::Relu,
        (lo, hi) => UnaryOp::Clip { lo, hi },
    };
    Ok(vec![Val::Ir(ctx.add(name, Op::Unary(u), &[x])?)])
}

/// PRelu: relu(x) − slope·relu(−x).
pub fn prelu(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.ir(&ctx.req(node, 0)?)?;
    let slope = ctx.ir(&ctx.req(node, 1)?)?;
    let pos = ctx.tmp(name, Op::Unary(UnaryOp::Relu), &[x])?;
    let nx = ctx.tmp(name, Op::Unary(UnaryOp::Neg), &[x])?;
    let neg = ctx.tmp(name, Op::Unary(UnaryOp::Relu), &[nx])?;
    let sn = ctx.tmp(name, Op::Binary(BinaryOp::Mul), &[slope, neg])?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Binary(BinaryOp::Sub), &[pos, sn])?)])
}

/// Dropout at inference: the identity (and an all-true mask).
pub fn dropout(ctx: &mut Ctx, node: &NodeProto, _name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    if let Some(t) = ctx.input(node, 2) {
        let k = ctx.need(&t, "Dropout's training_mode")?;
        let ratio = match ctx.input(node, 1) {
            Some(r) => ctx.need(&r, "Dropout's ratio")?.nums("ratio")?.first().copied().unwrap_or(0.5),
            None => 0.5,
        };
        // Training mode drops at random, except with a ratio of 0.
        if k.nums("training_mode")?.first().copied().unwrap_or(0.0) != 0.0 && ratio != 0.0 {
            return Err("Dropout in training mode (random) is not supported for inference".into());
        }
    }
    let mut out = vec![x.clone()];
    if node.output.len() > 1 {
        let shape = ctx.shape_of(&x);
        out.push(Val::Splat { value: 1.0, dtype: DType::Bool, shape });
    }
    Ok(out)
}

/// x as f32 (bools already are; integers cast).
fn as_float(ctx: &mut Ctx, v: &Val, name: &str) -> Result<ValueId, String> {
    let id = ctx.ir(v)?;
    if ctx.g.value(id).ty.dtype.is_float() {
        return Ok(id);
    }
    ctx.tmp(name, Op::Cast { to: DType::F32 }, &[id])
}

/// Comparisons and logic at run time, as arithmetic on f32 0/1: `a < b` is `relu(sign(b − a))`.
pub fn logic(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let op = node.op_type.as_deref().unwrap_or("");
    let a = ctx.req(node, 0)?;
    let a = as_float(ctx, &a, name)?;
    let un = |ctx: &mut Ctx, u: UnaryOp, x: ValueId, nm: &str| ctx.add(nm, Op::Unary(u), &[x]);
    let not = UnaryOp::Affine { scale: -1.0, offset: 1.0 };
    if op == "Not" {
        let out = un(ctx, not, a, name)?;
        return Ok(vec![ctx.mark_bool(out)]);
    }
    let b = ctx.req(node, 1)?;
    let b = as_float(ctx, &b, name)?;
    let bin = |ctx: &mut Ctx, o: BinaryOp, x: ValueId, y: ValueId, nm: &str| ctx.add(nm, Op::Binary(o), &[x, y]);
    let f1 = ctx.fresh(name);
    let f2 = ctx.fresh(name);
    let out = match op {
        "And" => bin(ctx, BinaryOp::Mul, a, b, name)?,
        "Or" => bin(ctx, BinaryOp::Max, a, b, name)?,
        "Xor" => {
            let d = bin(ctx, BinaryOp::Sub, a, b, &f1)?;
            un(ctx, UnaryOp::Abs, d, name)?
        }
        _ => {
            // d > 0 exactly when the relation holds (Less: b − a; Greater: a − b).
            let (x, y) = if matches!(op, "Less" | "GreaterOrEqual") { (b, a) } else { (a, b) };
            let d = bin(ctx, BinaryOp::Sub, x, y, &f1)?;
            let s = un(ctx, UnaryOp::Sign, d, &f2)?;
            match op {
                "Less" | "Greater" => un(ctx, UnaryOp::Relu, s, name)?,
                "Equal" => {
                    let f3 = ctx.fresh(name);
                    let m = un(ctx, UnaryOp::Abs, s, &f3)?;
                    un(ctx, not, m, name)?
                }
                // a <= b is not (a > b); a >= b is not (a < b).
                _ => {
                    let f3 = ctx.fresh(name);
                    let gt = un(ctx, UnaryOp::Relu, s, &f3)?;
                    un(ctx, not, gt, name)?
                }
            }
        }
    };
    Ok(vec![ctx.mark_bool(out)])
}

/// Where(c, x, y) = y + c·(x − y), c as f32 0/1.
pub fn where_(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let c = ctx.req(node, 0)?;
    let c = as_float(ctx, &c, name)?;
    let x = ctx.ir(&ctx.req(node, 1)?)?;
    let y = ctx.ir(&ctx.req(node, 2)?)?;
    let dtype = ctx.g.value(x).ty.dtype;
    // Integers: the same arithmetic in their type (exact, wrapping), the condition cast to it.
    let c = if dtype.is_float() { c } else { ctx.tmp(name, Op::Cast { to: dtype }, &[c])? };
    let d = ctx.tmp(name, Op::Binary(BinaryOp::Sub), &[x, y])?;
    let cd = ctx.tmp(name, Op::Binary(BinaryOp::Mul), &[c, d])?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Binary(BinaryOp::Add), &[y, cd])?)])
}

/// Cast (and CastLike): to bool is `|sign(x)|`; from bool (held as f32) a plain cast.
pub fn cast(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let to = if node.op_type.as_deref() == Some("CastLike") {
        let like = ctx.req(node, 1)?;
        ctx.dtype(&like)
    } else {
        crate::onnx::tensor::dtype_of(attr_i(node, "to", 1) as i32)?
    };
    if ctx.dtype(&x) == to {
        return Ok(vec![x]);
    }
    if to == DType::Bool {
        let f = as_float(ctx, &x, name)?;
        let s = ctx.tmp(name, Op::Unary(UnaryOp::Sign), &[f])?;
        let out = ctx.add(name, Op::Unary(UnaryOp::Abs), &[s])?;
        return Ok(vec![ctx.mark_bool(out)]);
    }
    let xi = ctx.ir(&x)?;
    if ctx.g.value(xi).ty.dtype == to {
        return Ok(vec![Val::Ir(xi)]);
    }
    Ok(vec![Val::Ir(ctx.add(name, Op::Cast { to }, &[xi])?)])
}

/// Constant: handled by the evaluator; reaching here means an unsupported attribute.
pub fn constant(_ctx: &mut Ctx, _node: &NodeProto, _name: &str) -> Lowered {
    Err("this Constant form is not supported".into())
}

/// Trilu: the upper (or lower) triangle of the last two axes from diagonal `k`, as a product with
/// a constant 0/1 mask in x's type.
pub fn trilu(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let r = s.len();
    let (Some(crate::onnx::value::S::N(rows)), Some(crate::onnx::value::S::N(cols))) =
        (s.get(r.wrapping_sub(2)).copied(), s.last().copied())
    else {
        return Err("Trilu needs rank 2 or more with fixed last two axes".into());
    };
    let k = match ctx.input(node, 1) {
        Some(v) => ctx.ints(&v, "Trilu's k")?.first().copied().unwrap_or(0),
        None => 0,
    };
    let upper = attr_i(node, "upper", 1) != 0;
    let (rows, cols) = (rows as usize, cols as usize);
    let mask: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let d = (i % cols) as i64 - (i / cols) as i64;
            f32::from(if upper { d >= k } else { d <= k })
        })
        .collect();
    let xi = ctx.ir(&x)?;
    let dtype = ctx.g.value(xi).ty.dtype;
    let m = ir::Tensor::from_f32(&[rows, cols], mask).map_err(|e| e.to_string())?.cast(dtype);
    let mname = ctx.fresh(name);
    let mc = ctx.g.add_constant(mname, m);
    Ok(vec![Val::Ir(ctx.add(name, Op::Binary(BinaryOp::Mul), &[xi, mc])?)])
}

/// Mod: `a − b·floor(a/b)` (the divisor's sign, integers) or, with `fmod=1`, `a − b·trunc(a/b)`
/// (the dividend's sign), computed in float32 (integers exact below 2^24) and cast back.
pub fn mod_(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let a = ctx.ir(&ctx.req(node, 0)?)?;
    let b = ctx.ir(&ctx.req(node, 1)?)?;
    let dtype = ctx.g.value(a).ty.dtype;
    let fmod = attr_i(node, "fmod", 0) != 0;
    if dtype.is_float() && !fmod {
        return Err("Mod of floats needs fmod=1".into());
    }
    let f = |ctx: &mut Ctx, v: ValueId| -> Result<ValueId, String> {
        if ctx.g.value(v).ty.dtype.is_float() {
            Ok(v)
        } else {
            ctx.tmp(name, Op::Cast { to: DType::F32 }, &[v])
        }
    };
    let (af, bf) = (f(ctx, a)?, f(ctx, b)?);
    let q = ctx.tmp(name, Op::Binary(BinaryOp::Div), &[af, bf])?;
    let whole = if fmod {
        // trunc(q) = sign(q)·floor(|q|)
        let aq = ctx.tmp(name, Op::Unary(UnaryOp::Abs), &[q])?;
        let fl = ctx.tmp(name, Op::Unary(UnaryOp::Floor), &[aq])?;
        let sg = ctx.tmp(name, Op::Unary(UnaryOp::Sign), &[q])?;
        ctx.tmp(name, Op::Binary(BinaryOp::Mul), &[sg, fl])?
    } else {
        ctx.tmp(name, Op::Unary(UnaryOp::Floor), &[q])?
    };
    let bw = ctx.tmp(name, Op::Binary(BinaryOp::Mul), &[bf, whole])?;
    if dtype.is_float() {
        return Ok(vec![Val::Ir(ctx.add(name, Op::Binary(BinaryOp::Sub), &[af, bw])?)]);
    }
    let rem = ctx.tmp(name, Op::Binary(BinaryOp::Sub), &[af, bw])?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Cast { to: dtype }, &[rem])?)])
}
