//! Helpers every kernel family shares: typed views of tensors, strides, broadcasting and
//! per-channel maps.

use crate::KernelError;
use ir::{DType, Op, Tensor, TensorData};
use rayon::prelude::*;

/// Minimum element count before a loop is split across threads.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

pub(crate) fn f32s<'a>(op: &Op, t: &'a Tensor) -> Result<&'a [f32], KernelError> {
    t.as_f32().ok_or_else(|| KernelError::new(op, format!("expects float32, got {}", t.dtype())))
}

pub(crate) fn tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor, KernelError> {
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

/// The flat offsets `base + Σ idx[a]·strides[a]` of every index `idx` of `dims`, in row-major
/// order (an odometer over the leading axes of a box copied in runs).
pub(crate) fn box_offsets<'a>(
    dims: &'a [usize],
    strides: &'a [usize],
    base: usize,
) -> impl Iterator<Item = usize> + 'a {
    let mut idx = vec![0usize; dims.len()];
    (0..dims.iter().product::<usize>()).map(move |_| {
        let at = base + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < dims[a] {
                break;
            }
            idx[a] = 0;
        }
        at
    })
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

pub(crate) fn is_int(d: DType) -> bool {
    matches!(d, DType::I32 | DType::I64 | DType::U8)
}

/// Offsets into an input for every output element under broadcasting, computed row by row.
pub(crate) fn broadcast_strides(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let r = out_shape.len();
    let s = strides(in_shape);
    let mut bs = vec![0; r];
    for i in 0..in_shape.len() {
        let o = r - in_shape.len() + i;
        bs[o] = if in_shape[i] == 1 { 0 } else { s[i] };
    }
    bs
}

/// The output index space of `out_shape` mapped to flat offsets into an operand of `shape`.
pub(crate) fn broadcast_index(shape: &[usize], out_shape: &[usize]) -> impl Fn(usize) -> usize {
    let st = broadcast_strides(shape, out_shape);
    let out_st = strides(out_shape);
    let dims = out_shape.to_vec();
    move |i| {
        let mut off = 0;
        for ax in 0..dims.len() {
            off += ((i / out_st[ax]) % dims[ax].max(1)) * st[ax];
        }
        off
    }
}

/// A per-axis list lifted to three axes (leading `fill`s for 1-D and 2-D).
pub(crate) fn lift(v: &[usize], fill: usize) -> [usize; 3] {
    let mut r = [fill; 3];
    let off = 3 - v.len();
    r[off..].copy_from_slice(v);
    r
}

/// Calls `f(row, out_row)` for every row of `c` elements of `out`, across threads when large.
pub(crate) fn rows_par(out: &mut [f32], c: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if c == 0 {
        return;
    }
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(c).with_min_len((4096 / c).max(1)).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(c).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// Calls `f(first_row, rows)` on consecutive blocks of whole rows of `row_len` values of `out`,
/// one block per task of at least `rows_per_task` rows, so that a micro-kernel is entered once
/// per block and loops over its rows inside (a row of a small layer is less work than the
/// entry). The rule for splitting: on one thread, or when the work is one task or less, all of
/// `out` is one block on the calling thread (handing a task to the pool and waiting for it
/// costs a wake-up of another thread, more than a small op takes), so a small op is never
/// slower on several threads than on one.
pub(crate) fn for_row_blocks(
    out: &mut [f32],
    row_len: usize,
    rows_per_task: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    // As many tasks as hold `rows_per_task` rows each, the rows spread evenly over them.
    let tasks = rows / rows_per_task.max(1);
    if tasks <= 1 || rayon::current_num_threads() == 1 {
        f(0, out);
    } else {
        let per = rows.div_ceil(tasks);
        out.par_chunks_mut(per * row_len).enumerate().for_each(|(i, b)| f(i * per, b));
    }
}

/// The sum over `n` items of the partial sums `f(items, acc)` adds into a zeroed `acc` of `len`
/// values: the items split into at most [`SUM_GROUPS`] contiguous groups run in parallel, their
/// partials added in group order, so the result has the same bits whatever the thread count
/// and the scheduling (a fine-tuning run with a seed repeats exactly).
pub(crate) fn ordered_sum<T: Copy + Default + std::ops::AddAssign + Send>(
    n: usize,
    len: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [T]) -> Result<(), KernelError> + Sync,
) -> Result<Vec<T>, KernelError> {
    let groups = n.clamp(1, SUM_GROUPS);
    let parts = (0..groups)
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![T::default(); len];
            f(k * n / groups..(k + 1) * n / groups, &mut acc)?;
            Ok(acc)
        })
        .collect::<Result<Vec<_>, KernelError>>()?;
    let mut parts = parts.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![T::default(); len]);
    for p in parts {
        sum.iter_mut().zip(&p).for_each(|(s, &v)| *s += v);
    }
    Ok(sum)
}

/// The most partial sums [`ordered_sum`] makes (its parallelism; a constant, so that the sum's
/// order does not depend on the machine).
const SUM_GROUPS: usize = 8;
