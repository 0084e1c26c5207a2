//! Shape `keras.ops`: reshape, expand/squeeze, transposes, concatenate/stack, split, indexing
//! (`GetItem`), take, tile/repeat/flip.

use super::args::{arg, args, axis_of, one_axis, operand, reshape_to, Arg};
use crate::keras::layers::ctx::{norm_axis, Ctx, LayerCall};
use crate::FrontendError;
use ir::{DType, Dim, Op, Tensor, TensorData, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn reshape(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

pub(super) fn transpose(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

pub(super) fn concatenate(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
        // keras.ops.concatenate's default axis is 0.
        None => norm_axis(0, r).ok_or_else(|| ctx.err(lc, "cannot concatenate scalars"))?,
        Some(_) => one_axis(ctx, lc, "axis", r)?,
    };
    Ok(vec![ctx.node(lc, "", Op::Concat { axis }, &vs)?])
}

pub(super) fn slice_axis(
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

pub(super) fn split(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
pub(super) fn get_item(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

pub(super) fn take(ctx: &mut Ctx, lc: &LayerCall) -> R {
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

pub(super) fn tile_repeat_flip(ctx: &mut Ctx, lc: &LayerCall) -> R {
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
