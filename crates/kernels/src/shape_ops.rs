//! Data movement: transpose, concat, pad, slice, repeat, tile, resize, gather, broadcast, and
//! the gather's gradient.

use crate::util::{box_offsets, broadcast_index, f32s, gather_elements, is_int, strides, tensor};
use crate::KernelError;
use ir::{Op, ResizeMode, Tensor, TensorData};

/// For every output element, the flat source index given a per-axis source-coordinate map.
fn index_map(
    out_shape: &[usize],
    in_shape: &[usize],
    mut coord: impl FnMut(usize, usize) -> Option<usize>,
) -> Vec<Option<usize>> {
    let n: usize = out_shape.iter().product();
    let ist = strides(in_shape);
    let r = out_shape.len();
    // Per-axis source offsets, computed once per coordinate.
    let per_axis: Vec<Vec<Option<usize>>> =
        (0..r).map(|ax| (0..out_shape[ax]).map(|i| coord(ax, i).map(|s| s * ist[ax])).collect()).collect();
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        let mut off = Some(0usize);
        for ax in 0..r {
            off = match (off, per_axis[ax][idx[ax]]) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        res.push(off);
        for ax in (0..r).rev() {
            idx[ax] += 1;
            if idx[ax] < out_shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    res
}

fn remap(x: &Tensor, out_shape: &[usize], coord: impl FnMut(usize, usize) -> Option<usize>) -> Tensor {
    let map = index_map(out_shape, x.shape(), coord);
    let idx: Vec<usize> = map.iter().map(|m| m.unwrap_or(0)).collect();
    gather_elements(x, out_shape, &idx)
}

/// Axis permutation.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let ist = strides(x.shape());
    let n: usize = out_shape.iter().product();
    let r = perm.len();
    let mut idx = vec![0usize; r];
    let mut src = Vec::with_capacity(n);
    for _ in 0..n {
        src.push(idx.iter().zip(perm).map(|(&i, &p)| i * ist[p]).sum());
        for ax in (0..r).rev() {
            idx[ax] += 1;
            if idx[ax] < out_shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    gather_elements(x, &out_shape, &src)
}

/// Concatenation along `axis`.
pub fn concat(op: &Op, xs: &[&Tensor], axis: usize, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let dtype = xs[0].dtype();
    if xs.iter().any(|t| t.dtype() != dtype) {
        return Err(KernelError::new(op, "inputs have different dtypes"));
    }
    if dtype == ir::DType::F32 {
        let ins = xs.iter().map(|t| f32s(op, t)).collect::<Result<Vec<_>, _>>()?;
        let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
        let mut out = vec![0f32; out_shape.iter().product()];
        concat_into(&ins, &shapes, axis, &mut out, out_shape);
        return tensor(out_shape, out);
    }
    let parts: Vec<Tensor> = xs.iter().map(|t| t.cast(ir::DType::F32)).collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(concat(op, &refs, axis, out_shape)?.cast(dtype))
}

/// Constant padding.
pub fn pad(
    op: &Op,
    x: &Tensor,
    pads: &[(usize, usize)],
    value: f32,
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let mut out = vec![0f32; out_shape.iter().product()];
    pad_into(op, (f32s(op, x)?, x.shape()), pads, value, &mut out, out_shape)?;
    tensor(out_shape, out)
}

/// [`pad`] into `out`: filled with `value`, then each row of `x` (its last axis) copied to
/// where the leading pads put it.
pub fn pad_into(
    op: &Op,
    (xs, sh): (&[f32], &[usize]),
    pads: &[(usize, usize)],
    value: f32,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    let r = sh.len();
    let fits = pads.len() == r
        && out_shape.len() == r
        && (0..r).all(|a| sh[a].checked_add(pads[a].0).is_some_and(|e| e <= out_shape[a]));
    if !fits || out.len() != out_shape.iter().product::<usize>() {
        return Err(KernelError::new(op, "padding does not fit the output"));
    }
    out.fill(value);
    let row = sh.last().copied().unwrap_or(1);
    if xs.is_empty() || row == 0 {
        return Ok(());
    }
    let os = strides(out_shape);
    let base: usize = (0..r).map(|a| pads[a].0 * os[a]).sum();
    let lead = r.saturating_sub(1);
    for (src, at) in xs.chunks_exact(row).zip(box_offsets(&sh[..lead], &os[..lead], base)) {
        out[at..at + row].copy_from_slice(src);
    }
    Ok(())
}

/// numpy-style slicing.
pub fn slice(x: &Tensor, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64], out_shape: &[usize]) -> Tensor {
    let sh = x.shape().to_vec();
    if let (Some(data), true) = (x.as_f32(), steps.iter().all(|&s| s == 1) && out_shape.len() == sh.len()) {
        // A box (every step 1): copy its contiguous rows.
        let mut first = vec![0usize; sh.len()];
        for (k, &a) in axes.iter().enumerate() {
            first[a] = ir::slice_bounds(sh[a], starts[k], ends[k], steps[k]).0.max(0) as usize;
        }
        if let Some(out) = copy_box(data, &sh, &first, out_shape) {
            return Tensor::from_f32(out_shape, out).unwrap_or_else(|_| Tensor::zeros(out_shape));
        }
    }
    remap(x, out_shape, |ax, i| match axes.iter().position(|&a| a == ax) {
        None => Some(i),
        Some(k) => {
            let (s, _) = ir::slice_bounds(sh[ax], starts[k], ends[k], steps[k]);
            Some((s + i as i64 * steps[k]) as usize)
        }
    })
}

/// The box of `out_shape` starting at `first` in a row-major `shape`, copied row by row (a row
/// runs from the last axis the box does not span whole); `None` if the box leaves the tensor.
fn copy_box(data: &[f32], shape: &[usize], first: &[usize], out_shape: &[usize]) -> Option<Vec<f32>> {
    let mut out = vec![0f32; out_shape.iter().product()];
    copy_box_into(data, shape, first, out_shape, &mut out)?;
    Some(out)
}

/// [`copy_box`] into `out` (`out_shape`'s size).
fn copy_box_into(data: &[f32], shape: &[usize], first: &[usize], out_shape: &[usize], out: &mut [f32]) -> Option<()> {
    let r = shape.len();
    if out_shape.len() != r || first.len() != r || (0..r).any(|a| first[a] + out_shape[a] > shape[a]) {
        return None;
    }
    let st = strides(shape);
    let k = (0..r).rev().find(|&a| out_shape[a] != shape[a]).unwrap_or(0);
    let row: usize = out_shape[k..].iter().product();
    let n: usize = out_shape.iter().product();
    if out.len() != n {
        return None;
    }
    if row == 0 || n == 0 {
        return Some(());
    }
    let base: usize = (0..r).map(|a| first[a] * st[a]).sum();
    for (dst, off) in out.chunks_exact_mut(row).zip(box_offsets(&out_shape[..k], &st[..k], base)) {
        dst.copy_from_slice(data.get(off..off + row)?);
    }
    Some(())
}

/// A slice with every step 1 (a box) into `out`: its contiguous rows copied.
pub fn slice_box_into(
    op: &Op,
    (xs, sh): (&[f32], &[usize]),
    (axes, starts, ends): (&[usize], &[i64], &[i64]),
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    let mut first = vec![0usize; sh.len()];
    for (k, &a) in axes.iter().enumerate() {
        if a >= sh.len() || k >= starts.len() || k >= ends.len() {
            return Err(KernelError::new(op, "slice axes out of range"));
        }
        first[a] = ir::slice_bounds(sh[a], starts[k], ends[k], 1).0.max(0) as usize;
    }
    copy_box_into(xs, sh, &first, out_shape, out)
        .ok_or_else(|| KernelError::new(op, "the slice does not fit its input"))
}

/// Repeats each element along `axis`.
pub fn repeat_interleave(x: &Tensor, axis: usize, repeats: usize) -> Tensor {
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] *= repeats;
    remap(x, &out_shape, |ax, i| Some(if ax == axis { i / repeats.max(1) } else { i }))
}

/// Tiles the whole tensor.
pub fn tile(x: &Tensor, _repeats: &[usize], out_shape: &[usize]) -> Tensor {
    let sh = x.shape().to_vec();
    remap(x, out_shape, |ax, i| Some(i % sh[ax].max(1)))
}

/// Spatial resize of a channels-last tensor: nearest (floor of the scaled index, as TensorFlow's
/// `resize(..., 'nearest')` with half-pixel centres) or bilinear with half-pixel centres,
/// applied axis by axis.
pub fn resize(op: &Op, x: &Tensor, sizes: &[usize], mode: &ResizeMode) -> Result<Tensor, KernelError> {
    if let ResizeMode::Onnx(spec) = mode {
        return resize_taps(op, x, sizes, spec);
    }
    let mut cur = x.clone();
    for (k, &size) in sizes.iter().enumerate() {
        let ax = k + 1;
        let inn = cur.shape()[ax];
        if inn == size {
            continue;
        }
        let scale = inn as f32 / size as f32;
        let mut out_shape = cur.shape().to_vec();
        out_shape[ax] = size;
        match mode {
            ResizeMode::Nearest => {
                cur = remap(&cur, &out_shape, |a, i| {
                    Some(if a == ax { (((i as f32 + 0.5) * scale).floor() as usize).min(inn - 1) } else { i })
                });
            }
            ResizeMode::Onnx(_) => unreachable!("resized by taps above"),
            ResizeMode::Bilinear => {
                let src = f32s(op, &cur)?;
                let outer: usize = out_shape[..ax].iter().product();
                let inner: usize = out_shape[ax + 1..].iter().product();
                let mut out = vec![0f32; out_shape.iter().product()];
                for i in 0..size {
                    let f = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                    let lo = (f.floor() as usize).min(inn - 1);
                    let hi = (lo + 1).min(inn - 1);
                    let t = f - lo as f32;
                    for o in 0..outer {
                        let a = &src[(o * inn + lo) * inner..(o * inn + lo + 1) * inner];
                        let b = &src[(o * inn + hi) * inner..(o * inn + hi + 1) * inner];
                        let d = &mut out[(o * size + i) * inner..(o * size + i + 1) * inner];
                        for ((d, &p), &q) in d.iter_mut().zip(a).zip(b) {
                            *d = p + (q - p) * t;
                        }
                    }
                }
                cur = tensor(&out_shape, out)?;
            }
        }
    }
    Ok(cur)
}

/// ONNX's Resize in general: axis by axis (axes 1..=k of a channels-last tensor), each output
/// element the weighted sum of its taps ([`ir::interp::Interpolation::taps`]), or the
/// extrapolation value where it maps outside a crop.
fn resize_taps(op: &Op, x: &Tensor, sizes: &[usize], spec: &ir::interp::Interpolation) -> Result<Tensor, KernelError> {
    let extrapolation = f32::from_bits(spec.extrapolation);
    let mut cur = x.clone();
    for (k, &size) in sizes.iter().enumerate() {
        let ax = k + 1;
        let inn =
            cur.shape().get(ax).copied().ok_or_else(|| KernelError::new(op, "more resized axes than the input has"))?;
        let identity = spec.axes.get(k).is_none_or(|a| f32::from_bits(a.0) == 1.0)
            && inn == size
            && spec.coord != ir::interp::CoordMode::TfCropAndResize;
        if identity {
            continue;
        }
        if inn == 0 {
            return Err(KernelError::new(op, "resizing an empty axis"));
        }
        let taps = spec.taps(k, inn, size);
        let src = f32s(op, &cur)?;
        let mut out_shape = cur.shape().to_vec();
        out_shape[ax] = size;
        let outer: usize = out_shape[..ax].iter().product();
        let inner: usize = out_shape[ax + 1..].iter().product();
        let mut out = vec![0f32; out_shape.iter().product()];
        for o in 0..outer {
            for i in 0..size {
                let d = &mut out[(o * size + i) * inner..(o * size + i + 1) * inner];
                if taps.outside[i] {
                    d.fill(extrapolation);
                    continue;
                }
                for j in 0..taps.n {
                    let (w, at) = (taps.w[i * taps.n + j], taps.idx[i * taps.n + j]);
                    if w == 0.0 {
                        continue;
                    }
                    let s = &src[(o * inn + at) * inner..(o * inn + at + 1) * inner];
                    d.iter_mut().zip(s).for_each(|(d, &v)| *d += w * v);
                }
            }
        }
        cur = tensor(&out_shape, out)?;
    }
    Ok(cur)
}

/// `take(data, indices, axis)`; an index outside the axis is an error.
pub fn gather(op: &Op, data: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor, KernelError> {
    let idx: Vec<i64> = if is_int(indices.dtype()) || matches!(indices.data(), TensorData::Bool(_)) {
        indices.to_i64_vec()
    } else {
        // Keras casts float token ids to int before an embedding lookup.
        indices.to_f64_vec().iter().map(|&v| v as i64).collect()
    };
    let sh = data.shape();
    let d = sh[axis];
    let outer: usize = sh[..axis].iter().product();
    let inner: usize = sh[axis + 1..].iter().product();
    let mut out_shape = sh[..axis].to_vec();
    out_shape.extend_from_slice(indices.shape());
    out_shape.extend_from_slice(&sh[axis + 1..]);
    let mut src = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            if i < 0 || i as usize >= d {
                return Err(KernelError::new(op, format!("index {i} is out of range [0, {d})")));
            }
            let base = (o * d + i as usize) * inner;
            src.extend(base..base + inner);
        }
    }
    Ok(gather_elements(data, &out_shape, &src))
}

/// `v` broadcast to `out_shape` (numpy broadcasting).
pub fn broadcast_to(op: &Op, v: &Tensor, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let n: usize = out_shape.iter().product();
    let data = f32s(op, v)?;
    let idx = broadcast_index(v.shape(), out_shape);
    tensor(out_shape, (0..n).map(|i| data[idx(i)]).collect())
}

/// The gradient of a gather along `axis` with respect to its data (shape `out_shape`): the
/// rows of `dy` added into the rows the indices picked.
pub fn gather_grad(
    op: &Op,
    indices: &Tensor,
    dy: &Tensor,
    axis: usize,
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let n: usize = out_shape.iter().product();
    let ids: Vec<i64> = indices.to_f64_vec().iter().map(|&v| v as i64).collect();
    let dy = f32s(op, dy)?;
    let (outer, d, inner) =
        (out_shape[..axis].iter().product::<usize>(), out_shape[axis], out_shape[axis + 1..].iter().product::<usize>());
    let mut dx = vec![0f32; n];
    for o in 0..outer {
        for (k, &i) in ids.iter().enumerate() {
            if i < 0 || i as usize >= d {
                return Err(KernelError::new(op, format!("index {i} is out of range [0, {d})")));
            }
            let src = &dy[(o * ids.len() + k) * inner..(o * ids.len() + k + 1) * inner];
            let dst = &mut dx[(o * d + i as usize) * inner..(o * d + i as usize + 1) * inner];
            dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
        }
    }
    tensor(out_shape, dx)
}

/// Concatenation: for each outer index, each input's block in turn.
pub(crate) fn concat_into(ins: &[&[f32]], shapes: &[&[usize]], axis: usize, out: &mut [f32], out_shape: &[usize]) {
    let inner: usize = out_shape[axis + 1..].iter().product();
    let row = out_shape.get(axis).copied().unwrap_or(1) * inner;
    // In tasks of ~2^16 values: a channel concatenation of NHWC maps is one short copy per
    // operand and pixel.
    crate::util::for_row_blocks(out, row, (1usize << 16).div_ceil(row.max(1)), |o0, block| {
        for (o, dst) in (o0..).zip(block.chunks_exact_mut(row)) {
            let mut at = 0;
            for (x, s) in ins.iter().zip(shapes) {
                let blk = s.get(axis).copied().unwrap_or(1) * inner;
                dst[at..at + blk].copy_from_slice(&x[o * blk..(o + 1) * blk]);
                at += blk;
            }
        }
    });
}

/// `RepeatInterleave` into a buffer: each block of `inner` values along `axis` copied
/// `repeats` times, one contiguous copy per block.
pub(crate) fn repeat_interleave_into(x: &[f32], shape: &[usize], axis: usize, repeats: usize, out: &mut [f32]) {
    let inner: usize = shape[axis + 1..].iter().product();
    if inner == 0 || repeats == 0 {
        return;
    }
    for (i, src) in x.chunks_exact(inner).enumerate() {
        for dst in out[i * repeats * inner..(i + 1) * repeats * inner].chunks_exact_mut(inner) {
            dst.copy_from_slice(src);
        }
    }
}

/// Nearest-neighbour `Resize` of the spatial axes (1 ..= `sizes.len()`) into a buffer: the source
/// index of every output coordinate per axis computed once (as [`resize`]), then one contiguous
/// copy of the trailing axes per output pixel.
pub(crate) fn resize_nearest_into(x: &[f32], shape: &[usize], sizes: &[usize], out: &mut [f32]) {
    let k = sizes.len();
    let inner: usize = shape[k + 1..].iter().product();
    let maps: Vec<Vec<usize>> = sizes
        .iter()
        .enumerate()
        .map(|(a, &size)| {
            let inn = shape[a + 1];
            let scale = inn as f32 / size.max(1) as f32;
            (0..size)
                .map(|i| if inn == size { i } else { (((i as f32 + 0.5) * scale).floor() as usize).min(inn - 1) })
                .collect()
        })
        .collect();
    let pixels: usize = sizes.iter().product();
    let in_pixels: usize = shape[1..=k].iter().product();
    if inner == 0 || pixels == 0 {
        return;
    }
    let mut idx = vec![0usize; k];
    for (o, dst) in out.chunks_exact_mut(inner).enumerate() {
        let p = o % pixels;
        if p == 0 {
            idx.iter_mut().for_each(|i| *i = 0);
        }
        let mut src = 0;
        for a in 0..k {
            src = src * shape[a + 1] + maps[a][idx[a]];
        }
        let b = (o / pixels) * in_pixels + src;
        dst.copy_from_slice(&x[b * inner..(b + 1) * inner]);
        for a in (0..k).rev() {
            idx[a] += 1;
            if idx[a] < sizes[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

/// Transposition: a swap of two groups of axes behind the batch ([`swap_of_two`]) in square
/// tiles, any other by walking the output in order with an odometer over its coordinates.
pub(crate) fn transpose_into(x: &[f32], shape: &[usize], perm: &[usize], out: &mut [f32], out_shape: &[usize]) {
    if let Some((batch, a, b)) = swap_of_two(shape, perm) {
        // (batch, A, B) → (batch, B, A), e.g. NCHW ↔ NHWC: square tiles, so that both the
        // reads and the writes of a tile stay in a few cache lines.
        const TILE: usize = 16;
        for (src, dst) in x.chunks_exact(a * b).zip(out.chunks_exact_mut(a * b)).take(batch) {
            for i0 in (0..a).step_by(TILE) {
                for j0 in (0..b).step_by(TILE) {
                    for j in j0..(j0 + TILE).min(b) {
                        let row = &mut dst[j * a..(j + 1) * a];
                        for i in i0..(i0 + TILE).min(a) {
                            row[i] = src[i * b + j];
                        }
                    }
                }
            }
        }
        return;
    }
    let r = perm.len();
    let mut in_strides = [0usize; 8];
    let mut acc = 1;
    for i in (0..r).rev() {
        in_strides[i] = acc;
        acc *= shape[i];
    }
    // Stride in the input of a step along each output axis.
    let mut step = [0usize; 8];
    for (i, &p) in perm.iter().enumerate() {
        step[i] = in_strides[p];
    }
    let mut idx = [0usize; 8];
    let mut src = 0usize;
    for d in out.iter_mut() {
        *d = x[src];
        for ax in (0..r).rev() {
            idx[ax] += 1;
            src += step[ax];
            if idx[ax] < out_shape[ax] {
                break;
            }
            src -= step[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
}

/// `(batch, A, B)` when `perm` keeps axis 0 first and, once runs of axes that stay together are
/// merged, swaps the two remaining groups: `[0, 2, 3, 1]` on NCHW is `(N, C, H·W) → (N, H·W, C)`.
fn swap_of_two(shape: &[usize], perm: &[usize]) -> Option<(usize, usize, usize)> {
    let r = perm.len();
    if r < 3 || perm[0] != 0 {
        return None;
    }
    // The output's axes 1.. are input axes k.. then 1..k (both runs in order) for some k.
    let k = perm[1];
    let ok = k > 1 && (1..r).all(|i| perm[i] == if i <= r - k { k + i - 1 } else { i - (r - k) });
    ok.then(|| (shape[0], shape[1..k].iter().product(), shape[k..].iter().product()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_group_swaps_are_tiled_transposes_like_the_general_one() {
        for (shape, perm) in [
            (vec![2, 3, 17, 19], vec![0, 2, 3, 1]),
            (vec![2, 17, 19, 5], vec![0, 3, 1, 2]),
            (vec![3, 20, 33], vec![0, 2, 1]),
            (vec![1, 2, 3, 4, 5], vec![0, 3, 4, 1, 2]),
        ] {
            assert!(swap_of_two(&shape, &perm).is_some(), "{perm:?}");
            let x = t(&shape);
            let want = transpose(&x, &perm);
            let mut out = vec![0f32; x.len()];
            transpose_into(x.as_f32().unwrap(), &shape, &perm, &mut out, want.shape());
            assert_eq!(out, want.as_f32().unwrap(), "{shape:?} {perm:?}");
        }
        assert!(swap_of_two(&[2, 3, 4, 5], &[0, 2, 1, 3]).is_none());
        assert!(swap_of_two(&[2, 3, 4], &[1, 0, 2]).is_none());
    }

    fn t(shape: &[usize]) -> Tensor {
        Tensor::from_f32(shape, (0..shape.iter().product::<usize>()).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn box_slices_copy_rows_like_the_index_definition() {
        let x = t(&[2, 5, 4, 3]);
        let st = strides(x.shape());
        // (axes, starts, ends): crops, a negative start, an end past the size, whole axes.
        let cases: [(&[usize], &[i64], &[i64]); 5] = [
            (&[1, 2], &[1, 1], &[4, 3]),
            (&[2], &[-2], &[i64::MAX]),
            (&[0, 3], &[1, 0], &[2, 2]),
            (&[1], &[0], &[5]),
            (&[3], &[1], &[2]),
        ];
        for (axes, starts, ends) in cases {
            let steps = vec![1; axes.len()];
            let mut first = [0usize; 4];
            let mut out_shape = x.shape().to_vec();
            for (k, &a) in axes.iter().enumerate() {
                let (s, e) = ir::slice_bounds(x.shape()[a], starts[k], ends[k], 1);
                first[a] = s as usize;
                out_shape[a] = (e - s).max(0) as usize;
            }
            let y = slice(&x, axes, starts, ends, &steps, &out_shape);
            assert_eq!(y.shape(), &out_shape[..]);
            let got = y.as_f32().unwrap();
            let ost = strides(&out_shape);
            for (j, &v) in got.iter().enumerate() {
                let src: usize = (0..4).map(|a| (j / ost[a] % out_shape[a] + first[a]) * st[a]).sum();
                assert_eq!(v, src as f32, "{axes:?} {starts:?} {ends:?} at {j}");
            }
        }
    }

    #[test]
    fn transpose_concat_pad_slice() {
        let x = t(&[2, 3]);
        assert_eq!(transpose(&x, &[1, 0]).as_f32().unwrap(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let op = Op::Concat { axis: 1 };
        let c = concat(&op, &[&x, &t(&[2, 1])], 1, &[2, 4]).unwrap();
        assert_eq!(c.as_f32().unwrap(), &[0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 1.0]);
        let p = pad(&op, &t(&[1, 2]), &[(0, 0), (1, 2)], -1.0, &[1, 5]).unwrap();
        assert_eq!(p.as_f32().unwrap(), &[-1.0, 0.0, 1.0, -1.0, -1.0]);
        // Three axes, padded on every side of some: each value where its leading pads put it.
        let p = pad(&op, &t(&[2, 2, 2]), &[(1, 0), (0, 1), (1, 1)], 9.0, &[3, 3, 4]).unwrap();
        let got = p.as_f32().unwrap();
        for (j, &v) in got.iter().enumerate() {
            let (a, b, c) = (j / 12, (j / 4) % 3, j % 4);
            let inside = a >= 1 && b < 2 && (1..3).contains(&c);
            let want = if inside { ((a - 1) * 4 + b * 2 + c - 1) as f32 } else { 9.0 };
            assert_eq!(v, want, "at {j}");
        }
        let s = slice(&t(&[1, 6]), &[1], &[1], &[-1], &[2], &[1, 2]);
        assert_eq!(s.as_f32().unwrap(), &[1.0, 3.0]);
    }

    #[test]
    fn repeat_tile_gather() {
        let x = t(&[1, 2]);
        assert_eq!(repeat_interleave(&x, 1, 2).as_f32().unwrap(), &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(tile(&x, &[1, 2], &[1, 4]).as_f32().unwrap(), &[0.0, 1.0, 0.0, 1.0]);
        let emb = t(&[3, 2]);
        let ids = Tensor::new(vec![1, 2], TensorData::I32(vec![2, 0])).unwrap();
        let op = Op::Gather { axis: 0 };
        let g = gather(&op, &emb, &ids, 0).unwrap();
        assert_eq!(g.shape(), &[1, 2, 2]);
        assert_eq!(g.as_f32().unwrap(), &[4.0, 5.0, 0.0, 1.0]);
        let bad = Tensor::new(vec![1], TensorData::I32(vec![3])).unwrap();
        assert!(gather(&op, &emb, &bad, 0).is_err());
    }

    #[test]
    fn bilinear_half_pixel_upsampling() {
        // 1-D case along the spatial axis: [0, 1] upsampled x2 -> [0, .25, .75, 1]
        let x = Tensor::from_f32(&[1, 2, 1], vec![0.0, 1.0]).unwrap();
        let op = Op::Resize { sizes: vec![4], mode: ResizeMode::Bilinear };
        let y = resize(&op, &x, &[4], &ResizeMode::Bilinear).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[0.0, 0.25, 0.75, 1.0]);
    }
}
