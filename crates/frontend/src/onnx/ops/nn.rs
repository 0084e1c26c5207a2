//! Matmul, convolution, pooling, normalization, softmax and reductions.

use crate::onnx::ctx::{attr_f, attr_i, attr_ints, attr_s, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::{Val, S};
use ir::{BinaryOp, ConvAttrs, ConvTransposeAttrs, Op, PaddingMode, ReduceKind, Tensor, UnaryOp, ValueId};

/// MatMul with numpy semantics (1-D operands get a unit axis, removed afterwards).
pub fn matmul(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let a = ctx.req(node, 0)?;
    let b = ctx.req(node, 1)?;
    let (sa, sb) = (ctx.shape_of(&a), ctx.shape_of(&b));
    let (mut ai, mut bi) = (ctx.ir(&a)?, ctx.ir(&b)?);
    if sa.len() == 1 {
        ai = {
            let nm = ctx.fresh(name);
            ctx.reshape_to(&nm, ai, &[S::N(1.0), sa[0]])?
        };
    }
    if sb.len() == 1 {
        bi = {
            let nm = ctx.fresh(name);
            ctx.reshape_to(&nm, bi, &[sb[0], S::N(1.0)])?
        };
    }
    let mut y = ctx.add(name, Op::MatMul { transpose_a: false, transpose_b: false }, &[ai, bi])?;
    if sa.len() == 1 || sb.len() == 1 {
        let mut s = ctx.shape_of(&Val::Ir(y));
        let r = s.len();
        if sb.len() == 1 {
            s.remove(r - 1);
        }
        if sa.len() == 1 {
            s.remove(s.len() - 1);
        }
        y = {
            let nm = ctx.fresh(name);
            ctx.reshape_to(&nm, y, &s)?
        };
    }
    Ok(vec![Val::Ir(y)])
}

/// Gemm: alpha·op(A)·op(B) + beta·C.
pub fn gemm(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let a = ctx.ir(&ctx.req(node, 0)?)?;
    let b = ctx.ir(&ctx.req(node, 1)?)?;
    let (ta, tb) = (attr_i(node, "transA", 0) != 0, attr_i(node, "transB", 0) != 0);
    let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
    let mut y = ctx.tmp(name, Op::MatMul { transpose_a: ta, transpose_b: tb }, &[a, b])?;
    if alpha != 1.0 {
        y = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: alpha, offset: 0.0 }), &[y])?;
    }
    if let Some(c) = ctx.input(node, 2) {
        let cs = ctx.shape_of(&c);
        let c = match (beta, ctx.constant(&c)) {
            (b, _) if b == 1.0 => ctx.ir(&c)?,
            (b, Some(t)) => {
                let v: Vec<f32> = t.to_f32_vec().iter().map(|x| x * b).collect();
                let t = Tensor::from_f32(t.shape(), v).map_err(|e| e.to_string())?;
                let n = ctx.fresh(name);
                ctx.g.add_constant(n, t)
            }
            (b, None) => {
                let ci = ctx.ir(&c)?;
                ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: b, offset: 0.0 }), &[ci])?
            }
        };
        y = if cs.len() == 1 && matches!(cs[0], S::N(n) if n > 1.0) {
            ctx.add(name, Op::BiasAdd { axis: 1 }, &[y, c])?
        } else {
            ctx.add(name, Op::Binary(BinaryOp::Add), &[y, c])?
        };
    }
    Ok(vec![Val::Ir(y)])
}

/// Fixed spatial sizes of a channels-first input.
pub(super) fn spatial(ctx: &Ctx, x: &Val) -> Result<Vec<usize>, String> {
    let s = ctx.shape_of(x);
    s.get(2..)
        .ok_or_else(|| format!("a channels-first input of rank {} (needs batch, channels and space)", s.len()))?
        .iter()
        .map(|s| match s {
            S::N(n) => Ok(*n as usize),
            S::B(_) => Err("spatial sizes must be fixed".to_string()),
        })
        .collect()
}

/// Explicit (before, after) pads from `pads` or `auto_pad`.
pub(super) fn pads_for(
    node: &NodeProto,
    input: &[usize],
    window: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<Vec<(usize, usize)>, String> {
    let n = input.len();
    match attr_s(node, "auto_pad", "NOTSET").as_str() {
        "NOTSET" => {
            let p = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n || p.iter().any(|&v| !(0..=MAX_ATTR).contains(&v)) {
                return Err(format!("pads {p:?} for {n} spatial axes (each from 0 to 2^31)"));
            }
            Ok((0..n).map(|i| (p[i] as usize, p[i + n] as usize)).collect())
        }
        "VALID" => Ok(vec![(0, 0); n]),
        mode @ ("SAME_UPPER" | "SAME_LOWER") => Ok((0..n)
            .map(|i| {
                // Every factor is at most 2^31 (checked by `usizes`), so no product overflows.
                let out = input[i].div_ceil(strides[i].max(1));
                let span = window[i].saturating_sub(1) * dilations[i] + 1;
                let total = (out.saturating_sub(1) * strides[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(format!("auto_pad '{other}'")),
    }
}

/// The largest size, stride or padding an attribute may give (larger ones come from a broken or
/// hostile file: no tensor may hold 2^31 elements per sample anyway).
pub(super) const MAX_ATTR: i64 = 1 << 31;

/// A per-axis attribute of `n` entries, each from 1 to 2^31.
pub(super) fn usizes(node: &NodeProto, name: &str, n: usize, default: usize) -> Result<Vec<usize>, String> {
    match attr_ints(node, name) {
        Some(v) if v.len() == n && v.iter().all(|&x| (1..=MAX_ATTR).contains(&x)) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(format!("{name} {v:?} for {n} spatial axes (each from 1 to 2^31)")),
        None => Ok(vec![default; n]),
    }
}

/// Conv (channels-first, kept as a layout attribute) + bias.
pub fn conv(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let w = ctx.req(node, 1)?;
    let ws = weight_shape(ctx, &w)?;
    let r = ctx.rank(&x);
    if r < 3 || ws.len() != r {
        return Err(format!("input rank {r} and weights {ws:?} do not fit a convolution"));
    }
    let n = r - 2;
    let input = spatial(ctx, &x)?;
    let window = ws[2..].to_vec();
    let strides = usizes(node, "strides", n, 1)?;
    let dilations = usizes(node, "dilations", n, 1)?;
    let groups = match attr_i(node, "group", 1) {
        g @ 1..=MAX_ATTR => g as usize,
        g => return Err(format!("group {g} must be from 1 to 2^31")),
    };
    let pads = pads_for(node, &input, &window, &strides, &dilations)?;
    // (F, C/g, k...) → (k..., C/g, F).
    let perm: Vec<usize> = (2..r).chain([1, 0]).collect();
    let k = kernel_of(ctx, &w, &perm, name)?;
    let xi = ctx.ir(&x)?;
    let op = Op::ChannelsFirst(Box::new(Op::Conv(ConvAttrs { strides, dilations, pads, groups })));
    let has_bias = ctx.input(node, 2).is_some();
    let conv_name = if has_bias { ctx.fresh(name) } else { name.to_string() };
    let mut y = ctx.add(&conv_name, op, &[xi, k])?;
    if let Some(b) = ctx.input(node, 2) {
        let b = ctx.ir(&b)?;
        y = ctx.add(name, Op::BiasAdd { axis: 1 }, &[y, b])?;
    }
    Ok(vec![Val::Ir(y)])
}

/// The shape of a convolution's weights: a constant's, or a run-time operand's (fixed).
fn weight_shape(ctx: &Ctx, w: &Val) -> Result<Vec<usize>, String> {
    if let Some(t) = ctx.constant(w) {
        return Ok(t.shape().to_vec());
    }
    ctx.shape_of(w)
        .iter()
        .map(
            |d| {
                if let S::N(n) = d {
                    Ok(*n as usize)
                } else {
                    Err("weights whose size depends on the batch".to_string())
                }
            },
        )
        .collect()
}

/// The kernel operand in kerasc's layout: constant weights permuted once at import; weights
/// that arrive at run time (a graph input, or computed) permuted by a transpose in the graph.
fn kernel_of(ctx: &mut Ctx, w: &Val, perm: &[usize], name: &str) -> Result<ValueId, String> {
    match ctx.constant(w) {
        Some(t) => {
            let kernel = permute(&t, perm)?;
            Ok(ctx.g.add_constant(format!("{name}/kernel"), kernel))
        }
        None => {
            let wi = ctx.ir(w)?;
            ctx.tmp(name, Op::Transpose { perm: perm.to_vec() }, &[wi])
        }
    }
}

/// A constant transposed at import.
pub fn permute(t: &Tensor, perm: &[usize]) -> Result<Tensor, String> {
    let s = t.shape();
    let r = s.len();
    let v = t.to_f32_vec();
    let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let mut st = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    let mut ost = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        ost[i] = ost[i + 1] * out_shape[i + 1];
    }
    let n = v.len();
    let out: Vec<f32> = (0..n)
        .map(|o| (0..r).map(|d| ((o / ost[d]) % out_shape[d]) * st[perm[d]]).sum::<usize>())
        .map(|i| v[i])
        .collect();
    Tensor::from_f32(&out_shape, out).map_err(|e| e.to_string())
}

/// ConvTranspose: the full ('valid') transposed convolution, channels-first, then its padding
/// cropped and `output_padding` appended (zeros, before the bias), as ONNX defines the output.
pub fn conv_transpose(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let w = ctx.req(node, 1)?;
    let ws = weight_shape(ctx, &w)?;
    let r = ctx.rank(&x);
    if r < 3 || ws.len() != r {
        return Err(format!("input rank {r} and weights {ws:?} do not fit a transposed convolution"));
    }
    let n = r - 2;
    if attr_i(node, "group", 1) != 1 {
        return Err("grouped transposed convolution is not supported".into());
    }
    let input = spatial(ctx, &x)?;
    let strides = usizes(node, "strides", n, 1)?;
    let dilations = usizes(node, "dilations", n, 1)?;
    let window = ws[2..].to_vec();
    if input.iter().chain(&window).any(|&d| d == 0 || d as i64 > MAX_ATTR) {
        return Err(format!("input sizes {input:?} and kernel sizes {window:?} must be from 1 to 2^31"));
    }
    // Each factor is at most 2^31: the sizes fit in 64 bits.
    let full: Vec<usize> = (0..n).map(|i| strides[i] * (input[i] - 1) + (window[i] - 1) * dilations[i] + 1).collect();
    if full.iter().any(|&f| f as i64 > MAX_ATTR) {
        return Err(format!("the transposed convolution's output {full:?} is too large"));
    }
    let op_pad: Vec<usize> = match attr_ints(node, "output_padding") {
        Some(v) if v.len() == n && v.iter().all(|&p| (0..=MAX_ATTR).contains(&p)) => {
            v.iter().map(|&p| p as usize).collect()
        }
        Some(v) => return Err(format!("output_padding {v:?} (each from 0 to 2^31)")),
        None => vec![0; n],
    };
    // Signed (begin, end) padding per axis: positive crops the full output, negative adds zeros.
    let mut pads: Vec<(i64, i64)> = match attr_ints(node, "pads") {
        Some(p) if p.len() == 2 * n && p.iter().all(|&v| (0..=MAX_ATTR).contains(&v)) => {
            (0..n).map(|i| (p[i], p[i + n])).collect()
        }
        Some(p) => return Err(format!("pads {p:?} (each from 0 to 2^31)")),
        None => vec![(0, 0); n],
    };
    let auto = attr_s(node, "auto_pad", "NOTSET");
    let target: Option<Vec<i64>> = match attr_ints(node, "output_shape") {
        Some(os) if os.len() >= n && os[os.len() - n..].iter().all(|&d| (1..=MAX_ATTR).contains(&d)) => {
            Some(os[os.len() - n..].to_vec())
        }
        Some(os) => return Err(format!("output_shape {os:?} for {n} spatial axes (each from 1 to 2^31)")),
        None if auto == "SAME_UPPER" || auto == "SAME_LOWER" => {
            Some(input.iter().zip(&strides).map(|(i, s)| (i * s) as i64).collect())
        }
        None if auto == "NOTSET" || auto == "VALID" => None,
        None => return Err(format!("auto_pad '{auto}'")),
    };
    if let Some(t) = target {
        // ONNX: total = full + output_padding − target; SAME_UPPER puts the larger half at the
        // end, otherwise at the beginning (halves rounded down, as ONNX Runtime does when the
        // target is larger than the full output and zeros are added).
        pads = (0..n)
            .map(|i| {
                let total = (full[i] + op_pad[i]) as i64 - t[i];
                let half = total.div_euclid(2);
                if auto == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                }
            })
            .collect();
    }
    // (C, F, k...) → (k..., F, C).
    let perm: Vec<usize> = (2..r).chain([1, 0]).collect();
    let k = kernel_of(ctx, &w, &perm, name)?;
    let xi = ctx.ir(&x)?;
    let op = Op::ChannelsFirst(Box::new(Op::ConvTranspose(ConvTransposeAttrs {
        strides,
        dilations,
        padding: PaddingMode::Valid,
        output_padding: None,
    })));
    let mut y = ctx.tmp(name, op, &[xi, k])?;
    // Crop the padding (the end less output_padding), then add zeros where it is negative.
    let (mut axes, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let mut extra = vec![(0usize, 0usize); r];
    for i in 0..n {
        let (b, e) = (pads[i].0, pads[i].1 - op_pad[i] as i64);
        let (cb, ce) = (b.max(0) as usize, e.max(0) as usize);
        extra[i + 2] = ((-b).max(0) as usize, (-e).max(0) as usize);
        if cb > 0 || ce > 0 {
            if cb + ce >= full[i] {
                return Err("the padding crops the whole output".into());
            }
            axes.push(i + 2);
            starts.push(cb as i64);
            ends.push((full[i] - ce) as i64);
        }
    }
    if !axes.is_empty() {
        let steps = vec![1; axes.len()];
        y = ctx.tmp(name, Op::Slice { axes, starts, ends, steps }, &[y])?;
    }
    if extra.iter().any(|&(b, e)| b + e > 0) {
        y = ctx.tmp(name, Op::Pad { pads: extra, value: 0.0 }, &[y])?;
    }
    if let Some(b) = ctx.input(node, 2) {
        let b = ctx.ir(&b)?;
        y = ctx.add(name, Op::BiasAdd { axis: 1 }, &[y, b])?;
    }
    Ok(vec![Val::Ir(y)])
}

fn only_first_output(node: &NodeProto) -> Result<(), String> {
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("only the first output is supported (inference)".into());
    }
    Ok(())
}

/// BatchNormalization in inference mode.
pub fn batch_norm(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    if attr_i(node, "training_mode", 0) != 0 {
        return batch_norm_training(ctx, node, name);
    }
    only_first_output(node)?;
    let ins: Vec<ValueId> = (0..5).map(|i| ctx.req(node, i).and_then(|v| ctx.ir(&v))).collect::<Result<_, _>>()?;
    let eps = attr_f(node, "epsilon", 1e-5);
    Ok(vec![Val::Ir(ctx.add(name, Op::BatchNorm { axis: 1, epsilon: eps }, &ins)?)])
}

/// The statistics of `x` over `axes` (kept, of size 1): its mean, `x` minus it, the
/// (population) variance and `1/sqrt(variance + eps)`, as graph nodes.
struct Moments {
    mean: ValueId,
    centred: ValueId,
    var: ValueId,
    inv: ValueId,
}

fn moments(ctx: &mut Ctx, name: &str, x: ValueId, axes: &[usize], eps: f32) -> Result<Moments, String> {
    let mean_of = |ctx: &mut Ctx, v: ValueId| {
        ctx.tmp(name, Op::Reduce { kind: ReduceKind::Mean, axes: axes.to_vec(), keepdims: true }, &[v])
    };
    let mean = mean_of(ctx, x)?;
    let centred = ctx.tmp(name, Op::Binary(ir::BinaryOp::Sub), &[x, mean])?;
    let sq = ctx.tmp(name, Op::Unary(UnaryOp::Square), &[centred])?;
    let var = mean_of(ctx, sq)?;
    let shifted = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: 1.0, offset: eps }), &[var])?;
    let inv = ctx.tmp(name, Op::Unary(UnaryOp::Rsqrt), &[shifted])?;
    Ok(Moments { mean, centred, var, inv })
}

/// BatchNormalization in training mode: normalized by the batch's mean and (population)
/// variance over every axis but the channels; the running statistics updated by `momentum`.
fn batch_norm_training(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let r = s.len();
    let Some(&S::N(c)) = s.get(1) else { return Err("the channel count must be fixed".into()) };
    let ins: Vec<ValueId> = (0..5).map(|i| ctx.req(node, i).and_then(|v| ctx.ir(&v))).collect::<Result<_, _>>()?;
    let (eps, momentum) = (attr_f(node, "epsilon", 1e-5), attr_f(node, "momentum", 0.9));
    let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
    let bin = |ctx: &mut Ctx, b: ir::BinaryOp, x: ValueId, y: ValueId| ctx.tmp(name, Op::Binary(b), &[x, y]);
    let Moments { mean, centred, var, inv } = moments(ctx, name, ins[0], &axes, eps)?;
    let normed = bin(ctx, ir::BinaryOp::Mul, centred, inv)?;
    // Scale and bias (C,) as (C, 1, ...) against (N, C, ...).
    let per_channel: Vec<S> = std::iter::once(S::N(c)).chain(std::iter::repeat_n(S::N(1.0), r - 2)).collect();
    let nm = ctx.fresh(name);
    let scale = ctx.reshape_to(&nm, ins[1], &per_channel)?;
    let nm = ctx.fresh(name);
    let bias = ctx.reshape_to(&nm, ins[2], &per_channel)?;
    let scaled = bin(ctx, ir::BinaryOp::Mul, normed, scale)?;
    let y = ctx.add(name, Op::Binary(ir::BinaryOp::Add), &[scaled, bias])?;
    let mut outs = vec![Val::Ir(y)];
    for (stat, running) in [(mean, ins[3]), (var, ins[4])] {
        let nm = ctx.fresh(name);
        let flat = ctx.reshape_to(&nm, stat, &[S::N(c)])?;
        let kept = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: momentum, offset: 0.0 }), &[running])?;
        let new = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: 1.0 - momentum, offset: 0.0 }), &[flat])?;
        outs.push(Val::Ir(bin(ctx, ir::BinaryOp::Add, kept, new)?));
    }
    Ok(outs)
}

/// InstanceNormalization: a group normalization with one channel per group.
pub fn instance_norm(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let c = match ctx.shape_of(&x).get(1) {
        Some(S::N(c)) => *c as usize,
        _ => return Err("the channel count must be fixed".into()),
    };
    let ins: Vec<ValueId> = (0..3).map(|i| ctx.req(node, i).and_then(|v| ctx.ir(&v))).collect::<Result<_, _>>()?;
    let eps = attr_f(node, "epsilon", 1e-5);
    Ok(vec![Val::Ir(ctx.add(name, Op::GroupNorm { groups: c, axis: 1, epsilon: eps }, &ins)?)])
}

/// GroupNormalization (opset 18 and 21): `num_groups` groups of the channels (axis 1). Opset 21
/// scales and shifts per channel; opset 18 per group, which must then be constants (each
/// group's value is repeated over its channels when the model is loaded).
pub fn group_norm(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let c = match ctx.shape_of(&x).get(1) {
        Some(S::N(c)) => *c as usize,
        _ => return Err("the channel count must be fixed".into()),
    };
    let groups = attr_i(node, "num_groups", 0);
    let groups = usize::try_from(groups)
        .ok()
        .filter(|&g| g > 0 && c % g == 0)
        .ok_or_else(|| format!("num_groups {groups} must be positive and divide the {c} channels"))?;
    let eps = attr_f(node, "epsilon", 1e-5);
    let mut ins = vec![ctx.ir(&x)?];
    let per_group = ctx.opset < 21;
    for (i, what) in [(1, "scale"), (2, "bias")] {
        let v = ctx.req(node, i)?;
        if !per_group {
            ins.push(ctx.ir(&v)?);
            continue;
        }
        let t = ctx
            .constant(&v)
            .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
            .ok_or_else(|| format!("GroupNormalization-18's {what} must be a float32 constant"))?;
        if t.len() != groups {
            return Err(format!("GroupNormalization-18's {what} has {} values for {groups} groups", t.len()));
        }
        let per_channel: Vec<f32> = t.iter().flat_map(|&g| std::iter::repeat_n(g, c / groups)).collect();
        let t = Tensor::from_f32(&[c], per_channel).map_err(|e| e.to_string())?;
        ins.push(ctx.g.add_constant(format!("{name}/{what}"), t));
    }
    Ok(vec![Val::Ir(ctx.add(name, Op::GroupNorm { groups, axis: 1, epsilon: eps }, &ins)?)])
}

/// LayerNormalization over the axes from `axis` on.
pub fn layer_norm(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let axis = ctx.axis(attr_i(node, "axis", -1), r)?;
    let scale = ctx.req(node, 1)?;
    let s = ctx.ir(&scale)?;
    let b = match ctx.input(node, 2) {
        Some(b) => ctx.ir(&b)?,
        None => {
            let shape: Vec<usize> = ctx.g.value(s).ty.shape.as_fixed().ok_or("the scale's shape must be fixed")?;
            let n = ctx.fresh(name);
            ctx.g.add_constant(n, Tensor::zeros(&shape))
        }
    };
    let xi = ctx.ir(&x)?;
    let eps = attr_f(node, "epsilon", 1e-5);
    let axes: Vec<usize> = (axis..r).collect();
    let y = ctx.add(name, Op::LayerNorm { axes: axes.clone(), epsilon: eps }, &[xi, s, b])?;
    let mut outs = vec![Val::Ir(y)];
    // The optional Mean and InvStdDev outputs (the normalized axes kept, of size 1).
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        let m = moments(ctx, name, xi, &axes, eps)?;
        outs.extend([Val::Ir(m.mean), Val::Ir(m.inv)]);
    }
    Ok(outs)
}

/// Softmax / LogSoftmax: one axis (opset ≥ 13) or every axis from `axis` on (older opsets).
pub fn softmax(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let new = ctx.opset >= 13;
    let axis = ctx.axis(attr_i(node, "axis", if new { -1 } else { 1 }), r)?;
    let axes: Vec<usize> = if new { vec![axis] } else { (axis..r).collect() };
    let xi = ctx.ir(&x)?;
    let op = if node.op_type.as_deref() == Some("LogSoftmax") {
        if axes.len() != 1 {
            return Err("LogSoftmax over several axes is not supported".into());
        }
        Op::LogSoftmax { axis: axes[0] }
    } else {
        Op::Softmax { axes }
    };
    Ok(vec![Val::Ir(ctx.add(name, op, &[xi])?)])
}

/// Reduce{Mean,Sum,Max,Min,Prod,SumSquare,L1,L2}: axes from the attribute or the input.
pub fn reduce(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let op = node.op_type.clone().unwrap_or_default();
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let axes: Vec<i64> = match ctx.input(node, 1) {
        Some(a) => ctx.ints(&a, "reduction axes")?,
        None => attr_ints(node, "axes").unwrap_or_default(),
    };
    let keep = attr_i(node, "keepdims", 1) != 0;
    let mut xi = ctx.ir(&x)?;
    if axes.is_empty() && attr_i(node, "noop_with_empty_axes", 0) != 0 {
        return Ok(vec![Val::Ir(xi)]);
    }
    let mut ax: Vec<usize> = if axes.is_empty() {
        (0..r).collect()
    } else {
        axes.iter().map(|&a| ctx.axis(a, r)).collect::<Result<_, _>>()?
    };
    ax.sort_unstable();
    ax.dedup();
    let kind = match op.as_str() {
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceProd" => ReduceKind::Prod,
        _ => ReduceKind::Sum,
    };
    match op.as_str() {
        "ReduceSumSquare" | "ReduceL2" => xi = ctx.tmp(name, Op::Unary(UnaryOp::Square), &[xi])?,
        "ReduceL1" => xi = ctx.tmp(name, Op::Unary(UnaryOp::Abs), &[xi])?,
        _ => {}
    }
    if op == "ReduceLogSumExp" {
        // max + log Σ exp(x − max), the max kept for the broadcast.
        let m = ctx.tmp(name, Op::Reduce { kind: ReduceKind::Max, axes: ax.clone(), keepdims: true }, &[xi])?;
        let d = ctx.tmp(name, Op::Binary(ir::BinaryOp::Sub), &[xi, m])?;
        let e = ctx.tmp(name, Op::Unary(UnaryOp::Exp), &[d])?;
        let s = ctx.tmp(name, Op::Reduce { kind: ReduceKind::Sum, axes: ax.clone(), keepdims: true }, &[e])?;
        let l = ctx.tmp(name, Op::Unary(UnaryOp::Log), &[s])?;
        let y = ctx.tmp(name, Op::Binary(ir::BinaryOp::Add), &[l, m])?;
        if keep {
            return Ok(vec![Val::Ir(y)]);
        }
        let shape: Vec<S> = ctx
            .shape_of(&Val::Ir(y))
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !ax.contains(i))
            .map(|(_, d)| d)
            .collect();
        return Ok(vec![Val::Ir(ctx.reshape_to(name, y, &shape)?)]);
    }
    let after = matches!(op.as_str(), "ReduceL2" | "ReduceLogSum");
    let red_name = if after { ctx.fresh(name) } else { name.to_string() };
    let mut y = ctx.add(&red_name, Op::Reduce { kind, axes: ax, keepdims: keep }, &[xi])?;
    match op.as_str() {
        "ReduceL2" => y = ctx.add(name, Op::Unary(UnaryOp::Sqrt), &[y])?,
        "ReduceLogSum" => y = ctx.add(name, Op::Unary(UnaryOp::Log), &[y])?,
        _ => {}
    }
    Ok(vec![Val::Ir(y)])
}

/// DepthToSpace and SpaceToDepth (channels-first) as a reshape, a transpose and a reshape.
pub fn depth_space(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let b = match attr_i(node, "blocksize", 0) {
        b @ 1..=MAX_ATTR => b as f64,
        b => return Err(format!("blocksize {b}")),
    };
    let [n, S::N(c), S::N(h), S::N(w)] = s[..] else {
        return Err(format!(
            "the input must be (N, C, H, W) with fixed C, H and W, not {}",
            crate::onnx::value::show(&s)
        ));
    };
    let to_space = node.op_type.as_deref() == Some("DepthToSpace");
    let (mid, perm, out): (Vec<f64>, Vec<usize>, Vec<f64>) = if to_space {
        if c % (b * b) != 0.0 {
            return Err(format!("{c} channels do not split into blocks of {b}x{b}"));
        }
        let cb = c / (b * b);
        if attr_s(node, "mode", "DCR") == "CRD" {
            (vec![cb, b, b, h, w], vec![0, 1, 4, 2, 5, 3], vec![cb, h * b, w * b])
        } else {
            (vec![b, b, cb, h, w], vec![0, 3, 4, 1, 5, 2], vec![cb, h * b, w * b])
        }
    } else {
        if h % b != 0.0 || w % b != 0.0 {
            return Err(format!("({h}, {w}) does not split into blocks of {b}x{b}"));
        }
        (vec![c, h / b, b, w / b, b], vec![0, 3, 5, 1, 2, 4], vec![c * b * b, h / b, w / b])
    };
    let xi = ctx.ir(&x)?;
    let shape = |v: &[f64]| std::iter::once(n).chain(v.iter().map(|&d| S::N(d))).collect::<Vec<S>>();
    let nm = ctx.fresh(name);
    let r = ctx.reshape_to(&nm, xi, &shape(&mid))?;
    let t = ctx.tmp(name, Op::Transpose { perm }, &[r])?;
    Ok(vec![Val::Ir(ctx.reshape_to(name, t, &shape(&out))?)])
}

/// LRN (channels-first): `x / (bias + alpha/size · Σ x²)^beta`, the sum over a window of
/// `size` channels around each (ONNX's: floor((size−1)/2) before, ceil((size−1)/2) after), as a
/// 1×1 convolution of x² with a banded 0/1 kernel.
pub fn lrn(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let r = s.len();
    let c = match s.get(1) {
        Some(S::N(c)) if r >= 3 => *c as usize,
        _ => return Err("LRN needs a channels-first input of rank 3 or more with fixed channels".into()),
    };
    let size = match attr_i(node, "size", 0) {
        n @ 1..=MAX_ATTR => n as usize,
        n => return Err(format!("LRN size {n}")),
    };
    let (alpha, beta, bias) = (attr_f(node, "alpha", 1e-4), attr_f(node, "beta", 0.75), attr_f(node, "bias", 1.0));
    let (before, after) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
    let mut band = vec![0f32; c * c];
    for out in 0..c {
        for i in out.saturating_sub(before)..=(out + after).min(c - 1) {
            band[i * c + out] = 1.0;
        }
    }
    let mut kshape = vec![1; r - 2];
    kshape.extend([c, c]);
    let kernel = Tensor::from_f32(&kshape, band).map_err(|e| e.to_string())?;
    let k = ctx.g.add_constant(format!("{name}/window"), kernel);
    let xi = ctx.ir(&x)?;
    let sq = ctx.tmp(name, Op::Unary(UnaryOp::Square), &[xi])?;
    let n = r - 2;
    let attrs = ConvAttrs { strides: vec![1; n], dilations: vec![1; n], pads: vec![(0, 0); n], groups: 1 };
    let sum = ctx.tmp(name, Op::ChannelsFirst(Box::new(Op::Conv(attrs))), &[sq, k])?;
    let t = ctx.tmp(name, Op::Unary(UnaryOp::Affine { scale: alpha / size as f32, offset: bias }), &[sum])?;
    let e = ctx.g.add_constant(format!("{name}/beta"), Tensor::from_f32(&[], vec![-beta]).map_err(|e| e.to_string())?);
    let p = ctx.tmp(name, Op::Binary(ir::BinaryOp::Pow), &[t, e])?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Binary(ir::BinaryOp::Mul), &[xi, p])?)])
}

/// ArgMax / ArgMin along one axis (int64 indices).
pub fn arg_reduce(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    let axis = ctx.axis(attr_i(node, "axis", 0), r)?;
    let op = Op::ArgReduce {
        max: node.op_type.as_deref() == Some("ArgMax"),
        axis,
        keepdims: attr_i(node, "keepdims", 1) != 0,
        last: attr_i(node, "select_last_index", 0) != 0,
    };
    let xi = ctx.ir(&x)?;
    Ok(vec![Val::Ir(ctx.add(name, op, &[xi])?)])
}
