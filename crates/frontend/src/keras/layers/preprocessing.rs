//! Preprocessing layers on integer and numeric features: CategoryEncoding, Discretization, and
//! keras.layers.ReversibleEmbedding (an embedding whose reverse call projects back to logits).

use super::ctx::{cfg_str, expect_weights, weight, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, DType, Op, ReduceKind, Tensor, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

fn as_float(ctx: &mut Ctx, lc: &LayerCall, x: ValueId) -> Result<ValueId, FrontendError> {
    if ctx.g.value(x).ty.dtype.is_float() {
        return Ok(x);
    }
    ctx.node(lc, "float", Op::Cast { to: DType::F32 }, &[x])
}

/// Keras's `encode_categorical_inputs` of integer indices `ids` (float) into `depth` classes:
/// one_hot (a trailing axis of 1 replaced by the classes), multi_hot or count over the last axis.
fn encode(ctx: &mut Ctx, lc: &LayerCall, ids: ValueId, mode: &str, depth: usize) -> Result<ValueId, FrontendError> {
    let hot = equals(ctx, lc, ids, "classes", (0..depth).map(|k| k as f32).collect())?;
    let r = ctx.rank(hot);
    match mode {
        "one_hot" => {
            let dims = ctx.dims(ids);
            if dims.len() >= 2 && dims.last().and_then(|d| d.fixed()) == Some(1) {
                let mut shape: Vec<i64> = vec![0; dims.len() - 1];
                shape.push(depth as i64);
                return ctx.node(lc, "", Op::Reshape { shape }, &[hot]);
            }
            Ok(hot)
        }
        "multi_hot" | "count" if r >= 3 => {
            let kind = if mode == "count" { ReduceKind::Sum } else { ReduceKind::Max };
            ctx.node(lc, "", Op::Reduce { kind, axes: vec![r - 2], keepdims: false }, &[hot])
        }
        "multi_hot" | "count" => Ok(hot),
        other => Err(ctx.err(lc, format!("output_mode '{other}' is not supported"))),
    }
}

pub(super) fn category_encoding(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let depth = lc.config.get("num_tokens").and_then(Value::as_u64).filter(|&d| d > 0 && d <= 1 << 20);
    let depth = depth.ok_or_else(|| ctx.err(lc, "num_tokens must be a count up to 2^20"))? as usize;
    if lc.config.get("sparse").and_then(Value::as_bool) == Some(true) {
        return Err(ctx.err(lc, "sparse outputs are not supported"));
    }
    if lc.inputs.len() > 1 || lc.kw_inputs.iter().any(|(k, _)| k == "count_weights") {
        return Err(ctx.err(lc, "count_weights are not supported"));
    }
    let ids = as_float(ctx, lc, lc.inputs[0])?;
    let mode = cfg_str(lc.config, "output_mode", "multi_hot");
    Ok(vec![encode(ctx, lc, ids, mode, depth)?])
}

/// Discretization: the bucket of each value among `bin_boundaries` (`numpy.digitize`: how many
/// boundaries are ≤ the value), as int64 or encoded (one_hot, multi_hot, count).
pub(super) fn discretization(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let bounds: Vec<f32> = match lc.config.get("bin_boundaries") {
        Some(Value::Array(a)) => {
            a.iter().map(|v| v.as_f64().map(|f| f as f32)).collect::<Option<_>>().unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if bounds.is_empty() || bounds.len() > 1 << 16 {
        return Err(ctx.err(lc, "bin_boundaries must be a list of 1 to 65536 numbers (an adapted layer records them)"));
    }
    let x = as_float(ctx, lc, lc.inputs[0])?;
    let mut shape: Vec<i64> = vec![0; ctx.rank(x)];
    shape.push(1);
    let col = ctx.node(lc, "values", Op::Reshape { shape }, &[x])?;
    let n = bounds.len();
    let b = ctx.konst(lc, "bin_boundaries", Tensor::from_f32(&[n], bounds).map_err(|e| ctx.err(lc, e.to_string()))?);
    // x ≥ b: not (b − x > 0).
    let d = ctx.binary(lc, "below", BinaryOp::Sub, b, col)?;
    let d = ctx.unary(lc, "below_sign", UnaryOp::Sign, d)?;
    let below = ctx.unary(lc, "below_strict", UnaryOp::Relu, d)?;
    let at_or_above = ctx.unary(lc, "at_or_above", UnaryOp::Affine { scale: -1.0, offset: 1.0 }, below)?;
    let r = ctx.rank(at_or_above);
    let idx = ctx.node(
        lc,
        "bucket",
        Op::Reduce { kind: ReduceKind::Sum, axes: vec![r - 1], keepdims: false },
        &[at_or_above],
    )?;
    match cfg_str(lc.config, "output_mode", "int") {
        "int" => {
            let to = match lc.config.get("output_dtype").and_then(Value::as_str).unwrap_or("int64") {
                "int32" => DType::I32,
                "float32" => DType::F32,
                _ => DType::I64,
            };
            Ok(vec![ctx.node(lc, "", Op::Cast { to }, &[idx])?])
        }
        mode => Ok(vec![encode(ctx, lc, idx, mode, n + 1)?]),
    }
}

/// ReversibleEmbedding: a lookup like Embedding, or with `reverse=True` the logits `x · Eᵀ`
/// (the reverse embeddings when untied), soft-capped by `tanh(l / cap) · cap` if configured.
pub(super) fn reversible_embedding(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let reverse = lc.call.and_then(|c| c.kwargs.get("reverse")).and_then(Value::as_bool).unwrap_or(false);
    if !reverse {
        let tied = lc.config.get("tie_weights").and_then(Value::as_bool).unwrap_or(true);
        expect_weights(ctx, lc, if tied { 1 } else { 2 })?;
        let first = LayerCall {
            class: lc.class,
            name: lc.name,
            config: lc.config,
            call: lc.call,
            inputs: lc.inputs.clone(),
            kw_inputs: Vec::new(),
            weights: lc.weights[..1].to_vec(),
            weight_paths: lc.weight_paths[..1].to_vec(),
            key: lc.key.clone(),
        };
        return super::core::embedding(ctx, &first);
    }
    let tied = lc.config.get("tie_weights").and_then(Value::as_bool).unwrap_or(true);
    let (w, transpose_b) = if tied {
        (weight(ctx, lc, 0, "embeddings", None)?, true)
    } else {
        (weight(ctx, lc, 1, "reverse_embeddings", None)?, false)
    };
    if w.rank() != 2 {
        return Err(ctx.werr(lc, format!("embeddings of shape {:?}", w.shape())));
    }
    let what = if tied { "embeddings" } else { "reverse_embeddings" };
    let wv = ctx.konst(lc, what, w);
    let mut y = ctx.node(lc, "logits", Op::MatMul { transpose_a: false, transpose_b }, &[lc.inputs[0], wv])?;
    if let Some(cap) = lc.config.get("logit_soft_cap").and_then(Value::as_f64).filter(|c| *c > 0.0) {
        let cap = cap as f32;
        y = ctx.unary(lc, "soft_cap/scale", UnaryOp::Affine { scale: 1.0 / cap, offset: 0.0 }, y)?;
        y = ctx.unary(lc, "soft_cap/tanh", UnaryOp::Tanh, y)?;
        y = ctx.unary(lc, "", UnaryOp::Affine { scale: cap, offset: 0.0 }, y)?;
    }
    Ok(vec![y])
}

/// Keras's equality of `x` (float) with each entry of `table`: `(..., len)` of 0/1.
fn equals(ctx: &mut Ctx, lc: &LayerCall, x: ValueId, what: &str, table: Vec<f32>) -> Result<ValueId, FrontendError> {
    let n = table.len();
    let mut shape: Vec<i64> = vec![0; ctx.rank(x)];
    shape.push(1);
    let col = ctx.node(lc, &format!("{what}/column"), Op::Reshape { shape }, &[x])?;
    let t = ctx.konst(lc, what, Tensor::from_f32(&[n], table).map_err(|e| ctx.err(lc, e.to_string()))?);
    let d = ctx.binary(lc, &format!("{what}/diff"), BinaryOp::Sub, col, t)?;
    let d = ctx.unary(lc, &format!("{what}/abs"), UnaryOp::Abs, d)?;
    let d = ctx.unary(lc, &format!("{what}/sign"), UnaryOp::Sign, d)?;
    ctx.unary(lc, &format!("{what}/equal"), UnaryOp::Affine { scale: -1.0, offset: 1.0 }, d)
}

/// `Σ_k onehot[..., k] · values[k]` over the last axis.
fn pick(
    ctx: &mut Ctx,
    lc: &LayerCall,
    onehot: ValueId,
    what: &str,
    values: Vec<f32>,
) -> Result<ValueId, FrontendError> {
    let n = values.len();
    let v = ctx.konst(lc, what, Tensor::from_f32(&[n], values).map_err(|e| ctx.err(lc, e.to_string()))?);
    let w = ctx.binary(lc, &format!("{what}/weighted"), BinaryOp::Mul, onehot, v)?;
    let r = ctx.rank(w);
    ctx.node(lc, &format!("{what}/sum"), Op::Reduce { kind: ReduceKind::Sum, axes: vec![r - 1], keepdims: false }, &[w])
}

/// IntegerLookup with its vocabulary in the config: Keras's indices `[mask token] [OOV buckets]
/// [vocabulary]`, an out-of-vocabulary value into bucket `value mod buckets`; `invert` maps
/// indices back to values (the OOV token elsewhere); int64 or encoded outputs.
pub(super) fn integer_lookup(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let c = lc.config;
    let exact = |v: &Value| v.as_i64().filter(|n| n.unsigned_abs() < 1 << 24).map(|n| n as f32);
    let vocab: Option<Vec<f32>> =
        c.get("vocabulary").and_then(Value::as_array).and_then(|a| a.iter().map(exact).collect());
    let vocab = vocab.filter(|v| !v.is_empty() && v.len() <= 1 << 16).ok_or_else(|| {
        ctx.err(
            lc,
            "needs its vocabulary in the config (1 to 65536 integers below 2^24; an adapted layer keeps it elsewhere)",
        )
    })?;
    let n_oov = c.get("num_oov_indices").and_then(Value::as_u64).unwrap_or(1) as usize;
    let mask = c.get("mask_token").and_then(exact);
    let oov_token = c.get("oov_token").and_then(exact).unwrap_or(-1.0);
    if n_oov > 1 << 10 || c.get("sparse").and_then(Value::as_bool) == Some(true) {
        return Err(ctx.err(lc, "more than 1024 OOV buckets, or sparse outputs, are not supported"));
    }
    let offset = usize::from(mask.is_some()) + n_oov;
    let x = as_float(ctx, lc, lc.inputs[0])?;
    if c.get("invert").and_then(Value::as_bool) == Some(true) {
        // The table Keras inverts: [mask] [OOV token per bucket] [vocabulary].
        let table: Vec<f32> = mask.into_iter().chain(std::iter::repeat_n(oov_token, n_oov)).chain(vocab).collect();
        let positions = (0..table.len()).map(|k| k as f32).collect();
        let hot = equals(ctx, lc, x, "positions", positions)?;
        let value = pick(ctx, lc, hot, "table", table.iter().map(|v| v - oov_token).collect())?;
        let y = ctx.unary(lc, "value", UnaryOp::Affine { scale: 1.0, offset: oov_token }, value)?;
        return Ok(vec![ctx.node(lc, "", Op::Cast { to: DType::I64 }, &[y])?]);
    }
    let hot = equals(ctx, lc, x, "vocabulary", vocab.clone())?;
    let idx = pick(ctx, lc, hot, "indices", (0..vocab.len()).map(|k| (offset + k) as f32).collect())?;
    let found = pick(ctx, lc, hot, "found", vec![1.0; vocab.len()])?;
    let missing = ctx.unary(lc, "missing", UnaryOp::Affine { scale: -1.0, offset: 1.0 }, found)?;
    let first_oov = usize::from(mask.is_some()) as f32;
    let oov = if n_oov > 1 {
        // Python's floor modulo, as Keras's "floormod" OOV method.
        let nb = ctx.konst(lc, "buckets", Tensor::scalar(n_oov as f32));
        let b = ctx.floor_mod(lc, "bucket", x, nb)?;
        ctx.unary(lc, "oov", UnaryOp::Affine { scale: 1.0, offset: first_oov }, b)?
    } else {
        ctx.unary(lc, "oov", UnaryOp::Affine { scale: 0.0, offset: first_oov }, x)?
    };
    let oov = ctx.binary(lc, "oov/where_missing", BinaryOp::Mul, missing, oov)?;
    let mut y = ctx.binary(lc, "index", BinaryOp::Add, idx, oov)?;
    if let Some(m) = mask {
        let is_mask = equals(ctx, lc, x, "mask_token", vec![m])?;
        let r = ctx.rank(is_mask);
        let is_mask = ctx.node(
            lc,
            "mask_token/any",
            Op::Reduce { kind: ReduceKind::Max, axes: vec![r - 1], keepdims: false },
            &[is_mask],
        )?;
        let keep = ctx.unary(lc, "mask_token/keep", UnaryOp::Affine { scale: -1.0, offset: 1.0 }, is_mask)?;
        y = ctx.binary(lc, "index/masked", BinaryOp::Mul, y, keep)?;
    }
    match cfg_str(c, "output_mode", "int") {
        "int" => Ok(vec![ctx.node(lc, "", Op::Cast { to: DType::I64 }, &[y])?]),
        mode => Ok(vec![encode(ctx, lc, y, mode, offset + vocab.len())?]),
    }
}

/// TextVectorization and StringLookup run on the host, before the graph (`crate::text`): the
/// layer's output is the model input that takes their ids.
pub(super) fn text_on_host(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let one_hot_ok = matches!(lc.class, "HashedCrossing" | "Hashing");
    if !ctx.g.inputs().contains(&x) || (!one_hot_ok && ctx.g.value(x).ty.dtype != DType::I64) {
        return Err(ctx.err(lc, "runs only on a string model input it reads directly (kerasc does it on the host; the graph has no strings)"));
    }
    Ok(vec![x])
}
