//! Evaluation at import of what a model computes from constants and shapes: small tensors whose
//! elements are numbers or multiples of the (symbolic) batch size. This is how tf2onnx's
//! `Shape → Cast → Slice → Concat → Reshape` chains, `Expand` targets and loop counters become
//! plain attributes of IR ops.

use super::ctx::{attr, attr_i, attr_ints, Ctx, Lowered};
use super::proto::NodeProto;
use super::value::{sym, KVal, Val, MAX_KNOWN, S};
use ir::DType;

fn round_to(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::I32 | DType::I64 | DType::U8 => x.trunc(),
        DType::Bool => f64::from(x != 0.0),
        _ => x as f32 as f64,
    }
}

fn binary(op: &str, a: S, b: S, dtype: DType) -> Result<S, String> {
    use S::{B, N};
    let int = matches!(dtype, DType::I32 | DType::I64 | DType::U8);
    Ok(match (op, a, b) {
        ("Add", N(x), N(y)) => N(round_to(dtype, x + y)),
        ("Add", B(x), B(y)) => B(x + y),
        ("Sub", N(x), N(y)) => N(round_to(dtype, x - y)),
        ("Sub", B(x), B(y)) if x == y => N(0.0),
        ("Mul", N(x), N(y)) => N(round_to(dtype, x * y)),
        ("Mul", B(k), N(y)) | ("Mul", N(y), B(k)) => B(k * y),
        ("Div", N(x), N(y)) => {
            if int && y == 0.0 {
                return Err("integer division by zero".into());
            }
            N(if int { (x / y).trunc() } else { round_to(dtype, x / y) })
        }
        ("Div", B(k), N(y)) if y != 0.0 => B(k / y),
        ("Div", B(x), B(y)) if y != 0.0 => N(x / y),
        ("Max", N(x), N(y)) => N(x.max(y)),
        // The batch is at least 1: max(k·N, c) = k·N when c ≤ k.
        ("Max", B(k), N(c)) | ("Max", N(c), B(k)) if c <= k => B(k),
        ("Max", B(x), B(y)) => B(x.max(y)),
        ("Min", N(x), N(y)) => N(x.min(y)),
        ("Min", B(k), N(c)) | ("Min", N(c), B(k)) if c <= k => N(c),
        ("Min", B(x), B(y)) => B(x.min(y)),
        ("Pow", N(x), N(y)) => N(round_to(dtype, x.powf(y))),
        ("Mod", N(x), N(y)) if y != 0.0 => N(x - (x / y).floor() * y),
        ("Less", N(x), N(y)) => N(f64::from(x < y)),
        ("LessOrEqual", N(x), N(y)) => N(f64::from(x <= y)),
        ("Greater", N(x), N(y)) => N(f64::from(x > y)),
        ("GreaterOrEqual", N(x), N(y)) => N(f64::from(x >= y)),
        ("Equal", N(x), N(y)) => N(f64::from(x == y)),
        ("Equal", B(x), B(y)) => N(f64::from(x == y)),
        ("And", N(x), N(y)) => N(f64::from(x != 0.0 && y != 0.0)),
        ("Or", N(x), N(y)) => N(f64::from(x != 0.0 || y != 0.0)),
        ("Xor", N(x), N(y)) => N(f64::from((x != 0.0) != (y != 0.0))),
        _ => return Err(sym(op)),
    })
}

/// numpy broadcasting of two known tensors element by element.
fn broadcast2(a: &KVal, b: &KVal, f: impl Fn(S, S) -> Result<S, String>) -> Result<(Vec<usize>, Vec<S>), String> {
    let r = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - s.len()).chain(s.iter().copied()).collect() };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        out.push(match (sa[i], sb[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => return Err(format!("shapes {:?} and {:?} do not broadcast ({x} vs {y})", a.shape, b.shape)),
        });
    }
    let n: usize = out.iter().product();
    if n > MAX_KNOWN {
        return Err("too large to evaluate".into());
    }
    let (ta, tb, to) = (KVal::strides(&sa), KVal::strides(&sb), KVal::strides(&out));
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ia, mut ib) = (0, 0);
        for d in 0..r {
            let c = (i / to[d]) % out[d];
            if sa[d] != 1 {
                ia += c * ta[d];
            }
            if sb[d] != 1 {
                ib += c * tb[d];
            }
        }
        data.push(f(a.data[ia], b.data[ib])?);
    }
    Ok((out, data))
}

/// Evaluates `node` at import when its inputs are known (and for `Shape`/`Size`, which need
/// only a shape). `None`: the node is lowered to IR ops instead.
pub fn fold(ctx: &Ctx, node: &NodeProto) -> Option<Lowered> {
    let op = node.op_type.as_deref().unwrap_or("");
    match op {
        "Shape" => {
            let x = ctx.input(node, 0)?;
            let s = ctx.shape_of(&x);
            let r = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(attr_i(node, "start", 0));
            let end = clamp(attr_i(node, "end", r));
            let part: Vec<S> = if start < end { s[start..end].to_vec() } else { Vec::new() };
            return Some(Ok(vec![Val::Known(KVal::new(DType::I64, vec![part.len()], part))]));
        }
        "Size" => {
            let x = ctx.input(node, 0)?;
            let total = ctx.shape_of(&x).iter().try_fold(S::N(1.0), |acc, &d| binary("Mul", acc, d, DType::I64));
            return Some(total.map(|t| vec![Val::Known(KVal::new(DType::I64, vec![], vec![t]))]));
        }
        "Constant" => return Some(constant(ctx, node)),
        _ => {}
    }
    // Every present input known.
    let mut ins: Vec<Option<KVal>> = Vec::new();
    for (i, name) in node.input.iter().enumerate() {
        if name.is_empty() {
            ins.push(None);
            continue;
        }
        ins.push(Some(ctx.known(&ctx.input(node, i)?)?));
    }
    let first = ins.first().cloned().flatten();
    let r = (|| -> Result<Option<KVal>, String> {
        let Some(x) = first else { return Ok(None) };
        Ok(Some(match op {
            "Identity" => x,
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" | "Mod" | "Less" | "LessOrEqual" | "Greater"
            | "GreaterOrEqual" | "Equal" | "And" | "Or" | "Xor" => {
                let mut acc = x;
                for y in ins[1..].iter().flatten() {
                    let dtype = acc.dtype;
                    let (shape, data) = broadcast2(&acc, y, |a, b| binary(op, a, b, dtype))?;
                    let out_dtype = if matches!(
                        op,
                        "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Equal" | "And" | "Or" | "Xor"
                    ) {
                        DType::Bool
                    } else {
                        dtype
                    };
                    acc = KVal::new(out_dtype, shape, data);
                }
                acc
            }
            "Neg" | "Abs" | "Not" | "Floor" | "Ceil" | "Sqrt" | "Reciprocal" | "Relu" | "Sign" => {
                let data = x
                    .data
                    .iter()
                    .map(|&s| match (op, s) {
                        ("Neg", S::N(v)) => Ok(S::N(-v)),
                        ("Neg", S::B(k)) => Ok(S::B(-k)),
                        ("Abs", S::N(v)) => Ok(S::N(v.abs())),
                        ("Abs", S::B(k)) => Ok(S::B(k.abs())),
                        ("Not", S::N(v)) => Ok(S::N(f64::from(v == 0.0))),
                        ("Floor", S::N(v)) => Ok(S::N(v.floor())),
                        ("Ceil", S::N(v)) => Ok(S::N(v.ceil())),
                        ("Sqrt", S::N(v)) => Ok(S::N(round_to(x.dtype, v.sqrt()))),
                        ("Reciprocal", S::N(v)) => Ok(S::N(round_to(x.dtype, 1.0 / v))),
                        ("Relu", S::N(v)) => Ok(S::N(v.max(0.0))),
                        ("Sign", S::N(v)) => Ok(S::N(if v > 0.0 {
                            1.0
                        } else if v < 0.0 {
                            -1.0
                        } else {
                            0.0
                        })),
                        _ => Err(sym(op)),
                    })
                    .collect::<Result<_, _>>()?;
                KVal::new(x.dtype, x.shape.clone(), data)
            }
            "Cast" | "CastLike" => {
                let to = if op == "Cast" {
                    super::tensor::dtype_of(attr_i(node, "to", 1) as i32)?
                } else {
                    ins.get(1).cloned().flatten().map(|k| k.dtype).unwrap_or(DType::F32)
                };
                let data = x.data.iter().map(|&s| if let S::N(v) = s { S::N(round_to(to, v)) } else { s }).collect();
                KVal::new(to, x.shape.clone(), data)
            }
            "Reshape" => {
                let t = ins.get(1).cloned().flatten().ok_or("no shape")?.nums("a reshape target")?;
                let mut shape = Vec::new();
                let mut infer = None;
                for (i, &d) in t.iter().enumerate() {
                    match d as i64 {
                        -1 => {
                            infer = Some(i);
                            shape.push(1)
                        }
                        0 => shape.push(*x.shape.get(i).ok_or("0 past the input's rank")?),
                        n if n > 0 => shape.push(n as usize),
                        n => return Err(format!("invalid size {n}")),
                    }
                }
                let product = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if let Some(i) = infer {
                    let rest = product(&shape).ok_or("a reshape target too large")?;
                    shape[i] = x.data.len().checked_div(rest).ok_or("cannot infer -1")?;
                }
                if product(&shape) != Some(x.data.len()) {
                    return Err(format!("cannot reshape {:?} to {t:?}", x.shape));
                }
                KVal::new(x.dtype, shape, x.data.clone())
            }
            "Unsqueeze" | "Squeeze" => {
                let axes: Vec<i64> = match ins.get(1).cloned().flatten() {
                    Some(a) => a.nums("axes")?.iter().map(|&v| v as i64).collect(),
                    None => attr_ints(node, "axes").unwrap_or_default(),
                };
                let mut shape = x.shape.clone();
                if op == "Unsqueeze" {
                    let r = shape.len() + axes.len();
                    let mut ax: Vec<usize> = ctx.axes(&axes, r)?;
                    ax.sort_unstable();
                    for a in ax {
                        shape.insert(a, 1);
                    }
                } else if axes.is_empty() {
                    shape.retain(|&d| d != 1);
                } else {
                    let r = shape.len();
                    let ax: Vec<usize> = ctx.axes(&axes, r)?;
                    shape = shape.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
                }
                KVal::new(x.dtype, shape, x.data.clone())
            }
            "Concat" => {
                let parts: Vec<&KVal> = ins.iter().flatten().collect();
                let r = x.shape.len();
                if r == 0 {
                    return Err("cannot concatenate scalars".into());
                }
                let axis = ctx.axis(attr_i(node, "axis", 0), r)?;
                for p in &parts {
                    let same = p.shape.len() == r && (0..r).all(|d| d == axis || p.shape[d] == x.shape[d]);
                    if !same {
                        return Err(format!("cannot concatenate {:?} with {:?} on axis {axis}", x.shape, p.shape));
                    }
                }
                let outer: usize = x.shape[..axis].iter().product();
                let mut shape = x.shape.clone();
                shape[axis] = parts.iter().map(|p| p.shape.get(axis).copied().unwrap_or(0)).sum();
                let mut data = Vec::new();
                for o in 0..outer {
                    for p in &parts {
                        let inner: usize = p.shape[axis..].iter().product();
                        data.extend_from_slice(&p.data[o * inner..(o + 1) * inner]);
                    }
                }
                KVal::new(x.dtype, shape, data)
            }
            "Gather" => {
                let idx = ins.get(1).cloned().flatten().ok_or("no indices")?;
                let r = x.shape.len();
                let axis = ctx.axis(attr_i(node, "axis", 0), r)?;
                let n = x.shape[axis];
                let outer: usize = x.shape[..axis].iter().product();
                let inner: usize = x.shape[axis + 1..].iter().product();
                let ids = idx.nums("gather indices")?;
                let mut data = Vec::new();
                for o in 0..outer {
                    for &given in &ids {
                        let i = if given < 0.0 { given + n as f64 } else { given };
                        if !(0.0..n as f64).contains(&i) {
                            return Err(format!("index {given} is out of range for size {n}"));
                        }
                        let i = i as usize;
                        data.extend_from_slice(&x.data[(o * n + i) * inner..(o * n + i + 1) * inner]);
                    }
                }
                let mut shape = x.shape[..axis].to_vec();
                shape.extend(&idx.shape);
                shape.extend(&x.shape[axis + 1..]);
                KVal::new(x.dtype, shape, data)
            }
            "Slice" => {
                let get = |i: usize| -> Result<Option<Vec<i64>>, String> {
                    ins.get(i)
                        .cloned()
                        .flatten()
                        .map(|k| k.nums("slice bounds").map(|v| v.iter().map(|&x| x as i64).collect()))
                        .transpose()
                };
                let starts = get(1)?.ok_or("no starts")?;
                let ends = get(2)?.ok_or("no ends")?;
                let r = x.shape.len();
                let axes: Vec<usize> = match get(3)? {
                    Some(a) => ctx.axes(&a, r)?,
                    None if starts.len() <= r => (0..starts.len()).collect(),
                    None => return Err(format!("{} slice starts for rank {r}", starts.len())),
                };
                let steps = get(4)?.unwrap_or_else(|| vec![1; starts.len()]);
                if axes.len() > starts.len() {
                    return Err(format!("{} axes but {} starts", axes.len(), starts.len()));
                }
                let mut idx: Vec<Vec<usize>> = x.shape.iter().map(|&n| (0..n).collect()).collect();
                for (k, &a) in axes.iter().enumerate() {
                    let n = x.shape[a];
                    let step = *steps.get(k).ok_or("steps shorter than starts")?;
                    if step == 0 {
                        return Err("slice step 0".into());
                    }
                    let (s, e) = ir::slice_bounds(n, starts[k], *ends.get(k).ok_or("ends shorter than starts")?, step);
                    let mut v = Vec::new();
                    let mut i = s;
                    while (step > 0 && i < e) || (step < 0 && i > e) {
                        v.push(i as usize);
                        i += step;
                    }
                    idx[a] = v;
                }
                let shape: Vec<usize> = idx.iter().map(Vec::len).collect();
                let st = KVal::strides(&x.shape);
                let total: usize = shape.iter().product();
                let ost = KVal::strides(&shape);
                let data = (0..total)
                    .map(|o| {
                        let off: usize = (0..r).map(|d| idx[d][(o / ost[d]) % shape[d]] * st[d]).sum();
                        x.data[off]
                    })
                    .collect();
                KVal::new(x.dtype, shape, data)
            }
            "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" if x.shape.len() <= 1 => {
                // Shape arithmetic: reductions of 1-D (or scalar) tensors.
                let axes_given = ins.get(1).cloned().flatten().is_some() || attr(node, "axes").is_some();
                if axes_given && x.shape.is_empty() {
                    return Err("axes on a scalar".into());
                }
                let f = match op {
                    "ReduceProd" => "Mul",
                    "ReduceSum" => "Add",
                    "ReduceMax" => "Max",
                    _ => "Min",
                };
                let init = match op {
                    "ReduceProd" => S::N(1.0),
                    "ReduceSum" => S::N(0.0),
                    _ => *x.data.first().ok_or("reducing nothing")?,
                };
                let v = x.data.iter().try_fold(init, |a, &b| binary(f, a, b, x.dtype))?;
                let keep = attr_i(node, "keepdims", 1) != 0;
                KVal::new(x.dtype, if keep && !x.shape.is_empty() { vec![1] } else { vec![] }, vec![v])
            }
            "Range" => {
                let s = x.nums("a range")?;
                let l = ins.get(1).cloned().flatten().ok_or("no limit")?.nums("a range")?;
                let d = ins.get(2).cloned().flatten().ok_or("no delta")?.nums("a range")?;
                let (s, l, d) = (s[0], l[0], d[0]);
                if d == 0.0 {
                    return Err("range with delta 0".into());
                }
                let n = ((l - s) / d).ceil().max(0.0) as usize;
                if n > MAX_KNOWN {
                    // No run-time Range: the values must be known when the model is loaded.
                    return Err(format!("a range of {n} values, more than the {MAX_KNOWN} evaluated at load"));
                }
                KVal::new(x.dtype, vec![n], (0..n).map(|i| S::N(round_to(x.dtype, s + i as f64 * d))).collect())
            }
            "ConstantOfShape" | "Expand" | "Where" | "Transpose" | "Tile" | "Split" => return Ok(None),
            _ => return Ok(None),
        }))
    })();
    match r {
        Ok(Some(k)) => Some(Ok(vec![Val::Known(k)])),
        Ok(None) => None,
        Err(e) if e == "too large to evaluate" => None,
        Err(e) => Some(Err(e)),
    }
}

/// `Constant`: its one value attribute.
fn constant(ctx: &Ctx, node: &NodeProto) -> Lowered {
    let a = node.attribute.first().ok_or("a Constant without a value")?;
    let name = a.name.as_deref().unwrap_or("");
    let k = match name {
        "value" => {
            // Constants of any size are known (exporters put weights in initializers).
            KVal::from_tensor(&super::tensor::to_tensor(a.t.as_ref().ok_or("no tensor")?, ctx.dir)?)
        }
        "value_float" => KVal::new(DType::F32, vec![], vec![S::N(a.f.unwrap_or(0.0) as f64)]),
        "value_floats" => {
            KVal::new(DType::F32, vec![a.floats.len()], a.floats.iter().map(|&v| S::N(v as f64)).collect())
        }
        "value_int" => KVal::new(DType::I64, vec![], vec![S::N(a.i.unwrap_or(0) as f64)]),
        "value_ints" => KVal::new(DType::I64, vec![a.ints.len()], a.ints.iter().map(|&v| S::N(v as f64)).collect()),
        other => return Err(format!("Constant with a '{other}' attribute is not supported")),
    };
    Ok(vec![Val::Known(k)])
}
