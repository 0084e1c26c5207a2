//! The CPU kernel of every [`ir::Op`], on row-major host tensors: the reference evaluator of the
//! IR (constant folding evaluates with it, the other backends are tested against it) and the
//! executor a user gets without a GPU.
//!
//! One file per op family, named as in every other stage (`ir::Op::family`): `elementwise`,
//! `matmul`, `conv`, `pool`, `reduce`, `norm`, `shape_ops`, `rnn`, `loss`. Two entry points:
//! [`run_op`] allocates its outputs; [`arena::run_into`] writes one f32 output into a caller's
//! buffer (the planned executor's arena).

pub mod arena;
mod conv;
mod elementwise;
mod error;
pub mod fused;
mod loss;
mod matmul;
mod norm;
pub mod optim;
mod pool;
mod reduce;
mod rnn;
mod scalar;
mod shape_ops;
pub mod simd;
mod util;

pub use error::KernelError;
pub use scalar::{unary_derivative, unary_scalar};

use ir::{Graph, Op, Producer, Tensor};
use util::f32s;

/// Runs `f` (a whole run of a model: many ops in a row) on a thread of the kernels' pool and
/// waits for it. From a thread outside the pool, each op a kernel splits would be handed to the
/// pool whole while the caller sleeps: two thread wake-ups per op (tens of microseconds each on
/// a shared VM), which made MobileNetV2 slower on two threads than on one. On a thread of the
/// pool, a split op runs its first part where it is and takes back any part no other thread has
/// started. Going onto the pool costs those two wake-ups once, so a caller does it for runs
/// long enough to split; on one thread, or already on the pool, `f` runs here.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() == 1 || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Runs one op on concrete inputs.
pub fn run_op(op: &Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, KernelError> {
    let tys: Vec<_> = inputs.iter().map(|t| t.tensor_type()).collect();
    let out_tys = ir::infer_concrete_types(op, &tys)?;
    let out_shape = |i: usize| -> Result<Vec<usize>, KernelError> {
        out_tys
            .get(i)
            .and_then(|t| t.shape.as_fixed())
            .ok_or_else(|| KernelError::new(op, "output shape unknown at run time"))
    };
    // An op whose outputs all have no elements (an axis of size 0) has nothing to compute;
    // its kernel is not asked to handle the degenerate shape.
    if !out_tys.is_empty() && out_tys.iter().all(|t| t.shape.as_fixed().is_some_and(|s| s.contains(&0))) {
        return (0..out_tys.len()).map(|i| Ok(Tensor::zeros(&out_shape(i)?).cast(out_tys[i].dtype))).collect();
    }
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Unary(u) => one(elementwise::unary(*u, f32s(op, inputs[0])?, inputs[0].shape())?),
        Op::Binary(b) => one(elementwise::binary(op, *b, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::BiasAdd { axis } => one(elementwise::bias_add(op, inputs[0], inputs[1], *axis)?),
        Op::Fused(expr) => one(elementwise::fused(op, expr, inputs, &out_shape(0)?)?),
        Op::UnaryGrad(u) => one(elementwise::unary_grad(op, *u, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::BinaryGrad { op: b, wrt } => one(elementwise::binary_grad(op, *b, *wrt, inputs, &out_shape(0)?)?),
        Op::Cast { to } => one(inputs[0].cast(*to)),
        Op::Transfer { .. } => one(inputs[0].clone()),
        Op::MatMul { transpose_a, transpose_b } => {
            one(matmul::matmul(op, (*transpose_a, *transpose_b), None, inputs, &out_shape(0)?)?)
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => {
            one(matmul::matmul(op, (*transpose_a, *transpose_b), Some(epilogue), inputs, &out_shape(0)?)?)
        }
        Op::Conv(a) => one(conv::conv(op, a, None, inputs, &out_shape(0)?)?),
        Op::FusedConv { conv: a, epilogue } => one(conv::conv(op, a, Some(epilogue), inputs, &out_shape(0)?)?),
        Op::ConvTranspose(a) => one(conv::conv_transpose(op, a, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::ConvInputGrad { conv: a, .. } => one(conv::conv_input_grad(op, a, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::ConvFilterGrad { conv: a, .. } => one(conv::conv_filter_grad(op, a, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::Pool(a) => one(pool::pool(op, a, inputs[0], &out_shape(0)?)?),
        Op::PoolGrad(a) => one(pool::pool_grad(op, a, inputs[0], inputs[1])?),
        Op::Reduce { kind, axes, .. } => one(reduce::reduce(op, *kind, inputs[0], axes, &out_shape(0)?)?),
        Op::ArgReduce { max, axis, last, .. } => {
            one(reduce::arg_reduce(inputs[0], *max, *axis, *last, &out_shape(0)?)?)
        }
        Op::Softmax { axes } => one(reduce::softmax(op, inputs[0], axes, false)?),
        Op::LogSoftmax { axis } => one(reduce::softmax(op, inputs[0], &[*axis], true)?),
        Op::MeanGrad { axes } => one(reduce::mean_grad(op, inputs[0], axes, &out_shape(0)?)?),
        Op::BatchNorm { axis, epsilon } => one(norm::batch_norm(op, inputs, *axis, *epsilon)?),
        Op::Moments { .. } | Op::MomentsGrad { .. } | Op::BatchNormSums { .. } => one(norm::batch_stats(op, inputs)?),
        Op::LayerNorm { axes, epsilon } => one(norm::layer_norm(op, inputs, axes, *epsilon)?),
        Op::GroupNorm { groups, axis, epsilon } => one(norm::group_norm(op, inputs, *groups, *axis, *epsilon)?),
        Op::L2Normalize { axes, epsilon } => one(norm::l2_normalize(op, inputs[0], axes, *epsilon)?),
        Op::Reshape { .. } => one(inputs[0].clone().reshape(&out_shape(0)?)?),
        Op::Transpose { perm } => one(shape_ops::transpose(inputs[0], perm)),
        Op::Concat { axis } => one(shape_ops::concat(op, inputs, *axis, &out_shape(0)?)?),
        Op::Pad { pads, value } => one(shape_ops::pad(op, inputs[0], pads, *value, &out_shape(0)?)?),
        Op::Slice { axes, starts, ends, steps } => {
            one(shape_ops::slice(inputs[0], axes, starts, ends, steps, &out_shape(0)?))
        }
        Op::RepeatInterleave { axis, repeats } => one(shape_ops::repeat_interleave(inputs[0], *axis, *repeats)),
        Op::Tile { repeats } => one(shape_ops::tile(inputs[0], repeats, &out_shape(0)?)),
        Op::Resize { sizes, mode } => one(shape_ops::resize(op, inputs[0], sizes, mode)?),
        Op::Gather { axis } => one(shape_ops::gather(op, inputs[0], inputs[1], *axis)?),
        Op::GatherGrad { axis, .. } => one(shape_ops::gather_grad(op, inputs[0], inputs[1], *axis, &out_shape(0)?)?),
        Op::BroadcastTo => one(shape_ops::broadcast_to(op, inputs[0], &out_shape(0)?)?),
        Op::ChannelsFirst(inner) => {
            let (to_last, to_first) = Op::channels_last_perm(inputs[0].shape().len());
            let x = shape_ops::transpose(inputs[0], &to_last);
            let mut ins: Vec<&Tensor> = inputs.to_vec();
            ins[0] = &x;
            Ok(run_op(inner, &ins)?.iter().map(|t| shape_ops::transpose(t, &to_first)).collect())
        }
        Op::Rnn(a) => rnn::rnn(op, a, inputs),
        Op::SoftmaxCrossEntropy { sparse } => {
            one(loss::cross_entropy(op, *sparse, inputs[0], inputs[1], None, &out_shape(0)?)?)
        }
        Op::SoftmaxCrossEntropyGrad { sparse } => {
            one(loss::cross_entropy(op, *sparse, inputs[0], inputs[1], Some(inputs[2]), &out_shape(0)?)?)
        }
    }
}

/// Evaluates a whole graph on `inputs` (graph input order) with [`run_op`], node by node in the
/// graph's order, and returns its outputs; `on_node(index, seconds)` hears each node's wall
/// time. Each value is dropped after its last reader. A failing kernel's error names its node.
pub fn evaluate(g: &Graph, inputs: &[Tensor], mut on_node: impl FnMut(usize, f64)) -> Result<Vec<Tensor>, KernelError> {
    let mut last_use = vec![0usize; g.values().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        for v in &node.inputs {
            last_use[v.0] = i;
        }
    }
    for v in g.outputs() {
        last_use[v.0] = usize::MAX;
    }
    let mut vals: Vec<Option<Tensor>> = vec![None; g.values().len()];
    for (&v, t) in g.inputs().iter().zip(inputs) {
        vals[v.0] = Some(t.clone());
    }
    for (ni, node) in g.nodes().iter().enumerate() {
        let mut args = Vec::with_capacity(node.inputs.len());
        for &v in &node.inputs {
            let t = match g.value(v).producer {
                Producer::Constant => g.constant(v),
                _ => vals[v.0].as_ref(),
            };
            args.push(t.ok_or_else(|| KernelError::Kernel {
                op: node.op.name(),
                node: node.name.clone(),
                message: format!("input value {} is not available", v.0),
            })?);
        }
        let t0 = std::time::Instant::now();
        let outs = run_op(&node.op, &args).map_err(|e| e.at(&node.name))?;
        on_node(ni, t0.elapsed().as_secs_f64());
        for (&o, t) in node.outputs.iter().zip(outs) {
            vals[o.0] = Some(t);
        }
        for &v in &node.inputs {
            if last_use[v.0] == ni {
                vals[v.0] = None;
            }
        }
    }
    g.outputs()
        .iter()
        .map(|&v| {
            match g.value(v).producer {
                Producer::Constant => g.constant(v).cloned(),
                _ => vals[v.0].clone(),
            }
            .ok_or_else(|| KernelError::Kernel {
                op: "output".into(),
                node: g.value(v).name.clone(),
                message: "not computed".into(),
            })
        })
        .collect()
}
