//! Recurrent layers and the wrappers (Bidirectional, TimeDistributed).

use super::ctx::{cfg_bool, parse_activation, Act, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, Op, RnnAttrs, RnnKind, Tensor, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn unary_act(
    ctx: &Ctx,
    lc: &LayerCall,
    cfg: &Value,
    key: &str,
    default: &str,
) -> Result<UnaryOp, FrontendError> {
    let v = cfg.get(key).cloned().unwrap_or(Value::String(default.into()));
    match parse_activation(Some(&v), ctx.keras2).map_err(|m| ctx.err(lc, m))? {
        Act::Unary(u) => Ok(u),
        Act::Linear => Ok(UnaryOp::Identity),
        _ => Err(ctx.err(lc, format!("{key} must be an element-wise activation"))),
    }
}

/// Lowers one recurrent layer with `cfg` and `weights` on `x`; returns Keras's outputs
/// (`[y]` or `[y, states...]` with return_state).
#[allow(clippy::too_many_arguments)]
fn lower_rnn(
    ctx: &mut Ctx,
    lc: &LayerCall,
    class: &str,
    cfg: &Value,
    weights: &[Tensor],
    x: ValueId,
    tag: &str,
    states: &[ValueId],
    mask: Option<(ValueId, bool)>,
) -> R {
    let units = cfg.get("units").and_then(Value::as_u64).ok_or_else(|| ctx.err(lc, "no units"))? as usize;
    if cfg_bool(cfg, "time_major", false) {
        return Err(ctx.err(lc, "time_major=True is not supported"));
    }
    let kind = match class {
        "LSTM" => RnnKind::Lstm,
        "GRU" => RnnKind::Gru { reset_after: cfg_bool(cfg, "reset_after", true) },
        _ => RnnKind::Simple,
    };
    let attrs = RnnAttrs {
        kind,
        units,
        activation: unary_act(ctx, lc, cfg, "activation", "tanh")?,
        recurrent_activation: unary_act(ctx, lc, cfg, "recurrent_activation", "sigmoid")?,
        return_sequences: cfg_bool(cfg, "return_sequences", false),
        go_backwards: cfg_bool(cfg, "go_backwards", false),
        initial_state: !states.is_empty(),
        masked: mask.is_some(),
        zero_output_for_mask: mask.is_some_and(|(_, z)| z)
            || (mask.is_some() && cfg_bool(cfg, "zero_output_for_mask", false)),
    };
    if !states.is_empty() && states.len() != attrs.n_states() {
        return Err(ctx.err(lc, format!("{class} takes {} initial state(s), {} given", attrs.n_states(), states.len())));
    }
    let use_bias = cfg_bool(cfg, "use_bias", true);
    let n = if use_bias { 3 } else { 2 };
    if weights.len() != n {
        return Err(ctx.werr(lc, format!("expected {n} weight tensors, the file holds {}", weights.len())));
    }
    let mut ins = vec![x];
    for (i, w) in weights.iter().enumerate() {
        let what = ["kernel", "recurrent_kernel", "bias"][i];
        ins.push(ctx.konst(lc, &format!("{tag}{what}"), w.cast(ir::DType::F32)));
    }
    ins.extend_from_slice(states);
    if let Some((m, _)) = mask {
        ins.push(m);
    }
    let outs = ctx.nodes(lc, tag.trim_end_matches('/'), Op::Rnn(attrs), &ins)?;
    if cfg_bool(cfg, "return_state", false) {
        Ok(outs)
    } else {
        Ok(vec![outs[0]])
    }
}

/// The initial states passed to a recurrent layer: extra positional inputs (Keras 2) or the
/// `initial_state` keyword (Keras 3), in order.
fn initial_states(ctx: &Ctx, lc: &LayerCall) -> Result<Vec<ValueId>, FrontendError> {
    if lc.kw_inputs.iter().any(|(k, _)| k != "initial_state" && k != "mask") {
        return Err(ctx.err(lc, "tensor arguments other than initial_state and mask (constants) are not supported"));
    }
    let mut s: Vec<ValueId> = lc.inputs[1..].to_vec();
    s.extend(lc.kw_inputs.iter().filter(|(k, _)| k == "initial_state").map(|(_, v)| *v));
    Ok(s)
}

/// The sequence's keep mask `(N, T)` as float: the `mask` argument, else Keras's implicit mask.
fn sequence_mask(ctx: &mut Ctx, lc: &LayerCall) -> Result<Option<ValueId>, FrontendError> {
    let m = match lc.kw_inputs.iter().find(|(k, _)| k == "mask") {
        Some((_, v)) => *v,
        None => match ctx.mask(lc.inputs[0]) {
            Some(m) => m,
            None => return Ok(None),
        },
    };
    if ctx.g.value(m).ty.dtype == ir::DType::F32 {
        return Ok(Some(m));
    }
    Ok(Some(ctx.node(lc, "mask/float", Op::Cast { to: ir::DType::F32 }, &[m])?))
}

pub(super) fn rnn(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let states = initial_states(ctx, lc)?;
    let mask = sequence_mask(ctx, lc)?.map(|m| (m, false));
    let w = lc.weights.clone();
    lower_rnn(ctx, lc, lc.class, lc.config, &w, lc.inputs[0], "", &states, mask)
}

pub(super) fn bidirectional(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let states = initial_states(ctx, lc)?;
    let mask = sequence_mask(ctx, lc)?;
    let x = lc.inputs[0];
    let inner = lc.config.get("layer").ok_or_else(|| ctx.err(lc, "no wrapped layer"))?;
    let fclass = inner.get("class_name").and_then(Value::as_str).unwrap_or("");
    let fcfg = inner.get("config").cloned().unwrap_or(Value::Null);
    let (bclass, bcfg) = match lc.config.get("backward_layer").filter(|v| v.is_object()) {
        Some(b) => (
            b.get("class_name").and_then(Value::as_str).unwrap_or("").to_string(),
            b.get("config").cloned().unwrap_or(Value::Null),
        ),
        None => {
            let mut c = fcfg.clone();
            let gb = cfg_bool(&c, "go_backwards", false);
            if let Some(o) = c.as_object_mut() {
                o.insert("go_backwards".into(), Value::Bool(!gb));
            }
            (fclass.to_string(), c)
        }
    };
    for c in [fclass, bclass.as_str()] {
        if !matches!(c, "LSTM" | "GRU" | "SimpleRNN") {
            return Err(ctx.err(lc, format!("Bidirectional over {c} is not supported")));
        }
    }
    let nf = if cfg_bool(&fcfg, "use_bias", true) { 3 } else { 2 };
    if lc.weights.len() < nf {
        return Err(ctx.werr(lc, format!("expected forward and backward weights, the file holds {}", lc.weights.len())));
    }
    let (wf, wb) = lc.weights.split_at(nf);
    let (wf, wb) = (wf.to_vec(), wb.to_vec());
    // Keras splits the initial states: the first half for the forward layer.
    let (sf, sb) = states.split_at(states.len() / 2);
    // Keras's Bidirectional zeroes masked outputs when returning sequences.
    let zero = cfg_bool(&fcfg, "return_sequences", false);
    let fo = lower_rnn(ctx, lc, fclass, &fcfg, &wf, x, "forward/", sf, mask.map(|m| (m, zero)))?;
    let bo = lower_rnn(ctx, lc, &bclass, &bcfg, &wb, x, "backward/", sb, mask.map(|m| (m, zero)))?;
    let return_sequences = cfg_bool(&fcfg, "return_sequences", false);
    let mut yb = bo[0];
    if return_sequences {
        yb = ctx.node(
            lc,
            "reverse",
            Op::Slice { axes: vec![1], starts: vec![-1], ends: vec![i64::MIN], steps: vec![-1] },
            &[yb],
        )?;
    }
    let yf = fo[0];
    let mut outs = match lc.config.get("merge_mode").and_then(Value::as_str) {
        None => vec![yf, yb],
        Some("concat") => {
            let axis = ctx.rank(yf) - 1;
            vec![ctx.node(lc, "", Op::Concat { axis }, &[yf, yb])?]
        }
        Some("sum") => vec![ctx.binary(lc, "", BinaryOp::Add, yf, yb)?],
        Some("mul") => vec![ctx.binary(lc, "", BinaryOp::Mul, yf, yb)?],
        Some("ave") => {
            let s = ctx.binary(lc, "sum", BinaryOp::Add, yf, yb)?;
            vec![ctx.unary(lc, "", UnaryOp::Affine { scale: 0.5, offset: 0.0 }, s)?]
        }
        Some(other) => return Err(ctx.err(lc, format!("merge_mode '{other}' is not supported"))),
    };
    outs.extend_from_slice(&fo[1..]);
    outs.extend_from_slice(&bo[1..]);
    Ok(outs)
}

/// The generic RNN layer over one of Keras's cells (LSTMCell, GRUCell, SimpleRNNCell): the
/// matching recurrent layer, with the cell's config and the RNN's flags.
pub(super) fn generic_rnn(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let cell = lc.config.get("cell").ok_or_else(|| ctx.err(lc, "no cell"))?;
    let cell_class = cell.get("class_name").and_then(Value::as_str).unwrap_or("?");
    let class = match cell_class {
        "LSTMCell" => "LSTM",
        "GRUCell" => "GRU",
        "SimpleRNNCell" => "SimpleRNN",
        other => {
            return Err(
                ctx.err(lc, format!("RNN over a {other} is not supported (LSTMCell, GRUCell and SimpleRNNCell are)"))
            )
        }
    };
    let mut cfg = cell.get("config").cloned().unwrap_or_else(|| Value::Object(Default::default()));
    if let (Value::Object(c), Value::Object(outer)) = (&mut cfg, lc.config) {
        for k in ["return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask"] {
            if let Some(v) = outer.get(k) {
                c.insert(k.to_string(), v.clone());
            }
        }
    }
    let states = initial_states(ctx, lc)?;
    let mask = sequence_mask(ctx, lc)?.map(|m| (m, false));
    let w = lc.weights.clone();
    lower_rnn(ctx, lc, class, &cfg, &w, lc.inputs[0], "", &states, mask)
}
