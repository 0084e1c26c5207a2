//! Human-readable renderings of a graph: one line per node, and Graphviz DOT.

use crate::{Graph, Op, Producer, ValueId};
use std::fmt::Write;

/// A short attribute summary of an op, shown after its name.
pub fn op_detail(op: &Op) -> String {
    match op {
        Op::ChannelsFirst(inner) => op_detail(inner),
        Op::Conv(a) | Op::FusedConv { conv: a, .. } => {
            let mut s = format!("strides={:?} dil={:?} pads={:?}", a.strides, a.dilations, a.pads);
            if a.groups != 1 {
                let _ = write!(s, " groups={}", a.groups);
            }
            if let Op::FusedConv { epilogue, .. } = op {
                let _ = write!(s, " epilogue=[{}]", epilogue.describe());
            }
            s
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => {
            format!("ta={transpose_a} tb={transpose_b} epilogue=[{}]", epilogue.describe())
        }
        Op::MatMul { transpose_a, transpose_b } => format!("ta={transpose_a} tb={transpose_b}"),
        Op::Fused(e) => e.render(),
        Op::Unary(u) => match u {
            crate::UnaryOp::Identity | crate::UnaryOp::Relu | crate::UnaryOp::Sigmoid => String::new(),
            other => format!("{other:?}"),
        },
        Op::Binary(_) => String::new(),
        Op::Reshape { shape } => format!("{shape:?}"),
        Op::Transpose { perm } => format!("{perm:?}"),
        Op::Pool(p) => format!("window={:?} strides={:?} pads={:?}", p.window, p.strides, p.pads),
        Op::Pad { pads, value } => format!("{pads:?} value={value}"),
        Op::BiasAdd { axis } | Op::Concat { axis } | Op::Gather { axis } => format!("axis={axis}"),
        Op::Reduce { axes, keepdims, .. } => format!("axes={axes:?} keepdims={keepdims}"),
        Op::ArgReduce { axis, keepdims, last, .. } => format!("axis={axis} keepdims={keepdims} last={last}"),
        Op::Softmax { axes } => format!("axes={axes:?}"),
        _ => String::new(),
    }
}

fn value_ref(g: &Graph, v: ValueId) -> String {
    let val = g.value(v);
    match val.producer {
        Producer::Constant => format!("@{}", val.name),
        _ => format!("%{}", v.0),
    }
}

/// One line per input, constant and node: `%7 = Conv2D(%3, @w) [attrs] : f32[?,8,8,16]  # name`.
pub fn to_text(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph {} ({} nodes, {} constants)", g.name, g.nodes().len(), g.constants().len());
    for &v in g.inputs() {
        let val = g.value(v);
        let _ = writeln!(s, "  input %{} : {}  # {}", v.0, val.ty, val.name);
    }
    for (&v, t) in g.constants() {
        let _ = writeln!(s, "  const @{} : {} ({} elements)", g.value(v).name, t.tensor_type(), t.len());
    }
    for node in g.nodes() {
        let outs: Vec<String> = node.outputs.iter().map(|o| format!("%{}", o.0)).collect();
        let ins: Vec<String> = node.inputs.iter().map(|&i| value_ref(g, i)).collect();
        let tys: Vec<String> = node.outputs.iter().map(|&o| g.value(o).ty.to_string()).collect();
        let detail = op_detail(&node.op);
        let detail = if detail.is_empty() { String::new() } else { format!(" [{detail}]") };
        let _ = writeln!(
            s,
            "  {} = {}({}){} : {}  # {}",
            outs.join(", "),
            node.op.name(),
            ins.join(", "),
            detail,
            tys.join(", "),
            node.name
        );
    }
    let outs: Vec<String> = g.outputs().iter().map(|&o| value_ref(g, o)).collect();
    let _ = writeln!(s, "  return {}", outs.join(", "));
    s
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph in Graphviz DOT: a box per node, an ellipse per input, weights omitted.
pub fn to_dot(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];",
        dot_escape(&g.name)
    );
    for &v in g.inputs() {
        let val = g.value(v);
        let _ = writeln!(s, "  v{} [shape=ellipse, label=\"{}\\n{}\"];", v.0, dot_escape(&val.name), val.ty);
    }
    for (i, node) in g.nodes().iter().enumerate() {
        let _ = writeln!(
            s,
            "  n{i} [label=\"{}\\n{}\\n{}\"];",
            dot_escape(&node.op.name()),
            dot_escape(&node.name),
            node.outputs.first().map(|&o| g.value(o).ty.to_string()).unwrap_or_default()
        );
    }
    let source = |v: ValueId| match g.value(v).producer {
        Producer::Input(_) => Some(format!("v{}", v.0)),
        Producer::Node(n, _) => Some(format!("n{}", n.0)),
        Producer::Constant => None,
    };
    for (i, node) in g.nodes().iter().enumerate() {
        for &inp in &node.inputs {
            if let Some(src) = source(inp) {
                let _ = writeln!(s, "  {src} -> n{i};");
            }
        }
    }
    for (k, &o) in g.outputs().iter().enumerate() {
        let _ = writeln!(s, "  out{k} [shape=ellipse, label=\"output {k}\"];");
        if let Some(src) = source(o) {
            let _ = writeln!(s, "  {src} -> out{k};");
        }
    }
    s.push_str("}\n");
    s
}
