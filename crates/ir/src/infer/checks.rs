//! The checks every shape rule uses: arity, dtypes, axes, per-channel parameters, sizes in
//! checked arithmetic, the per-sample element bound, unary parameters.

use crate::{Dim, IrError, Op, Shape, TensorType, UnaryOp};

pub(super) fn arity(op: &Op, tys: &[TensorType], lo: usize, hi: usize) -> Result<(), IrError> {
    if tys.len() < lo || tys.len() > hi {
        let expected = if lo == hi { lo.to_string() } else { format!("{lo}..={hi}") };
        return Err(IrError::Arity { op: op.name(), expected, got: tys.len() });
    }
    Ok(())
}

pub(super) fn err<T>(op: &Op, msg: impl Into<String>) -> Result<T, IrError> {
    Err(IrError::shape(op.name(), msg))
}

pub(super) fn float_only(op: &Op, t: &TensorType) -> Result<(), IrError> {
    if !t.dtype.is_float() {
        return Err(IrError::DType { op: op.name(), dtype: t.dtype.to_string() });
    }
    Ok(())
}

/// The most elements one sample of any tensor may hold (2^31; the batch axis aside): a larger
/// shape comes from a hostile or broken file, and is refused before anything is allocated.
pub const MAX_ELEMENTS_PER_SAMPLE: usize = 1 << 31;

/// `a + b`, or an error saying the size is too large.
pub(super) fn add(op: &Op, a: usize, b: usize) -> Result<usize, IrError> {
    a.checked_add(b).ok_or_else(|| IrError::shape(op.name(), format!("size {a} + {b} is too large")))
}

/// `a · b`, or an error saying the size is too large.
pub(super) fn mul(op: &Op, a: usize, b: usize) -> Result<usize, IrError> {
    a.checked_mul(b).ok_or_else(|| IrError::shape(op.name(), format!("size {a} x {b} is too large")))
}

/// Every entry of a per-axis attribute is at least 1.
pub(super) fn positive(op: &Op, what: &str, v: &[usize]) -> Result<(), IrError> {
    if v.contains(&0) {
        return err(op, format!("{what} must be at least 1, got {v:?}"));
    }
    Ok(())
}

/// A unary function's parameters make sense (clip bounds ordered, a ReLU cap not negative).
pub(super) fn unary_params(op: &Op, u: &UnaryOp) -> Result<(), IrError> {
    match *u {
        UnaryOp::Clip { lo, hi } if lo.is_nan() || hi.is_nan() || lo > hi => {
            err(op, format!("clip bounds [{lo}, {hi}] are not ordered"))
        }
        UnaryOp::ReluClip { max_value: Some(m), .. } if m.is_nan() || m < 0.0 => {
            err(op, format!("a ReLU's max_value must be at least 0, got {m}"))
        }
        _ => Ok(()),
    }
}

/// The elements per sample of a shape (the product of its fixed axes), `None` past
/// [`MAX_ELEMENTS_PER_SAMPLE`]: every value of a graph, its inputs included, stays within it.
pub fn elements_per_sample(shape: &Shape) -> Option<usize> {
    shape
        .0
        .iter()
        .filter_map(|d| d.fixed())
        .try_fold(1usize, |a, d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS_PER_SAMPLE)
}

/// An output within [`MAX_ELEMENTS_PER_SAMPLE`] elements per sample.
pub(super) fn bounded(op: &Op, t: &TensorType) -> Result<(), IrError> {
    match elements_per_sample(&t.shape) {
        Some(_) => Ok(()),
        None => err(op, format!("an output of shape {} holds more than 2^31 elements per sample", t.shape)),
    }
}

pub(super) fn check_axes(op: &Op, axes: &[usize], rank: usize) -> Result<(), IrError> {
    for &a in axes {
        if a >= rank {
            return err(op, format!("axis {a} out of range for rank {rank}"));
        }
    }
    Ok(())
}

/// The fixed size of `axis` (the channels of a per-channel statistic).
pub(super) fn channels(op: &Op, x: &Shape, axis: usize) -> Result<usize, IrError> {
    match x.0.get(axis) {
        Some(Dim::Fixed(c)) => Ok(*c),
        _ => err(op, format!("the channel axis {axis} of {x} must have a fixed size")),
    }
}

pub(super) fn per_channel(op: &Op, x: &Shape, axis: usize, p: &TensorType, what: &str) -> Result<(), IrError> {
    if p.shape.rank() != 1 {
        return err(op, format!("{what} must be 1-D, got {}", p.shape));
    }
    if let (Dim::Fixed(c), Dim::Fixed(n)) = (x.0[axis], p.shape.0[0]) {
        if c != n {
            return err(op, format!("{what} has {n} entries for {c} channels"));
        }
    }
    Ok(())
}
