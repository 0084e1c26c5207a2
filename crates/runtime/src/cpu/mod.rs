//! The CPU executor's kernels: one for every [`ir::Op`], on row-major host tensors. They are the
//! executor a user gets without a GPU and the oracle the other backends are tested against.

pub mod arena_ops;
pub(crate) mod conv;
mod elementwise;
pub mod fused;
pub mod grad;
pub(crate) mod matmul;
mod norm;
pub(crate) mod pool;
pub(crate) mod reduce;
mod rnn;
mod shape_ops;

use crate::RuntimeError;
use ir::{DType, Epilogue, Op, Shape, Tensor, TensorData};
use rayon::prelude::*;

pub use elementwise::unary_scalar;

/// Minimum element count before a loop is split across threads.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// Runs one op on concrete inputs.
pub fn run_op(op: &Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
    let tys: Vec<_> = inputs.iter().map(|t| t.tensor_type()).collect();
    let out_tys = ir::infer_types(op, &tys)?;
    let out_shape = |i: usize| -> Result<Vec<usize>, RuntimeError> {
        out_tys
            .get(i)
            .and_then(|t| t.shape.as_fixed())
            .ok_or_else(|| RuntimeError::kernel(op, "output shape unknown at run time"))
    };
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Unary(u) => one(elementwise::unary(*u, f32s(op, inputs[0])?, inputs[0].shape())?),
        Op::Binary(b) => one(elementwise::binary(op, *b, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::MatMul { transpose_a, transpose_b } => {
            one(matmul::matmul(op, inputs[0], inputs[1], *transpose_a, *transpose_b, &out_shape(0)?)?)
        }
        Op::BiasAdd { axis } => one(elementwise::bias_add(op, inputs[0], inputs[1], *axis)?),
        Op::Conv(a) => one(conv::conv(op, a, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::ConvTranspose(a) => one(conv::conv_transpose(op, a, inputs[0], inputs[1], &out_shape(0)?)?),
        Op::Pool(a) => one(pool::pool(op, a, inputs[0], &out_shape(0)?)?),
        Op::Reduce { kind, axes, .. } => one(reduce::reduce(op, *kind, inputs[0], axes, &out_shape(0)?)?),
        Op::Softmax { axes } => one(reduce::softmax(op, inputs[0], axes, false)?),
        Op::LogSoftmax { axis } => one(reduce::softmax(op, inputs[0], &[*axis], true)?),
        Op::BatchNorm { axis, epsilon } => one(norm::batch_norm(op, inputs, *axis, *epsilon)?),
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
        Op::Resize { sizes, mode } => one(shape_ops::resize(op, inputs[0], sizes, *mode)?),
        Op::Gather { axis } => one(shape_ops::gather(op, inputs[0], inputs[1], *axis)?),
        Op::Cast { to } => one(inputs[0].cast(*to)),
        Op::ChannelsFirst(inner) => {
            let (to_last, to_first) = Op::channels_last_perm(inputs[0].shape().len());
            let x = shape_ops::transpose(inputs[0], &to_last);
            let mut ins: Vec<&Tensor> = inputs.to_vec();
            ins[0] = &x;
            Ok(run_op(inner, &ins)?.iter().map(|t| shape_ops::transpose(t, &to_first)).collect())
        }
        Op::Rnn(a) => rnn::rnn(op, a, inputs),
        Op::FusedConv { conv: a, epilogue } => {
            let shape = out_shape(0)?;
            let mut out = vec![0f32; shape.iter().product()];
            let epi = epilogue_args(op, epilogue, &inputs[2..])?;
            let (x, w) = (inputs[0], inputs[1]);
            conv::conv_into(op, a, (f32s(op, x)?, x.shape()), (f32s(op, w)?, w.shape()), &mut out, &shape, Some(&epi))?;
            one(tensor(&shape, out)?)
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => {
            let shape = out_shape(0)?;
            let mut out = vec![0f32; shape.iter().product()];
            let epi = epilogue_args(op, epilogue, &inputs[2..])?;
            let (a, b) = (inputs[0], inputs[1]);
            let (ta, tb) = (*transpose_a, *transpose_b);
            matmul::matmul_into(
                (f32s(op, a)?, a.shape()),
                (f32s(op, b)?, b.shape()),
                ta,
                tb,
                &mut out,
                &shape,
                Some(&epi),
            );
            one(tensor(&shape, out)?)
        }
        Op::BroadcastTo
        | Op::MeanGrad { .. }
        | Op::GatherGrad { .. }
        | Op::UnaryGrad(_)
        | Op::BinaryGrad { .. }
        | Op::ConvInputGrad { .. }
        | Op::ConvFilterGrad { .. }
        | Op::PoolGrad(_)
        | Op::SoftmaxCrossEntropy { .. }
        | Op::SoftmaxCrossEntropyGrad { .. } => one(grad::run_grad_op(op, inputs, &out_shape(0)?)?),
        Op::Fused(expr) => {
            let shape = out_shape(0)?;
            let mut out = vec![0f32; shape.iter().product()];
            let operands = inputs
                .iter()
                .map(|t| Ok(fused::Operand { data: Some(f32s(op, t)?), shape: t.shape() }))
                .collect::<Result<Vec<_>, RuntimeError>>()?;
            fused::eval(expr, &operands, &mut out, &shape);
            one(tensor(&shape, out)?)
        }
    }
}

/// The bias and residual operands of an epilogue, in input order.
pub(crate) fn epilogue_args<'a>(
    op: &Op,
    epilogue: &'a Epilogue,
    extra: &[&'a Tensor],
) -> Result<fused::EpilogueArgs<'a>, RuntimeError> {
    let mut rest = extra.iter();
    let mut next = |on: bool| -> Result<Option<&'a [f32]>, RuntimeError> {
        if !on {
            return Ok(None);
        }
        let t = rest.next().ok_or_else(|| RuntimeError::kernel(op, "missing epilogue operand"))?;
        Ok(Some(f32s(op, t)?))
    };
    let bias = next(epilogue.bias)?;
    let residual = next(epilogue.residual)?;
    Ok(fused::EpilogueArgs { epilogue, bias, residual })
}

pub(crate) fn f32s<'a>(op: &Op, t: &'a Tensor) -> Result<&'a [f32], RuntimeError> {
    t.as_f32().ok_or_else(|| RuntimeError::kernel(op, format!("expects float32, got {}", t.dtype())))
}

pub(crate) fn tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor, RuntimeError> {
    Ok(Tensor::from_f32(shape, data)?)
}

/// Applies `f(channel, value)` to every element of `x` (shape `shape`), where `channel` is the
/// element's index along `axis`; rows are split across threads when large.
pub(crate) fn map_per_channel(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    f: impl Fn(usize, f32) -> f32 + Sync,
) -> Vec<f32> {
    let inner: usize = shape[axis + 1..].iter().product();
    let c = shape[axis];
    let mut out = x.to_vec();
    if c == 0 || inner == 0 {
        return out;
    }
    let row = |blk: usize, chunk: &mut [f32]| {
        for (i, v) in chunk.iter_mut().enumerate() {
            *v = f(if inner == 1 { i } else { blk % c }, *v);
        }
    };
    // Channels-last rows (inner == 1) hold one element per channel; otherwise a block per channel.
    let len = if inner == 1 { c } else { inner };
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(len).enumerate().for_each(|(b, ch)| row(b, ch));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(b, ch)| row(b, ch));
    }
    out
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Applies a per-element index mapping to any dtype: `out[i] = src[map(i)]`.
pub(crate) fn gather_elements(src: &Tensor, shape: &[usize], idx: &[usize]) -> Tensor {
    fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter().map(|&i| v[i]).collect()
    }
    let data = match src.data() {
        TensorData::F32(v) => TensorData::F32(pick(v, idx)),
        TensorData::F16(v) => TensorData::F16(pick(v, idx)),
        TensorData::BF16(v) => TensorData::BF16(pick(v, idx)),
        TensorData::I32(v) => TensorData::I32(pick(v, idx)),
        TensorData::I64(v) => TensorData::I64(pick(v, idx)),
        TensorData::Bool(v) => TensorData::Bool(pick(v, idx)),
        TensorData::U8(v) => TensorData::U8(pick(v, idx)),
    };
    Tensor::new(shape.to_vec(), data).unwrap_or_else(|_| Tensor::zeros(shape))
}

/// A static type for a concrete tensor (used by the executor's input checks).
pub(crate) fn shape_matches(expected: &Shape, got: &[usize]) -> bool {
    expected.rank() == got.len() && expected.dims().iter().zip(got).all(|(d, &g)| d.fixed().is_none_or(|n| n == g))
}

pub(crate) fn is_int(d: DType) -> bool {
    matches!(d, DType::I32 | DType::I64 | DType::U8)
}
