//! ConvLSTM1D/2D/3D: an LSTM whose gates are convolutions, unrolled over the (known) time steps
//! into convolutions and element-wise ops. Keras's cell: `z = conv(x_t, W) + conv(h, U, same) + b`,
//! split into the input, forget, candidate and output gates (in that order along the channels),
//! `c = f·c + i·act(g)`, `h = o·act(c)`.

use super::conv::{ints, pads, spatial_rank};
use super::ctx::{cfg_bool, cfg_count, cfg_str, weight, Ctx, LayerCall};
use super::recurrent::unary_act;
use crate::FrontendError;
use ir::{BinaryOp, ConvAttrs, Op, ValueId};

type R = Result<Vec<ValueId>, FrontendError>;

/// The most time steps unrolled (each a handful of nodes).
const MAX_STEPS: usize = 4096;

pub(super) fn conv_lstm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let c = lc.config;
    let r = spatial_rank(lc.class);
    let x = lc.inputs[0];
    if cfg_str(c, "data_format", "channels_last") != "channels_last" {
        return Err(ctx.err(lc, "channels_first is not supported"));
    }
    if cfg_bool(c, "stateful", false) {
        return Err(ctx.err(lc, "stateful layers are not supported"));
    }
    if lc.inputs.len() > 1
        || lc.kw_inputs.iter().any(|(k, _)| k == "initial_state" || k == "mask")
        || ctx.mask(x).is_some()
    {
        return Err(ctx.err(lc, "initial states and masks are not supported"));
    }
    let dims = ctx.dims(x);
    if dims.len() != r + 3 {
        return Err(ctx.err(lc, format!("expects (batch, time, {r} spatial axes, channels)")));
    }
    let fixed: Option<Vec<usize>> = dims[1..].iter().map(|d| d.fixed()).collect();
    let fixed = fixed.ok_or_else(|| ctx.err(lc, "time, spatial and channel sizes must be known"))?;
    let (t, cin) = (fixed[0], fixed[r + 1]);
    if t == 0 || t > MAX_STEPS {
        return Err(ctx.err(lc, format!("{t} time steps (1 to {MAX_STEPS} are unrolled)")));
    }
    let f = cfg_count(c, "filters", None, 1).map_err(|m| ctx.err(lc, m))?;
    let k = ints(ctx, lc, "kernel_size", r, 1)?;
    let s = ints(ctx, lc, "strides", r, 1)?;
    let d = ints(ctx, lc, "dilation_rate", r, 1)?;
    let use_bias = cfg_bool(c, "use_bias", true);
    if lc.weights.len() != 2 + usize::from(use_bias) {
        return Err(ctx.werr(
            lc,
            format!("expected {} weight tensors, the file holds {}", 2 + usize::from(use_bias), lc.weights.len()),
        ));
    }
    let shape = |inner: usize| k.iter().copied().chain([inner, 4 * f]).collect::<Vec<_>>();
    let wx = weight(ctx, lc, 0, "kernel", Some(&shape(cin)))?;
    let wh = weight(ctx, lc, 1, "recurrent_kernel", Some(&shape(f)))?;
    let (wx, wh) = (ctx.konst(lc, "kernel", wx), ctx.konst(lc, "recurrent_kernel", wh));
    let bias = if use_bias {
        let b = weight(ctx, lc, 2, "bias", Some(&[4 * f]))?;
        Some(ctx.konst(lc, "bias", b))
    } else {
        None
    };
    let act = unary_act(ctx, lc, c, "activation", "tanh")?;
    let rec = unary_act(ctx, lc, c, "recurrent_activation", "sigmoid")?;
    let padding = cfg_str(c, "padding", "valid").to_string();
    let backwards = cfg_bool(c, "go_backwards", false);
    let step_shape: Vec<i64> = std::iter::once(-1).chain(fixed[1..].iter().map(|&n| n as i64)).collect();
    let gate_axis = r + 1;
    let (mut h, mut cell): (Option<ValueId>, Option<ValueId>) = (None, None);
    let mut outs = Vec::with_capacity(t);
    for step in 0..t {
        let ti = if backwards { t - 1 - step } else { step };
        let p = |n: &str| format!("t{step}/{n}");
        let sl = Op::Slice { axes: vec![1], starts: vec![ti as i64], ends: vec![ti as i64 + 1], steps: vec![1] };
        let xt = ctx.node(lc, &p("x"), sl, &[x])?;
        let xt = ctx.node(lc, &p("x/step"), Op::Reshape { shape: step_shape.clone() }, &[xt])?;
        let px = pads(ctx, lc, xt, &padding, &k, &s, &d)?;
        let conv = ConvAttrs { strides: s.clone(), dilations: d.clone(), pads: px, groups: 1 };
        let mut z = ctx.node(lc, &p("input_conv"), Op::Conv(conv), &[xt, wx])?;
        if let Some(hp) = h {
            let ones = vec![1; r];
            let ph = pads(ctx, lc, hp, "same", &k, &ones, &ones)?;
            let conv = ConvAttrs { strides: ones.clone(), dilations: ones, pads: ph, groups: 1 };
            let zh = ctx.node(lc, &p("recurrent_conv"), Op::Conv(conv), &[hp, wh])?;
            z = ctx.binary(lc, &p("gates"), BinaryOp::Add, z, zh)?;
        }
        if let Some(b) = bias {
            z = ctx.node(lc, &p("gates/bias"), Op::BiasAdd { axis: gate_axis }, &[z, b])?;
        }
        let gate = |ctx: &mut Ctx, g: usize, name: &str, u| -> Result<ValueId, FrontendError> {
            let sl = Op::Slice {
                axes: vec![gate_axis],
                starts: vec![(g * f) as i64],
                ends: vec![((g + 1) * f) as i64],
                steps: vec![1],
            };
            let zg = ctx.node(lc, &p(&format!("{name}/pre")), sl, &[z])?;
            ctx.unary(lc, &p(name), u, zg)
        };
        let i = gate(ctx, 0, "input", rec)?;
        let fg = gate(ctx, 1, "forget", rec)?;
        let g = gate(ctx, 2, "candidate", act)?;
        let o = gate(ctx, 3, "output", rec)?;
        let ig = ctx.binary(lc, &p("input_candidate"), BinaryOp::Mul, i, g)?;
        let cn = match cell {
            Some(cp) => {
                let keep = ctx.binary(lc, &p("kept"), BinaryOp::Mul, fg, cp)?;
                ctx.binary(lc, &p("cell"), BinaryOp::Add, keep, ig)?
            }
            None => ig,
        };
        let ca = ctx.unary(lc, &p("cell/act"), act, cn)?;
        let hn = ctx.binary(lc, &p("hidden"), BinaryOp::Mul, o, ca)?;
        outs.push(hn);
        h = Some(hn);
        cell = Some(cn);
    }
    let (h, cell) = (h.unwrap_or(x), cell.unwrap_or(x));
    let y = if cfg_bool(c, "return_sequences", false) {
        let mut seq = Vec::with_capacity(t);
        for (step, &o) in outs.iter().enumerate() {
            let mut shape: Vec<i64> = vec![0, 1];
            shape.extend(ctx.dims(o)[1..].iter().map(|d| d.fixed().map_or(-1, |n| n as i64)));
            seq.push(ctx.node(lc, &format!("t{step}/as_step"), Op::Reshape { shape }, &[o])?);
        }
        ctx.node(lc, "", Op::Concat { axis: 1 }, &seq)?
    } else {
        ctx.unary(lc, "", ir::UnaryOp::Identity, h)?
    };
    if cfg_bool(c, "return_state", false) {
        return Ok(vec![y, h, cell]);
    }
    Ok(vec![y])
}
