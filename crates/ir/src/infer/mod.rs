//! Static shape and type inference, one rule per op. Every mismatch is an error, never a panic.

mod checks;
mod conv;
mod rnn;

pub use checks::{elements_per_sample, MAX_ELEMENTS_PER_SAMPLE};

use crate::{DType, Dim, Epilogue, ExprNode, IrError, Op, Shape, TensorType};
use checks::{add, arity, bounded, channels, check_axes, err, float_only, mul, per_channel, positive, unary_params};
use conv::{conv, conv_transpose, pool};
use rnn::rnn;

type R = Result<Vec<TensorType>, IrError>;

/// Broadcasts two shapes numpy-style.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.rank() >= r { a.0[i + a.rank() - r] } else { Dim::Fixed(1) };
        let db = if i + b.rank() >= r { b.0[i + b.rank() - r] } else { Dim::Fixed(1) };
        let d = match (da, db) {
            (Dim::Fixed(1), x) | (x, Dim::Fixed(1)) => x,
            (Dim::Batch, Dim::Batch) => Dim::Batch,
            (Dim::Batch, Dim::Fixed(n)) | (Dim::Fixed(n), Dim::Batch) => Dim::Fixed(n),
            (Dim::Fixed(x), Dim::Fixed(y)) if x == y => Dim::Fixed(x),
            _ => return None,
        };
        out.push(d);
    }
    Some(Shape(out))
}

/// Reshape target resolution shared by inference and the executors: 0 copies the input's
/// size at that axis, -1 takes what is left.
pub fn reshape_dims(op: &Op, input: &Shape, target: &[i64]) -> Result<Shape, IrError> {
    let mut dims = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.is_some() {
                    return err(op, "more than one -1 in target shape");
                }
                infer_at = Some(i);
                dims.push(Dim::Batch);
            }
            0 => dims.push(*input.0.get(i).ok_or_else(|| IrError::shape(op.name(), "0 refers past the input rank"))?),
            n if n > 0 => dims.push(Dim::Fixed(n as usize)),
            n => return err(op, format!("invalid target size {n}")),
        }
    }
    let product = |it: &mut dyn Iterator<Item = usize>| -> Result<usize, IrError> {
        let mut acc = Some(1usize);
        for d in it {
            acc = acc.and_then(|a| a.checked_mul(d));
        }
        acc.ok_or_else(|| IrError::shape(op.name(), format!("reshape to {target:?}: too many elements")))
    };
    let in_fixed = product(&mut input.0.iter().filter_map(|d| d.fixed()))?;
    let in_batch = input.0.iter().filter(|d| d.fixed().is_none()).count();
    let others = dims.iter().enumerate().filter(|(i, _)| Some(*i) != infer_at).map(|(_, d)| *d);
    let out_fixed = product(&mut others.clone().filter_map(|d| d.fixed()))?;
    let out_batch = others.filter(|d| d.fixed().is_none()).count();
    match infer_at {
        Some(i) if in_batch == out_batch => {
            if out_fixed == 0 || !in_fixed.is_multiple_of(out_fixed) {
                return err(op, format!("cannot reshape {input} to {target:?}"));
            }
            dims[i] = Dim::Fixed(in_fixed / out_fixed);
        }
        Some(i) => dims[i] = Dim::Batch,
        None => {
            if in_batch == out_batch && in_fixed != out_fixed {
                return err(
                    op,
                    format!("cannot reshape {input} ({in_fixed} elements per batch) to {target:?} ({out_fixed})"),
                );
            }
        }
    }
    Ok(Shape(dims))
}

/// The bias and residual operands of an epilogue fit the output; its activations make sense.
fn epilogue_inputs(op: &Op, e: &Epilogue, out: &TensorType, extra: &[TensorType]) -> Result<(), IrError> {
    for u in e.activation.iter().chain(&e.post_activation) {
        unary_params(op, u)?;
    }
    let mut rest = extra.iter();
    if e.bias {
        if let Some(b) = rest.next() {
            per_channel(op, &out.shape, out.shape.rank().saturating_sub(1), b, "bias")?;
        }
    }
    if e.residual {
        if let Some(r) = rest.next() {
            if r.shape != out.shape || r.dtype != out.dtype {
                return err(op, format!("residual {r} differs from the output {out}"));
            }
        }
    }
    Ok(())
}

/// Infers the output types of `op` applied to inputs of types `tys`, checking every operand's
/// shape and every attribute against them; no output may hold more than
/// [`MAX_ELEMENTS_PER_SAMPLE`] elements per sample.
pub fn infer_types(op: &Op, tys: &[TensorType]) -> R {
    let out = infer(op, tys)?;
    for t in &out {
        bounded(op, t)?;
    }
    Ok(out)
}

/// [`infer_types`] for the concrete shapes of a run (the batch is a fixed axis there): the
/// per-sample bound was checked on the graph's symbolic types, so here only the bytes must be
/// addressable.
pub fn infer_concrete_types(op: &Op, tys: &[TensorType]) -> R {
    let out = infer(op, tys)?;
    for t in &out {
        let bytes = t.shape.0.iter().filter_map(|d| d.fixed()).try_fold(t.dtype.size(), |a, d| a.checked_mul(d));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return err(op, format!("an output of shape {} is too large to address", t.shape));
        }
    }
    Ok(out)
}

fn infer(op: &Op, tys: &[TensorType]) -> R {
    match op {
        Op::Unary(u) => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            unary_params(op, u)?;
            Ok(vec![tys[0].clone()])
        }
        Op::Binary(_) => {
            arity(op, tys, 2, 2)?;
            if tys[0].dtype != tys[1].dtype {
                return err(op, format!("dtypes differ: {} vs {}", tys[0].dtype, tys[1].dtype));
            }
            let s = broadcast(&tys[0].shape, &tys[1].shape).ok_or_else(|| {
                IrError::shape(op.name(), format!("cannot broadcast {} with {}", tys[0].shape, tys[1].shape))
            })?;
            Ok(vec![TensorType::new(tys[0].dtype, s)])
        }
        Op::MatMul { transpose_a, transpose_b } => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            let (a, b) = (&tys[0].shape, &tys[1].shape);
            if a.rank() < 2 || b.rank() < 2 {
                return err(op, format!("operands must have rank >= 2, got {a} and {b}"));
            }
            let (m, ka) = if *transpose_a {
                (a.0[a.rank() - 1], a.0[a.rank() - 2])
            } else {
                (a.0[a.rank() - 2], a.0[a.rank() - 1])
            };
            let (kb, n) = if *transpose_b {
                (b.0[b.rank() - 1], b.0[b.rank() - 2])
            } else {
                (b.0[b.rank() - 2], b.0[b.rank() - 1])
            };
            if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb) {
                if x != y {
                    return err(op, format!("inner dimensions differ: {a} x {b}"));
                }
            }
            let batch = broadcast(&Shape(a.0[..a.rank() - 2].to_vec()), &Shape(b.0[..b.rank() - 2].to_vec()))
                .ok_or_else(|| IrError::shape(op.name(), format!("batch axes of {a} and {b} do not broadcast")))?;
            let mut dims = batch.0;
            dims.push(m);
            dims.push(n);
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::BiasAdd { axis } => {
            arity(op, tys, 2, 2)?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            per_channel(op, &tys[0].shape, *axis, &tys[1], "bias")?;
            Ok(vec![tys[0].clone()])
        }
        Op::Conv(a) => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            conv(op, a, &tys[0], &tys[1])
        }
        Op::ConvTranspose(a) => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            conv_transpose(op, a, &tys[0], &tys[1])
        }
        Op::Pool(a) => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            pool(op, a, &tys[0])
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            arity(op, tys, 1, 1)?;
            let s = &tys[0].shape;
            check_axes(op, &[*axis], s.rank())?;
            let dims =
                s.0.iter()
                    .enumerate()
                    .filter_map(|(i, &d)| if i != *axis { Some(d) } else { keepdims.then_some(Dim::Fixed(1)) })
                    .collect();
            Ok(vec![TensorType::new(DType::I64, Shape(dims))])
        }
        Op::Reduce { axes, keepdims, .. } => {
            arity(op, tys, 1, 1)?;
            let s = &tys[0].shape;
            check_axes(op, axes, s.rank())?;
            let mut dims = Vec::new();
            for (i, &d) in s.0.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdims {
                        dims.push(Dim::Fixed(1));
                    }
                } else {
                    dims.push(d);
                }
            }
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::Softmax { axes } => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            check_axes(op, axes, tys[0].shape.rank())?;
            Ok(vec![tys[0].clone()])
        }
        Op::LogSoftmax { axis } => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            Ok(vec![tys[0].clone()])
        }
        Op::BatchNorm { axis, .. } => {
            arity(op, tys, 5, 5)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            for (t, what) in tys[1..].iter().zip(["gamma", "beta", "moving_mean", "moving_variance"]) {
                per_channel(op, &tys[0].shape, *axis, t, what)?;
            }
            Ok(vec![tys[0].clone()])
        }
        Op::Moments { axis } => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            let c = channels(op, &tys[0].shape, *axis)?;
            Ok(vec![TensorType::new(tys[0].dtype, Shape::fixed(&[2, c]))])
        }
        Op::MomentsGrad { axis } => {
            arity(op, tys, 3, 3)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            let c = channels(op, &tys[0].shape, *axis)?;
            for (t, what) in tys[1..].iter().zip(["moments", "their gradient"]) {
                if t.shape != Shape::fixed(&[2, c]) {
                    return err(op, format!("{what} must be [2, {c}], got {}", t.shape));
                }
            }
            Ok(vec![tys[0].clone()])
        }
        Op::BatchNormSums { axis } => {
            arity(op, tys, 3, 3)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            if tys[0].shape != tys[1].shape {
                return err(op, format!("dy {} and x {} differ", tys[0].shape, tys[1].shape));
            }
            let c = channels(op, &tys[0].shape, *axis)?;
            per_channel(op, &tys[1].shape, *axis, &tys[2], "mean")?;
            Ok(vec![TensorType::new(tys[0].dtype, Shape::fixed(&[2, c]))])
        }
        Op::LayerNorm { axes, .. } => {
            arity(op, tys, 3, 3)?;
            float_only(op, &tys[0])?;
            check_axes(op, axes, tys[0].shape.rank())?;
            for t in &tys[1..] {
                match broadcast(&tys[0].shape, &t.shape) {
                    Some(s) if s == tys[0].shape => {}
                    _ => return err(op, format!("scale/offset {} do not broadcast to {}", t.shape, tys[0].shape)),
                }
            }
            Ok(vec![tys[0].clone()])
        }
        Op::GroupNorm { groups, axis, .. } => {
            arity(op, tys, 3, 3)?;
            float_only(op, &tys[0])?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            if let Dim::Fixed(c) = tys[0].shape.0[*axis] {
                if *groups == 0 || c % groups != 0 {
                    return err(op, format!("{c} channels not divisible into {groups} groups"));
                }
            }
            per_channel(op, &tys[0].shape, *axis, &tys[1], "gamma")?;
            per_channel(op, &tys[0].shape, *axis, &tys[2], "beta")?;
            Ok(vec![tys[0].clone()])
        }
        Op::L2Normalize { axes, .. } => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            check_axes(op, axes, tys[0].shape.rank())?;
            Ok(vec![tys[0].clone()])
        }
        Op::Reshape { shape } => {
            arity(op, tys, 1, 1)?;
            Ok(vec![TensorType::new(tys[0].dtype, reshape_dims(op, &tys[0].shape, shape)?)])
        }
        Op::Transpose { perm } => {
            arity(op, tys, 1, 1)?;
            let r = tys[0].shape.rank();
            let mut seen = vec![false; r];
            if perm.len() != r {
                return err(op, format!("permutation {perm:?} for rank {r}"));
            }
            for &p in perm {
                if p >= r || seen[p] {
                    return err(op, format!("invalid permutation {perm:?}"));
                }
                seen[p] = true;
            }
            Ok(vec![TensorType::new(tys[0].dtype, Shape(perm.iter().map(|&p| tys[0].shape.0[p]).collect()))])
        }
        Op::Concat { axis } => {
            if tys.is_empty() {
                return Err(IrError::Arity { op: op.name(), expected: ">= 1".into(), got: 0 });
            }
            let r = tys[0].shape.rank();
            check_axes(op, &[*axis], r)?;
            let mut total = Some(0usize);
            for t in tys {
                if t.shape.rank() != r || t.dtype != tys[0].dtype {
                    return err(op, format!("cannot concatenate {} with {}", tys[0], t));
                }
                for i in 0..r {
                    if i != *axis {
                        if let (Dim::Fixed(a), Dim::Fixed(b)) = (t.shape.0[i], tys[0].shape.0[i]) {
                            if a != b {
                                return err(
                                    op,
                                    format!("shapes {} and {} differ off axis {axis}", tys[0].shape, t.shape),
                                );
                            }
                        }
                    }
                }
                total = match (total, t.shape.0[*axis]) {
                    (Some(s), Dim::Fixed(n)) => Some(add(op, s, n)?),
                    _ => None,
                };
            }
            let mut dims = tys[0].shape.0.clone();
            dims[*axis] = total.map(Dim::Fixed).unwrap_or(Dim::Batch);
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::Pad { pads, .. } => {
            arity(op, tys, 1, 1)?;
            if pads.len() != tys[0].shape.rank() {
                return err(op, "one (before, after) pair per axis expected");
            }
            let dims = tys[0].shape.0.iter().zip(pads).map(|(d, p)| match d {
                Dim::Fixed(n) => Ok(Dim::Fixed(add(op, add(op, *n, p.0)?, p.1)?)),
                Dim::Batch => Ok(Dim::Batch),
            });
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims.collect::<Result<_, IrError>>()?))])
        }
        Op::Slice { axes, starts, ends, steps } => {
            arity(op, tys, 1, 1)?;
            check_axes(op, axes, tys[0].shape.rank())?;
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return err(op, "starts/ends/steps must match axes");
            }
            let mut dims = tys[0].shape.0.clone();
            for (k, &a) in axes.iter().enumerate() {
                if steps[k] == 0 {
                    return err(op, "slice step 0");
                }
                if let Dim::Fixed(n) = dims[a] {
                    dims[a] = Dim::Fixed(slice_len(n, starts[k], ends[k], steps[k]));
                }
            }
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::RepeatInterleave { axis, repeats } => {
            arity(op, tys, 1, 1)?;
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            let mut dims = tys[0].shape.0.clone();
            if let Dim::Fixed(n) = dims[*axis] {
                dims[*axis] = Dim::Fixed(mul(op, n, *repeats)?);
            }
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::Tile { repeats } => {
            arity(op, tys, 1, 1)?;
            if repeats.len() != tys[0].shape.rank() {
                return err(op, "one repeat count per axis expected");
            }
            let dims = tys[0].shape.0.iter().zip(repeats).map(|(d, &r)| match d {
                Dim::Fixed(n) => Ok(Dim::Fixed(mul(op, *n, r)?)),
                Dim::Batch => Ok(Dim::Batch),
            });
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims.collect::<Result<_, IrError>>()?))])
        }
        Op::Resize { sizes, .. } => {
            arity(op, tys, 1, 1)?;
            float_only(op, &tys[0])?;
            let r = tys[0].shape.rank();
            if r != sizes.len() + 2 {
                return err(op, format!("{} sizes for an input of rank {r}", sizes.len()));
            }
            positive(op, "sizes", sizes)?;
            if tys[0].shape.0[1..r - 1].contains(&Dim::Fixed(0)) {
                return err(op, format!("cannot resize an empty input {}", tys[0].shape));
            }
            let mut dims = tys[0].shape.0.clone();
            for (i, &s) in sizes.iter().enumerate() {
                dims[i + 1] = Dim::Fixed(s);
            }
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::Gather { axis } => {
            arity(op, tys, 2, 2)?;
            if !matches!(tys[1].dtype, DType::I32 | DType::I64 | DType::U8) && !tys[1].dtype.is_float() {
                return Err(IrError::DType { op: op.name(), dtype: tys[1].dtype.to_string() });
            }
            check_axes(op, &[*axis], tys[0].shape.rank())?;
            let mut dims = tys[0].shape.0[..*axis].to_vec();
            dims.extend_from_slice(&tys[1].shape.0);
            dims.extend_from_slice(&tys[0].shape.0[*axis + 1..]);
            Ok(vec![TensorType::new(tys[0].dtype, Shape(dims))])
        }
        Op::Cast { to } => {
            arity(op, tys, 1, 1)?;
            Ok(vec![TensorType::new(*to, tys[0].shape.clone())])
        }
        Op::Transfer { .. } => {
            arity(op, tys, 1, 1)?;
            Ok(vec![tys[0].clone()])
        }
        Op::FusedConv { conv: a, epilogue } => {
            arity(op, tys, 2 + epilogue.extra_inputs(), 2 + epilogue.extra_inputs())?;
            float_only(op, &tys[0])?;
            let out = conv(op, a, &tys[0], &tys[1])?;
            epilogue_inputs(op, epilogue, &out[0], &tys[2..])?;
            Ok(out)
        }
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => {
            arity(op, tys, 2 + epilogue.extra_inputs(), 2 + epilogue.extra_inputs())?;
            let plain = Op::MatMul { transpose_a: *transpose_a, transpose_b: *transpose_b };
            let out = infer(&plain, &tys[..2])?;
            epilogue_inputs(op, epilogue, &out[0], &tys[2..])?;
            Ok(out)
        }
        Op::Fused(expr) => {
            if tys.is_empty() {
                return err(op, "needs at least one input");
            }
            let mut shape = tys[0].shape.clone();
            for t in tys {
                float_only(op, t)?;
                shape = broadcast(&shape, &t.shape)
                    .ok_or_else(|| IrError::shape(op.name(), format!("cannot broadcast {shape} with {}", t.shape)))?;
            }
            if expr.nodes.is_empty() {
                return err(op, "empty expression");
            }
            for (i, n) in expr.nodes.iter().enumerate() {
                if let ExprNode::Unary(u, _) = n {
                    unary_params(op, u)?;
                }
                let ok = match *n {
                    ExprNode::Input(k) => k < tys.len(),
                    ExprNode::Const(_) => true,
                    ExprNode::Unary(_, a) => a < i,
                    ExprNode::Binary(_, a, b) => a < i && b < i,
                };
                if !ok {
                    return err(op, format!("expression step {i} refers to a missing operand"));
                }
            }
            Ok(vec![TensorType::new(tys[0].dtype, shape)])
        }
        Op::GatherGrad { axis, data_dims } => {
            arity(op, tys, 2, 2)?;
            let data = TensorType::new(tys[1].dtype, Shape::fixed(data_dims));
            let fwd = infer(&Op::Gather { axis: *axis }, &[data.clone(), tys[0].clone()])?;
            if fwd[0].shape != tys[1].shape {
                return err(op, format!("dy {} is not the gather's output {}", tys[1].shape, fwd[0].shape));
            }
            Ok(vec![data])
        }
        Op::MeanGrad { axes } => {
            arity(op, tys, 2, 2)?;
            check_axes(op, axes, tys[1].shape.rank())?;
            let b = broadcast(&tys[0].shape, &tys[1].shape);
            if b.as_ref() != Some(&tys[1].shape) {
                return err(op, format!("{} does not broadcast to {}", tys[0].shape, tys[1].shape));
            }
            Ok(vec![TensorType::new(tys[0].dtype, tys[1].shape.clone())])
        }
        Op::BroadcastTo => {
            // numpy's broadcast of both shapes: `like` gives the sizes `x` lacks.
            arity(op, tys, 2, 2)?;
            let b = broadcast(&tys[0].shape, &tys[1].shape).ok_or_else(|| {
                IrError::shape(op.name(), format!("{} and {} do not broadcast", tys[0].shape, tys[1].shape))
            })?;
            Ok(vec![TensorType::new(tys[0].dtype, b)])
        }
        Op::UnaryGrad(u) => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            unary_params(op, u)?;
            if tys[0].shape != tys[1].shape {
                return err(op, format!("x {} and dy {} differ", tys[0].shape, tys[1].shape));
            }
            Ok(vec![tys[1].clone()])
        }
        Op::BinaryGrad { op: b, wrt } => {
            arity(op, tys, 3, 3)?;
            if *wrt > 1 {
                return err(op, "wrt must be 0 or 1");
            }
            let out = infer(&Op::Binary(*b), &tys[..2])?;
            if out[0].shape != tys[2].shape {
                return err(op, format!("dy {} is not the output shape {}", tys[2].shape, out[0].shape));
            }
            Ok(out)
        }
        Op::ConvInputGrad { conv: a, input_dims } => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            let mut dims = vec![tys[0].shape.0.first().copied().unwrap_or(Dim::Batch)];
            dims.extend(input_dims.iter().map(|&d| Dim::Fixed(d)));
            let x = TensorType::new(tys[0].dtype, Shape(dims));
            let y = conv(op, a, &x, &tys[1])?;
            if y[0].shape != tys[0].shape {
                return err(op, format!("dy {} is not the convolution's output {}", tys[0].shape, y[0].shape));
            }
            Ok(vec![x])
        }
        Op::ConvFilterGrad { conv: a, kernel_dims } => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            let w = TensorType::new(tys[0].dtype, Shape::fixed(kernel_dims));
            let y = conv(op, a, &tys[0], &w)?;
            if y[0].shape != tys[1].shape {
                return err(op, format!("dy {} is not the convolution's output {}", tys[1].shape, y[0].shape));
            }
            Ok(vec![w])
        }
        Op::ChannelsFirst(inner) => {
            if !matches!(**inner, Op::Conv(_) | Op::ConvTranspose(_) | Op::Pool(_) | Op::Resize { .. }) {
                return err(op, "only convolutions, pooling and resizing take a channels-first layout");
            }
            let x = tys.first().ok_or_else(|| IrError::Arity { op: op.name(), expected: ">= 1".into(), got: 0 })?;
            let r = x.shape.rank();
            if r < 3 {
                return err(op, format!("a channels-first input needs rank >= 3, got {}", x.shape));
            }
            let (to_last, to_first) = Op::channels_last_perm(r);
            let mut inner_tys = tys.to_vec();
            inner_tys[0] = TensorType::new(x.dtype, Shape(to_last.iter().map(|&p| x.shape.0[p]).collect()));
            let outs = infer(inner, &inner_tys)?;
            Ok(outs
                .into_iter()
                .map(|t| {
                    let s = Shape(to_first.iter().map(|&p| t.shape.0[p]).collect());
                    TensorType::new(t.dtype, s)
                })
                .collect())
        }
        Op::PoolGrad(a) => {
            arity(op, tys, 2, 2)?;
            float_only(op, &tys[0])?;
            let y = pool(op, a, &tys[0])?;
            if y[0].shape != tys[1].shape {
                return err(op, format!("dy {} is not the pooling's output {}", tys[1].shape, y[0].shape));
            }
            Ok(vec![tys[0].clone()])
        }
        Op::SoftmaxCrossEntropy { sparse } | Op::SoftmaxCrossEntropyGrad { sparse } => {
            let grad = matches!(op, Op::SoftmaxCrossEntropyGrad { .. });
            arity(op, tys, 2 + usize::from(grad), 2 + usize::from(grad))?;
            float_only(op, &tys[0])?;
            let r = tys[0].shape.rank();
            if r == 0 {
                return err(op, "logits need a class axis");
            }
            let rows = Shape(tys[0].shape.0[..r - 1].to_vec());
            let want = if *sparse { rows.clone() } else { tys[0].shape.clone() };
            if tys[1].shape != want {
                return err(op, format!("labels {} do not fit logits {}", tys[1].shape, tys[0].shape));
            }
            if grad {
                if tys[2].shape != rows {
                    return err(op, format!("dloss {} is not one per row {}", tys[2].shape, rows));
                }
                Ok(vec![tys[0].clone()])
            } else {
                Ok(vec![TensorType::new(tys[0].dtype, rows)])
            }
        }
        Op::Rnn(a) => {
            let st = if a.initial_state { a.n_states() } else { 0 } + usize::from(a.masked);
            arity(op, tys, 3 + st, 4 + st)?;
            float_only(op, &tys[0])?;
            rnn(op, a, tys)
        }
    }
}

/// Number of elements numpy's `x[start:end:step]` selects from an axis of size `n`.
pub fn slice_len(n: usize, start: i64, end: i64, step: i64) -> usize {
    let (s, e) = slice_bounds(n, start, end, step);
    let (s, e, step) = (s as i128, e as i128, step as i128);
    let len = if step > 0 && e > s {
        (e - s + step - 1) / step
    } else if step < 0 && s > e {
        (s - e - step - 1) / -step
    } else {
        0
    };
    len as usize
}

/// numpy's clamped (start, end) for a slice of an axis of size `n`.
pub fn slice_bounds(n: usize, start: i64, end: i64, step: i64) -> (i64, i64) {
    let n = n.min(i64::MAX as usize) as i64;
    let norm = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v.saturating_add(n) } else { v };
        v.clamp(lo, hi)
    };
    if step > 0 {
        (norm(start, 0, n), norm(end, 0, n))
    } else {
        (norm(start, -1, n - 1), norm(end, -1, n - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConvAttrs, PoolAttrs, PoolKind, UnaryOp};

    fn t(dims: &[usize]) -> TensorType {
        TensorType::new(DType::F32, Shape::fixed(dims))
    }

    #[test]
    fn the_per_sample_bound_leaves_the_batch_out_of_a_runs_shapes() {
        let relu = Op::Unary(UnaryOp::Relu);
        let per_sample = |n: usize| TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(n)]));
        assert!(infer_types(&relu, &[per_sample(1 << 20)]).is_ok());
        assert!(infer_types(&relu, &[per_sample((1 << 31) + 1)]).is_err());
        // At a run's batch of 4096: 2^32 elements, which the symbolic type allowed.
        assert!(infer_concrete_types(&relu, &[t(&[4096, 1 << 20])]).is_ok());
        let too_large = infer_concrete_types(&relu, &[t(&[1 << 62, 8])]).unwrap_err().to_string();
        assert!(too_large.contains("too large to address"), "{too_large}");
    }

    #[test]
    fn conv_same_and_valid() {
        let op =
            Op::Conv(ConvAttrs { strides: vec![2, 2], dilations: vec![1, 1], pads: vec![(0, 1), (0, 1)], groups: 1 });
        let out = infer_types(&op, &[t(&[1, 8, 8, 3]), t(&[3, 3, 3, 5])]).unwrap();
        assert_eq!(out[0].shape, Shape::fixed(&[1, 4, 4, 5]));
        let bad = infer_types(&op, &[t(&[1, 8, 8, 4]), t(&[3, 3, 3, 5])]);
        assert!(bad.is_err());
    }

    #[test]
    fn pool_and_reduce() {
        let op = Op::Pool(PoolAttrs { kind: PoolKind::Max, window: vec![2], strides: vec![2], pads: vec![(0, 0)] });
        assert_eq!(infer_types(&op, &[t(&[2, 9, 4])]).unwrap()[0].shape, Shape::fixed(&[2, 4, 4]));
        let r = Op::Reduce { kind: crate::ReduceKind::Mean, axes: vec![1, 2], keepdims: true };
        assert_eq!(infer_types(&r, &[t(&[2, 5, 5, 3])]).unwrap()[0].shape, Shape::fixed(&[2, 1, 1, 3]));
    }

    #[test]
    fn reshape_infers_minus_one_and_rejects_bad_sizes() {
        let op = Op::Reshape { shape: vec![0, -1, 4] };
        let x = TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(8), Dim::Fixed(2)]));
        assert_eq!(
            infer_types(&op, std::slice::from_ref(&x)).unwrap()[0].shape,
            Shape(vec![Dim::Batch, Dim::Fixed(4), Dim::Fixed(4)])
        );
        assert!(infer_types(&Op::Reshape { shape: vec![0, 3, 5] }, &[x]).is_err());
    }

    #[test]
    fn matmul_broadcasts_batch_axes() {
        let op = Op::MatMul { transpose_a: false, transpose_b: true };
        let out = infer_types(&op, &[t(&[2, 3, 4, 5]), t(&[2, 3, 6, 5])]).unwrap();
        assert_eq!(out[0].shape, Shape::fixed(&[2, 3, 4, 6]));
        assert!(infer_types(&op, &[t(&[4, 5]), t(&[6, 4])]).is_err());
    }

    #[test]
    fn unary_rejects_ints() {
        let x = TensorType::new(DType::I32, Shape::fixed(&[3]));
        assert!(infer_types(&Op::Unary(UnaryOp::Relu), &[x]).is_err());
    }

    #[test]
    fn numpy_slices() {
        assert_eq!(slice_len(10, 2, -2, 1), 6);
        assert_eq!(slice_len(10, -1, i64::MIN, -1), 10);
        assert_eq!(slice_len(5, 0, 5, 2), 3);
    }
}
