//! Reverse-mode differentiation on the IR: the gradient of a scalar with respect to chosen
//! values, appended to the graph as ordinary nodes, so any executor runs the backward pass.
//! One rule per op; an op without a rule is an error naming it.

use crate::{BinaryOp, Dim, Graph, IrError, Op, ReduceKind, Shape, Tensor, TensorType, UnaryOp, ValueId};
use std::collections::HashMap;

fn unsupported(op: &Op, why: &str) -> IrError {
    IrError::Graph(format!("the gradient of {} is not implemented yet{why}", op.name()))
}

fn fixed_dims(s: &Shape, what: &str) -> Result<Vec<usize>, IrError> {
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

struct Builder<'a> {
    g: &'a mut Graph,
    n: usize,
}

impl Builder<'_> {
    fn add(&mut self, op: Op, ins: &[ValueId]) -> Result<ValueId, IrError> {
        self.n += 1;
        self.g.add(format!("grad/{}", self.n), op, ins)
    }

    fn ty(&self, v: ValueId) -> TensorType {
        self.g.value(v).ty.clone()
    }

    /// Sums a gradient of a broadcast result down to `target`'s shape.
    fn unbroadcast(&mut self, grad: ValueId, target: &TensorType) -> Result<ValueId, IrError> {
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

    fn reshape_to(&mut self, v: ValueId, to: &Shape) -> Result<ValueId, IrError> {
        let from = self.ty(v).shape;
        if &from == to {
            return Ok(v);
        }
        let shape = reshape_target(&from, to)?;
        self.add(Op::Reshape { shape }, &[v])
    }

    /// The gradients of one node's inputs (None where an input gets none).
    fn rule(&mut self, node: usize, dys: &[Option<ValueId>]) -> Result<Vec<Option<ValueId>>, IrError> {
        let nd = self.g.nodes()[node].clone();
        let op = nd.op.clone();
        let x = |i: usize| nd.inputs[i];
        let Some(dy) = dys.first().copied().flatten() else { return Ok(vec![None; nd.inputs.len()]) };
        if dys.len() > 1 {
            return Err(unsupported(&op, " for ops with several outputs"));
        }
        let y = nd.outputs[0];
        Ok(match &op {
            Op::Unary(u) => vec![Some(self.add(Op::UnaryGrad(*u), &[x(0), dy])?)],
            Op::Binary(b) => {
                let mut out = Vec::new();
                for wrt in 0..2 {
                    let gfull = self.add(Op::BinaryGrad { op: *b, wrt }, &[x(0), x(1), dy])?;
                    let t = self.ty(x(wrt));
                    out.push(Some(self.unbroadcast(gfull, &t)?));
                }
                out
            }
            Op::MatMul { transpose_a: ta, transpose_b: tb } => {
                let (ta, tb) = (*ta, *tb);
                let da = if ta {
                    self.add(Op::MatMul { transpose_a: tb, transpose_b: true }, &[x(1), dy])?
                } else {
                    self.add(Op::MatMul { transpose_a: false, transpose_b: !tb }, &[dy, x(1)])?
                };
                let db = if tb {
                    self.add(Op::MatMul { transpose_a: true, transpose_b: ta }, &[dy, x(0)])?
                } else {
                    self.add(Op::MatMul { transpose_a: !ta, transpose_b: false }, &[x(0), dy])?
                };
                let (ta_ty, tb_ty) = (self.ty(x(0)), self.ty(x(1)));
                vec![Some(self.unbroadcast(da, &ta_ty)?), Some(self.unbroadcast(db, &tb_ty)?)]
            }
            Op::BiasAdd { axis } => {
                let r = self.ty(dy).shape.rank();
                let axes: Vec<usize> = (0..r).filter(|a| a != axis).collect();
                let db = if axes.is_empty() {
                    dy
                } else {
                    self.add(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims: false }, &[dy])?
                };
                vec![Some(dy), Some(db)]
            }
            Op::Conv(a) => {
                let xs = self.ty(x(0)).shape;
                let input_dims = fixed_dims(&Shape(xs.dims()[1..].to_vec()), "a convolution's input")?;
                let kernel_dims = fixed_dims(&self.ty(x(1)).shape, "a convolution's kernel")?;
                let dx = self.add(Op::ConvInputGrad { conv: a.clone(), input_dims }, &[dy, x(1)])?;
                let dw = self.add(Op::ConvFilterGrad { conv: a.clone(), kernel_dims }, &[x(0), dy])?;
                vec![Some(dx), Some(dw)]
            }
            Op::Pool(a) => vec![Some(self.add(Op::PoolGrad(a.clone()), &[x(0), dy])?)],
            Op::BroadcastTo => {
                let t = self.ty(x(0));
                vec![Some(self.unbroadcast(dy, &t)?), None]
            }
            Op::MeanGrad { .. } | Op::GatherGrad { .. } => return Err(unsupported(&op, " (second derivatives)")),
            Op::Gather { axis } => {
                let data_dims = fixed_dims(&self.ty(x(0)).shape, "an embedding table")?;
                vec![Some(self.add(Op::GatherGrad { axis: *axis, data_dims }, &[x(1), dy])?), None]
            }
            Op::Slice { axes, starts, ends, steps } if steps.iter().all(|&s| s == 1) => {
                // The gradient of a unit-step slice is the slice padded back with zeros.
                let xs = self.ty(x(0)).shape;
                let mut pads = vec![(0usize, 0usize); xs.rank()];
                for (k, &a) in axes.iter().enumerate() {
                    let n = xs.dims()[a].fixed().ok_or_else(|| unsupported(&op, " along a symbolic axis"))?;
                    let (b, e) = crate::slice_bounds(n, starts[k], ends[k], 1);
                    let (b, e) = (b.max(0) as usize, (e.max(b)) as usize);
                    pads[a] = (b, n.saturating_sub(e));
                }
                vec![Some(self.add(Op::Pad { pads, value: 0.0 }, &[dy])?)]
            }
            Op::BatchNorm { axis, epsilon } => {
                // Inference arithmetic with fixed statistics (a frozen or inference-mode layer):
                // y = (x − μ)·s + β with s = γ/√(σ² + ε).
                let r = self.ty(x(0)).shape.rank();
                let mut shape = vec![1i64; r];
                let c =
                    self.ty(x(1)).shape.dims()[0].fixed().ok_or_else(|| unsupported(&op, " with symbolic channels"))?;
                shape[*axis] = c as i64;
                let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(*epsilon));
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
                let others: Vec<usize> = (0..r).filter(|a| a != axis).collect();
                let dgamma =
                    self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others.clone(), keepdims: false }, &[gx])?;
                let dbeta = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others, keepdims: false }, &[dy])?;
                vec![Some(dx), Some(dgamma), Some(dbeta), None, None]
            }
            Op::LayerNorm { axes, epsilon } => {
                // x̂ = (x − mean)·rs; dx = rs·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ.
                let mean = |b: &mut Self, v: ValueId| {
                    b.add(Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true }, &[v])
                };
                let mu = mean(self, x(0))?;
                let xc = self.add(Op::Binary(BinaryOp::Sub), &[x(0), mu])?;
                let sq = self.add(Op::Unary(UnaryOp::Square), &[xc])?;
                let var = mean(self, sq)?;
                let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(*epsilon));
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
                vec![Some(dx), Some(self.unbroadcast(dyx, &gt)?), Some(self.unbroadcast(dy, &bt)?)]
            }
            Op::Reshape { .. } => {
                let to = self.ty(x(0)).shape;
                vec![Some(self.reshape_to(dy, &to)?)]
            }
            Op::Transpose { perm } => {
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                vec![Some(self.add(Op::Transpose { perm: inv }, &[dy])?)]
            }
            Op::Softmax { axes } => {
                let t = self.add(Op::Binary(BinaryOp::Mul), &[dy, y])?;
                let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims: true }, &[t])?;
                let d = self.add(Op::Binary(BinaryOp::Sub), &[dy, s])?;
                vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[y, d])?)]
            }
            Op::LogSoftmax { axis } => {
                let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: vec![*axis], keepdims: true }, &[dy])?;
                let e = self.add(Op::Unary(UnaryOp::Exp), &[y])?;
                let t = self.add(Op::Binary(BinaryOp::Mul), &[e, s])?;
                vec![Some(self.add(Op::Binary(BinaryOp::Sub), &[dy, t])?)]
            }
            Op::Reduce { kind: kind @ (ReduceKind::Sum | ReduceKind::Mean), axes, keepdims } => {
                let xs = self.ty(x(0)).shape;
                let mut kept = xs.dims().to_vec();
                for &a in axes {
                    kept[a] = Dim::Fixed(1);
                }
                let dyk = if *keepdims { dy } else { self.reshape_to(dy, &Shape(kept))? };
                let dx = if *kind == ReduceKind::Mean {
                    self.add(Op::MeanGrad { axes: axes.clone() }, &[dyk, x(0)])?
                } else {
                    self.add(Op::BroadcastTo, &[dyk, x(0)])?
                };
                vec![Some(dx)]
            }
            Op::Concat { axis } => {
                let mut start = 0i64;
                let mut out = Vec::new();
                for &v in &nd.inputs {
                    let len = self.ty(v).shape.dims()[*axis]
                        .fixed()
                        .ok_or_else(|| unsupported(&op, " along a symbolic axis"))?
                        as i64;
                    let s =
                        Op::Slice { axes: vec![*axis], starts: vec![start], ends: vec![start + len], steps: vec![1] };
                    out.push(Some(self.add(s, &[dy])?));
                    start += len;
                }
                out
            }
            Op::Pad { pads, .. } => {
                let xs = self.ty(x(0)).shape;
                let mut axes = Vec::new();
                let (mut starts, mut ends) = (Vec::new(), Vec::new());
                for (a, &(b, _)) in pads.iter().enumerate() {
                    if pads[a] == (0, 0) {
                        continue;
                    }
                    let n = xs.dims()[a].fixed().ok_or_else(|| unsupported(&op, " along a symbolic axis"))?;
                    axes.push(a);
                    starts.push(b as i64);
                    ends.push((b + n) as i64);
                }
                let steps = vec![1; axes.len()];
                vec![Some(self.add(Op::Slice { axes, starts, ends, steps }, &[dy])?)]
            }
            Op::Cast { .. } if self.ty(x(0)).dtype.is_float() => {
                let to = self.ty(x(0)).dtype;
                vec![Some(self.add(Op::Cast { to }, &[dy])?)]
            }
            Op::SoftmaxCrossEntropy { sparse } => {
                vec![Some(self.add(Op::SoftmaxCrossEntropyGrad { sparse: *sparse }, &[x(0), x(1), dy])?), None]
            }
            other => return Err(unsupported(other, "")),
        })
    }
}

/// Appends to `g` the gradient of the scalar `loss` with respect to each of `wrt` and returns
/// the gradient values in that order (zeros for a value the loss does not depend on).
pub fn append_backward(g: &mut Graph, loss: ValueId, wrt: &[ValueId]) -> Result<Vec<ValueId>, IrError> {
    if g.value(loss).ty.shape.rank() != 0 {
        return Err(IrError::Graph(format!("the loss must be a scalar, got {}", g.value(loss).ty.shape)));
    }
    let nv = g.values().len();
    let mut needs = vec![false; nv];
    for &w in wrt {
        needs[w.0] = true;
    }
    let forward = g.nodes().len();
    for node in &g.nodes()[..forward] {
        if node.inputs.iter().any(|v| needs[v.0]) {
            for o in &node.outputs {
                needs[o.0] = true;
            }
        }
    }
    let mut grads: HashMap<ValueId, ValueId> = HashMap::new();
    let one = g.add_constant("grad/seed", Tensor::scalar(1.0));
    grads.insert(loss, one);
    let mut b = Builder { g, n: 0 };
    for ni in (0..forward).rev() {
        let node = b.g.nodes()[ni].clone();
        if !node.inputs.iter().any(|v| needs[v.0]) {
            continue;
        }
        let dys: Vec<Option<ValueId>> = node.outputs.iter().map(|o| grads.get(o).copied()).collect();
        if dys.iter().all(Option::is_none) {
            continue;
        }
        let dxs = b.rule(ni, &dys).map_err(|e| match e {
            IrError::Graph(m) => IrError::Graph(format!("{m} (node '{}')", node.name)),
            other => other,
        })?;
        for (&v, dx) in node.inputs.iter().zip(dxs) {
            let (Some(dx), true) = (dx, needs[v.0]) else { continue };
            let acc = match grads.get(&v) {
                Some(&prev) => b.add(Op::Binary(BinaryOp::Add), &[prev, dx])?,
                None => dx,
            };
            grads.insert(v, acc);
        }
    }
    let mut out = Vec::new();
    for &w in wrt {
        out.push(match grads.get(&w) {
            Some(&gv) => gv,
            None => {
                let ty = b.ty(w);
                let dims = fixed_dims(&ty.shape, "a gradient that is zero")?;
                b.g.add_constant(format!("grad/zero_{}", w.0), Tensor::zeros(&dims))
            }
        });
    }
    Ok(out)
}
