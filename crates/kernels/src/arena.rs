//! Kernels that write one float32 output into a caller's buffer without allocating: the planned
//! executor runs these ops in place in its arena. Each covers the common form of its op; the
//! executor sends other forms through the allocating kernel ([`crate::run_op`]).

use crate::fused::{self, EpilogueArgs, Operand};
use crate::{conv, elementwise, matmul, norm, pool, reduce, shape_ops, KernelError};
use ir::Op;

/// The most operands an in-arena kernel takes (they are held on the stack), a concatenation
/// aside.
pub const MAX_OPERANDS: usize = 16;

/// `f` on `n` slots holding `fill`: on the stack up to [`MAX_OPERANDS`], on the heap beyond (a
/// run's operand lists, which allocate nothing in the common case).
pub fn with_slots<T: Copy, R>(n: usize, fill: T, f: impl FnOnce(&mut [T]) -> R) -> R {
    if n <= MAX_OPERANDS {
        let mut stack = [fill; MAX_OPERANDS];
        f(&mut stack[..n])
    } else {
        f(&mut vec![fill; n])
    }
}

/// Whether [`run_into`] handles this op with these operand shapes (float32 operands).
pub fn supports(op: &Op, shapes: &[&[usize]]) -> bool {
    let rank = shapes.first().map(|s| s.len()).unwrap_or(0);
    let last = rank.saturating_sub(1);
    (shapes.len() <= MAX_OPERANDS || matches!(op, Op::Concat { .. }))
        && match op {
            Op::Conv(_)
            | Op::FusedConv { .. }
            | Op::ConvTranspose(_)
            | Op::MatMul { .. }
            | Op::FusedMatMul { .. }
            | Op::Fused(_)
            | Op::Reshape { .. }
            | Op::Pool(_)
            | Op::Concat { .. } => true,
            Op::UnaryGrad(_) => shapes.len() == 2 && shapes[0] == shapes[1],
            Op::Pad { pads, .. } => shapes.len() == 1 && pads.len() == rank,
            Op::Slice { steps, .. } => shapes.len() == 1 && steps.iter().all(|&s| s == 1),
            Op::BinaryGrad { .. } => shapes.len() == 3,
            Op::MeanGrad { .. } => shapes.len() == 2,
            Op::ConvInputGrad { .. } | Op::ConvFilterGrad { .. } | Op::PoolGrad(_) => shapes.len() == 2,
            Op::BatchNorm { .. } | Op::Moments { .. } | Op::MomentsGrad { .. } | Op::BatchNormSums { .. } => {
                norm::batch_stats_fit(op, shapes)
            }
            Op::Softmax { axes } => rank > 0 && axes.as_slice() == [last],
            Op::LogSoftmax { axis } => rank > 0 && *axis == last,
            Op::LayerNorm { axes, .. } => {
                let c = shapes.first().and_then(|s| s.last()).copied().unwrap_or(0);
                rank > 0
                    && axes.as_slice() == [last]
                    && shapes[1..].iter().all(|s| s.iter().product::<usize>() == c && s.last() == Some(&c))
            }
            Op::GroupNorm { axis, .. } => {
                let c = shapes.first().and_then(|s| s.get(*axis)).copied().unwrap_or(0);
                *axis > 0
                    && *axis < rank
                    && shapes.len() == 3
                    && shapes[1..].iter().all(|s| s.iter().product::<usize>() >= c)
            }
            Op::Reduce { axes, .. } => reduce::middle_axes(shapes.first().copied().unwrap_or(&[]), axes).is_some(),
            Op::Transpose { perm } => perm.len() <= 8,
            Op::RepeatInterleave { axis, .. } => *axis < rank,
            Op::Resize { sizes, mode: ir::ResizeMode::Nearest } => rank > sizes.len() && shapes.len() == 1,
            _ => false,
        }
}

/// Runs a supported op into `out` (shape `out_shape`). `views` are the operands; a `None` view
/// is the output buffer itself, which only a fused expression may read (it runs in place).
pub fn run_into(
    op: &Op,
    views: &[Option<&[f32]>],
    shapes: &[&[usize]],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    let need = |i: usize| -> Result<(&[f32], &[usize]), KernelError> {
        match (views.get(i).copied().flatten(), shapes.get(i)) {
            (Some(v), Some(s)) => Ok((v, *s)),
            _ => Err(KernelError::new(op, format!("operand {i} is not readable here"))),
        }
    };
    if shapes.len() < views.len() {
        return Err(KernelError::new(op, "an operand without its shape"));
    }
    if views.len() > MAX_OPERANDS && !matches!(op, Op::Concat { .. }) {
        return Err(KernelError::new(op, "too many operands for an in-arena kernel"));
    }
    if out.is_empty() {
        // Nothing to write (an axis of size 0), as `run_op`.
        return Ok(());
    }
    match op {
        Op::Conv(a) => conv::conv_into(op, a, need(0)?, need(1)?, out, out_shape, None),
        Op::FusedConv { conv, epilogue: e } => {
            let epi = EpilogueArgs::from_views(op, e, views)?;
            conv::conv_into(op, conv, need(0)?, need(1)?, out, out_shape, Some(&epi))
        }
        Op::ConvTranspose(a) => conv::conv_transpose_into(op, a, need(0)?, need(1)?, out, out_shape),
        Op::MatMul { transpose_a, transpose_b } => {
            matmul::matmul_into(need(0)?, need(1)?, *transpose_a, *transpose_b, out, out_shape, None)
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue: e } => {
            let epi = EpilogueArgs::from_views(op, e, views)?;
            matmul::matmul_into(need(0)?, need(1)?, *transpose_a, *transpose_b, out, out_shape, Some(&epi))
        }
        Op::Fused(expr) => {
            let mut operands = [Operand { data: None, shape: &[] }; MAX_OPERANDS];
            for (k, (v, s)) in views.iter().zip(shapes).enumerate() {
                operands[k] = Operand { data: *v, shape: s };
            }
            fused::eval(expr, &operands[..views.len()], out, out_shape);
            Ok(())
        }
        Op::Reshape { .. } => {
            let (x, _) = need(0)?;
            if x.len() != out.len() {
                return Err(KernelError::new(op, "operand and output sizes differ"));
            }
            out.copy_from_slice(x);
            Ok(())
        }
        Op::Pool(a) => pool::pool_into(op, a, need(0)?, out, out_shape),
        Op::Slice { axes, starts, ends, .. } => {
            shape_ops::slice_box_into(op, need(0)?, (axes, starts, ends), out, out_shape)
        }
        Op::Pad { pads, value } => shape_ops::pad_into(op, need(0)?, pads, *value, out, out_shape),
        Op::UnaryGrad(u) => elementwise::unary_grad_into(op, *u, need(0)?.0, need(1)?.0, out),
        Op::BinaryGrad { op: b, wrt } => {
            elementwise::binary_grad_into(op, *b, *wrt, need(0)?, need(1)?, need(2)?.0, out, out_shape)
        }
        Op::MeanGrad { axes } => {
            let (dy, s) = need(0)?;
            reduce::mean_grad_into(op, dy, s, axes, out, out_shape)
        }
        Op::ConvInputGrad { conv: a, .. } => conv::conv_input_grad_into(op, a, need(0)?, need(1)?, out, out_shape),
        Op::ConvFilterGrad { conv: a, .. } => conv::conv_filter_grad_into(op, a, need(0)?, need(1)?, out, out_shape),
        Op::PoolGrad(a) => {
            let (x, s) = need(0)?;
            if x.len() != out.len() {
                return Err(KernelError::new(op, "operand and output sizes differ"));
            }
            pool::pool_grad_into(op, a, (x, s), need(1)?, out)
        }
        _ if supports(op, shapes) => {
            // A concatenation may have more pieces than the stack holds.
            with_slots(views.len(), &[][..], |ins: &mut [&[f32]]| {
                for (d, v) in ins.iter_mut().zip(views) {
                    *d = v.ok_or_else(|| KernelError::new(op, "cannot run in place"))?;
                }
                let ins = &*ins;
                let c = shapes[0].last().copied().unwrap_or(1);
                match op {
                    Op::Softmax { .. } => reduce::softmax_last(ins[0], c, out, false),
                    Op::LogSoftmax { .. } => reduce::softmax_last(ins[0], c, out, true),
                    Op::LayerNorm { epsilon, .. } => norm::layer_norm_last(ins[0], ins[1], ins[2], c, *epsilon, out),
                    Op::GroupNorm { groups, axis, epsilon } => {
                        norm::group_norm_into(ins[0], ins[1], ins[2], shapes[0], *groups, *axis, *epsilon, out)
                    }
                    Op::Concat { axis } => shape_ops::concat_into(ins, shapes, *axis, out, out_shape),
                    Op::BatchNorm { axis, epsilon } => norm::batch_norm_into(ins, shapes[0], *axis, *epsilon, out),
                    Op::Moments { axis } => norm::moments_into(ins[0], shapes[0], *axis, out),
                    Op::MomentsGrad { axis } => norm::moments_grad_into(ins, shapes[0], *axis, out),
                    Op::BatchNormSums { axis } => norm::batch_norm_sums_into(ins, shapes[0], *axis, out),
                    Op::Reduce { kind, axes, .. } => {
                        if let Some(dims) = reduce::middle_axes(shapes[0], axes) {
                            reduce::reduce_middle(*kind, ins[0], dims, out);
                        }
                    }
                    Op::Transpose { perm } => shape_ops::transpose_into(ins[0], shapes[0], perm, out, out_shape),
                    Op::RepeatInterleave { axis, repeats } => {
                        shape_ops::repeat_interleave_into(ins[0], shapes[0], *axis, *repeats, out)
                    }
                    Op::Resize { sizes, .. } => shape_ops::resize_nearest_into(ins[0], shapes[0], sizes, out),
                    _ => {}
                }
                Ok(())
            })
        }
        _ => Err(KernelError::new(op, "no in-arena kernel")),
    }
}
