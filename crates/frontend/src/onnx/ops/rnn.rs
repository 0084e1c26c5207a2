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
    // Weights: constants are rearranged into Keras's layout once, at import; weights that arrive
    // at run time (graph inputs, or computed) are rearranged by slices and transposes in the graph.
    let (wv, rv, bv) = (ctx.req(node, 1)?, ctx.req(node, 2)?, ctx.input(node, 3));
    let constant = ctx.constant(&wv).is_some()
        && ctx.constant(&rv).is_some()
        && bv.as_ref().is_none_or(|b| ctx.constant(b).is_some());
    let weights = if constant {
        let c = |v: &Val| ctx.constant(v).ok_or_else(|| "weights that are not constants".to_string());
        Weights::Constant(c(&wv)?, c(&rv)?, bv.as_ref().map(c).transpose()?)
    } else {
        let dims = |v: &Val| -> Result<Vec<usize>, String> {
            ctx.shape_of(v)
                .iter()
                .map(|d| {
                    if let S::N(n) = d {
                        Ok(*n as usize)
                    } else {
                        Err("recurrent weights of a batch-dependent size".into())
                    }
                })
                .collect()
        };
        let (ws, rs) = (dims(&wv)?, dims(&rv)?);
        let bs = bv.as_ref().map(&dims).transpose()?;
        let w = ctx.ir(&wv)?;
        let r = ctx.ir(&rv)?;
        let b = bv.as_ref().map(|b| ctx.ir(b)).transpose()?;
        Weights::RunTime { w, r, b, ws, rs, bs }
    };
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
        let reset_after = matches!(kind, RnnKind::Gru { reset_after: true });
        let shape = Layout { d, dirs: dirs.len(), gates, h, order: &order, reset_after };
        let mut ins: Vec<ValueId> = vec![xt];
        ins.extend(weights.for_direction(ctx, name, &shape)?);
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

/// An RNN's weights: constants, or values the graph computes or takes as inputs (with their
/// fixed shapes).
enum Weights {
    Constant(Tensor, Tensor, Option<Tensor>),
    RunTime { w: ValueId, r: ValueId, b: Option<ValueId>, ws: Vec<usize>, rs: Vec<usize>, bs: Option<Vec<usize>> },
}

/// Where direction `d`'s weights are, and Keras's gate order.
struct Layout<'a> {
    d: usize,
    dirs: usize,
    gates: usize,
    h: usize,
    order: &'a [usize],
    reset_after: bool,
}

impl Weights {
    /// Direction `d`'s kernel, recurrent kernel and bias (if any) in Keras's layout.
    fn for_direction(&self, ctx: &mut Ctx, name: &str, l: &Layout) -> Result<Vec<ValueId>, String> {
        let (d, gates, h) = (l.d, l.gates, l.h);
        match self {
            Weights::Constant(w, r, b) => {
                let (wr, wrows, f) = dir_slice(w, d)?;
                let (rr, rrows, rh) = dir_slice(r, d)?;
                if wrows != gates * h || rrows != gates * h || rh != h {
                    return Err(format!(
                        "weights {:?} / {:?} do not fit {gates} gates of {h} units",
                        w.shape(),
                        r.shape()
                    ));
                }
                let mut out = vec![
                    ctx.g.add_constant(format!("{name}/kernel{d}"), keras_kernel(&wr, h, f, l.order)?),
                    ctx.g.add_constant(format!("{name}/recurrent_kernel{d}"), keras_kernel(&rr, h, h, l.order)?),
                ];
                if let Some(bt) = b {
                    let v = bt.to_f32_vec();
                    let per = 2 * gates * h;
                    if bt.len() != per * l.dirs {
                        return Err(format!("bias of shape {:?}", bt.shape()));
                    }
                    let (wb, rb) = (&v[d * per..d * per + gates * h], &v[d * per + gates * h..(d + 1) * per]);
                    let (wb, rb) = (reorder(wb, h, l.order), reorder(rb, h, l.order));
                    let t = if l.reset_after {
                        Tensor::from_f32(&[2, 3 * h], wb.iter().chain(&rb).copied().collect())
                    } else {
                        Tensor::from_f32(&[gates * h], wb.iter().zip(&rb).map(|(a, b)| a + b).collect())
                    }
                    .map_err(|e| e.to_string())?;
                    out.push(ctx.g.add_constant(format!("{name}/bias{d}"), t));
                }
                Ok(out)
            }
            Weights::RunTime { w, r, b, ws, rs, bs } => {
                let fits = |s: &[usize], cols: Option<usize>| {
                    s.len() == 3 && s[0] == l.dirs && s[1] == gates * h && cols.is_none_or(|c| s[2] == c)
                };
                if !fits(ws, None) || !fits(rs, Some(h)) {
                    return Err(format!(
                        "weights {ws:?} / {rs:?} do not fit {} direction(s) of {gates} gates of {h} units",
                        l.dirs
                    ));
                }
                let slice = |ctx: &mut Ctx, v: ValueId, axis: usize, from: usize, to: usize| {
                    let op = Op::Slice {
                        axes: vec![axis],
                        starts: vec![from as i64],
                        ends: vec![to as i64],
                        steps: vec![1],
                    };
                    ctx.tmp(name, op, &[v])
                };
                // (gates·H, cols) rows of direction d, gate blocks in Keras's order, transposed.
                let kernel = |ctx: &mut Ctx, v: ValueId, cols: usize| -> Result<ValueId, String> {
                    let one = slice(ctx, v, 0, d, d + 1)?;
                    let nm = ctx.fresh(name);
                    let rows = ctx.reshape_to(&nm, one, &[S::N((gates * h) as f64), S::N(cols as f64)])?;
                    let blocks = l
                        .order
                        .iter()
                        .map(|&g| slice(ctx, rows, 0, g * h, (g + 1) * h))
                        .collect::<Result<Vec<_>, _>>()?;
                    let cat =
                        if blocks.len() == 1 { blocks[0] } else { ctx.tmp(name, Op::Concat { axis: 0 }, &blocks)? };
                    ctx.tmp(name, Op::Transpose { perm: vec![1, 0] }, &[cat])
                };
                let mut out = vec![kernel(ctx, *w, ws[2])?, kernel(ctx, *r, h)?];
                if let (Some(b), Some(bs)) = (b, bs) {
                    if bs.len() != 2 || bs[0] != l.dirs || bs[1] != 2 * gates * h {
                        return Err(format!("bias of shape {bs:?}"));
                    }
                    let one = slice(ctx, *b, 0, d, d + 1)?;
                    let nm = ctx.fresh(name);
                    let flat = ctx.reshape_to(&nm, one, &[S::N((2 * gates * h) as f64)])?;
                    let mut halves = Vec::new();
                    for half in 0..2 {
                        let base = half * gates * h;
                        let parts = l
                            .order
                            .iter()
                            .map(|&g| slice(ctx, flat, 0, base + g * h, base + (g + 1) * h))
                            .collect::<Result<Vec<_>, _>>()?;
                        halves.push(if parts.len() == 1 {
                            parts[0]
                        } else {
                            ctx.tmp(name, Op::Concat { axis: 0 }, &parts)?
                        });
                    }
                    out.push(if l.reset_after {
                        let cat = ctx.tmp(name, Op::Concat { axis: 0 }, &halves)?;
                        let nm = ctx.fresh(name);
                        ctx.reshape_to(&nm, cat, &[S::N(2.0), S::N((3 * h) as f64)])?
                    } else {
                        ctx.tmp(name, Op::Binary(ir::BinaryOp::Add), &[halves[0], halves[1]])?
                    });
                }
                Ok(out)
            }
        }
    }
}
