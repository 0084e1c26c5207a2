//! Keras's implicit masks, propagated as each Keras does it at run time.
//!
//! A mask is a `(batch, time)` keep mask kept beside a value (float 0/1, [`Ctx::mask`]). Keras 3
//! keeps it as an attribute of the tensor object while the model runs (`Layer.__call__`): a
//! layer's output gets `compute_mask(inputs, previous_mask)` when the layer supports masking and
//! its output has none yet, and nothing otherwise; a layer that returns its input object (Dropout
//! at inference, Identity) shares the input's mask; MultiHeadAttention clears the masks of its
//! query, value and key tensors when it runs. So what a layer sees depends on the order Keras
//! runs the layers in (the build follows it) — Keras's output is the reference, also where this
//! surprises. Keras 2 (tf.keras) propagates symbolically, with its own merge rules.

use super::ctx::{cfg_bool, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, Op, ReduceKind, UnaryOp, ValueId};
use serde_json::Value;

type Res<T> = Result<T, FrontendError>;

/// Layers whose `compute_mask` returns the mask of their (first) input unchanged, in Keras 2 and
/// Keras 3 alike (with the noise layers of [`RETURNS_INPUT`]).
const PASS_BOTH: &[&str] = &[
    "Dense",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "LayerNormalization",
    "GroupNormalization",
    "BatchNormalization",
    "UnitNormalization",
    "TimeDistributed",
];

/// The same in Keras 3 only (Keras 2's preprocessing layers drop masks; it has no Identity).
const PASS_KERAS3_ONLY: &[&str] = &["Rescaling", "Normalization", "Identity"];

/// The same in Keras 2 only (Keras 3's attention layers have rules of their own, and no
/// ThresholdedReLU).
const PASS_KERAS2_ONLY: &[&str] = &["ThresholdedReLU", "MultiHeadAttention", "Attention", "AdditiveAttention"];

/// Layers that return their input object at inference (Keras 3): the output is the input, mask
/// and all, and clearing one clears the other.
const RETURNS_INPUT: &[&str] = &[
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
];

/// Whether a layer passes an input's mask through unchanged (for a wrapped layer too).
pub(super) fn passes(keras2: bool, class: &str) -> bool {
    let only = if keras2 { PASS_KERAS2_ONLY } else { PASS_KERAS3_ONLY };
    PASS_BOTH.contains(&class) || only.contains(&class) || (RETURNS_INPUT.contains(&class) && class != "Identity")
}

/// Refuses a masked call of a layer whose computation a mask would change, where kerasc does not
/// lower that change yet.
pub(super) fn check_masked_call(ctx: &Ctx, lc: &LayerCall, in_masks: &[Option<ValueId>]) -> Res<()> {
    if !in_masks.iter().any(Option::is_some) {
        return Ok(());
    }
    let inner = lc.config.get("layer").and_then(|l| l.get("class_name")).and_then(Value::as_str).unwrap_or("");
    let consumes = match lc.class {
        "TimeDistributed" => !passes(ctx.keras2, inner),
        "Softmax" => true,
        // Keras 2's Dot reads no mask either; Keras 3's neither.
        _ => false,
    };
    if consumes {
        return Err(ctx
            .err(lc, "a masked input (from Embedding(mask_zero=True) or Masking) is not supported by this layer yet"));
    }
    Ok(())
}

/// After a layer call: records the outputs' masks as Keras computes them. `in_masks` are the
/// masks the inputs carried when the call began.
pub(super) fn propagate(
    ctx: &mut Ctx,
    lc: &LayerCall,
    is_op: bool,
    in_masks: &[Option<ValueId>],
    outs: &[ValueId],
) -> Res<()> {
    // Keras does not carry masks through `keras.ops` calls.
    if is_op || outs.is_empty() {
        return Ok(());
    }
    if ctx.keras2 {
        if let Some(m) = keras2_mask(ctx, lc, in_masks)? {
            ctx.set_mask(outs[0], m);
        }
        return Ok(());
    }
    if RETURNS_INPUT.contains(&lc.class) {
        for (&o, &i) in outs.iter().zip(&lc.inputs) {
            ctx.alias(o, i);
        }
    }
    if lc.class == "MultiHeadAttention" {
        // `call` clears the masks of query, value and key, and sets the query's on its output.
        for &v in &lc.inputs {
            ctx.clear_mask(v);
        }
        for (_, v) in lc.kw_inputs.iter().filter(|(k, _)| k == "value" || k == "key") {
            ctx.clear_mask(*v);
        }
    }
    // `_set_mask_metadata`: nothing to do when every output carries a mask already.
    if outs.iter().all(|&o| ctx.mask(o).is_some()) {
        return Ok(());
    }
    if let Some(m) = keras3_mask(ctx, lc, in_masks)? {
        if ctx.mask(outs[0]).is_none() {
            ctx.set_mask(outs[0], m);
        }
    }
    Ok(())
}

/// The explicit `mask` argument of a call (Keras 3 records it for layers whose `call` takes one).
fn explicit(lc: &LayerCall) -> Option<ValueId> {
    let mut given = lc.kw_inputs.iter().filter(|(k, _)| k == "mask").map(|(_, v)| *v);
    match (given.next(), given.next()) {
        (Some(m), None) => Some(m),
        _ => None,
    }
}

/// Keras 3's `compute_mask(inputs, previous_mask)` of the supported layers that support masking.
fn keras3_mask(ctx: &mut Ctx, lc: &LayerCall, in_masks: &[Option<ValueId>]) -> Res<Option<ValueId>> {
    let first = explicit(lc).or(in_masks.first().copied().flatten());
    Ok(match lc.class {
        "Embedding" if cfg_bool(lc.config, "mask_zero", false) => Some(nonzero(ctx, lc, lc.inputs[0])?),
        // Merge.compute_mask: none unless every input has one, then their logical or.
        "Add" | "Subtract" | "Average" | "Multiply" | "Maximum" | "Minimum" => {
            if in_masks.iter().any(Option::is_none) {
                None
            } else {
                Some(fold(ctx, lc, in_masks.iter().flatten().copied(), BinaryOp::Max)?)
            }
        }
        "Concatenate" => concat_mask(ctx, lc, in_masks)?,
        "MultiHeadAttention" | "Attention" | "AdditiveAttention" | "GroupQueryAttention" | "GroupedQueryAttention" => {
            in_masks.first().copied().flatten()
        }
        "LSTM" | "GRU" | "SimpleRNN" if cfg_bool(lc.config, "return_sequences", false) => first,
        "Bidirectional" if inner_returns_sequences(lc) => first,
        c if passes(false, c) => first,
        _ => None,
    })
}

/// Keras 2's rules: merges take the logical and of the masks present; Concatenate along time puts
/// the masks side by side (every input masked: Keras 2 cannot build it otherwise).
fn keras2_mask(ctx: &mut Ctx, lc: &LayerCall, in_masks: &[Option<ValueId>]) -> Res<Option<ValueId>> {
    let masked = in_masks.iter().any(Option::is_some);
    let r = ctx.rank(lc.inputs[0]);
    let time_axis = lc.class == "Concatenate"
        && r == 3
        && super::ctx::cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))? == [1];
    Ok(match lc.class {
        "Embedding" if cfg_bool(lc.config, "mask_zero", false) => Some(nonzero(ctx, lc, lc.inputs[0])?),
        "Concatenate" if masked && time_axis => {
            let all: Option<Vec<ValueId>> = in_masks.iter().copied().collect();
            let all =
                all.ok_or_else(|| ctx.err(lc, "Keras 2 cannot concatenate masked and unmasked sequences along time"))?;
            Some(ctx.node(lc, "mask", Op::Concat { axis: 1 }, &all)?)
        }
        "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" | "Concatenate" if masked => {
            Some(fold(ctx, lc, in_masks.iter().flatten().copied(), BinaryOp::Mul)?)
        }
        "LSTM" | "GRU" | "SimpleRNN" if cfg_bool(lc.config, "return_sequences", false) => in_masks[0],
        "Bidirectional" if inner_returns_sequences(lc) => in_masks[0],
        c if passes(true, c) => in_masks[0],
        _ => None,
    })
}

fn inner_returns_sequences(lc: &LayerCall) -> bool {
    lc.config.get("layer").and_then(|l| l.get("config")).is_some_and(|c| cfg_bool(c, "return_sequences", false))
}

/// Embedding(mask_zero=True): ids ≠ 0 as float 0/1.
fn nonzero(ctx: &mut Ctx, lc: &LayerCall, ids: ValueId) -> Res<ValueId> {
    let f = ctx.node(lc, "mask/float", Op::Cast { to: ir::DType::F32 }, &[ids])?;
    let a = ctx.unary(lc, "mask/abs", UnaryOp::Abs, f)?;
    ctx.unary(lc, "mask", UnaryOp::Sign, a)
}

/// Logical or (`Max`) or and (`Mul`) of 0/1 masks.
fn fold(ctx: &mut Ctx, lc: &LayerCall, masks: impl Iterator<Item = ValueId>, op: BinaryOp) -> Res<ValueId> {
    let mut acc: Option<ValueId> = None;
    for (i, m) in masks.enumerate() {
        acc = Some(match acc {
            None => m,
            Some(a) => ctx.binary(lc, &format!("mask/{}{i}", op.name()), op, a, m)?,
        });
    }
    acc.ok_or_else(|| ctx.err(lc, "no mask to combine"))
}

/// Keras 3's Concatenate.compute_mask: the inputs' masks (all ones for an input without one),
/// concatenated along the axis, then `any` over the last axis. Along the features that is all
/// ones as soon as one input is unmasked (else the logical or); along time, the masks side by side.
fn concat_mask(ctx: &mut Ctx, lc: &LayerCall, in_masks: &[Option<ValueId>]) -> Res<Option<ValueId>> {
    if in_masks.iter().all(Option::is_none) {
        return Ok(None);
    }
    let r = ctx.rank(lc.inputs[0]);
    let axis = super::ctx::cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let unsupported = || {
        ctx.err(lc, "the mask of a concatenation other than of (batch, time, features) sequences along time or features is not supported")
    };
    if r != 3 || in_masks.iter().flatten().any(|&m| ctx.rank(m) != 2) {
        return Err(unsupported());
    }
    match axis[..] {
        [2] => {
            if in_masks.iter().any(Option::is_none) {
                let m = in_masks.iter().flatten().next().copied().ok_or_else(unsupported)?;
                Ok(Some(ctx.unary(lc, "mask/ones", UnaryOp::Affine { scale: 0.0, offset: 1.0 }, m)?))
            } else {
                Ok(Some(fold(ctx, lc, in_masks.iter().flatten().copied(), BinaryOp::Max)?))
            }
        }
        [1] => {
            let mut parts = Vec::with_capacity(in_masks.len());
            for (i, (m, &x)) in in_masks.iter().zip(&lc.inputs).enumerate() {
                parts.push(match m {
                    Some(m) => *m,
                    None => {
                        let any = Op::Reduce { kind: ReduceKind::Max, axes: vec![2], keepdims: false };
                        let t = ctx.node(lc, &format!("mask/steps{i}"), any, &[x])?;
                        ctx.unary(lc, &format!("mask/ones{i}"), UnaryOp::Affine { scale: 0.0, offset: 1.0 }, t)?
                    }
                });
            }
            Ok(Some(ctx.node(lc, "mask", Op::Concat { axis: 1 }, &parts)?))
        }
        _ => Err(unsupported()),
    }
}

/// `where(mask, a, b)` with a `(batch, time)` mask over `(batch, time, ...)` values.
fn select(ctx: &mut Ctx, lc: &LayerCall, part: &str, mask: ValueId, a: ValueId, b: ValueId) -> Res<ValueId> {
    let r = ctx.rank(a);
    let mut shape = vec![0i64, -1];
    shape.extend(std::iter::repeat_n(1, r.saturating_sub(2)));
    let tag = if part.is_empty() { "select" } else { part };
    let m = ctx.node(lc, &format!("{tag}/mask"), Op::Reshape { shape }, &[mask])?;
    let nm = ctx.unary(lc, &format!("{tag}/not_mask"), UnaryOp::Affine { scale: -1.0, offset: 1.0 }, m)?;
    let pa = ctx.binary(lc, &format!("{tag}/kept"), BinaryOp::Mul, m, a)?;
    let pb = ctx.binary(lc, &format!("{tag}/other"), BinaryOp::Mul, nm, b)?;
    ctx.binary(lc, part, BinaryOp::Add, pa, pb)
}

/// Keras 3's Multiply, Maximum and Minimum of masked inputs, whose values the masks change:
/// Multiply counts a masked position as 1 (and zeroes the product where every input is masked,
/// when each has a mask); Maximum and Minimum take the other operand there. `None` when no input
/// is masked or the class has no such rule.
pub(super) fn masked_merge(ctx: &mut Ctx, lc: &LayerCall) -> Res<Option<ValueId>> {
    let masks = ctx.call_masks.clone();
    if ctx.keras2 || !masks.iter().any(Option::is_some) || masks.len() != lc.inputs.len() {
        return Ok(None);
    }
    let bad = |ctx: &Ctx| ctx.err(lc, "masked inputs of rank below 2 cannot be merged");
    if lc.inputs.iter().any(|&x| ctx.rank(x) < 2) {
        return Err(bad(ctx));
    }
    match lc.class {
        "Multiply" => {
            let all = masks.iter().all(Option::is_some);
            let mut out: Option<ValueId> = None;
            for (i, (&x, m)) in lc.inputs.iter().zip(&masks).enumerate() {
                let x = match m {
                    Some(m) => {
                        let one = ctx.unary(lc, &format!("one{i}"), UnaryOp::Affine { scale: 0.0, offset: 1.0 }, x)?;
                        select(ctx, lc, &format!("masked{i}"), *m, x, one)?
                    }
                    None => x,
                };
                let part = if i + 1 == lc.inputs.len() && !all { String::new() } else { format!("mul{i}") };
                out = Some(match out {
                    None => x,
                    Some(o) => ctx.binary(lc, &part, BinaryOp::Mul, o, x)?,
                });
            }
            let mut out = out.ok_or_else(|| bad(ctx))?;
            if all {
                let any = fold(ctx, lc, masks.iter().flatten().copied(), BinaryOp::Max)?;
                let zero = ctx.unary(lc, "zero", UnaryOp::Affine { scale: 0.0, offset: 0.0 }, out)?;
                out = select(ctx, lc, "", any, out, zero)?;
            }
            Ok(Some(out))
        }
        "Maximum" | "Minimum" => {
            let op = if lc.class == "Maximum" { BinaryOp::Max } else { BinaryOp::Min };
            let mut out = lc.inputs[0];
            let mut out_mask = masks[0];
            for (i, (&x, m)) in lc.inputs.iter().zip(&masks).enumerate().skip(1) {
                let x = match m {
                    Some(m) => select(ctx, lc, &format!("fill{i}"), *m, x, out)?,
                    None => x,
                };
                if let Some(om) = out_mask {
                    out = select(ctx, lc, &format!("keep{i}"), om, out, x)?;
                }
                out_mask = match (out_mask, m) {
                    (Some(a), Some(b)) => Some(ctx.binary(lc, &format!("mask/or{i}"), BinaryOp::Max, a, *b)?),
                    _ => None,
                };
                let part = if i + 1 == lc.inputs.len() { String::new() } else { format!("{}{i}", op.name()) };
                out = ctx.binary(lc, &part, op, out, x)?;
            }
            Ok(Some(out))
        }
        _ => Ok(None),
    }
}
