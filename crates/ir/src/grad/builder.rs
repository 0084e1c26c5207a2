//! The backward-graph builder every gradient rule uses: adding nodes, types, summing a
//! broadcast gradient back to an operand's shape, reshapes.

use crate::{Dim, Graph, IrError, Op, ReduceKind, Shape, TensorType, ValueId};

/// The gradients of a node's inputs, in input order (`None` where an input gets none).
pub(super) type Grads = Result<Vec<Option<ValueId>>, IrError>;

pub(super) fn unsupported(op: &Op, why: &str) -> IrError {
    IrError::Graph(format!("the gradient of {} is not implemented yet{why}", op.name()))
}

pub(super) fn fixed_dims(s: &Shape, what: &str) -> Result<Vec<usize>, IrError> {
    s.dims()
        .iter()
        .map(|d| d.fixed().ok_or_else(|| IrError::Graph(format!("{what} needs fixed dimensions, got {s}"))))
        .collect()
}

/// A reshape target from `from` to `to` (batch axes kept by position or inferred once).
fn reshape_target(from: &Shape, to: &Shape) -> Result<Vec<i64>, IrError> {
    let mut inferred = false;
    to.dims()
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) => Ok(*n as i64),
            Dim::Batch if from.dims().get(i) == Some(&Dim::Batch) => Ok(0),
            Dim::Batch if !inferred => {
                inferred = true;
                Ok(-1)
            }
            Dim::Batch => Err(IrError::Graph(format!("cannot reshape {from} to {to}: two symbolic axes"))),
        })
        .collect()
}

/// Appends backward nodes to a graph, numbering their names.
pub(super) struct Builder<'a> {
    pub(super) g: &'a mut Graph,
    pub(super) n: usize,
    /// Per value: whether the loss's gradient flows into it (it depends on a value asked for).
    /// Values added by the builder itself are not in it and count as needing one.
    pub(super) needs: Vec<bool>,
    /// The first part of every added node's name (`grad` for the backward pass).
    pub(super) prefix: String,
}

impl Builder<'_> {
    pub(super) fn add(&mut self, op: Op, ins: &[ValueId]) -> Result<ValueId, IrError> {
        self.n += 1;
        self.g.add(format!("{}/{}", self.prefix, self.n), op, ins)
    }

    /// Whether a rule should build the gradient of `v` (it leads to a value asked for).
    pub(super) fn needs(&self, v: ValueId) -> bool {
        self.needs.get(v.0).copied().unwrap_or(true)
    }

    pub(super) fn ty(&self, v: ValueId) -> TensorType {
        self.g.value(v).ty.clone()
    }

    /// Sums a gradient of a broadcast result down to `target`'s shape.
    pub(super) fn unbroadcast(&mut self, grad: ValueId, target: &TensorType) -> Result<ValueId, IrError> {
        let s = self.ty(grad).shape;
        if s == target.shape {
            return Ok(grad);
        }
        let (r, rt) = (s.rank(), target.shape.rank());
        let mut cur = grad;
        if r > rt {
            cur =
                self.add(Op::Reduce { kind: ReduceKind::Sum, axes: (0..r - rt).collect(), keepdims: false }, &[cur])?;
        }
        let now = self.ty(cur).shape;
        let axes: Vec<usize> =
            (0..rt).filter(|&i| target.shape.dims()[i] == Dim::Fixed(1) && now.dims()[i] != Dim::Fixed(1)).collect();
        if !axes.is_empty() {
            cur = self.add(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims: true }, &[cur])?;
        }
        Ok(cur)
    }

    pub(super) fn reshape_to(&mut self, v: ValueId, to: &Shape) -> Result<ValueId, IrError> {
        let from = self.ty(v).shape;
        if &from == to {
            return Ok(v);
        }
        let shape = reshape_target(&from, to)?;
        self.add(Op::Reshape { shape }, &[v])
    }
}
