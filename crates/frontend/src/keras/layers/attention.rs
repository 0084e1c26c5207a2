//! MultiHeadAttention and (Luong) Attention, lowered to matmuls, reshapes and a softmax.

use super::ctx::{cfg_bool, cfg_count, cfg_str, weight, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, Op, ReduceKind, Tensor, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

fn kw_bool(lc: &LayerCall, k: &str) -> bool {
    lc.call.and_then(|c| c.kwargs.get(k)).and_then(Value::as_bool).unwrap_or(false)
}

fn kw_tensor(lc: &LayerCall, k: &str) -> Option<ValueId> {
    lc.kw_inputs.iter().find(|(n, _)| n == k).map(|(_, v)| *v)
}

/// The most query × key positions of a mask built when the model loads (1 GiB of float32).
const MAX_MASK_POSITIONS: usize = 1 << 28;

/// Checks that a `(T, S)` mask of `t` queries over `s` keys can be built when the model loads.
fn positions(ctx: &Ctx, lc: &LayerCall, t: usize, s: usize) -> Result<usize, FrontendError> {
    t.checked_mul(s).filter(|&n| n <= MAX_MASK_POSITIONS).ok_or_else(|| {
        ctx.err(
            lc,
            format!("an attention mask of {t} queries over {s} keys is more than the 2^28 positions kerasc builds"),
        )
    })
}

/// Additive causal mask `(T, S)`: 0 where key j ≤ query i (aligned to the end), -1e9 elsewhere.
fn causal_mask(t: usize, s: usize) -> Tensor {
    let mut m = vec![0f32; t * s];
    for i in 0..t {
        for j in 0..s {
            // Keras's lower-triangular mask of ones(T, S).
            if j > i {
                m[i * s + j] = -1e9;
            }
        }
    }
    Tensor::from_f32(&[t, s], m).unwrap_or_else(|_| Tensor::zeros(&[t, s]))
}

fn seq_len(ctx: &Ctx, lc: &LayerCall, v: ValueId) -> Result<usize, FrontendError> {
    ctx.dims(v).get(1).and_then(|d| d.fixed()).ok_or_else(|| ctx.err(lc, "sequence lengths must be known"))
}

/// Softmax of attention `scores` over their last axis, masked as Keras does: the attention mask
/// (`(B, T, S)`, non-zero = attend, given to MultiHeadAttention) and the causal mask combined
/// by logical and, then `(1 − keep) · −1e9` added to the scores (`query` and `value` give the
/// causal mask's sizes). With `zero_masked` (Keras's Softmax layer with a mask), the masked
/// positions are zeroed after the softmax too, so a query that may attend to nothing gets zeros
/// rather than a uniform row.
fn masked_softmax(
    ctx: &mut Ctx,
    lc: &LayerCall,
    scores: ValueId,
    (query, value): (ValueId, ValueId),
    attention_mask: Option<ValueId>,
    zero_masked: bool,
) -> Result<ValueId, FrontendError> {
    let mut scores = scores;
    let mut kept = None;
    let causal = kw_bool(lc, "use_causal_mask");
    match attention_mask {
        None if causal => {
            let (t, s) = (seq_len(ctx, lc, query)?, seq_len(ctx, lc, value)?);
            positions(ctx, lc, t, s)?;
            let m = ctx.konst(lc, "causal_mask", causal_mask(t, s));
            scores = ctx.binary(lc, "mask", BinaryOp::Add, scores, m)?;
        }
        None => {}
        Some(mask) => {
            // keep ∈ {0, 1}: the mask as float (any non-zero attends), with a heads axis.
            let mut keep = ctx.node(lc, "mask/float", Op::Cast { to: ir::DType::F32 }, &[mask])?;
            keep = ctx.unary(lc, "mask/nonzero", UnaryOp::Abs, keep)?;
            keep = ctx.unary(lc, "mask/sign", UnaryOp::Sign, keep)?;
            if ctx.rank(scores) == 4 {
                let d = ctx.dims(mask);
                let (t, s) = match (d[1].fixed(), d[2].fixed()) {
                    (Some(t), Some(s)) => (t as i64, s as i64),
                    _ => return Err(ctx.err(lc, "attention_mask sizes must be known")),
                };
                keep = ctx.node(lc, "mask/heads", Op::Reshape { shape: vec![-1, 1, t, s] }, &[keep])?;
            }
            if causal {
                let (t, s) = (seq_len(ctx, lc, query)?, seq_len(ctx, lc, value)?);
                positions(ctx, lc, t, s)?;
                let lower = causal_mask(t, s).to_f32_vec().iter().map(|&v| f32::from(v == 0.0)).collect();
                let c = ctx.konst(
                    lc,
                    "causal_keep",
                    Tensor::from_f32(&[t, s], lower).map_err(|e| ctx.err(lc, e.to_string()))?,
                );
                keep = ctx.binary(lc, "mask/and_causal", BinaryOp::Mul, keep, c)?;
            }
            let adder = ctx.unary(lc, "mask/adder", UnaryOp::Affine { scale: 1e9, offset: -1e9 }, keep)?;
            scores = ctx.binary(lc, "mask", BinaryOp::Add, scores, adder)?;
            kept = Some(keep);
        }
    }
    let last = ctx.rank(scores) - 1;
    let probs = ctx.node(lc, "softmax", Op::Softmax { axes: vec![last] }, &[scores])?;
    match kept {
        Some(keep) if zero_masked => ctx.binary(lc, "masked_probs", BinaryOp::Mul, probs, keep),
        _ => Ok(probs),
    }
}

#[allow(clippy::too_many_arguments)]
/// Projects `x (B, T, d)` with kernel `(d, h, k)` and bias `(h, k)` into heads `(B, h, T, k)`.
fn project(
    ctx: &mut Ctx,
    lc: &LayerCall,
    what: &str,
    x: ValueId,
    idx: &mut usize,
    use_bias: bool,
    h: usize,
    k: usize,
) -> Result<ValueId, FrontendError> {
    let d = ctx.dims(x).last().and_then(|d| d.fixed()).ok_or_else(|| ctx.err(lc, "feature size must be known"))?;
    let w = weight(ctx, lc, *idx, &format!("{what} kernel"), Some(&[d, h, k]))?;
    *idx += 1;
    let w = w.reshape(&[d, h * k]).map_err(|e| ctx.err(lc, e.to_string()))?;
    let wv = ctx.konst(lc, &format!("{what}/kernel"), w);
    let mut y =
        ctx.node(lc, &format!("{what}/matmul"), Op::MatMul { transpose_a: false, transpose_b: false }, &[x, wv])?;
    if use_bias {
        let b = weight(ctx, lc, *idx, &format!("{what} bias"), Some(&[h, k]))?;
        *idx += 1;
        let b = b.reshape(&[h * k]).map_err(|e| ctx.err(lc, e.to_string()))?;
        let bv = ctx.konst(lc, &format!("{what}/bias"), b);
        y = ctx.node(lc, &format!("{what}/bias"), Op::BiasAdd { axis: 2 }, &[y, bv])?;
    }
    let y =
        ctx.node(lc, &format!("{what}/split_heads"), Op::Reshape { shape: vec![0, 0, h as i64, k as i64] }, &[y])?;
    ctx.node(lc, &format!("{what}/heads_first"), Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y])
}

pub(super) fn multi_head_attention(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let c = lc.config;
    let h = cfg_count(c, "num_heads", None, 1).map_err(|m| ctx.err(lc, m))?;
    let kd = cfg_count(c, "key_dim", None, 1).map_err(|m| ctx.err(lc, m))?;
    let vd = cfg_count(c, "value_dim", Some(kd), 1).map_err(|m| ctx.err(lc, m))?;
    let use_bias = cfg_bool(c, "use_bias", true);
    let query = lc.inputs[0];
    let value =
        lc.inputs.get(1).copied().or_else(|| kw_tensor(lc, "value")).ok_or_else(|| ctx.err(lc, "no value input"))?;
    let key = lc.inputs.get(2).copied().or_else(|| kw_tensor(lc, "key")).unwrap_or(value);
    if kw_tensor(lc, "query_mask").is_some()
        || kw_tensor(lc, "value_mask").is_some()
        || kw_tensor(lc, "key_mask").is_some()
    {
        return Err(ctx.err(lc, "query/value/key masks are not supported yet (attention_mask is)"));
    }
    let mut attention_mask = kw_tensor(lc, "attention_mask");
    if let Some(m) = attention_mask {
        if ctx.rank(m) != 3 {
            return Err(ctx.err(lc, "attention_mask must be (batch, query length, key length)"));
        }
    }
    // Keras's implicit masks (from Embedding(mask_zero=True) or Masking): query (B, T, 1),
    // value and key (B, 1, S), combined with the explicit mask by logical and.
    let implicit: Vec<(ValueId, Vec<i64>)> = [(query, vec![0, -1, 1]), (value, vec![0, 1, -1]), (key, vec![0, 1, -1])]
        .into_iter()
        .enumerate()
        .filter(|(i, (v, _))| *i < 2 || *v != value)
        .filter_map(|(_, (v, shape))| ctx.mask(v).map(|m| (m, shape)))
        .collect();
    for (k, (m, shape)) in implicit.into_iter().enumerate() {
        let m = ctx.node(lc, &format!("implicit_mask{k}"), Op::Reshape { shape }, &[m])?;
        attention_mask = Some(match attention_mask {
            None => m,
            Some(a) => {
                let af = ctx.node(lc, &format!("implicit_mask{k}/float"), Op::Cast { to: ir::DType::F32 }, &[a])?;
                ctx.binary(lc, &format!("implicit_mask{k}/and"), BinaryOp::Mul, af, m)?
            }
        });
    }
    if let Some(m) = attention_mask {
        // A (B, T, 1) or (B, 1, S) mask alone: broadcast to (B, T, S).
        let (t, s) = (seq_len(ctx, lc, query)?, seq_len(ctx, lc, value)?);
        positions(ctx, lc, t, s)?;
        let d = ctx.dims(m);
        if d[1] != ir::Dim::Fixed(t) || d[2] != ir::Dim::Fixed(s) {
            let ones = ctx.konst(lc, "mask_ones", Tensor::full(&[t, s], 1.0));
            let mf = ctx.node(lc, "mask_full/float", Op::Cast { to: ir::DType::F32 }, &[m])?;
            attention_mask = Some(ctx.binary(lc, "mask_full", BinaryOp::Mul, mf, ones)?);
        }
    }
    if ctx.rank(query) != 3 || ctx.rank(value) != 3 || ctx.rank(key) != 3 {
        return Err(ctx.err(lc, "only (batch, sequence, features) inputs are supported"));
    }
    if let Some(Value::Array(a)) = c.get("attention_axes") {
        if a.len() != 1 || !(a[0].as_i64() == Some(1) || a[0].as_i64() == Some(-2)) {
            return Err(ctx.err(lc, "attention_axes other than the sequence axis are not supported"));
        }
    }
    let per = if use_bias { 2 } else { 1 };
    if lc.weights.len() != 4 * per {
        return Err(ctx.werr(lc, format!("expected {} weight tensors, the file holds {}", 4 * per, lc.weights.len())));
    }
    let mut idx = 0;
    let q = project(ctx, lc, "query", query, &mut idx, use_bias, h, kd)?;
    let k = project(ctx, lc, "key", key, &mut idx, use_bias, h, kd)?;
    let v = project(ctx, lc, "value", value, &mut idx, use_bias, h, vd)?;
    let q = ctx.unary(lc, "scale", UnaryOp::Affine { scale: 1.0 / (kd as f32).sqrt(), offset: 0.0 }, q)?;
    let scores = ctx.node(lc, "scores", Op::MatMul { transpose_a: false, transpose_b: true }, &[q, k])?;
    // Keras 3 takes its fused attention kernel (a query that may attend to nothing attends to
    // everything alike) unless the scores are returned or dropped out; then its Softmax layer,
    // which zeroes the masked positions after the softmax.
    let dropout = c.get("dropout").and_then(Value::as_f64).unwrap_or(0.0);
    let zero_masked = !ctx.keras2 && (kw_bool(lc, "return_attention_scores") || dropout > 0.0);
    let probs = masked_softmax(ctx, lc, scores, (query, value), attention_mask, zero_masked)?;
    let o = ctx.node(lc, "attend", Op::MatMul { transpose_a: false, transpose_b: false }, &[probs, v])?;
    let o = ctx.node(lc, "heads_last", Op::Transpose { perm: vec![0, 2, 1, 3] }, &[o])?;
    let o = ctx.node(lc, "merge_heads", Op::Reshape { shape: vec![0, 0, (h * vd) as i64] }, &[o])?;
    let wo = weight(ctx, lc, idx, "output kernel", None)?;
    idx += 1;
    if wo.rank() != 3 || wo.shape()[0] != h || wo.shape()[1] != vd {
        return Err(ctx.werr(lc, format!("output kernel has shape {:?}, expected ({h}, {vd}, d)", wo.shape())));
    }
    let dout = wo.shape()[2];
    let wo = wo.reshape(&[h * vd, dout]).map_err(|e| ctx.err(lc, e.to_string()))?;
    let wov = ctx.konst(lc, "output/kernel", wo);
    let mut y = ctx.node(lc, "output/matmul", Op::MatMul { transpose_a: false, transpose_b: false }, &[o, wov])?;
    if use_bias {
        let b = weight(ctx, lc, idx, "output bias", Some(&[dout]))?;
        let bv = ctx.konst(lc, "output/bias", b);
        y = ctx.node(lc, "", Op::BiasAdd { axis: 2 }, &[y, bv])?;
    }
    if kw_bool(lc, "return_attention_scores") {
        return Ok(vec![y, probs]);
    }
    Ok(vec![y])
}

pub(super) fn attention(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let c = lc.config;
    if lc.inputs.len() < 2 {
        return Err(ctx.err(lc, "Attention takes [query, value] or [query, value, key]"));
    }
    let q = lc.inputs[0];
    let v = lc.inputs[1];
    let k = lc.inputs.get(2).copied().unwrap_or(v);
    let additive = lc.class == "AdditiveAttention";
    let use_scale = cfg_bool(c, "use_scale", additive);
    let mode = if additive { "additive" } else { cfg_str(c, "score_mode", "dot") };
    let mut idx = 0;
    let scale = if use_scale && !additive {
        idx += 1;
        Some(weight(ctx, lc, 0, "scale", None)?.to_f32_vec().first().copied().unwrap_or(1.0))
    } else {
        None
    };
    let scores = match mode {
        "dot" => {
            let s = ctx.node(lc, "scores", Op::MatMul { transpose_a: false, transpose_b: true }, &[q, k])?;
            match scale {
                Some(f) => ctx.unary(lc, "scale", UnaryOp::Affine { scale: f, offset: 0.0 }, s)?,
                None => s,
            }
        }
        "concat" => {
            let w = weight(ctx, lc, idx, "concat_score_weight", None)?.to_f32_vec().first().copied().unwrap_or(1.0);
            let qe = ctx.node(lc, "q_expand", Op::Reshape { shape: vec![0, 0, 1, -1] }, &[q])?;
            let dims = ctx.dims(k);
            let s = dims[1].fixed().ok_or_else(|| ctx.err(lc, "sequence lengths must be known"))? as i64;
            let d = dims[2].fixed().ok_or_else(|| ctx.err(lc, "feature size must be known"))? as i64;
            let ke = ctx.node(lc, "k_expand", Op::Reshape { shape: vec![0, 1, s, d] }, &[k])?;
            let mut sum = ctx.binary(lc, "q_plus_k", BinaryOp::Add, qe, ke)?;
            if let Some(f) = scale {
                sum = ctx.unary(lc, "scale", UnaryOp::Affine { scale: f, offset: 0.0 }, sum)?;
            }
            let t = ctx.unary(lc, "tanh", UnaryOp::Tanh, sum)?;
            let r = ctx.node(lc, "sum", Op::Reduce { kind: ReduceKind::Sum, axes: vec![3], keepdims: false }, &[t])?;
            ctx.unary(lc, "weight", UnaryOp::Affine { scale: w, offset: 0.0 }, r)?
        }
        // AdditiveAttention (Bahdanau): Σ_d scale_d · tanh(q_d + k_d).
        "additive" => {
            let dims = ctx.dims(k);
            let s = dims[1].fixed().ok_or_else(|| ctx.err(lc, "sequence lengths must be known"))? as i64;
            let d = dims[2].fixed().ok_or_else(|| ctx.err(lc, "feature size must be known"))?;
            let qe = ctx.node(lc, "q_expand", Op::Reshape { shape: vec![0, 0, 1, -1] }, &[q])?;
            let ke = ctx.node(lc, "k_expand", Op::Reshape { shape: vec![0, 1, s, d as i64] }, &[k])?;
            let sum = ctx.binary(lc, "q_plus_k", BinaryOp::Add, qe, ke)?;
            let mut t = ctx.unary(lc, "tanh", UnaryOp::Tanh, sum)?;
            if use_scale {
                let w = weight(ctx, lc, 0, "scale", Some(&[d]))?;
                let wv = ctx.konst(lc, "scale", w);
                t = ctx.binary(lc, "scaled", BinaryOp::Mul, t, wv)?;
            }
            ctx.node(lc, "scores", Op::Reduce { kind: ReduceKind::Sum, axes: vec![3], keepdims: false }, &[t])?
        }
        other => return Err(ctx.err(lc, format!("score_mode '{other}' is not supported"))),
    };
    // Masks: [query_mask, value_mask] given, else the inputs' implicit masks.
    let given: Vec<ValueId> = lc.kw_inputs.iter().filter(|(k, _)| k == "mask").map(|(_, v)| *v).collect();
    let (q_mask, v_mask) = match given.len() {
        0 => (ctx.mask(q), ctx.mask(v)),
        2 => (Some(given[0]), Some(given[1])),
        _ => return Err(ctx.err(lc, "a mask argument other than [query_mask, value_mask] is not supported")),
    };
    let scores_mask = match v_mask {
        // Keras subtracts 1e9 from the scores of masked values: (B, Tv) → (B, 1, Tv).
        Some(m) => Some(ctx.node(lc, "value_mask", Op::Reshape { shape: vec![0, 1, -1] }, &[m])?),
        None => None,
    };
    let probs = masked_softmax(ctx, lc, scores, (q, v), scores_mask, false)?;
    let mut y = ctx.node(lc, "attend", Op::MatMul { transpose_a: false, transpose_b: false }, &[probs, v])?;
    if let Some(m) = q_mask {
        // Outputs of masked queries are zero.
        let mf = ctx.node(lc, "query_mask/float", Op::Cast { to: ir::DType::F32 }, &[m])?;
        let me = ctx.node(lc, "query_mask", Op::Reshape { shape: vec![0, -1, 1] }, &[mf])?;
        y = ctx.binary(lc, "", BinaryOp::Mul, y, me)?;
    }
    if kw_bool(lc, "return_attention_scores") {
        return Ok(vec![y, probs]);
    }
    Ok(vec![y])
}

/// GroupQueryAttention: MultiHeadAttention whose key and value heads are each shared by
/// `num_query_heads / num_key_value_heads` query heads (Keras repeats them), lowered as
/// MultiHeadAttention over the query heads with the key and value projections repeated.
pub(super) fn group_query_attention(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let c = lc.config;
    let hd = cfg_count(c, "head_dim", None, 1).map_err(|m| ctx.err(lc, m))?;
    let hq = cfg_count(c, "num_query_heads", None, 1).map_err(|m| ctx.err(lc, m))?;
    let hkv = cfg_count(c, "num_key_value_heads", None, 1).map_err(|m| ctx.err(lc, m))?;
    if hq % hkv != 0 {
        return Err(ctx.err(lc, format!("{hq} query heads do not share {hkv} key/value heads evenly")));
    }
    if cfg_bool(c, "use_gate", false) || c.get("sliding_window").is_some_and(|v| !v.is_null()) {
        return Err(ctx.err(lc, "a gated or sliding-window GroupQueryAttention is not supported"));
    }
    let use_bias = cfg_bool(c, "use_bias", true);
    let per = if use_bias { 2 } else { 1 };
    if lc.weights.len() != 4 * per {
        return Err(ctx.werr(lc, format!("expected {} weight tensors, the file holds {}", 4 * per, lc.weights.len())));
    }
    let reps = hq / hkv;
    // Repeats each head of a `(..., hkv, hd)` tensor `reps` times along the heads axis.
    let repeat = |t: &Tensor| -> Option<Tensor> {
        let s = t.shape();
        let (heads_axis, data) = (s.len().checked_sub(2)?, t.as_f32()?);
        if s[heads_axis] != hkv || s[heads_axis + 1] != hd {
            return None;
        }
        let outer: usize = s[..heads_axis].iter().product();
        let mut out = Vec::with_capacity(data.len() * reps);
        for o in 0..outer {
            for h in 0..hq {
                let src = (o * hkv + h / reps) * hd;
                out.extend_from_slice(&data[src..src + hd]);
            }
        }
        let mut shape = s.to_vec();
        shape[heads_axis] = hq;
        Tensor::from_f32(&shape, out).ok()
    };
    let mut weights = lc.weights.clone();
    for k in [per, 2 * per] {
        for j in 0..per {
            weights[k + j] = repeat(&lc.weights[k + j])
                .ok_or_else(|| ctx.werr(lc, format!("key/value weight of shape {:?}", lc.weights[k + j].shape())))?;
        }
    }
    let mut cfg = serde_json::Map::new();
    cfg.insert("num_heads".into(), hq.into());
    cfg.insert("key_dim".into(), hd.into());
    cfg.insert("value_dim".into(), hd.into());
    cfg.insert("use_bias".into(), use_bias.into());
    cfg.insert("dropout".into(), c.get("dropout").cloned().unwrap_or(0.0.into()));
    let cfg = Value::Object(cfg);
    let mlc = LayerCall {
        class: "MultiHeadAttention",
        name: lc.name,
        config: &cfg,
        call: lc.call,
        inputs: lc.inputs.clone(),
        kw_inputs: lc.kw_inputs.clone(),
        weights,
        weight_paths: lc.weight_paths.clone(),
        key: lc.key.clone(),
    };
    multi_head_attention(ctx, &mlc)
}
