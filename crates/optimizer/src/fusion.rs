//! Element-wise chain fusion: every maximal tree of element-wise ops whose inner results have no
//! other reader becomes one [`Op::Fused`] holding the expression; scalar weights become literals.

use crate::copy::{live_nodes, Copier};
use crate::OptError;
use ir::{BinaryOp, DType, ExprNode, FusedExpr, Graph, Node, Op, Tensor, ValueId};
use std::collections::HashMap;

/// What chain fusion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FusionStats {
    /// Fused ops made.
    pub groups: usize,
    /// Element-wise ops merged into them.
    pub ops: usize,
}

enum Operand {
    Value(ValueId),
    Weight(Tensor),
}

fn candidate(g: &Graph, n: &Node) -> bool {
    let f32_only = n.inputs.iter().chain(&n.outputs).all(|&v| g.value(v).ty.dtype == DType::F32);
    let bias_ok = match &n.op {
        Op::BiasAdd { axis } => {
            let rank = g.value(n.inputs[0]).ty.shape.rank();
            *axis + 1 == rank || g.constant(n.inputs[1]).is_some()
        }
        _ => true,
    };
    n.op.is_elementwise() && n.outputs.len() == 1 && f32_only && bias_ok
}

struct Grow<'a> {
    g: &'a Graph,
    uses: &'a [usize],
    producer: &'a HashMap<ValueId, usize>,
    inlined: &'a mut [bool],
    out_rank: usize,
    inline_scalars: bool,
    expr: Vec<ExprNode>,
    operands: Vec<Operand>,
    slots: HashMap<ValueId, usize>,
    merged: usize,
}

impl Grow<'_> {
    fn push(&mut self, e: ExprNode) -> usize {
        self.expr.push(e);
        self.expr.len() - 1
    }

    fn input(&mut self, v: ValueId) -> usize {
        if let (Some(t), true) = (self.g.constant(v), self.inline_scalars) {
            let scalar = t.len() == 1 && t.rank() <= self.out_rank && t.shape().iter().all(|&d| d == 1);
            if let (true, Some(x)) = (scalar, t.as_f32().and_then(|d| d.first())) {
                return self.push(ExprNode::Const(*x));
            }
        }
        let k = match self.slots.get(&v) {
            Some(&k) => k,
            None => {
                self.operands.push(Operand::Value(v));
                self.slots.insert(v, self.operands.len() - 1);
                self.operands.len() - 1
            }
        };
        self.push(ExprNode::Input(k))
    }

    fn value(&mut self, v: ValueId) -> usize {
        if let Some(&n) = self.producer.get(&v) {
            let node = &self.g.nodes()[n];
            if self.uses[v.0] == 1 && candidate(self.g, node) && !self.inlined[n] {
                self.inlined[n] = true;
                return self.node(node);
            }
        }
        self.input(v)
    }

    fn node(&mut self, n: &Node) -> usize {
        self.merged += 1;
        match &n.op {
            Op::Unary(u) => {
                let a = self.value(n.inputs[0]);
                self.push(ExprNode::Unary(*u, a))
            }
            Op::Binary(b) => {
                let a = self.value(n.inputs[0]);
                let c = self.value(n.inputs[1]);
                self.push(ExprNode::Binary(*b, a, c))
            }
            Op::BiasAdd { axis } => {
                let a = self.value(n.inputs[0]);
                let rank = self.g.value(n.inputs[0]).ty.shape.rank();
                let b = match self.g.constant(n.inputs[1]) {
                    Some(t) if *axis + 1 != rank => {
                        // A bias along an inner axis broadcasts as (C, 1, ..., 1).
                        let mut shape = vec![t.len()];
                        shape.extend(std::iter::repeat_n(1, rank - *axis - 1));
                        let reshaped = t.clone().reshape(&shape).unwrap_or_else(|_| t.clone());
                        self.operands.push(Operand::Weight(reshaped));
                        let k = self.operands.len() - 1;
                        self.push(ExprNode::Input(k))
                    }
                    _ => self.value(n.inputs[1]),
                };
                self.push(ExprNode::Binary(BinaryOp::Add, a, b))
            }
            Op::Fused(e) => {
                let ins: Vec<usize> = n.inputs.iter().map(|&v| self.value(v)).collect();
                let mut local = Vec::with_capacity(e.nodes.len());
                for step in &e.nodes {
                    let id = match *step {
                        ExprNode::Input(k) => ins.get(k).copied().unwrap_or(0),
                        ExprNode::Const(c) => self.push(ExprNode::Const(c)),
                        ExprNode::Unary(u, a) => self.push(ExprNode::Unary(u, local[a])),
                        ExprNode::Binary(b, x, y) => self.push(ExprNode::Binary(b, local[x], local[y])),
                    };
                    local.push(id);
                }
                local.last().copied().unwrap_or(0)
            }
            _ => self.input(n.outputs[0]),
        }
    }
}

/// Clears the inlined marks set while growing from `n` (before a second attempt).
fn mark_uninlined(g: &Graph, n: &Node, producer: &HashMap<ValueId, usize>, inlined: &mut [bool]) {
    for v in &n.inputs {
        if let Some(&p) = producer.get(v) {
            if inlined[p] {
                inlined[p] = false;
                mark_uninlined(g, &g.nodes()[p], producer, inlined);
            }
        }
    }
}

/// Fuses element-wise chains; returns the new graph and what was fused.
pub fn fuse_elementwise(g: &Graph) -> Result<(Graph, FusionStats), OptError> {
    let live = live_nodes(g);
    let mut uses = vec![0usize; g.values().len()];
    let mut producer = HashMap::new();
    for (i, n) in g.nodes().iter().enumerate() {
        if !live[i] {
            continue;
        }
        for v in &n.inputs {
            uses[v.0] += 1;
        }
        for o in &n.outputs {
            producer.insert(*o, i);
        }
    }
    for o in g.outputs() {
        uses[o.0] += 2;
    }
    let mut inlined = vec![false; g.nodes().len()];
    let mut roots: HashMap<usize, (FusedExpr, Vec<Operand>)> = HashMap::new();
    let mut stats = FusionStats::default();
    for i in (0..g.nodes().len()).rev() {
        let n = &g.nodes()[i];
        if !live[i] || inlined[i] || !candidate(g, n) {
            continue;
        }
        let out_ty = &g.value(n.outputs[0]).ty;
        for inline_scalars in [true, false] {
            let mut grow = Grow {
                g,
                uses: &uses,
                producer: &producer,
                inlined: &mut inlined,
                out_rank: out_ty.shape.rank(),
                inline_scalars,
                expr: Vec::new(),
                operands: Vec::new(),
                slots: HashMap::new(),
                merged: 0,
            };
            grow.node(n);
            let (expr, operands, merged) = (grow.expr, grow.operands, grow.merged);
            // Literals must not have been what gave the output its shape.
            let mut shape: Option<ir::Shape> = None;
            for o in &operands {
                let s = match o {
                    Operand::Value(v) => g.value(*v).ty.shape.clone(),
                    Operand::Weight(t) => ir::Shape::fixed(t.shape()),
                };
                shape = Some(match shape {
                    None => s,
                    Some(prev) => ir::broadcast(&prev, &s).unwrap_or(prev),
                });
            }
            if shape.as_ref() == Some(&out_ty.shape) || !inline_scalars {
                stats.groups += 1;
                stats.ops += merged;
                roots.insert(i, (FusedExpr { nodes: expr }, operands));
                break;
            }
            mark_uninlined(g, n, &producer, &mut inlined);
        }
    }
    let mut c = Copier::new(g);
    let mut fresh = 0;
    for (i, n) in g.nodes().iter().enumerate() {
        if !live[i] || inlined[i] {
            continue;
        }
        let (op, ins) = match roots.remove(&i) {
            Some((expr, operands)) => {
                let mut ins = Vec::with_capacity(operands.len());
                for o in operands {
                    ins.push(match o {
                        Operand::Value(v) => c.get(v)?,
                        Operand::Weight(t) => {
                            fresh += 1;
                            c.dst.add_constant(format!("{}/bias_{fresh}", n.name), t)
                        }
                    });
                }
                if ins.is_empty() {
                    // An expression of literals only still needs a shape: keep the node as it was.
                    (n.op.clone(), n.inputs.iter().map(|&v| c.get(v)).collect::<Result<Vec<_>, _>>()?)
                } else {
                    (Op::Fused(expr), ins)
                }
            }
            None => (n.op.clone(), n.inputs.iter().map(|&v| c.get(v)).collect::<Result<Vec<_>, _>>()?),
        };
        let outs = c.dst.add_node(n.name.clone(), op, &ins)?;
        for (&o, v) in n.outputs.iter().zip(outs) {
            c.set(o, v);
        }
    }
    Ok((c.finish()?, stats))
}
