//! LSTM, GRU and RNN as the IR's recurrent op (Keras's gate order), one per direction.

use crate::onnx::ctx::{attr_i, attr_s, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::{Val, S};
use ir::{Op, RnnAttrs, RnnKind, Tensor, UnaryOp, ValueId};

fn act(name: &str) -> Result<UnaryOp, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => UnaryOp::Sigmoid,
        "tanh" => UnaryOp::Tanh,
        "relu" => UnaryOp::Relu,
        other => return Err(format!("recurrent activation '{other}' is not supported")),
    })
}

/// Rows `[d]` of a `[D, rows, cols]` constant, as `[rows, cols]` values.
fn dir_slice(t: &Tensor, d: usize) -> Result<(Vec<f32>, usize, usize), String> {
    let s = t.shape();
    if s.len() != 3 || d >= s[0] {
        return Err(format!("weights of shape {s:?}"));
    }
    let (r, c) = (s[1], s[2]);
    let v = t.to_f32_vec();
    Ok((v[d * r * c..(d + 1) * r * c].to_vec(), r, c))
}

/// ONNX `(gates·H, cols)` → Keras `(cols, gates·H)` with the gate blocks reordered.
fn keras_kernel(rows: &[f32], h: usize, cols: usize, order: &[usize]) -> Result<Tensor, String> {
    let g = order.len();
    let mut out = vec![0f32; cols * g * h];
    for (kb, &ob) in order.iter().enumerate() {
        for j in 0..h {
            for c in 0..cols {
                out[c * g * h + kb * h + j] = rows[(ob * h + j) * cols + c];
            }
        }
    }
    Tensor::from_f32(&[cols, g * h], out).map_err(|e| e.to_string())
}

fn reorder(v: &[f32], h: usize, order: &[usize]) -> Vec<f32> {
    order.iter().flat_map(|&ob| v[ob * h..(ob + 1) * h].iter().copied()).collect()
}

/// Whether an initial state is all zeros (a zero fill or zero constant).
fn is_zero_state(ctx: &Ctx, v: &Val) -> bool {
    match v {
        Val::Splat { value, .. } => *value == 0.0,
        v => ctx.known(v).and_then(|k| k.nums("a state").ok()).is_some_and(|n| n.iter().all(|&x| x == 0.0)),
    }
}

pub fn rnn(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let op = node.op_type.clone().unwrap_or_default();
    // layout=1: X (batch, steps, features), states (batch, directions, units), Y (batch, steps,
    // directions, units); layout=0 has steps (and directions) first.
    let batch_first = match attr_i(node, "layout", 0) {
        0 => false,
        1 => true,
        l => return Err(format!("layout {l} is not one of ONNX's (0 or 1)")),
    };
    if crate::onnx::ctx::attr(node, "clip").is_some() || attr_i(node, "input_forget", 0) != 0 {
        return Err("clip and input_forget are not supported".into());
    }
    let x = ctx.req(node, 0)?;
    if ctx.rank(&x) != 3 {
        return Err(format!("the input must be [steps, batch, features], not rank {}", ctx.rank(&x)));
    }
    let w = ctx.need_constant(&ctx.req(node, 1)?, "recurrent weights")?;
    let r = ctx.need_constant(&ctx.req(node, 2)?, "recurrent weights")?;
    let b = ctx.input(node, 3).map(|v| ctx.need_constant(&v, "recurrent biases")).transpose()?;
    if let Some(sl) = ctx.input(node, 4) {
        let t = ctx.shape_of(&x)[usize::from(batch_first)];
        let ok =
            ctx.known(&sl).and_then(|k| k.nums("sequence_lens").ok()).is_some_and(|v| v.iter().all(|&l| S::N(l) == t));
        if !ok {
            return Err("sequence_lens other than the full length is not supported".into());
        }
    }
    let (kind, gates, order): (RnnKind, usize, Vec<usize>) = match op.as_str() {
        // ONNX i,o,f,c → Keras i,f,c,o.
        "LSTM" => (RnnKind::Lstm, 4, vec![0, 2, 3, 1]),
        "GRU" => (RnnKind::Gru { reset_after: attr_i(node, "linear_before_reset", 0) != 0 }, 3, vec![0, 1, 2]),
        _ => (RnnKind::Simple, 1, vec![0]),
    };
    // Initial states: none when absent or all zeros (the IR's default), else inputs.
    let mut states: Vec<Option<ValueId>> = Vec::new();
    for i in [5, 6] {
        let v = ctx.input(node, i);
        states.push(match v {
            Some(v) if !is_zero_state(ctx, &v) => Some(ctx.ir(&v)?),
            _ => None,
        });
    }
    if states.iter().all(Option::is_none) {
        states.clear();
    } else if kind == RnnKind::Lstm {
        // One nonzero: the other as explicit zeros.
        for (k, i) in [(0usize, 5usize), (1, 6)] {
            if states[k].is_none() {
                let z = ctx.input(node, i).unwrap_or(Val::Splat {
                    value: 0.0,
                    dtype: ir::DType::F32,
                    shape: ctx.shape_of(&ctx.req(node, 5 + (1 - k))?),
                });
                states[k] = Some(ctx.ir(&z)?);
            }
        }
    }
    if ctx.input(node, 7).is_some() {
        return Err("LSTM peepholes are not supported".into());
    }
    let h = attr_i(node, "hidden_size", 0) as usize;
    if h == 0 {
        return Err("no hidden_size".into());
    }
    let acts: Vec<String> = crate::onnx::ctx::attr(node, "activations")
        .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).to_string()).collect())
        .unwrap_or_default();
    let defaults: &[&str] = match kind {
        RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        RnnKind::Gru { .. } => &["Sigmoid", "Tanh"],
        RnnKind::Simple => &["Tanh"],
    };
    let direction = attr_s(node, "direction", "forward");
    let dirs: Vec<bool> = match direction.as_str() {
        "forward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => return Err(format!("direction '{other}'")),
    };
    let act_at = |d: usize, i: usize| -> Result<UnaryOp, String> {
        let per = defaults.len();
        act(acts.get(d * per + i).map(String::as_str).unwrap_or(defaults[i]))
    };
    let xs = ctx.shape_of(&x);
    if xs.len() != 3 {
        return Err(format!("X must be (time, batch, features), got rank {}", xs.len()));
    }
    let (steps, n) = if batch_first { (xs[1], xs[0]) } else { (xs[0], xs[1]) };
    let xi = ctx.ir(&x)?;
    // (T, N, F) → (N, T, F) for the IR's op.
    let xt = if batch_first { xi } else { ctx.tmp(name, Op::Transpose { perm: vec![1, 0, 2] }, &[xi])? };
    let mut ys = Vec::new();
    let mut hs = Vec::new();
    let mut cs = Vec::new();
    for (d, &backwards) in dirs.iter().enumerate() {
        let (wr, wrows, f) = dir_slice(&w, d)?;
        let (rr, rrows, rh) = dir_slice(&r, d)?;
        if wrows != gates * h || rrows != gates * h || rh != h {
            return Err(format!("weights {:?} / {:?} do not fit {gates} gates of {h} units", w.shape(), r.shape()));
        }
        let kernel = keras_kernel(&wr, h, f, &order)?;
        let rkernel = keras_kernel(&rr, h, h, &order)?;
        let (activation, recurrent) = match kind {
            RnnKind::Lstm => {
                if act_at(d, 1)? != act_at(d, 2)? {
                    return Err("LSTM with different cell and hidden activations is not supported".into());
                }
                (act_at(d, 1)?, act_at(d, 0)?)
            }
            RnnKind::Gru { .. } => (act_at(d, 1)?, act_at(d, 0)?),
            RnnKind::Simple => (act_at(d, 0)?, UnaryOp::Sigmoid),
        };
        let bias = match &b {
            None => None,
            Some(bt) => {
                let v = bt.to_f32_vec();
                let per = 2 * gates * h;
                if bt.len() != per * dirs.len() {
                    return Err(format!("bias of shape {:?}", bt.shape()));
                }
                let (wb, rb) = (&v[d * per..d * per + gates * h], &v[d * per + gates * h..(d + 1) * per]);
                let (wb, rb) = (reorder(wb, h, &order), reorder(rb, h, &order));
                Some(
                    match kind {
                        RnnKind::Gru { reset_after: true } => {
                            Tensor::from_f32(&[2, 3 * h], wb.iter().chain(&rb).copied().collect())
                        }
                        _ => Tensor::from_f32(&[gates * h], wb.iter().zip(&rb).map(|(a, b)| a + b).collect()),
                    }
                    .map_err(|e| e.to_string())?,
                )
            }
        };
        let mut ins: Vec<ValueId> = vec![
            xt,
            ctx.g.add_constant(format!("{name}/kernel{d}"), kernel),
            ctx.g.add_constant(format!("{name}/recurrent_kernel{d}"), rkernel),
        ];
        if let Some(bt) = bias {
            ins.push(ctx.g.add_constant(format!("{name}/bias{d}"), bt));
        }
        // Nonzero initial states: direction d's (N, H) slice of each (D, N, H) input.
        let mut init = Vec::new();
        for v in states.iter().take(if kind == RnnKind::Lstm { 2 } else { 1 }) {
            let Some(v) = v else { continue };
            let s = ctx.tmp(
                name,
                Op::Slice {
                    axes: vec![usize::from(batch_first)],
                    starts: vec![d as i64],
                    ends: vec![d as i64 + 1],
                    steps: vec![1],
                },
                &[*v],
            )?;
            let nm = ctx.fresh(name);
            init.push(ctx.reshape_to(&nm, s, &[n, S::N(h as f64)])?);
        }
        if !init.is_empty() && init.len() != if kind == RnnKind::Lstm { 2 } else { 1 } {
            return Err("an LSTM needs both initial_h and initial_c, or neither".into());
        }
        ins.extend(&init);
        let attrs = RnnAttrs {
            kind,
            units: h,
            activation,
            recurrent_activation: recurrent,
            return_sequences: true,
            go_backwards: backwards,
            initial_state: !init.is_empty(),
            masked: false,
            zero_output_for_mask: false,
        };
        let outs = ctx.add_multi(&format!("{name}/dir{d}"), Op::Rnn(attrs), &ins)?;
        // Keras returns a backwards sequence reversed; ONNX keeps time order.
        let y = if backwards {
            ctx.tmp(
                name,
                Op::Slice { axes: vec![1], starts: vec![-1], ends: vec![-(1 << 40)], steps: vec![-1] },
                &[outs[0]],
            )?
        } else {
            outs[0]
        };
        ys.push(y);
        hs.push(outs[1]);
        if let Some(&c) = outs.get(2) {
            cs.push(c);
        }
    }
    // Y: (N, T, H) per direction → (T, D, N, H), or (N, T, D, H) batch first.
    let mut y_parts = Vec::new();
    let hu = S::N(h as f64);
    for y in ys {
        let nm = ctx.fresh(name);
        if batch_first {
            y_parts.push(ctx.reshape_to(&nm, y, &[n, steps, S::N(1.0), hu])?);
        } else {
            let t = ctx.tmp(name, Op::Transpose { perm: vec![1, 0, 2] }, &[y])?;
            y_parts.push(ctx.reshape_to(&nm, t, &[steps, S::N(1.0), n, hu])?);
        }
    }
    let y_axis = if batch_first { 2 } else { 1 };
    let y = if y_parts.len() == 1 { y_parts[0] } else { ctx.tmp(name, Op::Concat { axis: y_axis }, &y_parts)? };
    // Final states: (N, H) per direction → (D, N, H), or (N, D, H) batch first.
    let state = |ctx: &mut Ctx, parts: Vec<ValueId>| -> Result<ValueId, String> {
        let mut r = Vec::new();
        for p in parts {
            let nm = ctx.fresh(name);
            let shape = if batch_first { [n, S::N(1.0), hu] } else { [S::N(1.0), n, hu] };
            r.push(ctx.reshape_to(&nm, p, &shape)?);
        }
        if r.len() == 1 {
            Ok(r[0])
        } else {
            ctx.tmp(name, Op::Concat { axis: usize::from(batch_first) }, &r)
        }
    };
    let mut out = vec![Val::Ir(y), Val::Ir(state(ctx, hs)?)];
    if !cs.is_empty() {
        out.push(Val::Ir(state(ctx, cs)?));
    }
    Ok(out)
}
