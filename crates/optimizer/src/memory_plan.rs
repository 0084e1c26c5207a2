//! The memory planner: liveness over the execution order, buffers shared by reshapes and by
//! element-wise ops that may overwrite their input, then one arena offset per buffer from the
//! better of two placement heuristics.

use crate::OptError;
use ir::{DType, Graph, MemoryPlan, NodeId, Op, Placement};

const ALIGN: usize = 64;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

#[derive(Debug, Clone)]
struct Buffer {
    bytes: usize,
    start: usize,
    end: usize,
}

/// The concrete shape of every value when the inputs have `input_shapes`.
pub fn concrete_shapes(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, OptError> {
    Ok(g.concrete_shapes(input_shapes)?)
}

/// Plans the arena for running `g` at batch size `batch` (every symbolic axis of the inputs
/// taken as `batch`).
pub fn plan(g: &Graph, batch: usize) -> Result<MemoryPlan, OptError> {
    let inputs: Vec<Vec<usize>> = g
        .inputs()
        .iter()
        .map(|&v| g.value(v).ty.shape.dims().iter().map(|d| d.fixed().unwrap_or(batch)).collect())
        .collect();
    plan_for_shapes(g, &inputs)
}

/// The naive layout: one buffer per tensor, nothing shared or reused (what `bench` measures
/// the plan against on a GPU).
pub fn naive_plan_for_shapes(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<MemoryPlan, OptError> {
    let shapes = concrete_shapes(g, input_shapes)?;
    let mut placements = vec![Placement::Separate; g.values().len()];
    for (i, &v) in g.inputs().iter().enumerate() {
        placements[v.0] = Placement::Input(i);
    }
    for v in g.constants().keys() {
        placements[v.0] = Placement::Constant;
    }
    let mut top = 0;
    let mut naive_bytes = 0;
    for node in g.nodes() {
        for &o in &node.outputs {
            let bytes = shapes[o.0].iter().product::<usize>() * g.value(o).ty.dtype.size();
            naive_bytes += bytes;
            if g.value(o).ty.dtype == DType::F32 {
                placements[o.0] = Placement::Arena { offset: top, bytes };
                top += align(bytes);
            }
        }
    }
    Ok(MemoryPlan {
        batch: input_shapes.first().and_then(|s| s.first()).copied().unwrap_or(1),
        order: (0..g.nodes().len()).map(NodeId).collect(),
        placements,
        in_place: Vec::new(),
        aliases: 0,
        arena_bytes: top,
        naive_bytes,
        lower_bound_bytes: top,
        heuristic: "none: one buffer per tensor".into(),
        shapes,
    })
}

/// Plans the arena for running `g` on inputs of the given shapes.
pub fn plan_for_shapes(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<MemoryPlan, OptError> {
    let shapes = concrete_shapes(g, input_shapes)?;
    let batch = input_shapes.first().and_then(|s| s.first()).copied().unwrap_or(1);
    let value_bytes = |_: &Graph, v: ir::ValueId, _: usize| -> usize {
        shapes[v.0].iter().product::<usize>() * g.value(v).ty.dtype.size()
    };
    // Every value's bytes are addressable (concrete shape inference checks it); their sum bounds
    // every offset the placement computes, so it must be too.
    let total = (0..shapes.len()).try_fold(0usize, |t, v| t.checked_add(align(value_bytes(g, ir::ValueId(v), batch))));
    if total.is_none_or(|t| t > isize::MAX as usize) {
        return Err(OptError::Graph(format!("the tensors at input shapes {input_shapes:?} are too large to address")));
    }
    let n = g.nodes().len();
    let nv = g.values().len();
    let mut last_use = vec![0usize; nv];
    for (i, node) in g.nodes().iter().enumerate() {
        for v in &node.inputs {
            last_use[v.0] = i;
        }
    }
    for o in g.outputs() {
        last_use[o.0] = n;
    }
    let mut placements = vec![Placement::Separate; nv];
    for (i, &v) in g.inputs().iter().enumerate() {
        placements[v.0] = Placement::Input(i);
    }
    for v in g.constants().keys() {
        placements[v.0] = Placement::Constant;
    }
    let mut buffer_of: Vec<Option<usize>> = vec![None; nv];
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut in_place = Vec::new();
    let mut aliases = 0;
    let mut naive_bytes = 0;
    for (i, node) in g.nodes().iter().enumerate() {
        for &o in &node.outputs {
            let bytes = value_bytes(g, o, batch);
            naive_bytes += bytes;
            if g.value(o).ty.dtype != DType::F32 {
                continue;
            }
            let shared = match &node.op {
                Op::Reshape { .. } => buffer_of[node.inputs[0].0].inspect(|_| aliases += 1),
                Op::Fused(_) if node.outputs.len() == 1 => node
                    .inputs
                    .iter()
                    .filter_map(|v| buffer_of[v.0])
                    .find(|&b| buffers[b].end == i && buffers[b].bytes == bytes)
                    .inspect(|_| in_place.push(NodeId(i))),
                _ => None,
            };
            let b = match shared {
                Some(b) => b,
                None => {
                    buffers.push(Buffer { bytes, start: i, end: i });
                    buffers.len() - 1
                }
            };
            buffers[b].end = buffers[b].end.max(last_use[o.0]).max(i);
            buffer_of[o.0] = Some(b);
        }
    }
    let by_size = place(&buffers, |a, b| b.bytes.cmp(&a.bytes).then(a.start.cmp(&b.start)));
    let by_time = place(&buffers, |a, b| a.start.cmp(&b.start).then(b.bytes.cmp(&a.bytes)));
    let (offsets, heuristic) = if size_of(&buffers, &by_time) < size_of(&buffers, &by_size) {
        (by_time, "first-fit in execution order")
    } else {
        (by_size, "greedy by size, best fit")
    };
    let arena_bytes = size_of(&buffers, &offsets);
    for (v, b) in buffer_of.iter().enumerate() {
        if let Some(b) = *b {
            placements[v] = Placement::Arena { offset: offsets[b], bytes: value_bytes(g, ir::ValueId(v), batch) };
        }
    }
    let mut lower_bound_bytes = 0;
    for t in 0..=n {
        let live: usize = buffers.iter().filter(|b| b.start <= t && t <= b.end).map(|b| align(b.bytes)).sum();
        lower_bound_bytes = lower_bound_bytes.max(live);
    }
    Ok(MemoryPlan {
        batch,
        order: (0..n).map(NodeId).collect(),
        placements,
        in_place,
        aliases,
        arena_bytes,
        naive_bytes,
        lower_bound_bytes,
        heuristic: heuristic.to_string(),
        shapes,
    })
}

fn size_of(buffers: &[Buffer], offsets: &[usize]) -> usize {
    buffers.iter().zip(offsets).map(|(b, &o)| o + align(b.bytes)).max().unwrap_or(0)
}

/// Places buffers in the order `cmp` gives, each into the smallest gap left by the already
/// placed buffers that are live at the same time (or on top of them).
fn place(buffers: &[Buffer], cmp: impl Fn(&Buffer, &Buffer) -> std::cmp::Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| cmp(&buffers[a], &buffers[b]));
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    for &b in &order {
        let me = &buffers[b];
        let size = align(me.bytes);
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| buffers[p].start <= me.end && me.start <= buffers[p].end)
            .map(|&p| (offsets[p], offsets[p] + align(buffers[p].bytes)))
            .collect();
        busy.sort_unstable();
        let mut best: Option<(usize, usize)> = None;
        let mut cursor = 0;
        for &(lo, hi) in &busy {
            if lo >= cursor + size {
                let gap = lo - cursor;
                if best.is_none_or(|(_, g)| gap < g) {
                    best = Some((cursor, gap));
                }
            }
            cursor = cursor.max(hi);
        }
        offsets[b] = best.map(|(o, _)| o).unwrap_or(cursor);
        placed.push(b);
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{ExprNode, FusedExpr, Shape, Tensor, TensorType, UnaryOp};

    fn unary_expr(u: UnaryOp) -> Op {
        Op::Fused(FusedExpr { nodes: vec![ExprNode::Input(0), ExprNode::Unary(u, 0)] })
    }

    #[test]
    fn in_place_only_when_the_input_dies_there() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[4, 8])));
        let w = g.add_constant("w", Tensor::zeros(&[8, 8]));
        let a = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
        // `b` may not overwrite `a`: `a` is read again by `c`.
        let b = g.add("exp", unary_expr(UnaryOp::Exp), &[a]).unwrap();
        let sum = FusedExpr {
            nodes: vec![ExprNode::Input(0), ExprNode::Input(1), ExprNode::Binary(ir::BinaryOp::Add, 0, 1)],
        };
        let c = g.add("add", Op::Fused(sum), &[a, b]).unwrap();
        // `d` may overwrite `c`, which dies there.
        let d = g.add("neg", unary_expr(UnaryOp::Neg), &[c]).unwrap();
        g.set_outputs(vec![d]);
        let p = plan(&g, 1).unwrap();
        let off = |v: ir::ValueId| match p.placements[v.0] {
            Placement::Arena { offset, .. } => offset,
            other => panic!("{other:?}"),
        };
        assert_ne!(off(a), off(b));
        assert_eq!(off(c), off(d));
        assert!(p.in_place.contains(&NodeId(3)));
        assert!(p.arena_bytes <= p.naive_bytes);
        assert!(p.lower_bound_bytes <= p.arena_bytes);
    }
}
