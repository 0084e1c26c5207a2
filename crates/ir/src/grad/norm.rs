//! Gradients of batch (fixed statistics), layer, group and L2 normalization, written as
//! element-wise ops and reductions.

use super::builder::{unsupported, Builder, Grads};
use crate::{BinaryOp, Dim, Node, Op, ReduceKind, Shape, Tensor, UnaryOp, ValueId};

impl Builder<'_> {
    pub(super) fn batch_norm(&mut self, nd: &Node, dy: ValueId, axis: usize, epsilon: f32) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let _y = nd.outputs[0];
        let op = &nd.op;
        // Inference arithmetic with fixed statistics (a frozen or inference-mode layer):
        // y = (x − μ)·s + β with s = γ/√(σ² + ε).
        let r = self.ty(x(0)).shape.rank();
        let mut shape = vec![1i64; r];
        let c = self.ty(x(1)).shape.dims()[0].fixed().ok_or_else(|| unsupported(op, " with symbolic channels"))?;
        shape[axis] = c as i64;
        let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(epsilon));
        let v = self.add(Op::Binary(BinaryOp::Add), &[x(4), eps])?;
        let rs = self.add(Op::Unary(UnaryOp::Rsqrt), &[v])?;
        let s = self.add(Op::Binary(BinaryOp::Mul), &[x(1), rs])?;
        let s_b = self.add(Op::Reshape { shape: shape.clone() }, &[s])?;
        let dx = self.add(Op::Binary(BinaryOp::Mul), &[dy, s_b])?;
        let mu_b = self.add(Op::Reshape { shape: shape.clone() }, &[x(3)])?;
        let rs_b = self.add(Op::Reshape { shape }, &[rs])?;
        let xc = self.add(Op::Binary(BinaryOp::Sub), &[x(0), mu_b])?;
        let xhat = self.add(Op::Binary(BinaryOp::Mul), &[xc, rs_b])?;
        let gx = self.add(Op::Binary(BinaryOp::Mul), &[dy, xhat])?;
        let others: Vec<usize> = (0..r).filter(|&a| a != axis).collect();
        let dgamma = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others.clone(), keepdims: false }, &[gx])?;
        let dbeta = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others, keepdims: false }, &[dy])?;
        Ok(vec![Some(dx), Some(dgamma), Some(dbeta), None, None])
    }

    pub(super) fn layer_norm(&mut self, nd: &Node, dy: ValueId, axes: &[usize], epsilon: f32) -> Grads {
        let x = |i: usize| nd.inputs[i];
        // x̂ = (x − mean)·rs; dx = rs·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ.
        let mean = |b: &mut Self, v: ValueId| {
            b.add(Op::Reduce { kind: ReduceKind::Mean, axes: axes.to_vec(), keepdims: true }, &[v])
        };
        let mu = mean(self, x(0))?;
        let xc = self.add(Op::Binary(BinaryOp::Sub), &[x(0), mu])?;
        let sq = self.add(Op::Unary(UnaryOp::Square), &[xc])?;
        let var = mean(self, sq)?;
        let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(epsilon));
        let ve = self.add(Op::Binary(BinaryOp::Add), &[var, eps])?;
        let rs = self.add(Op::Unary(UnaryOp::Rsqrt), &[ve])?;
        let xhat = self.add(Op::Binary(BinaryOp::Mul), &[xc, rs])?;
        let g = self.add(Op::Binary(BinaryOp::Mul), &[dy, x(1)])?;
        let mg = mean(self, g)?;
        let gx = self.add(Op::Binary(BinaryOp::Mul), &[g, xhat])?;
        let mgx = mean(self, gx)?;
        let t = self.add(Op::Binary(BinaryOp::Mul), &[xhat, mgx])?;
        let d1 = self.add(Op::Binary(BinaryOp::Sub), &[g, mg])?;
        let d2 = self.add(Op::Binary(BinaryOp::Sub), &[d1, t])?;
        let dx = self.add(Op::Binary(BinaryOp::Mul), &[rs, d2])?;
        let dyx = self.add(Op::Binary(BinaryOp::Mul), &[dy, xhat])?;
        let (gt, bt) = (self.ty(x(1)), self.ty(x(2)));
        Ok(vec![Some(dx), Some(self.unbroadcast(dyx, &gt)?), Some(self.unbroadcast(dy, &bt)?)])
    }

    pub(super) fn l2_normalize(&mut self, nd: &Node, dy: ValueId, axes: &[usize], epsilon: f32) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let _y = nd.outputs[0];
        // y = x·r, r = 1/sqrt(max(Σx², ε)): dx = r·dy − [Σx² > ε]·x·r³·Σ(x·dy).
        let sum = |b: &mut Self, v: ValueId| {
            b.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.to_vec(), keepdims: true }, &[v])
        };
        let sq = self.add(Op::Unary(UnaryOp::Square), &[x(0)])?;
        let ss = sum(self, sq)?;
        let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(epsilon));
        let m = self.add(Op::Binary(BinaryOp::Max), &[ss, eps])?;
        let r = self.add(Op::Unary(UnaryOp::Rsqrt), &[m])?;
        let d = self.add(Op::Binary(BinaryOp::Sub), &[ss, eps])?;
        let sg = self.add(Op::Unary(UnaryOp::Sign), &[d])?;
        let above = self.add(Op::Unary(UnaryOp::Relu), &[sg])?;
        let xdy = self.add(Op::Binary(BinaryOp::Mul), &[x(0), dy])?;
        let t = sum(self, xdy)?;
        let r2 = self.add(Op::Unary(UnaryOp::Square), &[r])?;
        let r3 = self.add(Op::Binary(BinaryOp::Mul), &[r2, r])?;
        let k = self.add(Op::Binary(BinaryOp::Mul), &[r3, t])?;
        let k = self.add(Op::Binary(BinaryOp::Mul), &[k, above])?;
        let xk = self.add(Op::Binary(BinaryOp::Mul), &[x(0), k])?;
        let rdy = self.add(Op::Binary(BinaryOp::Mul), &[r, dy])?;
        Ok(vec![Some(self.add(Op::Binary(BinaryOp::Sub), &[rdy, xk])?)])
    }

    pub(super) fn group_norm(&mut self, nd: &Node, dy: ValueId, groups: usize, axis: usize, epsilon: f32) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let op = &nd.op;
        // The layer-norm formula over each group: x viewed as (N, ..., G, C/G),
        // normalized over every axis but the batch and the group.
        let xs = self.ty(x(0)).shape;
        let r = xs.rank();
        if axis + 1 != r {
            return Err(unsupported(op, " over a channel axis other than the last"));
        }
        let c = xs.dims()[axis].fixed().ok_or_else(|| unsupported(op, " with symbolic channels"))?;
        let mut gshape = xs.dims()[..r - 1].to_vec();
        gshape.push(Dim::Fixed(groups));
        gshape.push(Dim::Fixed(c / groups));
        let gshape = Shape(gshape);
        let red: Vec<usize> = (1..=r).filter(|&a| a != r - 1).collect();
        let mean = |b: &mut Self, v: ValueId| {
            b.add(Op::Reduce { kind: ReduceKind::Mean, axes: red.clone(), keepdims: true }, &[v])
        };
        let xg = self.reshape_to(x(0), &gshape)?;
        let mu = mean(self, xg)?;
        let xc = self.add(Op::Binary(BinaryOp::Sub), &[xg, mu])?;
        let sq = self.add(Op::Unary(UnaryOp::Square), &[xc])?;
        let var = mean(self, sq)?;
        let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(epsilon));
        let ve = self.add(Op::Binary(BinaryOp::Add), &[var, eps])?;
        let rs = self.add(Op::Unary(UnaryOp::Rsqrt), &[ve])?;
        let xhat = self.add(Op::Binary(BinaryOp::Mul), &[xc, rs])?;
        let gdy = self.add(Op::Binary(BinaryOp::Mul), &[dy, x(1)])?;
        let g = self.reshape_to(gdy, &gshape)?;
        let mg = mean(self, g)?;
        let gx = self.add(Op::Binary(BinaryOp::Mul), &[g, xhat])?;
        let mgx = mean(self, gx)?;
        let t = self.add(Op::Binary(BinaryOp::Mul), &[xhat, mgx])?;
        let d1 = self.add(Op::Binary(BinaryOp::Sub), &[g, mg])?;
        let d2 = self.add(Op::Binary(BinaryOp::Sub), &[d1, t])?;
        let dxg = self.add(Op::Binary(BinaryOp::Mul), &[rs, d2])?;
        let dx = self.reshape_to(dxg, &xs)?;
        let xh = self.reshape_to(xhat, &xs)?;
        let dyx = self.add(Op::Binary(BinaryOp::Mul), &[dy, xh])?;
        let others: Vec<usize> = (0..r - 1).collect();
        let dgamma = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others.clone(), keepdims: false }, &[dyx])?;
        let dbeta = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others, keepdims: false }, &[dy])?;
        Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
    }
}
