//! Max and average pooling over 1-3 spatial axes, and the pooling gradient.

use crate::util::{f32s, lift, tensor};
use crate::KernelError;
use ir::{Op, PoolAttrs, PoolKind, Tensor};
use rayon::prelude::*;

/// Max or average pooling; padded cells are skipped (max) or excluded from the count (avg).
pub fn pool(op: &Op, a: &PoolAttrs, x: &Tensor, out_shape: &[usize]) -> Result<Tensor, KernelError> {
    let mut res = vec![0f32; out_shape.iter().product()];
    pool_into(op, a, (f32s(op, x)?, x.shape()), &mut res, out_shape)?;
    tensor(out_shape, res)
}

/// Pooling into `out` (any prior contents).
pub fn pool_into(
    op: &Op,
    a: &PoolAttrs,
    (xs, sh): (&[f32], &[usize]),
    res: &mut [f32],
    out_shape: &[usize],
) -> Result<(), KernelError> {
    let r = a.window.len();
    if r > 3 {
        return Err(KernelError::new(op, "pooling of rank > 3 is not supported"));
    }
    let inp = lift(&sh[1..=r], 1);
    let out = lift(&out_shape[1..=r], 1);
    let k = lift(&a.window, 1);
    let s = lift(&a.strides, 1);
    let pad = lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0);
    let c = sh[r + 1];
    if c == 0 {
        return Ok(());
    }
    // Enough output pixels per task that scheduling does not dominate.
    let per_task = (8192 / (c * k.iter().product::<usize>()).max(1)).max(1);
    res.par_chunks_mut(c).with_min_len(per_task).enumerate().for_each(|(row, dst)| {
        let ox = row % out[2];
        let oy = (row / out[2]) % out[1];
        let oz = (row / (out[2] * out[1])) % out[0];
        let n = row / (out[2] * out[1] * out[0]);
        let init = if a.kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
        dst.iter_mut().for_each(|v| *v = init);
        let mut count = 0usize;
        for kz in 0..k[0] {
            let iz = (oz * s[0] + kz) as isize - pad[0] as isize;
            if iz < 0 || iz as usize >= inp[0] {
                continue;
            }
            for ky in 0..k[1] {
                let iy = (oy * s[1] + ky) as isize - pad[1] as isize;
                if iy < 0 || iy as usize >= inp[1] {
                    continue;
                }
                for kx in 0..k[2] {
                    let ix = (ox * s[2] + kx) as isize - pad[2] as isize;
                    if ix < 0 || ix as usize >= inp[2] {
                        continue;
                    }
                    count += 1;
                    let b = (((n * inp[0] + iz as usize) * inp[1] + iy as usize) * inp[2] + ix as usize) * c;
                    let src = &xs[b..b + c];
                    match a.kind {
                        PoolKind::Max => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = d.max(v)),
                        PoolKind::Avg => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
                    }
                }
            }
        }
        if a.kind == PoolKind::Avg && count > 0 {
            let inv = 1.0 / count as f32;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
    });
    Ok(())
}

/// The gradient of pooling with respect to its input: to the first maximum, or spread over
/// the window's cells inside the input.
pub fn pool_grad(op: &Op, a: &PoolAttrs, x: &Tensor, dy: &Tensor) -> Result<Tensor, KernelError> {
    let (xs, dys) = (f32s(op, x)?, f32s(op, dy)?);
    let r = a.window.len();
    let (sh, ysh) = (x.shape(), dy.shape());
    let (inp, out, k, s, p) = (
        lift(&sh[1..=r], 1),
        lift(&ysh[1..=r], 1),
        lift(&a.window, 1),
        lift(&a.strides, 1),
        lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
    );
    let c = sh[r + 1];
    let mut dx = vec![0f32; xs.len()];
    for n in 0..sh[0] {
        for o in 0..out.iter().product::<usize>() {
            let (oz, oy, ox) = (o / (out[1] * out[2]), (o / out[2]) % out[1], o % out[2]);
            for ch in 0..c {
                let mut cells = Vec::new();
                for kz in 0..k[0] {
                    let iz = (oz * s[0] + kz) as isize - p[0] as isize;
                    for ky in 0..k[1] {
                        let iy = (oy * s[1] + ky) as isize - p[1] as isize;
                        for kx in 0..k[2] {
                            let ix = (ox * s[2] + kx) as isize - p[2] as isize;
                            let inside = iz >= 0
                                && iy >= 0
                                && ix >= 0
                                && (iz as usize) < inp[0]
                                && (iy as usize) < inp[1]
                                && (ix as usize) < inp[2];
                            if inside {
                                let xi = (((n * inp[0] + iz as usize) * inp[1] + iy as usize) * inp[2] + ix as usize)
                                    * c
                                    + ch;
                                cells.push(xi);
                            }
                        }
                    }
                }
                let g = dys[(n * out.iter().product::<usize>() + o) * c + ch];
                match a.kind {
                    PoolKind::Max => {
                        // The first maximum takes the gradient.
                        let mut best: Option<usize> = None;
                        for &xi in &cells {
                            if best.is_none_or(|b| xs[xi] > xs[b]) {
                                best = Some(xi);
                            }
                        }
                        if let Some(b) = best {
                            dx[b] += g;
                        }
                    }
                    PoolKind::Avg => {
                        let share = g / cells.len().max(1) as f32;
                        for &xi in &cells {
                            dx[xi] += share;
                        }
                    }
                }
            }
        }
    }
    tensor(sh, dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avg_pool_excludes_padding_and_max_pool_picks_max() {
        let x = Tensor::from_f32(&[1, 3, 3, 1], (1..=9).map(|v| v as f32).collect()).unwrap();
        let a = PoolAttrs { kind: PoolKind::Avg, window: vec![2, 2], strides: vec![2, 2], pads: vec![(0, 1), (0, 1)] };
        let y = pool(&Op::Pool(a.clone()), &a, &x, &[1, 2, 2, 1]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.0, 4.5, 7.5, 9.0]);
        let m = PoolAttrs { kind: PoolKind::Max, ..a };
        let y = pool(&Op::Pool(m.clone()), &m, &x, &[1, 2, 2, 1]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[5.0, 6.0, 8.0, 9.0]);
    }
}
