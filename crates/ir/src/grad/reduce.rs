//! Gradients of reductions (sum, mean, max/min split between ties, exact products with zeros),
//! softmax and log-softmax.

use super::builder::{Builder, Grads};
use crate::{BinaryOp, Dim, IrError, Node, Op, ReduceKind, Shape, UnaryOp, ValueId};

impl Builder<'_> {
    pub(super) fn softmax(&mut self, nd: &Node, dy: ValueId, axes: &[usize]) -> Grads {
        let y = nd.outputs[0];
        let t = self.add(Op::Binary(BinaryOp::Mul), &[dy, y])?;
        let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec(), keepdims: true }, &[t])?;
        let d = self.add(Op::Binary(BinaryOp::Sub), &[dy, s])?;
        Ok(vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[y, d])?)])
    }

    pub(super) fn log_softmax(&mut self, nd: &Node, dy: ValueId, axis: usize) -> Grads {
        let y = nd.outputs[0];
        let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: vec![axis], keepdims: true }, &[dy])?;
        let e = self.add(Op::Unary(UnaryOp::Exp), &[y])?;
        let t = self.add(Op::Binary(BinaryOp::Mul), &[e, s])?;
        Ok(vec![Some(self.add(Op::Binary(BinaryOp::Sub), &[dy, t])?)])
    }

    pub(super) fn sum_or_mean(
        &mut self,
        nd: &Node,
        dy: ValueId,
        kind: ReduceKind,
        axes: &[usize],
        keepdims: bool,
    ) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let xs = self.ty(x(0)).shape;
        let mut kept = xs.dims().to_vec();
        for &a in axes {
            kept[a] = Dim::Fixed(1);
        }
        let dyk = if keepdims { dy } else { self.reshape_to(dy, &Shape(kept))? };
        let dx = if kind == ReduceKind::Mean {
            self.add(Op::MeanGrad { axes: axes.to_vec() }, &[dyk, x(0)])?
        } else {
            self.add(Op::BroadcastTo, &[dyk, x(0)])?
        };
        Ok(vec![Some(dx)])
    }

    pub(super) fn max_or_min(&mut self, nd: &Node, dy: ValueId, axes: &[usize], keepdims: bool) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let y = nd.outputs[0];
        // The gradient goes to the extreme elements, split evenly between ties (as
        // TensorFlow does).
        let xs = self.ty(x(0)).shape;
        let mut kept = xs.dims().to_vec();
        for &a in axes {
            kept[a] = Dim::Fixed(1);
        }
        let (yk, dyk) = if keepdims {
            (y, dy)
        } else {
            (self.reshape_to(y, &Shape(kept.clone()))?, self.reshape_to(dy, &Shape(kept))?)
        };
        let diff = self.add(Op::Binary(BinaryOp::Sub), &[x(0), yk])?;
        let a = self.add(Op::Unary(UnaryOp::Abs), &[diff])?;
        let sg = self.add(Op::Unary(UnaryOp::Sign), &[a])?;
        let mask = self.add(Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[sg])?;
        let cnt = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec(), keepdims: true }, &[mask])?;
        let w = self.add(Op::Binary(BinaryOp::Div), &[mask, cnt])?;
        Ok(vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[w, dyk])?)])
    }

    pub(super) fn prod(&mut self, nd: &Node, dy: ValueId, axes: &[usize], keepdims: bool) -> Grads {
        let x = |i: usize| nd.inputs[i];
        // ∂/∂x_i Π x = Π_{j≠i} x_j, exact with zeros: with z zeros among the factors,
        // it is Π(non-zeros)/x_i where z = 0, Π(non-zeros) at the zero where z = 1, else 0.
        let xs = self.ty(x(0)).shape;
        let mut kept = xs.dims().to_vec();
        for &a in axes {
            kept[a] = Dim::Fixed(1);
        }
        let dyk = if keepdims { dy } else { self.reshape_to(dy, &Shape(kept))? };
        let red = |b: &mut Self, kind: ReduceKind, v: ValueId| {
            b.add(Op::Reduce { kind, axes: axes.to_vec(), keepdims: true }, &[v])
        };
        let is_zero = |b: &mut Self, v: ValueId| -> Result<ValueId, IrError> {
            let s = b.add(Op::Unary(UnaryOp::Sign), &[v])?;
            let a = b.add(Op::Unary(UnaryOp::Abs), &[s])?;
            b.add(Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[a])
        };
        let zero = is_zero(self, x(0))?;
        let safe = self.add(Op::Binary(BinaryOp::Add), &[x(0), zero])?;
        let p = red(self, ReduceKind::Prod, safe)?;
        let cnt = red(self, ReduceKind::Sum, zero)?;
        let none = is_zero(self, cnt)?;
        let c1 = self.add(Op::Unary(UnaryOp::Affine { scale: 1.0, offset: -1.0 }), &[cnt])?;
        let one = is_zero(self, c1)?;
        let nonzero = self.add(Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[zero])?;
        let q = self.add(Op::Binary(BinaryOp::Div), &[p, safe])?;
        let t1 = self.add(Op::Binary(BinaryOp::Mul), &[q, nonzero])?;
        let t1 = self.add(Op::Binary(BinaryOp::Mul), &[t1, none])?;
        let t2 = self.add(Op::Binary(BinaryOp::Mul), &[p, zero])?;
        let t2 = self.add(Op::Binary(BinaryOp::Mul), &[t2, one])?;
        let d = self.add(Op::Binary(BinaryOp::Add), &[t1, t2])?;
        Ok(vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[d, dyk])?)])
    }
}
