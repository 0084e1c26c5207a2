//! The launch table: each op of a plan to the kernel builder of its family (`elementwise`,
//! `matmul`, `conv`, `pool`, `reduce`, `norm`, `shape_ops`, `rnn`, `loss`).

use super::context::{Ctx, Precision};
use super::{KernelSource, StepKernels};
use crate::CodegenError;
use ir::{Epilogue, Graph, MemoryPlan, NodeId, Op, Placement};

/// The kernels of every step of a plan, in execution order (float32).
pub fn emit_plan(g: &Graph, plan: &MemoryPlan) -> Result<Vec<StepKernels>, CodegenError> {
    emit_plan_with(g, plan, Precision::Fp32)
}

/// [`emit_plan`] with matrix products and convolutions in `precision`.
pub fn emit_plan_with(g: &Graph, plan: &MemoryPlan, precision: Precision) -> Result<Vec<StepKernels>, CodegenError> {
    let mut steps = Vec::with_capacity(plan.order.len());
    for (i, &nid) in plan.order.iter().enumerate() {
        let node = g.nodes().get(nid.0).ok_or_else(|| CodegenError::Plan(format!("node {} missing", nid.0)))?;
        // A reshape whose output shares its input's buffer needs no kernel.
        let aliased = matches!(node.op, Op::Reshape { .. })
            && match (plan.placements.get(node.inputs[0].0), plan.placements.get(node.outputs[0].0)) {
                (Some(Placement::Arena { offset: a, .. }), Some(Placement::Arena { offset: b, .. })) => a == b,
                _ => false,
            };
        let kernels = if aliased { Vec::new() } else { emit_node_with(g, nid, i, &plan.shapes, precision)? };
        steps.push(StepKernels { node: nid, kernels });
    }
    Ok(steps)
}

/// The kernels of one node, given the concrete shape of every value; `index` numbers the kernel
/// names.
pub fn emit_node(
    g: &Graph,
    nid: NodeId,
    index: usize,
    shapes: &[Vec<usize>],
) -> Result<Vec<KernelSource>, CodegenError> {
    emit_node_with(g, nid, index, shapes, Precision::Fp32)
}

/// [`emit_node`] with matrix products and convolutions in `precision`.
pub fn emit_node_with(
    g: &Graph,
    nid: NodeId,
    index: usize,
    shapes: &[Vec<usize>],
    precision: Precision,
) -> Result<Vec<KernelSource>, CodegenError> {
    let node = g.nodes().get(nid.0).ok_or_else(|| CodegenError::Plan(format!("node {} missing", nid.0)))?;
    for v in node.inputs.iter().chain(&node.outputs) {
        if shapes.get(v.0).is_none_or(|s| s.len() != g.value(*v).ty.shape.rank()) {
            return Err(CodegenError::Plan(format!("no concrete shape for a value of '{}'", node.name)));
        }
    }
    let c = Ctx { g, node, index, shapes, precision };
    let k = match &node.op {
        Op::Unary(u) => c.unary(*u)?,
        Op::Binary(b) => c.binary(*b)?,
        Op::BiasAdd { axis } => c.bias_add(*axis)?,
        Op::Fused(e) => c.fused(e)?,
        Op::Cast { to } => c.cast(*to)?,
        // Within one device's graph a transfer is a copy.
        Op::Transfer { .. } => c.cast(g.value(node.inputs[0]).ty.dtype)?,
        Op::UnaryGrad(u) => c.unary_grad(*u)?,
        Op::BinaryGrad { op: b, wrt } => c.binary_grad(*b, *wrt)?,
        Op::MatMul { transpose_a, transpose_b } => c.matmul(*transpose_a, *transpose_b, &Epilogue::default())?,
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => c.matmul(*transpose_a, *transpose_b, epilogue)?,
        Op::Conv(a) => c.conv(a, &Epilogue::default())?,
        Op::FusedConv { conv, epilogue } => c.conv(conv, epilogue)?,
        Op::ConvTranspose(a) => c.conv_transpose(a)?,
        Op::ConvInputGrad { conv, .. } => c.conv_input_grad(conv)?,
        Op::ConvFilterGrad { conv, .. } => c.conv_filter_grad(conv)?,
        Op::Pool(a) => c.pool(a)?,
        Op::PoolGrad(a) => c.pool_grad(a)?,
        Op::Reduce { kind, axes, .. } => c.reduce(*kind, axes)?,
        Op::ArgReduce { max, axis, last, .. } => c.arg_reduce(*max, *axis, *last)?,
        Op::Softmax { axes } => c.softmax(axes, false)?,
        Op::LogSoftmax { axis } => c.softmax(&[*axis], true)?,
        Op::MeanGrad { axes } => c.mean_grad(axes)?,
        Op::BatchNorm { axis, epsilon } => c.batch_norm(*axis, *epsilon)?,
        Op::Moments { axis } => c.channel_sums(*axis, false)?,
        Op::BatchNormSums { axis } => c.channel_sums(*axis, true)?,
        Op::MomentsGrad { axis } => c.moments_grad(*axis)?,
        Op::LayerNorm { axes, epsilon } => c.layer_norm(axes, *epsilon)?,
        Op::GroupNorm { groups, axis, epsilon } => c.group_norm(*groups, *axis, *epsilon)?,
        Op::L2Normalize { axes, epsilon } => c.l2_normalize(axes, *epsilon)?,
        Op::Reshape { .. } => c.copy()?,
        Op::Transpose { perm } => c.transpose(perm)?,
        Op::Pad { pads, value } => c.pad(pads, *value)?,
        Op::Slice { axes, starts, ends, steps } => c.slice(axes, starts, ends, steps)?,
        Op::RepeatInterleave { axis, repeats } => c.repeat_interleave(*axis, *repeats)?,
        Op::Tile { .. } => c.tile()?,
        Op::Concat { axis } => c.concat(*axis)?,
        Op::Resize { sizes, mode } => c.resize(sizes, mode)?,
        Op::Gather { axis } => c.gather(*axis)?,
        Op::GatherGrad { axis, .. } => c.gather_grad(*axis)?,
        Op::BroadcastTo => c.broadcast_to()?,
        Op::Rnn(a) => c.rnn(a)?,
        Op::SoftmaxCrossEntropy { sparse } => c.cross_entropy(*sparse, false)?,
        Op::SoftmaxCrossEntropyGrad { sparse } => c.cross_entropy(*sparse, true)?,
        Op::ChannelsFirst(_) => {
            return Err(c.unsupported("channels-first ops are lowered first (optimizer::layout::lower_channels_first)"))
        }
    };
    Ok(vec![k])
}
