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
        if let Op::Rnn(a) = &op {
            return self.rnn_through_time(&nd, a, dys);
        }
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
            Op::Slice { axes, starts, ends, steps } if steps.iter().all(|&s| s == 1 || s == -1) => {
                // A unit-step slice's gradient is dy padded back with zeros; a reversing one
                // (step −1) first reverses dy along that axis.
                let xs = self.ty(x(0)).shape;
                let mut pads = vec![(0usize, 0usize); xs.rank()];
                let mut g = dy;
                for (k, &a) in axes.iter().enumerate() {
                    let n = xs.dims()[a].fixed().ok_or_else(|| unsupported(&op, " along a symbolic axis"))?;
                    let (b, e) = crate::slice_bounds(n, starts[k], ends[k], steps[k]);
                    // The covered range [lo, hi).
                    let (lo, hi) = if steps[k] == 1 {
                        (b.max(0) as usize, e.max(b) as usize)
                    } else {
                        ((e + 1).max(0) as usize, (b + 1).max(e + 1) as usize)
                    };
                    pads[a] = (lo, n.saturating_sub(hi));
                    if steps[k] == -1 && hi > lo {
                        let rev =
                            Op::Slice { axes: vec![a], starts: vec![-1], ends: vec![i64::MIN / 2], steps: vec![-1] };
                        g = self.add(rev, &[g])?;
                    }
                }
                vec![Some(self.add(Op::Pad { pads, value: 0.0 }, &[g])?)]
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
            Op::ConvTranspose(a) => {
                // y = Aᵀx for the convolution A with the same strides, dilations and leading
                // padding: dx = A·dy, and dw is that convolution's filter gradient with dy as
                // its input and x as its output gradient (the kernel layouts coincide).
                let xs = self.ty(x(0)).shape;
                let r = a.strides.len();
                let spatial = fixed_dims(&Shape(xs.dims()[1..=r].to_vec()), "a transposed convolution's input")?;
                let ks = fixed_dims(&self.ty(x(1)).shape, "a transposed convolution's kernel")?;
                let mut pads = Vec::with_capacity(r);
                for i in 0..r {
                    let (out, before) = a.geometry(i, spatial[i], ks[i]);
                    let k_eff = (ks[i] - 1) * a.dilations[i] + 1;
                    let after = ((spatial[i] - 1) * a.strides[i] + k_eff).saturating_sub(out + before);
                    pads.push((before, after));
                }
                let conv =
                    crate::ConvAttrs { strides: a.strides.clone(), dilations: a.dilations.clone(), pads, groups: 1 };
                let dx = self.add(Op::Conv(conv.clone()), &[dy, x(1)])?;
                if self.ty(dx).shape != xs {
                    return Err(unsupported(&op, " for this output padding"));
                }
                let dw = self.add(Op::ConvFilterGrad { conv, kernel_dims: ks }, &[dy, x(0)])?;
                vec![Some(dx), Some(dw)]
            }
            Op::Reduce { kind: ReduceKind::Max | ReduceKind::Min, axes, keepdims } => {
                // The gradient goes to the extreme elements, split evenly between ties (as
                // TensorFlow does).
                let xs = self.ty(x(0)).shape;
                let mut kept = xs.dims().to_vec();
                for &a in axes {
                    kept[a] = Dim::Fixed(1);
                }
                let (yk, dyk) = if *keepdims {
                    (y, dy)
                } else {
                    (self.reshape_to(y, &Shape(kept.clone()))?, self.reshape_to(dy, &Shape(kept))?)
                };
                let diff = self.add(Op::Binary(BinaryOp::Sub), &[x(0), yk])?;
                let a = self.add(Op::Unary(UnaryOp::Abs), &[diff])?;
                let sg = self.add(Op::Unary(UnaryOp::Sign), &[a])?;
                let mask = self.add(Op::Unary(UnaryOp::Affine { scale: -1.0, offset: 1.0 }), &[sg])?;
                let cnt =
                    self.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims: true }, &[mask])?;
                let w = self.add(Op::Binary(BinaryOp::Div), &[mask, cnt])?;
                vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[w, dyk])?)]
            }
            Op::Tile { repeats } => {
                // dy viewed as (r0, d0, r1, d1, ...), summed over the repeats.
                let xs = self.ty(x(0)).shape;
                let mut target = Vec::new();
                let mut sum_axes = Vec::new();
                for (i, d) in xs.dims().iter().enumerate() {
                    if repeats[i] != 1 {
                        sum_axes.push(target.len());
                        target.push(repeats[i] as i64);
                    }
                    target.push(d.fixed().map_or(-1, |n| n as i64));
                }
                let v = self.add(Op::Reshape { shape: target }, &[dy])?;
                let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: sum_axes, keepdims: false }, &[v])?;
                vec![Some(self.reshape_to(s, &xs)?)]
            }
            Op::RepeatInterleave { axis, repeats } => {
                let xs = self.ty(x(0)).shape;
                let mut target: Vec<i64> = xs.dims().iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
                target.insert(axis + 1, *repeats as i64);
                let v = self.add(Op::Reshape { shape: target }, &[dy])?;
                let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: vec![axis + 1], keepdims: false }, &[v])?;
                vec![Some(self.reshape_to(s, &xs)?)]
            }
            Op::Resize { sizes, mode: crate::ResizeMode::Nearest } => {
                // Integer upscaling: each input cell feeds a block of outputs.
                let xs = self.ty(x(0)).shape;
                let spatial = fixed_dims(&Shape(xs.dims()[1..=sizes.len()].to_vec()), "a resize's input")?;
                let mut target: Vec<i64> = vec![xs.dims()[0].fixed().map_or(-1, |n| n as i64)];
                let mut sum_axes = Vec::new();
                for (i, (&o, &n)) in sizes.iter().zip(&spatial).enumerate() {
                    if n == 0 || o % n != 0 {
                        return Err(unsupported(&op, " for non-integer scale factors"));
                    }
                    target.push(n as i64);
                    target.push((o / n) as i64);
                    sum_axes.push(2 * i + 2);
                }
                let c = xs
                    .dims()
                    .last()
                    .and_then(|d| d.fixed())
                    .ok_or_else(|| unsupported(&op, " with symbolic channels"))?;
                target.push(c as i64);
                let v = self.add(Op::Reshape { shape: target }, &[dy])?;
                vec![Some(self.add(Op::Reduce { kind: ReduceKind::Sum, axes: sum_axes, keepdims: false }, &[v])?)]
            }
            Op::Resize { sizes, mode: crate::ResizeMode::Bilinear } => {
                // Bilinear resizing is linear and separable: along each spatial axis
                // y = R·x with R (out × in) holding the two interpolation weights of each output
                // (half-pixel centres, as the kernels compute them); dx applies Rᵀ per axis.
                let xs = self.ty(x(0)).shape;
                let r = xs.rank();
                let spatial = fixed_dims(&Shape(xs.dims()[1..=sizes.len()].to_vec()), "a resize's input")?;
                let mut g = dy;
                for (k, (&size, &inn)) in sizes.iter().zip(&spatial).enumerate().rev() {
                    if size == inn {
                        continue;
                    }
                    let ax = k + 1;
                    let scale = inn as f32 / size as f32;
                    let mut m = vec![0f32; size * inn];
                    for i in 0..size {
                        let f = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                        let lo = (f.floor() as usize).min(inn - 1);
                        let hi = (lo + 1).min(inn - 1);
                        let t = f - lo as f32;
                        m[i * inn + lo] += 1.0 - t;
                        m[i * inn + hi] += t;
                    }
                    let mt = Tensor::from_f32(&[size, inn], m)?;
                    let mv = self.g.add_constant(format!("grad/resize_{}_{k}", self.n), mt);
                    // Move the axis last, contract with R, move it back.
                    let perm: Vec<usize> = (0..r).filter(|&a| a != ax).chain(std::iter::once(ax)).collect();
                    let mut inv = vec![0; r];
                    for (i, &p) in perm.iter().enumerate() {
                        inv[p] = i;
                    }
                    let t = self.add(Op::Transpose { perm }, &[g])?;
                    let c = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[t, mv])?;
                    g = self.add(Op::Transpose { perm: inv }, &[c])?;
                }
                vec![Some(g)]
            }
            Op::Reduce { kind: ReduceKind::Prod, axes, keepdims } => {
                // ∂/∂x_i Π x = Π_{j≠i} x_j, exact with zeros: with z zeros among the factors,
                // it is Π(non-zeros)/x_i where z = 0, Π(non-zeros) at the zero where z = 1, else 0.
                let xs = self.ty(x(0)).shape;
                let mut kept = xs.dims().to_vec();
                for &a in axes {
                    kept[a] = Dim::Fixed(1);
                }
                let dyk = if *keepdims { dy } else { self.reshape_to(dy, &Shape(kept))? };
                let red = |b: &mut Self, kind: ReduceKind, v: ValueId| {
                    b.add(Op::Reduce { kind, axes: axes.clone(), keepdims: true }, &[v])
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
                vec![Some(self.add(Op::Binary(BinaryOp::Mul), &[d, dyk])?)]
            }
            Op::L2Normalize { axes, epsilon } => {
                // y = x·r, r = 1/sqrt(max(Σx², ε)): dx = r·dy − [Σx² > ε]·x·r³·Σ(x·dy).
                let sum = |b: &mut Self, v: ValueId| {
                    b.add(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims: true }, &[v])
                };
                let sq = self.add(Op::Unary(UnaryOp::Square), &[x(0)])?;
                let ss = sum(self, sq)?;
                let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(*epsilon));
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
                vec![Some(self.add(Op::Binary(BinaryOp::Sub), &[rdy, xk])?)]
            }
            Op::GroupNorm { groups, axis, epsilon } => {
                // The layer-norm formula over each group: x viewed as (N, ..., G, C/G),
                // normalized over every axis but the batch and the group.
                let xs = self.ty(x(0)).shape;
                let r = xs.rank();
                if *axis + 1 != r {
                    return Err(unsupported(&op, " over a channel axis other than the last"));
                }
                let c = xs.dims()[*axis].fixed().ok_or_else(|| unsupported(&op, " with symbolic channels"))?;
                let mut gshape = xs.dims()[..r - 1].to_vec();
                gshape.push(Dim::Fixed(*groups));
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
                let eps = self.g.add_constant(format!("grad/eps_{}", self.n), Tensor::scalar(*epsilon));
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
                let dgamma =
                    self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others.clone(), keepdims: false }, &[dyx])?;
                let dbeta = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: others, keepdims: false }, &[dy])?;
                vec![Some(dx), Some(dgamma), Some(dbeta)]
            }
            other => return Err(unsupported(other, "")),
        })
    }
}

impl Builder<'_> {
    /// Backpropagation through time: the layer is recomputed unrolled into primitive ops
    /// (matmuls, slices, activations) and its gradients are those ops' gradients, by the rules
    /// above.
    fn rnn_through_time(
        &mut self,
        nd: &crate::Node,
        a: &crate::RnnAttrs,
        dys: &[Option<ValueId>],
    ) -> Result<Vec<Option<ValueId>>, IrError> {
        use crate::RnnKind;
        let op = nd.op.clone();
        let (x, w, rk) = (nd.inputs[0], nd.inputs[1], nd.inputs[2]);
        let bias = nd.inputs.get(3).copied().filter(|_| a.has_bias(nd.inputs.len()));
        let xs = self.ty(x).shape;
        let t = xs.dims()[1].fixed().ok_or_else(|| unsupported(&op, " over a symbolic number of steps"))?;
        let u = a.units;
        let gates = match a.kind {
            RnnKind::Simple => 1,
            RnnKind::Lstm => 4,
            RnnKind::Gru { .. } => 3,
        };
        let gu = gates * u;
        let start = self.g.nodes().len();
        let bin = |b: &mut Self, o: BinaryOp, p: ValueId, q: ValueId| b.add(Op::Binary(o), &[p, q]);
        let un = |b: &mut Self, o: UnaryOp, p: ValueId| b.add(Op::Unary(o), &[p]);
        let cols = |b: &mut Self, v: ValueId, from: usize, to: usize| {
            b.add(Op::Slice { axes: vec![1], starts: vec![from as i64], ends: vec![to as i64], steps: vec![1] }, &[v])
        };
        // Input projection for every step, with the input bias.
        let mut xp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w])?;
        let (in_bias, rec_bias) = match (a.kind, bias) {
            (RnnKind::Gru { reset_after: true }, Some(b)) => {
                let ib = self.add(Op::Slice { axes: vec![0], starts: vec![0], ends: vec![1], steps: vec![1] }, &[b])?;
                let rb = self.add(Op::Slice { axes: vec![0], starts: vec![1], ends: vec![2], steps: vec![1] }, &[b])?;
                let ib = self.add(Op::Reshape { shape: vec![gu as i64] }, &[ib])?;
                let rb = self.add(Op::Reshape { shape: vec![gu as i64] }, &[rb])?;
                (Some(ib), Some(rb))
            }
            (_, b) => (b, None),
        };
        if let Some(b) = in_bias {
            xp = bin(self, BinaryOp::Add, xp, b)?;
        }
        // Zero initial state of the batch's size: zeros (1, U) broadcast with a (N, 1) slice.
        let like =
            self.add(Op::Slice { axes: vec![1, 2], starts: vec![0, 0], ends: vec![1, 1], steps: vec![1, 1] }, &[x])?;
        let like = self.add(Op::Reshape { shape: vec![-1, 1] }, &[like])?;
        let zeros = self.g.add_constant(format!("grad/rnn_zeros_{}", self.n), Tensor::zeros(&[1, u]));
        let mut h = self.add(Op::BroadcastTo, &[zeros, like])?;
        let mut c = h;
        let zero_state = h;
        if a.initial_state {
            let k = a.state_index(nd.inputs.len());
            h = nd.inputs[k];
            if a.kind == RnnKind::Lstm {
                c = nd.inputs[k + 1];
            }
        }
        // With a mask: the output of the last kept step (zeros before the first).
        let mask = a.masked.then(|| nd.inputs[nd.inputs.len() - 1]);
        let mut prev_out = zero_state;
        let mut seq = Vec::with_capacity(t);
        for step in 0..t {
            let ti = if a.go_backwards { t - 1 - step } else { step };
            let (h_old, c_old) = (h, c);
            let xt = self.add(
                Op::Slice { axes: vec![1], starts: vec![ti as i64], ends: vec![ti as i64 + 1], steps: vec![1] },
                &[xp],
            )?;
            let xt = self.add(Op::Reshape { shape: vec![-1, gu as i64] }, &[xt])?;
            let gate = |b: &mut Self, v: ValueId, k: usize| cols(b, v, k * u, (k + 1) * u);
            match a.kind {
                RnnKind::Gru { reset_after: false } => {
                    let rzr = cols(self, rk, 0, 2 * u)?;
                    let hp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[h, rzr])?;
                    let (xz, xr, xh) = (gate(self, xt, 0)?, gate(self, xt, 1)?, gate(self, xt, 2)?);
                    let (hz, hr) = (gate(self, hp, 0)?, gate(self, hp, 1)?);
                    let z = bin(self, BinaryOp::Add, xz, hz)?;
                    let z = un(self, a.recurrent_activation, z)?;
                    let r = bin(self, BinaryOp::Add, xr, hr)?;
                    let r = un(self, a.recurrent_activation, r)?;
                    let rh = bin(self, BinaryOp::Mul, r, h)?;
                    let rc = cols(self, rk, 2 * u, 3 * u)?;
                    let cand = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[rh, rc])?;
                    let hh = bin(self, BinaryOp::Add, xh, cand)?;
                    let hh = un(self, a.activation, hh)?;
                    let zh = bin(self, BinaryOp::Mul, z, h)?;
                    let nz = un(self, UnaryOp::Affine { scale: -1.0, offset: 1.0 }, z)?;
                    let nzh = bin(self, BinaryOp::Mul, nz, hh)?;
                    h = bin(self, BinaryOp::Add, zh, nzh)?;
                }
                _ => {
                    let mut hp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[h, rk])?;
                    if let Some(rb) = rec_bias {
                        hp = bin(self, BinaryOp::Add, hp, rb)?;
                    }
                    match a.kind {
                        RnnKind::Simple => {
                            let s = bin(self, BinaryOp::Add, xt, hp)?;
                            h = un(self, a.activation, s)?;
                        }
                        RnnKind::Lstm => {
                            let s = bin(self, BinaryOp::Add, xt, hp)?;
                            let i = gate(self, s, 0)?;
                            let i = un(self, a.recurrent_activation, i)?;
                            let f = gate(self, s, 1)?;
                            let f = un(self, a.recurrent_activation, f)?;
                            let g = gate(self, s, 2)?;
                            let g = un(self, a.activation, g)?;
                            let o = gate(self, s, 3)?;
                            let o = un(self, a.recurrent_activation, o)?;
                            let fc = bin(self, BinaryOp::Mul, f, c)?;
                            let ig = bin(self, BinaryOp::Mul, i, g)?;
                            c = bin(self, BinaryOp::Add, fc, ig)?;
                            let ac = un(self, a.activation, c)?;
                            h = bin(self, BinaryOp::Mul, o, ac)?;
                        }
                        _ => {
                            let (xz, xr, xh) = (gate(self, xt, 0)?, gate(self, xt, 1)?, gate(self, xt, 2)?);
                            let (hz, hr, hn) = (gate(self, hp, 0)?, gate(self, hp, 1)?, gate(self, hp, 2)?);
                            let z = bin(self, BinaryOp::Add, xz, hz)?;
                            let z = un(self, a.recurrent_activation, z)?;
                            let r = bin(self, BinaryOp::Add, xr, hr)?;
                            let r = un(self, a.recurrent_activation, r)?;
                            let rn = bin(self, BinaryOp::Mul, r, hn)?;
                            let hh = bin(self, BinaryOp::Add, xh, rn)?;
                            let hh = un(self, a.activation, hh)?;
                            let zh = bin(self, BinaryOp::Mul, z, h)?;
                            let nz = un(self, UnaryOp::Affine { scale: -1.0, offset: 1.0 }, z)?;
                            let nzh = bin(self, BinaryOp::Mul, nz, hh)?;
                            h = bin(self, BinaryOp::Add, zh, nzh)?;
                        }
                    }
                }
            }
            let mut out_t = h;
            if let Some(m) = mask {
                // keep ∈ {0, 1} per sample: h = h_old + keep·(h_new − h_old), likewise c; the
                // output is h_new where kept, else the previous output (or zeros).
                let k = self.add(
                    Op::Slice { axes: vec![1], starts: vec![ti as i64], ends: vec![ti as i64 + 1], steps: vec![1] },
                    &[m],
                )?;
                let k = self.add(Op::Reshape { shape: vec![-1, 1] }, &[k])?;
                let blend = |b: &mut Self, new: ValueId, old: ValueId| -> Result<ValueId, IrError> {
                    let d = b.add(Op::Binary(BinaryOp::Sub), &[new, old])?;
                    let kd = b.add(Op::Binary(BinaryOp::Mul), &[k, d])?;
                    b.add(Op::Binary(BinaryOp::Add), &[old, kd])
                };
                let h_new = h;
                out_t = if a.zero_output_for_mask {
                    self.add(Op::Binary(BinaryOp::Mul), &[k, h_new])?
                } else {
                    blend(self, h_new, prev_out)?
                };
                h = blend(self, h_new, h_old)?;
                if a.kind == RnnKind::Lstm {
                    c = blend(self, c, c_old)?;
                }
                prev_out = out_t;
            }
            if a.return_sequences {
                seq.push(self.add(Op::Reshape { shape: vec![-1, 1, u as i64] }, &[out_t])?);
            }
        }
        let y = if a.return_sequences {
            if seq.len() == 1 {
                seq[0]
            } else {
                self.add(Op::Concat { axis: 1 }, &seq)?
            }
        } else if a.masked {
            prev_out
        } else {
            h
        };
        let end = self.g.nodes().len();
        // The unrolled outputs get the layer's output gradients; then backwards through them.
        let mut grads: HashMap<ValueId, ValueId> = HashMap::new();
        let outs = [Some(y), Some(h), (a.kind == RnnKind::Lstm).then_some(c)];
        for (o, dy) in outs.iter().zip(dys) {
            let (Some(o), Some(dy)) = (o, dy) else { continue };
            let acc = match grads.get(o) {
                Some(&prev) => self.add(Op::Binary(BinaryOp::Add), &[prev, *dy])?,
                None => *dy,
            };
            grads.insert(*o, acc);
        }
        for ni in (start..end).rev() {
            let node = self.g.nodes()[ni].clone();
            let ndys: Vec<Option<ValueId>> = node.outputs.iter().map(|o| grads.get(o).copied()).collect();
            if ndys.iter().all(Option::is_none) {
                continue;
            }
            let dxs = self.rule(ni, &ndys)?;
            for (&v, dx) in node.inputs.iter().zip(dxs) {
                let Some(dx) = dx else { continue };
                let acc = match grads.get(&v) {
                    Some(&prev) => self.add(Op::Binary(BinaryOp::Add), &[prev, dx])?,
                    None => dx,
                };
                grads.insert(v, acc);
            }
        }
        Ok(nd.inputs.iter().map(|v| grads.get(v).copied()).collect())
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
