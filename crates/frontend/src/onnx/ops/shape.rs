//! Layout and shape ops: transpose, reshape, flatten, (un)squeeze, concat, split, slice,
//! gather, pad, resize, tile, expand, fills.

use crate::onnx::ctx::{attr_f, attr_i, attr_ints, attr_s, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::show;
use crate::onnx::value::{Val, S};
use ir::{DType, Op, Tensor, ValueId};

/// Transpose (the reversed axes by default).
pub fn transpose(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let perm: Vec<usize> = match attr_ints(node, "perm") {
        Some(p) if p.len() == r => ctx.axes(&p, r)?,
        Some(p) => return Err(format!("perm {p:?} for rank {r}")),
        None => (0..r).rev().collect(),
    };
    let xi = ctx.ir(&x)?;
    let y = ctx.add(name, Op::Transpose { perm }, &[xi])?;
    Ok(vec![keep_bool(ctx, xi, y)])
}

fn keep_bool(ctx: &mut Ctx, from: ir::ValueId, to: ir::ValueId) -> Val {
    if ctx.dtype(&Val::Ir(from)) == DType::Bool {
        ctx.mark_bool(to)
    } else {
        Val::Ir(to)
    }
}

/// The output shape of an ONNX reshape of `input` to `target` (0 copies, −1 inferred).
fn resolve(input: &[S], target: &[S], allowzero: bool) -> Result<Vec<S>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            S::N(v) if v == -1.0 => {
                if infer.replace(i).is_some() {
                    return Err("more than one -1 in a reshape target".into());
                }
                out.push(S::N(1.0));
            }
            S::N(v) if v == 0.0 && !allowzero => out.push(*input.get(i).ok_or("0 refers past the input's rank")?),
            S::N(v) if v < 0.0 => return Err(format!("invalid size {v}")),
            s => out.push(s),
        }
    }
    if let Some(i) = infer {
        // total(input) / total(others): numbers and batch multiples.
        let total = |s: &[S]| -> (f64, f64) {
            s.iter().fold((1.0, 0.0), |(n, b), d| match d {
                S::N(x) => (n * x, b),
                S::B(k) => (n * k, b + 1.0),
            })
        };
        let (ni, bi) = total(input);
        let others: Vec<S> = out.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, d)| *d).collect();
        let (no, bo) = total(&others);
        if no == 0.0 {
            return Err("cannot infer -1 next to a zero size".into());
        }
        if (ni / no).fract() != 0.0 {
            return Err(format!("cannot reshape {} to {}", show(input), show(target)));
        }
        out[i] = match (bi - bo) as i64 {
            0 => S::N(ni / no),
            1 => S::B(ni / no),
            _ => return Err(format!("cannot reshape {} to {}", show(input), show(target))),
        };
    }
    Ok(out)
}

/// Reshape to a target known at import (possibly batch-dependent).
pub fn reshape(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let t = ctx.req(node, 1)?;
    let k = ctx.need(&t, "the reshape target")?;
    let target = resolve(&ctx.shape_of(&x), &k.data, attr_i(node, "allowzero", 0) != 0)?;
    if let Val::Splat { value, dtype, .. } = x {
        return Ok(vec![Val::Splat { value, dtype, shape: target }]);
    }
    let xi = ctx.ir(&x)?;
    Ok(vec![Val::Ir(ctx.reshape_to(name, xi, &target)?)])
}

fn product(s: &[S]) -> Result<S, String> {
    let (mut n, mut b) = (1.0, 0);
    let mut k = 1.0;
    for d in s {
        match d {
            S::N(x) => n *= x,
            S::B(m) => {
                b += 1;
                k *= m
            }
        }
    }
    match b {
        0 => Ok(S::N(n)),
        1 => Ok(S::B(n * k)),
        _ => Err("a product of several batch-dependent sizes".into()),
    }
}

/// Flatten to 2-D at `axis`.
pub fn flatten(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let r = s.len() as i64;
    let a = attr_i(node, "axis", 1);
    let a = if a < 0 { a + r } else { a };
    if a < 0 || a > r {
        return Err(format!("axis {a} for rank {r}"));
    }
    let a = a as usize;
    let target = [product(&s[..a])?, product(&s[a..])?];
    let xi = ctx.ir(&x)?;
    Ok(vec![Val::Ir(ctx.reshape_to(name, xi, &target)?)])
}

/// Squeeze / Unsqueeze as reshapes (axes from the attribute or, opset ≥ 13, the input).
pub fn squeeze(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let axes: Vec<i64> = match ctx.input(node, 1) {
        Some(a) => ctx.ints(&a, "axes")?,
        None => attr_ints(node, "axes").unwrap_or_default(),
    };
    let mut s = ctx.shape_of(&x);
    if node.op_type.as_deref() == Some("Unsqueeze") {
        let r = s.len() + axes.len();
        let mut ax: Vec<usize> = ctx.axes(&axes, r)?;
        ax.sort_unstable();
        for a in ax {
            s.insert(a, S::N(1.0));
        }
    } else if axes.is_empty() {
        s.retain(|d| *d != S::N(1.0));
    } else {
        let r = s.len();
        let ax: Vec<usize> = ctx.axes(&axes, r)?;
        for &a in &ax {
            if s[a] != S::N(1.0) {
                return Err(format!("cannot squeeze axis {a} of size {}", show(&s[a..a + 1])));
            }
        }
        s = s.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, d)| *d).collect();
    }
    if let Val::Splat { value, dtype, .. } = x {
        return Ok(vec![Val::Splat { value, dtype, shape: s }]);
    }
    let xi = ctx.ir(&x)?;
    let y = ctx.reshape_to(name, xi, &s)?;
    Ok(vec![Val::Ir(y)])
}

/// Concat along an axis.
pub fn concat(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let first = ctx.req(node, 0)?;
    let r = ctx.rank(&first);
    let axis = ctx.axis(attr_i(node, "axis", 0), r)?;
    let mut ins = Vec::new();
    for i in 0..node.input.len() {
        if let Some(v) = ctx.input(node, i) {
            ins.push(ctx.ir(&v)?);
        }
    }
    let y = ctx.add(name, Op::Concat { axis }, &ins)?;
    Ok(vec![keep_bool(ctx, ins[0], y)])
}

/// Split into slices along an axis (sizes from the input, the attribute, or equal parts).
pub fn split(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let axis = ctx.axis(attr_i(node, "axis", 0), s.len())?;
    let S::N(total) = s[axis] else { return Err("cannot split the batch axis".into()) };
    let total = total as i64;
    let outs = node.output.len();
    let sizes: Vec<i64> = match ctx.input(node, 1) {
        Some(v) => ctx.ints(&v, "split sizes")?,
        None => match attr_ints(node, "split") {
            Some(v) => v,
            None => {
                let parts = attr_i(node, "num_outputs", outs as i64).max(1);
                let each = (total + parts - 1) / parts;
                (0..parts).map(|i| each.min(total - i * each).max(0)).collect()
            }
        },
    };
    if sizes.iter().sum::<i64>() != total || sizes.len() != outs {
        return Err(format!("split sizes {sizes:?} for size {total} and {outs} outputs"));
    }
    let xi = ctx.ir(&x)?;
    let mut start = 0;
    let mut vals = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let nm = node.output.get(i).cloned().unwrap_or_else(|| ctx.fresh(name));
        let op = Op::Slice { axes: vec![axis], starts: vec![start], ends: vec![start + n], steps: vec![1] };
        vals.push(Val::Ir(ctx.add(&nm, op, &[xi])?));
        start += n;
    }
    Ok(vals)
}

/// Slice with bounds known at import.
pub fn slice(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let (starts, ends, axes, steps) = if ctx.opset >= 10 && ctx.input(node, 1).is_some() {
        let get = |ctx: &Ctx, i: usize, what: &str| -> Result<Option<Vec<i64>>, String> {
            ctx.input(node, i).map(|v| ctx.ints(&v, what)).transpose()
        };
        (
            get(ctx, 1, "slice starts")?.unwrap_or_default(),
            get(ctx, 2, "slice ends")?.ok_or("no ends")?,
            get(ctx, 3, "slice axes")?,
            get(ctx, 4, "slice steps")?,
        )
    } else {
        (
            attr_ints(node, "starts").unwrap_or_default(),
            attr_ints(node, "ends").unwrap_or_default(),
            attr_ints(node, "axes"),
            None,
        )
    };
    let axes: Vec<usize> = match axes {
        Some(a) => ctx.axes(&a, r)?,
        None if starts.len() <= r => (0..starts.len()).collect(),
        None => return Err(format!("{} slice starts for rank {r}", starts.len())),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() || steps.contains(&0) {
        return Err("inconsistent slice bounds".into());
    }
    // INT64_MAX/MIN sentinels as the IR's clamped bounds.
    let clamp = |v: i64| v.clamp(-(1 << 40), 1 << 40);
    let xi = ctx.ir(&x)?;
    let op = Op::Slice {
        axes,
        starts: starts.into_iter().map(clamp).collect(),
        ends: ends.into_iter().map(clamp).collect(),
        steps,
    };
    let y = ctx.add(name, op, &[xi])?;
    Ok(vec![keep_bool(ctx, xi, y)])
}

/// Gather along an axis (constant negative indices wrapped).
pub fn gather(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let idx = ctx.req(node, 1)?;
    let s = ctx.shape_of(&x);
    let axis = ctx.axis(attr_i(node, "axis", 0), s.len())?;
    let idx = match (ctx.known(&idx), s[axis]) {
        (Some(k), S::N(n)) => {
            let v: Vec<f64> = k.nums("gather indices")?;
            if let Some(bad) = v.iter().find(|&&i| i < -n || i >= n) {
                return Err(format!("index {bad} is out of range for size {n}"));
            }
            let t = Tensor::new(
                k.shape.clone(),
                ir::TensorData::I64(v.iter().map(|&i| if i < 0.0 { (i + n) as i64 } else { i as i64 }).collect()),
            )
            .map_err(|e| e.to_string())?;
            let nm = ctx.fresh(name);
            ctx.g.add_constant(nm, t)
        }
        _ => ctx.ir(&idx)?,
    };
    let xi = ctx.ir(&x)?;
    let y = ctx.add(name, Op::Gather { axis }, &[xi, idx])?;
    Ok(vec![keep_bool(ctx, xi, y)])
}

/// Pad with pads known at import: constant mode as the IR's pad; edge, reflect and wrap as
/// slices of the input concatenated around it, axis by axis.
pub fn pad(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let mode = attr_s(node, "mode", "constant");
    if !matches!(mode.as_str(), "constant" | "edge" | "reflect" | "wrap") {
        return Err(format!("Pad mode '{mode}' is not one of ONNX's"));
    }
    let pads: Vec<i64> = match ctx.input(node, 1) {
        Some(p) => ctx.ints(&p, "pads")?,
        None => attr_ints(node, "pads").unwrap_or_default(),
    };
    let value = match ctx.input(node, 2) {
        Some(v) => ctx.need(&v, "the pad value")?.nums("the pad value")?.first().copied().unwrap_or(0.0) as f32,
        None => attr_f(node, "value", 0.0),
    };
    let axes: Vec<usize> = match ctx.input(node, 3) {
        Some(a) => ctx.axes(&ctx.ints(&a, "pad axes")?, r)?,
        None => (0..r).collect(),
    };
    let n = axes.len();
    if pads.len() != 2 * n || pads.iter().any(|&p| p < 0 || p > crate::onnx::MAX_ELEMENTS as i64) {
        return Err(format!("pads {pads:?} for {n} axes (each must be between 0 and 2^31)"));
    }
    let mut per = vec![(0usize, 0usize); r];
    for (k, &a) in axes.iter().enumerate() {
        per[a] = (pads[k] as usize, pads[k + n] as usize);
    }
    let xi = ctx.ir(&x)?;
    if mode == "constant" {
        return Ok(vec![Val::Ir(ctx.add(name, Op::Pad { pads: per, value }, &[xi])?)]);
    }
    let shape = ctx.shape_of(&x);
    let mut y = xi;
    for (a, &(p0, p1)) in per.iter().enumerate() {
        if p0 == 0 && p1 == 0 {
            continue;
        }
        let S::N(len) = shape[a] else { return Err(format!("Pad mode '{mode}' along the batch axis")) };
        let len = len as i64;
        let (p0, p1) = (p0 as i64, p1 as i64);
        let fits = match mode.as_str() {
            "reflect" => p0 < len && p1 < len,
            "wrap" => p0 <= len && p1 <= len,
            _ => len > 0,
        };
        if !fits {
            return Err(format!("Pad mode '{mode}' by {p0} and {p1} along an axis of {len}"));
        }
        // (start, end, step) of the slices before and after x along axis a.
        let (before, after) = match mode.as_str() {
            "edge" => ((0, 1, 1), (len - 1, len, 1)),
            "reflect" => ((p0, 0, -1), (len - 2, len - 2 - p1, -1)),
            _ => ((len - p0, len, 1), (0, p1, 1)),
        };
        let mut parts = Vec::new();
        for ((start, end, step), count) in [(before, p0), (after, p1)] {
            if count == 0 {
                parts.push(None);
                continue;
            }
            // An end of -1 with a negative step would count from the back: -len-1 is before 0.
            let end = if step < 0 && end < 0 { -len - 1 } else { end };
            let sl = Op::Slice { axes: vec![a], starts: vec![start], ends: vec![end], steps: vec![step] };
            let mut piece = ctx.tmp(name, sl, &[y])?;
            if mode == "edge" && count > 1 {
                let mut reps = vec![1; r];
                reps[a] = count as usize;
                piece = ctx.tmp(name, Op::Tile { repeats: reps }, &[piece])?;
            }
            parts.push(Some(piece));
        }
        let all: Vec<ValueId> = [parts[0], Some(y), parts[1]].into_iter().flatten().collect();
        y = ctx.tmp(name, Op::Concat { axis: a }, &all)?;
    }
    Ok(vec![Val::Ir(y)])
}

/// Tile by repeats known at import.
pub fn tile(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let reps = ctx.ints(&ctx.req(node, 1)?, "tile repeats")?;
    if reps.iter().any(|&r| r < 1 || r > crate::onnx::MAX_ELEMENTS as i64) {
        return Err(format!("repeats {reps:?}"));
    }
    let xi = ctx.ir(&x)?;
    let y = ctx.add(name, Op::Tile { repeats: reps.iter().map(|&r| r as usize).collect() }, &[xi])?;
    Ok(vec![keep_bool(ctx, xi, y)])
}

/// Expand: numpy broadcasting to a shape known at import (the batch allowed).
pub fn expand(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let target = ctx.need(&ctx.req(node, 1)?, "the expand shape")?;
    let xs = ctx.shape_of(&x);
    let r = xs.len().max(target.data.len());
    let pad = |s: &[S]| -> Vec<S> { std::iter::repeat_n(S::N(1.0), r - s.len()).chain(s.iter().copied()).collect() };
    let (a, b) = (pad(&xs), pad(&target.data));
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        out.push(match (a[i], b[i]) {
            (p, q) if p == q => p,
            (S::N(v), q) if v == 1.0 => q,
            (p, S::N(v)) if v == 1.0 => p,
            (p, q) => return Err(format!("{} does not expand to {}", show(&[p]), show(&[q]))),
        });
    }
    // A known scalar-like value: a fill.
    if let Some(k) = ctx.known(&x) {
        if let [v] = k.nums("an expanded value")?[..] {
            return Ok(vec![Val::Splat { value: v, dtype: k.dtype, shape: out }]);
        }
    }
    let xi = ctx.ir(&x)?;
    let dtype = ctx.g.value(xi).ty.dtype;
    // Broadcast with a constant holding the fixed sizes, then with the batch.
    let fixed: Vec<usize> = out.iter().map(|d| if let S::N(n) = d { *n as usize } else { 1 }).collect();
    if fixed.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > crate::onnx::MAX_ELEMENTS) {
        return Err(format!("expanding to {} is too large", show(&out)));
    }
    // A zero fill of the fixed sizes gives the shape (a large one is tiled at run time).
    let like = ctx.ir(&Val::Splat { value: 0.0, dtype, shape: fixed.iter().map(|&d| S::N(d as f64)).collect() })?;
    let mut y = ctx.tmp(name, Op::BroadcastTo, &[xi, like])?;
    let fill = ctx.ir(&Val::Splat {
        value: 0.0,
        dtype,
        shape: out.iter().map(|d| if let S::B(k) = d { S::B(*k) } else { S::N(1.0) }).collect(),
    });
    if out.iter().any(|d| matches!(d, S::B(_))) {
        let like_b = fill?;
        y = ctx.add(name, Op::BroadcastTo, &[y, like_b])?;
    }
    Ok(vec![keep_bool(ctx, xi, y)])
}

/// ConstantOfShape: a fill (known when small and batch-free).
pub fn constant_of_shape(ctx: &mut Ctx, node: &NodeProto, _name: &str) -> Lowered {
    let shape = ctx.need(&ctx.req(node, 0)?, "the shape")?;
    let (value, dtype) = match crate::onnx::ctx::attr(node, "value").and_then(|a| a.t.as_ref()) {
        Some(t) => {
            let t = crate::onnx::tensor::to_tensor(t, None)?;
            (t.to_f64_vec().first().copied().unwrap_or(0.0), t.dtype())
        }
        None => (0.0, DType::F32),
    };
    let dims = shape.data.clone();
    if let Ok(n) = shape.nums("a shape") {
        let total: f64 = n.iter().product();
        if total <= crate::onnx::value::MAX_KNOWN as f64 {
            let dims: Vec<usize> = n.iter().map(|&d| d as usize).collect();
            return Ok(vec![Val::Known(crate::onnx::KVal::new(dtype, dims, vec![S::N(value); total as usize]))]);
        }
    }
    Ok(vec![Val::Splat { value, dtype, shape: dims }])
}

/// Shape, Size and Range are evaluated at import; reaching here means they could not be.
pub fn folded_only(ctx: &mut Ctx, node: &NodeProto, _name: &str) -> Lowered {
    let op = node.op_type.as_deref().unwrap_or("");
    // Range's bounds: known once the inputs they come from are given.
    if op == "Range" {
        for i in 0..node.input.len() {
            if let Some(v) = ctx.input(node, i) {
                ctx.need(&v, "Range's bounds")?;
            }
        }
    }
    Err(format!("{op} must be computable when the model is loaded"))
}
