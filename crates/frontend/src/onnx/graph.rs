//! Walking an ONNX graph: nodes in dependency order, each lowered by the op registry (or folded
//! at import when its inputs are known), every unsupported op listed at once; and control flow,
//! whose bodies are subgraphs walked the same way: `Loop` unrolled when its trip count and
//! condition are known at load time (the form tf2onnx writes for Keras's GRU and SimpleRNN),
//! `If` with a known condition inlined.

use super::ctx::{attr, ferr, Ctx, Lowered};
use super::ops::{self, LowerFn};
use super::proto::{GraphProto, NodeProto};
use super::value::{show, KVal, Val, MAX_KNOWN, S};
use super::{eval, tensor};
use crate::model::LayerSummary;
use crate::FrontendError;
use ir::{DType, Op};
use std::collections::{HashMap, HashSet};

/// The lowering of a control-flow op, which runs subgraphs.
fn control_flow(op_type: &str) -> Option<LowerFn> {
    match op_type {
        "Loop" => Some(loop_),
        "If" => Some(if_),
        _ => None,
    }
}

/// Node order: ONNX requires topological order, but the order is checked (and repaired)
/// here; an input that nothing defines or a cycle is an error naming the node.
fn ordered<'g>(ctx: &Ctx, graph: &'g GraphProto) -> Result<Vec<&'g NodeProto>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() && producer.insert(o.as_str(), i).is_some() {
                return Err(format!("value '{o}' is produced twice"));
            }
        }
    }
    let label =
        |n: &NodeProto| format!("'{}' ({})", n.name.clone().unwrap_or_default(), n.op_type.clone().unwrap_or_default());
    // Kahn's algorithm over in-graph edges; inputs from scope must exist.
    let mut indeg = vec![0usize; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        // A subgraph's reads of outer values are inputs of its node too.
        let mut reads: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                captured(sub, &mut reads);
            }
        }
        for inp in &reads {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    indeg[i] += 1;
                    users[p].push(i);
                }
                None if ctx.lookup(inp).is_some() => {}
                None => return Err(format!("node {} reads '{inp}', which nothing defines", label(n))),
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> = (0..graph.node.len()).filter(|&i| indeg[i] == 0).collect();
    let mut out = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_front() {
        out.push(&graph.node[i]);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if out.len() != graph.node.len() {
        let stuck: Vec<String> =
            (0..graph.node.len()).filter(|&i| indeg[i] > 0).take(5).map(|i| label(&graph.node[i])).collect();
        return Err(format!("the graph has a cycle through {}", stuck.join(", ")));
    }
    Ok(out)
}

/// Names a subgraph reads from its enclosing scopes (used but not defined inside it).
fn captured(g: &GraphProto, out: &mut Vec<String>) {
    let mut defined: HashSet<&str> = g.input.iter().filter_map(|i| i.name.as_deref()).collect();
    defined.extend(g.initializer.iter().filter_map(|t| t.name.as_deref()));
    for n in &g.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(i.as_str()) && !out.contains(i) {
                out.push(i.clone());
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                let mut inner = Vec::new();
                captured(sub, &mut inner);
                for i in inner {
                    if !defined.contains(i.as_str()) && !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
    }
}

/// Lowers every node of `graph` in the current scope; unsupported ops are all listed at once.
pub(crate) fn run_graph(
    ctx: &mut Ctx,
    graph: &GraphProto,
    summary: &mut Vec<LayerSummary>,
) -> Result<(), FrontendError> {
    let origin = ctx.origin.to_string();
    let nodes = ordered(ctx, graph).map_err(|m| ferr(&origin, m))?;
    let mut unsupported = Vec::new();
    let mut broken: HashSet<String> = HashSet::new();
    for node in nodes {
        let op_type = node.op_type.clone().unwrap_or_default();
        let nname = node
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| node.output.first().cloned().unwrap_or_else(|| op_type.clone()));
        let domain = node.domain.clone().unwrap_or_default();
        let lower = if domain.is_empty() || domain == "ai.onnx" {
            control_flow(&op_type).or_else(|| ops::registry(&op_type))
        } else {
            None
        };
        let Some(lower) = lower else {
            let what = if domain.is_empty() { op_type.clone() } else { format!("{domain}::{op_type}") };
            unsupported.push(format!("{nname} ({what})"));
            broken.extend(node.output.iter().cloned());
            continue;
        };
        if node.input.iter().any(|i| broken.contains(i)) {
            broken.extend(node.output.iter().cloned());
            continue;
        }
        let before = ctx.g.nodes().len();
        let needs = ctx.needs_len();
        let vals = match eval::fold(ctx, node).unwrap_or_else(|| lower(ctx, node, &nname)) {
            Ok(v) => v,
            // It needs the values of inputs: the rest is walked to find all such needs at once.
            Err(_) if ctx.needs_len() > needs => {
                for (_, why) in ctx.needs.borrow_mut().iter_mut().skip(needs) {
                    *why = format!("{op_type} '{nname}': {why}");
                }
                broken.extend(node.output.iter().cloned());
                continue;
            }
            Err(m) => {
                return Err(FrontendError::Layer { file: origin, layer: nname, class: op_type, message: m });
            }
        };
        for (o, v) in node.output.iter().zip(vals) {
            if !o.is_empty() {
                ctx.define(o, v);
            }
        }
        if ctx.g.nodes().len() > before || summary.is_empty() {
            let shapes = node
                .output
                .iter()
                .filter(|o| !o.is_empty())
                .filter_map(|o| ctx.lookup(o).map(|v| show(&ctx.shape_of(v))))
                .collect();
            let params = node
                .input
                .iter()
                .filter_map(|i| ctx.lookup(i))
                .filter_map(|v| if let Val::Ir(id) = v { ctx.g.constant(*id).map(|t| t.len()) } else { None })
                .sum();
            summary.push(LayerSummary {
                name: nname.clone(),
                class: op_type.clone(),
                output_shapes: shapes,
                params,
                trainable_params: params,
                connected_to: Vec::new(),
            });
        }
    }
    if !unsupported.is_empty() {
        return Err(FrontendError::Unsupported { file: origin, layers: unsupported });
    }
    Ok(())
}

/// Runs a subgraph (a loop body) with `bindings` for its inputs, returning its outputs.
pub(crate) fn run_subgraph(ctx: &mut Ctx, body: &GraphProto, bindings: Vec<(String, Val)>) -> Result<Vec<Val>, String> {
    let mut scope = HashMap::new();
    for t in &body.initializer {
        let tensor = tensor::to_tensor(t, ctx.dir)?;
        let name = t.name.clone().unwrap_or_default();
        let v = if tensor.len() <= MAX_KNOWN {
            Val::Known(KVal::from_tensor(&tensor))
        } else {
            let n = ctx.fresh(&name);
            Val::Ir(ctx.g.add_constant(n, tensor))
        };
        scope.insert(name, v);
    }
    for (n, v) in bindings {
        scope.insert(n, v);
    }
    ctx.scopes.push(scope);
    let mut summary = Vec::new();
    // The error is wrapped by the outer node's, which names the file.
    let origin = format!("{}: ", ctx.origin);
    let r = run_graph(ctx, body, &mut summary).map_err(|e| {
        let m = e.to_string();
        m.strip_prefix(&origin).map(str::to_string).unwrap_or(m)
    });
    let outs = r.and_then(|_| {
        body.output
            .iter()
            .map(|o| {
                let n = o.name.clone().unwrap_or_default();
                ctx.lookup(&n).cloned().ok_or_else(|| format!("the body's output '{n}' is never computed"))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    ctx.scopes.pop();
    outs
}

/// Most iterations of one loop unrolled.
const MAX_ITERATIONS: usize = 4096;
/// Most nodes walked in loop bodies, over all loops of a model (nested loops multiply).
const MAX_UNROLLED: usize = 1 << 17;

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
        ctx.unrolled = ctx.unrolled.saturating_add(body.node.len().max(1));
        if ctx.unrolled > MAX_UNROLLED {
            return Err(format!(
                "the model's loops unroll to more than {MAX_UNROLLED} nodes (nested loops multiply their iterations)"
            ));
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
