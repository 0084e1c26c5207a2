//! Control flow: `Loop` unrolled when its trip count and condition are known at load time (the
//! form tf2onnx writes for Keras's GRU and SimpleRNN), `If` with a known condition inlined.

use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, run_subgraph, Ctx, KVal, Lowered, Val, S};
use ir::{DType, Op};

/// Most iterations unrolled.
const MAX_ITERATIONS: usize = 4096;

fn truth(ctx: &Ctx, v: &Val, what: &str) -> Result<bool, String> {
    let k = ctx.known(v).ok_or_else(|| {
        format!("{what} depends on data: only loops whose iterations are known at load time are supported")
    })?;
    Ok(k.nums(what)?.first().copied().unwrap_or(0.0) != 0.0)
}

pub fn loop_(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let body = attr(node, "body").and_then(|a| a.g.as_ref()).ok_or("Loop without a body")?;
    let trip = match ctx.input(node, 0) {
        Some(m) => Some(ctx.ints(&m, "the trip count")?.first().copied().unwrap_or(0).max(0) as usize),
        None => None,
    };
    let mut cond = match ctx.input(node, 1) {
        Some(c) => truth(ctx, &c, "the loop condition")?,
        None => true,
    };
    let nv = node.input.len().saturating_sub(2);
    let mut vals: Vec<Val> = (0..nv).map(|i| ctx.req(node, i + 2)).collect::<Result<_, _>>()?;
    let names: Vec<String> = body.input.iter().map(|i| i.name.clone().unwrap_or_default()).collect();
    if names.len() != nv + 2 {
        return Err(format!("the body takes {} inputs for {nv} loop-carried values", names.len()));
    }
    let n_scan = body.output.len().saturating_sub(1 + nv);
    let mut scans: Vec<Vec<Val>> = vec![Vec::new(); n_scan];
    let limit = trip.unwrap_or(MAX_ITERATIONS + 1);
    let mut i = 0;
    while i < limit && cond {
        if i >= MAX_ITERATIONS {
            return Err(format!("more than {MAX_ITERATIONS} iterations"));
        }
        let mut bind = vec![
            (names[0].clone(), Val::Known(KVal::new(DType::I64, vec![], vec![S::N(i as f64)]))),
            (names[1].clone(), Val::Known(KVal::new(DType::Bool, vec![], vec![S::N(1.0)]))),
        ];
        for (k, v) in vals.iter().enumerate() {
            bind.push((names[k + 2].clone(), v.clone()));
        }
        let outs = run_subgraph(ctx, body, bind).map_err(|m| format!("iteration {i}: {m}"))?;
        cond = truth(ctx, &outs[0], "the loop condition")?;
        vals = outs[1..1 + nv].to_vec();
        for (s, v) in scans.iter_mut().zip(&outs[1 + nv..]) {
            s.push(v.clone());
        }
        i += 1;
    }
    let mut out = vals;
    for parts in scans {
        if parts.is_empty() {
            return Err("a loop that runs no iteration has scan outputs of unknown shape".into());
        }
        let mut ids = Vec::new();
        for p in &parts {
            let id = ctx.ir(p)?;
            let mut s = ctx.shape_of(&Val::Ir(id));
            s.insert(0, S::N(1.0));
            let nm = ctx.fresh(name);
            ids.push(ctx.reshape_to(&nm, id, &s)?);
        }
        let y = if ids.len() == 1 { ids[0] } else { ctx.add(&format!("{name}/scan"), Op::Concat { axis: 0 }, &ids)? };
        out.push(Val::Ir(y));
    }
    Ok(out)
}

pub fn if_(ctx: &mut Ctx, node: &NodeProto, _name: &str) -> Lowered {
    let c = truth(ctx, &ctx.req(node, 0)?, "the If condition")?;
    let branch = attr(node, if c { "then_branch" } else { "else_branch" })
        .and_then(|a| a.g.as_ref())
        .ok_or("If without its branches")?;
    run_subgraph(ctx, branch, Vec::new())
}
