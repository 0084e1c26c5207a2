//! Gradients of batch (with the batch's own or fixed statistics), layer, group and L2
//! normalization, written as element-wise ops, reductions and per-channel sums.

use super::builder::{unsupported, Builder, Grads};
use crate::{BinaryOp, Dim, IrError, Node, Op, ReduceKind, Shape, Tensor, UnaryOp, ValueId};

impl Builder<'_> {
    /// `y = (x − μ)·s + β` with `s = γ/√(σ² + ε)`. Every gradient comes from two per-channel
    /// sums over the batch, `S0 = Σ dy` and `S1 = Σ dy·(x − μ)` ([`Op::BatchNormSums`], one pass
    /// over `dy` and `x`): `dβ = S0`, `dγ = S1/√(σ² + ε)`, `dμ = −s·S0`, `dσ² = −½·s·S1/(σ² + ε)`,
    /// and `dx = dy·s`. The statistics get gradients only where they lead to a weight: in
    /// training they are the batch's own ([`Op::Moments`] of `x`), whose rule adds their part of
    /// `dx`; moving statistics are constants.
    pub(super) fn batch_norm(&mut self, nd: &Node, dy: ValueId, axis: usize, epsilon: f32) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let op = &nd.op;
        let r = self.ty(x(0)).shape.rank();
        let mut shape = vec![1i64; r];
        let c = self.ty(x(1)).shape.dims()[0].fixed().ok_or_else(|| unsupported(op, " with symbolic channels"))?;
        shape[axis] = c as i64;
        let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(epsilon));
        let v = self.add(Op::Binary(BinaryOp::Add), &[x(4), eps])?;
        let rs = self.add(Op::Unary(UnaryOp::Rsqrt), &[v])?;
        let s = self.add(Op::Binary(BinaryOp::Mul), &[x(1), rs])?;
        let s_b = self.add(Op::Reshape { shape }, &[s])?;
        let dx = if self.needs(x(0)) { Some(self.add(Op::Binary(BinaryOp::Mul), &[dy, s_b])?) } else { None };
        let [need_g, need_b, need_m, need_v] = [1, 2, 3, 4].map(|i| self.needs(x(i)));
        if !(need_g || need_b || need_m || need_v) {
            return Ok(vec![dx, None, None, None, None]);
        }
        let sums = self.add(Op::BatchNormSums { axis }, &[dy, x(0), x(3)])?;
        let row = |b: &mut Self, k: i64| -> Result<ValueId, IrError> {
            let r = b.add(Op::Slice { axes: vec![0], starts: vec![k], ends: vec![k + 1], steps: vec![1] }, &[sums])?;
            b.add(Op::Reshape { shape: vec![c as i64] }, &[r])
        };
        let s0 = row(self, 0)?;
        let s1 = row(self, 1)?;
        let dgamma = if need_g { Some(self.add(Op::Binary(BinaryOp::Mul), &[s1, rs])?) } else { None };
        let dmean = if need_m {
            let t = self.add(Op::Binary(BinaryOp::Mul), &[s0, s])?;
            Some(self.add(Op::Unary(UnaryOp::Neg), &[t])?)
        } else {
            None
        };
        let dvar = if need_v {
            let rs2 = self.add(Op::Binary(BinaryOp::Mul), &[rs, rs])?;
            let t = self.add(Op::Binary(BinaryOp::Mul), &[s1, s])?;
            let t = self.add(Op::Binary(BinaryOp::Mul), &[t, rs2])?;
            Some(self.add(Op::Unary(UnaryOp::Affine { scale: -0.5, offset: 0.0 }), &[t])?)
        } else {
            None
        };
        Ok(vec![dx, dgamma, need_b.then_some(s0), dmean, dvar])
    }

    /// The batch's statistics: `dx = dμ/M + dσ²·2(x − μ)/M` ([`Op::MomentsGrad`]).
    pub(super) fn moments(&mut self, nd: &Node, dy: ValueId, axis: usize) -> Grads {
        let (x, m) = (nd.inputs[0], nd.outputs[0]);
        Ok(vec![Some(self.add(Op::MomentsGrad { axis }, &[x, m, dy])?)])
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
