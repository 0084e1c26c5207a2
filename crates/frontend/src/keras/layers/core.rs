//! Dense, activations, reshaping, merging, embedding and preprocessing layers.

use super::ctx::{
    cfg_axes, cfg_bool, cfg_count, cfg_f32, cfg_opt_f32, cfg_str, expect_weights, layer_activation, norm_axis, weight,
    Ctx, LayerCall,
};
use crate::FrontendError;
use ir::{BinaryOp, DType, Op, ReduceKind, Tensor, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

fn last_dim(ctx: &Ctx, lc: &LayerCall, x: ValueId) -> Result<usize, FrontendError> {
    ctx.dims(x)
        .last()
        .and_then(|d| d.fixed())
        .ok_or_else(|| ctx.err(lc, "the last axis of the input must have a known size"))
}

pub(super) fn dense(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let units = cfg_count(lc.config, "units", None, 1).map_err(|m| ctx.err(lc, m))?;
    let fin = last_dim(ctx, lc, x)?;
    let use_bias = cfg_bool(lc.config, "use_bias", true);
    expect_weights(ctx, lc, if use_bias { 2 } else { 1 })?;
    let k = weight(ctx, lc, 0, "kernel", Some(&[fin, units]))?;
    let kv = ctx.konst(lc, "kernel", k);
    let mut y = ctx.node(lc, "matmul", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, kv])?;
    if use_bias {
        let b = weight(ctx, lc, 1, "bias", Some(&[units]))?;
        let bv = ctx.konst(lc, "bias", b);
        let axis = ctx.rank(y) - 1;
        y = ctx.node(lc, "bias", Op::BiasAdd { axis }, &[y, bv])?;
    }
    Ok(vec![layer_activation(ctx, lc, y)?])
}

/// EinsumDense: `einsum(equation, x, kernel)`, plus a bias over `bias_axes`, then the activation.
pub(super) fn einsum_dense(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let eq = lc.config.get("equation").and_then(Value::as_str).ok_or_else(|| ctx.err(lc, "no 'equation'"))?;
    if lc.config.get("lora_rank").is_some_and(|v| !v.is_null()) {
        return Err(ctx.err(lc, "EinsumDense with LoRA weights is not supported"));
    }
    let bias = lc.config.get("bias_axes").and_then(Value::as_str).is_some_and(|b| !b.is_empty());
    expect_weights(ctx, lc, if bias { 2 } else { 1 })?;
    let k = weight(ctx, lc, 0, "kernel", None)?;
    let kv = ctx.konst(lc, "kernel", k);
    let mut y = super::ops::einsum(ctx, lc, eq, &[x, kv])?;
    if bias {
        // Keras stores the bias with the output's trailing dims (1 where an axis has no bias).
        let b = weight(ctx, lc, 1, "bias", None)?;
        let bv = ctx.konst(lc, "bias", b);
        y = ctx.binary(lc, "bias", BinaryOp::Add, y, bv)?;
    }
    Ok(vec![layer_activation(ctx, lc, y)?])
}

pub(super) fn activation_layer(ctx: &mut Ctx, lc: &LayerCall) -> R {
    Ok(vec![layer_activation(ctx, lc, lc.inputs[0])?])
}

pub(super) fn activation_class(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let c = lc.config;
    let u = match lc.class {
        "ReLU" => {
            let max_value = cfg_opt_f32(c, "max_value").map_err(|e| ctx.err(lc, e))?;
            if let Some(m) = max_value.filter(|m| *m < 0.0) {
                return Err(ctx.err(lc, format!("'max_value' must be at least 0, got {m}")));
            }
            let negative_slope = cfg_f32(c, "negative_slope", 0.0).map_err(|e| ctx.err(lc, e))?;
            let threshold = cfg_f32(c, "threshold", 0.0).map_err(|e| ctx.err(lc, e))?;
            if max_value.is_none() && negative_slope == 0.0 && threshold == 0.0 {
                UnaryOp::Relu
            } else {
                UnaryOp::ReluClip { max_value, negative_slope, threshold }
            }
        }
        "LeakyReLU" => {
            // Keras 3 calls it negative_slope, Keras 2 alpha.
            let k = if c.get("negative_slope").is_some() { "negative_slope" } else { "alpha" };
            UnaryOp::LeakyRelu { alpha: cfg_f32(c, k, 0.3).map_err(|e| ctx.err(lc, e))? }
        }
        "ELU" => UnaryOp::Elu { alpha: cfg_f32(c, "alpha", 1.0).map_err(|e| ctx.err(lc, e))? },
        "ThresholdedReLU" => UnaryOp::ThresholdedRelu { theta: cfg_f32(c, "theta", 1.0).map_err(|e| ctx.err(lc, e))? },
        _ => {
            let axes = cfg_axes(c, "axis", -1, ctx.rank(x)).map_err(|e| ctx.err(lc, e))?;
            return Ok(vec![ctx.node(lc, "", Op::Softmax { axes }, &[x])?]);
        }
    };
    Ok(vec![ctx.unary(lc, "", u, x)?])
}

pub(super) fn prelu(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    expect_weights(ctx, lc, 1)?;
    let dims = ctx.dims(x);
    let alpha = weight(ctx, lc, 0, "alpha", None)?;
    if alpha.rank() + 1 != dims.len() {
        return Err(ctx.werr(lc, format!("alpha has shape {:?} for an input of rank {}", alpha.shape(), dims.len())));
    }
    let av = ctx.konst(lc, "alpha", alpha);
    let pos = ctx.unary(lc, "pos", UnaryOp::Relu, x)?;
    let nx = ctx.unary(lc, "negx", UnaryOp::Neg, x)?;
    let rn = ctx.unary(lc, "relu_negx", UnaryOp::Relu, nx)?;
    let neg = ctx.binary(lc, "neg", BinaryOp::Mul, av, rn)?;
    Ok(vec![ctx.binary(lc, "", BinaryOp::Sub, pos, neg)?])
}

/// LayerScale (`keras.applications.convnext`): `x · gamma`, a learned scale per channel (the
/// last axis).
pub(super) fn layer_scale(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    expect_weights(ctx, lc, 1)?;
    let channels = ctx.dims(x).last().and_then(|d| d.fixed());
    let gamma = weight(ctx, lc, 0, "gamma", None)?;
    if gamma.rank() != 1 || channels != gamma.shape().first().copied() {
        return Err(ctx.werr(lc, format!("gamma has shape {:?} for {channels:?} channels", gamma.shape())));
    }
    let g = ctx.konst(lc, "gamma", gamma);
    Ok(vec![ctx.binary(lc, "", BinaryOp::Mul, x, g)?])
}

pub(super) fn identity(_ctx: &mut Ctx, lc: &LayerCall) -> R {
    Ok(lc.inputs.clone())
}

/// Dropout and the noise layers: the identity at inference, kept as a named `identity` node so
/// training can put the layer's randomness there (the optimizer removes it for inference).
pub(super) fn noise(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let mut out = Vec::with_capacity(lc.inputs.len());
    for &x in &lc.inputs {
        out.push(ctx.unary(lc, "", UnaryOp::Identity, x)?);
    }
    Ok(out)
}

fn channels_first(lc: &LayerCall) -> bool {
    cfg_str(lc.config, "data_format", "channels_last") == "channels_first"
}

pub(super) fn flatten(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let mut x = lc.inputs[0];
    let r = ctx.rank(x);
    if channels_first(lc) && r > 2 {
        // Keras moves channels last before flattening channels_first data.
        let mut perm = vec![0];
        perm.extend(2..r);
        perm.push(1);
        x = ctx.node(lc, "to_channels_last", Op::Transpose { perm }, &[x])?;
    }
    if r == 1 {
        return Ok(vec![ctx.node(lc, "", Op::Reshape { shape: vec![0, 1] }, &[x])?]);
    }
    Ok(vec![ctx.node(lc, "", Op::Reshape { shape: vec![0, -1] }, &[x])?])
}

pub(super) fn reshape(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let t = lc.config.get("target_shape").and_then(Value::as_array).ok_or_else(|| ctx.err(lc, "no target_shape"))?;
    let mut shape = vec![0i64];
    for d in t {
        let v = d.as_i64().unwrap_or(-1);
        if v == 0 {
            return Err(ctx.err(lc, "target_shape has a zero size"));
        }
        shape.push(v);
    }
    Ok(vec![ctx.node(lc, "", Op::Reshape { shape }, &[lc.inputs[0]])?])
}

pub(super) fn permute(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let d = lc.config.get("dims").and_then(Value::as_array).ok_or_else(|| ctx.err(lc, "no dims"))?;
    let mut perm = vec![0usize];
    for v in d {
        perm.push(v.as_u64().ok_or_else(|| ctx.err(lc, "bad dims"))? as usize);
    }
    Ok(vec![ctx.node(lc, "", Op::Transpose { perm }, &[lc.inputs[0]])?])
}

pub(super) fn repeat_vector(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let n = cfg_count(lc.config, "n", None, 1).map_err(|m| ctx.err(lc, m))?;
    let x = ctx.node(lc, "expand", Op::Reshape { shape: vec![0, 1, -1] }, &[lc.inputs[0]])?;
    Ok(vec![ctx.node(lc, "", Op::Tile { repeats: vec![1, n, 1] }, &[x])?])
}

pub(super) fn merge(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let xs = &lc.inputs;
    if lc.class == "Subtract" && xs.len() != 2 {
        return Err(ctx.err(lc, format!("Subtract takes 2 inputs, got {}", xs.len())));
    }
    if xs.len() < 2 && lc.class != "Subtract" {
        return Err(ctx.err(lc, format!("a merge layer needs at least 2 inputs, got {}", xs.len())));
    }
    if let Some(y) = super::masks::masked_merge(ctx, lc)? {
        return Ok(vec![y]);
    }
    let op = match lc.class {
        "Add" | "Average" => BinaryOp::Add,
        "Subtract" => BinaryOp::Sub,
        "Multiply" => BinaryOp::Mul,
        "Maximum" => BinaryOp::Max,
        _ => BinaryOp::Min,
    };
    let mut acc = xs[0];
    for (i, &x) in xs[1..].iter().enumerate() {
        let part =
            if i + 2 == xs.len() && lc.class != "Average" { String::new() } else { format!("{}{}", op.name(), i) };
        acc = ctx.binary(lc, &part, op, acc, x)?;
    }
    if lc.class == "Average" {
        acc = ctx.unary(lc, "", UnaryOp::Affine { scale: 1.0 / xs.len() as f32, offset: 0.0 }, acc)?;
    }
    Ok(vec![acc])
}

pub(super) fn concatenate(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = ctx.rank(lc.inputs[0]);
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let [axis] = axes[..] else {
        return Err(ctx.err(lc, format!("'axis' must be one axis, got {}", lc.config["axis"])));
    };
    Ok(vec![ctx.node(lc, "", Op::Concat { axis }, &lc.inputs)?])
}

pub(super) fn dot(ctx: &mut Ctx, lc: &LayerCall) -> R {
    if lc.inputs.len() != 2 {
        return Err(ctx.err(lc, "Dot takes 2 inputs"));
    }
    let (mut a, mut b) = (lc.inputs[0], lc.inputs[1]);
    let (ra, rb) = (ctx.rank(a), ctx.rank(b));
    let given = lc.config.get("axes").cloned().unwrap_or(Value::Null);
    let bad = || ctx.err(lc, format!("'axes' must be an axis of each input (ranks {ra} and {rb}), got {given}"));
    let axes: Vec<i64> = match &given {
        Value::Number(n) => vec![n.as_i64().ok_or_else(bad)?; 2],
        Value::Array(v) if v.len() == 2 => v.iter().map(|x| x.as_i64().ok_or_else(bad)).collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    let ax = norm_axis(axes[0], ra).ok_or_else(bad)?;
    let bx = norm_axis(axes[1], rb).ok_or_else(bad)?;
    if cfg_bool(lc.config, "normalize", false) {
        a = ctx.node(lc, "l2norm_a", Op::L2Normalize { axes: vec![ax], epsilon: 1e-12 }, &[a])?;
        b = ctx.node(lc, "l2norm_b", Op::L2Normalize { axes: vec![bx], epsilon: 1e-12 }, &[b])?;
    }
    match (ra, rb) {
        (2, 2) => {
            let p = ctx.binary(lc, "mul", BinaryOp::Mul, a, b)?;
            Ok(vec![ctx.node(lc, "", Op::Reduce { kind: ReduceKind::Sum, axes: vec![1], keepdims: true }, &[p])?])
        }
        (3, 3) => {
            let ta = ax == 1;
            let tb = bx == 2;
            Ok(vec![ctx.node(lc, "", Op::MatMul { transpose_a: ta, transpose_b: tb }, &[a, b])?])
        }
        _ => Err(ctx.err(lc, format!("Dot of ranks {ra} and {rb} is not supported"))),
    }
}

pub(super) fn embedding(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let mut ids = lc.inputs[0];
    expect_weights(ctx, lc, 1)?;
    let dim = lc.config.get("output_dim").and_then(Value::as_u64).map(|v| v as usize);
    let vocab = lc.config.get("input_dim").and_then(Value::as_u64).map(|v| v as usize);
    let e = weight(ctx, lc, 0, "embeddings", None)?;
    if e.rank() != 2 || dim.is_some_and(|d| d != e.shape()[1]) || vocab.is_some_and(|v| v != e.shape()[0]) {
        let show = |d: Option<usize>| d.map_or("?".to_string(), |d| d.to_string());
        return Err(ctx.werr(
            lc,
            format!(
                "embeddings have shape {:?}, the config says input_dim {} and output_dim {}",
                e.shape(),
                show(vocab),
                show(dim)
            ),
        ));
    }
    let ev = ctx.konst(lc, "embeddings", e);
    if ctx.g.value(ids).ty.dtype.is_float() {
        ids = ctx.node(lc, "cast", Op::Cast { to: DType::I32 }, &[ids])?;
    }
    Ok(vec![ctx.node(lc, "", Op::Gather { axis: 0 }, &[ev, ids])?])
}

/// A number or a list of numbers (`None` when absent).
fn opt_float_list(c: &Value, k: &str) -> Result<Option<Vec<f32>>, String> {
    let finite = |x: &Value| x.as_f64().map(|f| f as f32).filter(|f| f.is_finite());
    let bad = |v: &Value| format!("'{k}' must be a finite number or a list of them, got {v}");
    match c.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Array(a)) if !a.is_empty() => {
            Ok(Some(a.iter().map(finite).collect::<Option<_>>().ok_or_else(|| bad(v))?))
        }
        Some(v) => Ok(Some(vec![finite(v).ok_or_else(|| bad(v))?])),
    }
}

/// A number or a list of numbers (`default` when absent).
fn float_list(c: &Value, k: &str, default: f32) -> Result<Vec<f32>, String> {
    Ok(opt_float_list(c, k)?.unwrap_or_else(|| vec![default]))
}

pub(super) fn rescaling(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let scale = float_list(lc.config, "scale", 1.0).map_err(|e| ctx.err(lc, e))?;
    let offset = float_list(lc.config, "offset", 0.0).map_err(|e| ctx.err(lc, e))?;
    if scale.len() == 1 && offset.len() == 1 {
        return Ok(vec![ctx.unary(lc, "", UnaryOp::Affine { scale: scale[0], offset: offset[0] }, x)?]);
    }
    let sl = scale.len();
    let ol = offset.len();
    let s = ctx.konst(lc, "scale", Tensor::from_f32(&[sl], scale).map_err(|e| ctx.err(lc, e.to_string()))?);
    let o = ctx.konst(lc, "offset", Tensor::from_f32(&[ol], offset).map_err(|e| ctx.err(lc, e.to_string()))?);
    let y = ctx.binary(lc, "scale", BinaryOp::Mul, x, s)?;
    Ok(vec![ctx.binary(lc, "", BinaryOp::Add, y, o)?])
}

pub(super) fn normalization(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let dims = ctx.dims(x);
    let r = dims.len();
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let mut bshape = vec![1usize; r];
    for &a in &axes {
        bshape[a] = dims[a].fixed().ok_or_else(|| ctx.err(lc, "normalized axes must have known sizes"))?;
    }
    let n: usize = bshape.iter().product();
    let mean = opt_float_list(lc.config, "mean").map_err(|e| ctx.err(lc, e))?;
    let variance = opt_float_list(lc.config, "variance").map_err(|e| ctx.err(lc, e))?;
    let (mean, var) = match (mean, variance) {
        (Some(m), Some(v)) => {
            let exp = |v: Vec<f32>| if v.len() == 1 { vec![v[0]; n] } else { v };
            (exp(m), exp(v))
        }
        _ => {
            let m = weight(ctx, lc, 0, "mean", None)?.to_f32_vec();
            let v = weight(ctx, lc, 1, "variance", None)?.to_f32_vec();
            (m, v)
        }
    };
    if mean.len() != n || var.len() != n {
        return Err(ctx.werr(lc, format!("mean/variance hold {}/{} values for {n} features", mean.len(), var.len())));
    }
    let std: Vec<f32> = var.iter().map(|v| v.sqrt().max(1e-7)).collect();
    let mk = |ctx: &Ctx, d: Vec<f32>| Tensor::from_f32(&bshape, d).map_err(|e| ctx.err(lc, e.to_string()));
    let mt = mk(ctx, mean)?;
    let st = mk(ctx, std)?;
    let mv = ctx.konst(lc, "mean", mt);
    let sv = ctx.konst(lc, "std", st);
    if cfg_bool(lc.config, "invert", false) {
        let y = ctx.binary(lc, "scale", BinaryOp::Mul, x, sv)?;
        return Ok(vec![ctx.binary(lc, "", BinaryOp::Add, y, mv)?]);
    }
    let y = ctx.binary(lc, "center", BinaryOp::Sub, x, mv)?;
    Ok(vec![ctx.binary(lc, "", BinaryOp::Div, y, sv)?])
}

/// Masking: a time step whose features all equal `mask_value` is masked (the mask recorded for
/// the layers after it) and zeroed, as Keras computes it.
pub(super) fn masking(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let v = cfg_f32(lc.config, "mask_value", 0.0).map_err(|e| ctx.err(lc, e))?;
    let r = ctx.rank(x);
    if r < 2 {
        return Err(ctx.err(lc, "Masking needs (batch, time, ...) inputs"));
    }
    let c = ctx.konst(lc, "mask_value", Tensor::scalar(v));
    let d = ctx.binary(lc, "mask/diff", BinaryOp::Sub, x, c)?;
    let a = ctx.unary(lc, "mask/abs", UnaryOp::Abs, d)?;
    let s = ctx.unary(lc, "mask/sign", UnaryOp::Sign, a)?;
    // any(x != v) over the features = max of the 0/1 indicators.
    let axes: Vec<usize> = (2..r).collect();
    let keep = ctx.node(lc, "mask/any", Op::Reduce { kind: ir::ReduceKind::Max, axes, keepdims: true }, &[s])?;
    let y = ctx.binary(lc, "", BinaryOp::Mul, x, keep)?;
    let bt = ctx.node(lc, "mask", Op::Reshape { shape: vec![0, -1] }, &[keep])?;
    ctx.set_mask(y, bt);
    Ok(vec![y])
}
