//! Reverse-mode differentiation on the IR: the gradient of a scalar with respect to chosen
//! values, appended to the graph as ordinary nodes, so any executor runs the backward pass.
//!
//! One rule per op, in the file of the op's family ([`crate::OpFamily`]); [`rule`]'s match names
//! every op, so a new op needs a gradient decision. Ops without a gradient, and why:
//! - the optimizer's fused ops (`FusedConv`, `FusedMatMul`, `Fused`): the optimizer runs after
//!   differentiation, on the training step as a whole;
//! - backward ops (`UnaryGrad`, `BinaryGrad`, `ConvInputGrad`, `ConvFilterGrad`, `PoolGrad`,
//!   `MeanGrad`, `GatherGrad`, `MomentsGrad`, `BatchNormSums`, `SoftmaxCrossEntropyGrad`): second derivatives are not needed by
//!   any optimizer kerasc has;
//! - `ChannelsFirst`: only ONNX models have it, and they are not trained;
//! - a `Cast` from an integer type and a `Slice` with a step other than ±1: not implemented.

mod accum;
mod builder;
mod conv;
mod elementwise;
mod loss;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod rnn;
mod shape_ops;

use crate::{Graph, IrError, Op, ReduceKind, ResizeMode, Tensor, ValueId};
use accum::Accum;
use builder::{fixed_dims, unsupported, Builder, Grads};

fn no_gradient(op: &Op, why: &str) -> IrError {
    IrError::Graph(format!("the gradient of {} is not implemented: {why}", op.name()))
}

impl Builder<'_> {
    /// The gradients of one node's inputs (None where an input gets none); recurrent layers go
    /// through [`Builder::rnn_through_time`], which calls back here for the unrolled ops.
    pub(super) fn rule(&mut self, node: usize, dys: &[Option<ValueId>]) -> Grads {
        let nd = self.g.nodes()[node].clone();
        if let Op::Rnn(a) = &nd.op {
            return self.rnn_through_time(&nd, a, dys);
        }
        let Some(dy) = dys.first().copied().flatten() else { return Ok(vec![None; nd.inputs.len()]) };
        if dys.len() > 1 {
            return Err(unsupported(&nd.op, " for ops with several outputs"));
        }
        match &nd.op {
            Op::Unary(u) => self.unary(&nd, dy, *u),
            Op::Binary(o) => self.binary(&nd, dy, *o),
            Op::BiasAdd { axis } => self.bias_add(&nd, dy, *axis),
            Op::Cast { .. } => self.cast(&nd, dy),
            // The gradient goes back where the value came from: placing the training graph
            // inserts that transfer.
            Op::Transfer { .. } => Ok(vec![Some(dy)]),
            Op::MatMul { transpose_a, transpose_b } => self.matmul(&nd, dy, *transpose_a, *transpose_b),
            Op::Conv(a) => self.conv(&nd, dy, a),
            Op::ConvTranspose(a) => self.conv_transpose(&nd, dy, a),
            Op::Pool(a) => self.pool(&nd, dy, a),
            Op::Reduce { kind: kind @ (ReduceKind::Sum | ReduceKind::Mean), axes, keepdims } => {
                self.sum_or_mean(&nd, dy, *kind, axes, *keepdims)
            }
            Op::Reduce { kind: ReduceKind::Max | ReduceKind::Min, axes, keepdims } => {
                self.max_or_min(&nd, dy, axes, *keepdims)
            }
            Op::Reduce { kind: ReduceKind::Prod, axes, keepdims } => self.prod(&nd, dy, axes, *keepdims),
            Op::ArgReduce { .. } => Err(no_gradient(&nd.op, "an index has no derivative")),
            Op::Softmax { axes } => self.softmax(&nd, dy, axes),
            Op::LogSoftmax { axis } => self.log_softmax(&nd, dy, *axis),
            Op::BatchNorm { axis, epsilon } => self.batch_norm(&nd, dy, *axis, *epsilon),
            Op::Moments { axis } => self.moments(&nd, dy, *axis),
            Op::LayerNorm { axes, epsilon } => self.layer_norm(&nd, dy, axes, *epsilon),
            Op::GroupNorm { groups, axis, epsilon } => self.group_norm(&nd, dy, *groups, *axis, *epsilon),
            Op::L2Normalize { axes, epsilon } => self.l2_normalize(&nd, dy, axes, *epsilon),
            Op::Reshape { .. } => self.reshape(&nd, dy),
            Op::Transpose { perm } => self.transpose(&nd, dy, perm),
            Op::Concat { axis } => self.concat(&nd, dy, *axis),
            Op::Pad { pads, .. } => self.pad(&nd, dy, pads),
            Op::Slice { axes, starts, ends, steps } => self.slice(&nd, dy, axes, starts, ends, steps),
            Op::RepeatInterleave { axis, repeats } => self.repeat_interleave(&nd, dy, *axis, *repeats),
            Op::Tile { repeats } => self.tile(&nd, dy, repeats),
            Op::Resize { sizes, mode: ResizeMode::Nearest } => self.resize_nearest(&nd, dy, sizes),
            Op::Resize { sizes, mode: ResizeMode::Bilinear } => self.resize_bilinear(&nd, dy, sizes),
            Op::Resize { mode: ResizeMode::Onnx(_), .. } => {
                Err(no_gradient(&nd.op, "ONNX's general resizing comes from ONNX models, which are not trained"))
            }
            Op::Gather { axis } => self.gather(&nd, dy, *axis),
            Op::BroadcastTo => self.broadcast_to(&nd, dy),
            Op::SoftmaxCrossEntropy { sparse } => self.softmax_cross_entropy(&nd, dy, *sparse),
            Op::Rnn(_) => Err(unsupported(&nd.op, " outside backpropagation through time")),
            Op::FusedConv { .. } | Op::FusedMatMul { .. } | Op::Fused(_) => {
                Err(no_gradient(&nd.op, "fused ops are made by the optimizer, which runs after differentiation"))
            }
            Op::MeanGrad { .. }
            | Op::GatherGrad { .. }
            | Op::UnaryGrad(_)
            | Op::BinaryGrad { .. }
            | Op::ConvInputGrad { .. }
            | Op::ConvFilterGrad { .. }
            | Op::PoolGrad(_)
            | Op::MomentsGrad { .. }
            | Op::BatchNormSums { .. }
            | Op::SoftmaxCrossEntropyGrad { .. } => Err(no_gradient(&nd.op, "second derivatives are not needed")),
            Op::ChannelsFirst(_) => {
                Err(no_gradient(&nd.op, "channels-first ops come from ONNX models, which are not trained"))
            }
        }
    }
}

/// Appends to `g` the recurrent layer `a` on `inputs` unrolled into primitive ops (matmuls,
/// slices, activations; nodes named `name/N`) and returns its first `n_outputs` outputs, as the
/// `Rnn` op gives them. A training step built this way differentiates through the ops it ran
/// instead of running the layer and then recomputing it unrolled.
pub fn unroll_rnn(
    g: &mut Graph,
    name: &str,
    a: &crate::RnnAttrs,
    inputs: &[ValueId],
    n_outputs: usize,
) -> Result<Vec<ValueId>, IrError> {
    let mut b = Builder { g, n: 0, needs: Vec::new(), prefix: name.to_string() };
    let outs = b.unroll(a, inputs)?;
    outs.iter()
        .take(n_outputs)
        .map(|o| o.ok_or_else(|| IrError::Graph(format!("'{name}' has no output {n_outputs}"))))
        .collect()
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
    let one = g.add_constant("grad/seed", Tensor::scalar(1.0));
    let mut b = Builder { g, n: 0, needs: needs.clone(), prefix: "grad".into() };
    let mut acc = Accum::default();
    acc.add(&mut b, loss, one)?;
    for ni in (0..forward).rev() {
        let node = b.g.nodes()[ni].clone();
        if !node.inputs.iter().any(|v| needs[v.0]) {
            continue;
        }
        // A node's backward nodes are named after it (its layer's, for placement and profiles).
        b.prefix = format!("{}/grad", node.name);
        let dys = node.outputs.iter().map(|&o| acc.get(&mut b, o)).collect::<Result<Vec<_>, _>>()?;
        if dys.iter().all(Option::is_none) {
            continue;
        }
        if let [Some(dy)] = dys.as_slice() {
            if acc.slice(&b, &node, *dy) {
                continue;
            }
        }
        let dxs = b.rule(ni, &dys).map_err(|e| match e {
            IrError::Graph(m) => IrError::Graph(format!("{m} (node '{}')", node.name)),
            other => other,
        })?;
        for (&v, dx) in node.inputs.iter().zip(dxs) {
            let (Some(dx), true) = (dx, needs[v.0]) else { continue };
            acc.add(&mut b, v, dx)?;
        }
    }
    let mut out = Vec::new();
    for &w in wrt {
        out.push(match acc.get(&mut b, w)? {
            Some(gv) => gv,
            None => {
                let ty = b.ty(w);
                let dims = fixed_dims(&ty.shape, "a gradient that is zero")?;
                b.g.add_constant(format!("grad/zero_{}", w.0), Tensor::zeros(&dims))
            }
        });
    }
    Ok(out)
}
