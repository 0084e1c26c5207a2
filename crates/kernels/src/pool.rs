//! Max and average pooling over 1-3 spatial axes, and the pooling gradient.

use crate::util::{f32s, for_row_blocks, lift, tensor};
use crate::KernelError;
use ir::{Op, PoolAttrs, PoolKind, Tensor};

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
    let g = PoolGeo::of(op, a, sh, out_shape)?;
    let (c, k) = (g.c, g.k);
    if c == 0 {
        return Ok(());
    }
    let row_len = g.out[2] * c;
    // Tasks of at least 2^20 window cells (as the convolutions' rule).
    let per_task = (1 << 20) / (row_len * k.iter().product::<usize>()).max(1);
    let isa = crate::simd::isa_for_width(crate::simd::isa(), c);
    for_row_blocks(res, row_len, per_task.max(1), |r0, block| {
        crate::simd::dispatch(isa, PoolRows(PoolRow { g: &g, x: xs, r: r0, dst: block }))
    });
    Ok(())
}

/// A pooling's geometry lifted to three spatial axes.
struct PoolGeo {
    inp: [usize; 3],
    out: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    pad: [usize; 3],
    c: usize,
    max: bool,
}

impl PoolGeo {
    /// The geometry of pooling `a` from an input of shape `sh` to `out_shape` (channels last).
    fn of(op: &Op, a: &PoolAttrs, sh: &[usize], out_shape: &[usize]) -> Result<PoolGeo, KernelError> {
        let r = a.window.len();
        if r > 3 || sh.len() != r + 2 || out_shape.len() != r + 2 {
            return Err(KernelError::new(op, "pooling of rank > 3 (or of mismatched ranks) is not supported"));
        }
        Ok(PoolGeo {
            inp: lift(&sh[1..=r], 1),
            out: lift(&out_shape[1..=r], 1),
            k: lift(&a.window, 1),
            s: lift(&a.strides, 1),
            pad: lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
            c: sh[r + 1],
            max: a.kind == PoolKind::Max,
        })
    }
}

/// The window's cells along one axis inside the input: `[lo, hi)` of the taps of output `o`.
#[inline(always)]
fn taps_inside(o: usize, s: usize, pad: usize, k: usize, n: usize) -> (usize, usize) {
    let start = (o * s) as isize - pad as isize;
    let lo = (-start).clamp(0, k as isize) as usize;
    let hi = (n as isize - start).clamp(0, k as isize) as usize;
    (lo, hi.max(lo))
}

/// One output row `(n, z, y)` of a pooling, separably: the window's input rows reduced into
/// one row (`tmp`, whole vectors along pixels × channels), then each pixel's channels in vectors
/// over the window's columns inside the input (ranges computed once per axis, no per-cell
/// checks). Max and sum both reduce in any order, and the count of an average's cells inside
/// the input is the product of the per-axis counts.
struct PoolRow<'a> {
    g: &'a PoolGeo,
    x: &'a [f32],
    r: usize,
    dst: &'a mut [f32],
}

/// A [`PoolRow`] whose `dst` holds whole output rows from `r` on: one micro-kernel entry for all
/// of them.
struct PoolRows<'a>(PoolRow<'a>);

impl crate::simd::Kernel for PoolRows<'_> {
    #[inline(always)]
    fn run<S: crate::simd::Simd>(self) {
        let PoolRow { g, x, r: r0, dst: block } = self.0;
        // The reduced row, in a buffer this thread keeps between calls (a planned run allocates
        // nothing); taken out while in use.
        let mut tmp = ROW.with(|t| std::mem::take(&mut *t.borrow_mut()));
        tmp.resize(g.inp[2] * g.c, 0.0);
        for (i, dst) in block.chunks_exact_mut(g.out[2] * g.c).enumerate() {
            PoolRow { g, x, r: r0 + i, dst }.run::<S>(&mut tmp);
        }
        ROW.with(|t| *t.borrow_mut() = tmp);
    }
}

thread_local! {
    static ROW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PoolRow<'_> {
    #[inline(always)]
    fn run<S: crate::simd::Simd>(self, tmp: &mut [f32]) {
        let g = self.g;
        let [od, oh, ow] = g.out;
        let (n, oz, oy) = (self.r / (oh * od), (self.r / oh) % od, self.r % oh);
        let (z0, z1) = taps_inside(oz, g.s[0], g.pad[0], g.k[0], g.inp[0]);
        let (y0, y1) = taps_inside(oy, g.s[1], g.pad[1], g.k[1], g.inp[1]);
        let c = g.c;
        let len = g.inp[2] * c;
        let reduce = |a: S::V, b: S::V| if g.max { S::max(a, b) } else { S::add(a, b) };
        let init = if g.max { S::splat(f32::NEG_INFINITY) } else { S::zero() };
        // The window's input rows, reduced into `tmp` one row after the other (no row: the
        // reduction's identity).
        let mut first = true;
        for kz in z0..z1 {
            let iz = oz * g.s[0] + kz - g.pad[0];
            for ky in y0..y1 {
                let iy = oy * g.s[1] + ky - g.pad[1];
                let row = &self.x[((n * g.inp[0] + iz) * g.inp[1] + iy) * len..][..len];
                // The first row meets the identity (a running max is never NaN, [`crate::simd::Simd::max`]).
                let mut at = 0;
                while at < len {
                    let nl = S::L.min(len - at);
                    let acc = if first { init } else { S::load_part(&tmp[at..], nl) };
                    S::store_part(reduce(acc, S::load_part(&row[at..], nl)), &mut tmp[at..], nl);
                    at += S::L;
                }
                first = false;
            }
        }
        if first {
            tmp.fill(if g.max { f32::NEG_INFINITY } else { 0.0 });
        }
        let rows = (z1 - z0) * (y1 - y0);
        for ox in 0..ow {
            let (x0, x1) = taps_inside(ox, g.s[2], g.pad[2], g.k[2], g.inp[2]);
            let ix0 = (ox * g.s[2] + x0) - g.pad[2];
            // An average's scale: one over its cells inside the input (none: left at 0).
            let scale = if g.max { None } else { Some(1.0 / (rows * (x1 - x0)).max(1) as f32) };
            let mut cb = 0;
            while cb < c {
                let nl = S::L.min(c - cb);
                let mut acc = init;
                for t in 0..x1 - x0 {
                    acc = reduce(acc, S::load_part(&tmp[(ix0 + t) * c + cb..], nl));
                }
                if let Some(scale) = scale {
                    acc = S::mul(acc, S::splat(scale));
                }
                S::store_part(acc, &mut self.dst[ox * c + cb..], nl);
                cb += S::L;
            }
        }
    }
}

/// The gradient of pooling with respect to its input: to the first maximum, or spread over
/// the window's cells inside the input.
pub fn pool_grad(op: &Op, a: &PoolAttrs, x: &Tensor, dy: &Tensor) -> Result<Tensor, KernelError> {
    let mut dx = vec![0f32; x.len()];
    pool_grad_into(op, a, (f32s(op, x)?, x.shape()), (f32s(op, dy)?, dy.shape()), &mut dx)?;
    tensor(x.shape(), dx)
}

/// [`pool_grad`] into `dx` (the input's shape; any prior contents), one batch sample per task:
/// each output pixel's window lists its pixels once, then every channel takes its share (the
/// first maximum of the window takes all of it; an average spreads it over the cells inside).
pub fn pool_grad_into(
    op: &Op,
    a: &PoolAttrs,
    (xs, sh): (&[f32], &[usize]),
    (dys, ysh): (&[f32], &[usize]),
    dx: &mut [f32],
) -> Result<(), KernelError> {
    use rayon::prelude::*;
    let g = PoolGeo::of(op, a, sh, ysh)?;
    if dx.len() != xs.len() {
        return Err(KernelError::new(op, "pooling gradient operands of unexpected sizes"));
    }
    let (inp, out, c) = (g.inp, g.out, g.c);
    let (in_len, out_pix) = (inp.iter().product::<usize>() * c, out.iter().product::<usize>());
    dx.fill(0.0);
    if in_len == 0 || out_pix == 0 || c == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(in_len).zip(xs.par_chunks(in_len)).zip(dys.par_chunks(out_pix * c)).for_each(
        |((dx, xs), dys)| {
            let mut cells = Vec::with_capacity(g.k.iter().product());
            let (mut best_v, mut best_i) = (vec![0f32; c], vec![0usize; c]);
            for o in 0..out_pix {
                let (oz, oy, ox) = (o / (out[1] * out[2]), (o / out[2]) % out[1], o % out[2]);
                // The window's cells inside the input, as the forward pass walks them.
                let [(z0, z1), (y0, y1), (x0, x1)] =
                    [0, 1, 2].map(|i| taps_inside([oz, oy, ox][i], g.s[i], g.pad[i], g.k[i], inp[i]));
                cells.clear();
                for kz in z0..z1 {
                    let iz = oz * g.s[0] + kz - g.pad[0];
                    for ky in y0..y1 {
                        let iy = oy * g.s[1] + ky - g.pad[1];
                        for kx in x0..x1 {
                            let ix = ox * g.s[2] + kx - g.pad[2];
                            cells.push(((iz * inp[1] + iy) * inp[2] + ix) * c);
                        }
                    }
                }
                let g = &dys[o * c..(o + 1) * c];
                match a.kind {
                    PoolKind::Max => {
                        // Every channel at once, cell by cell: the first maximum stays (a later
                        // cell replaces it only when strictly greater; NaN never does).
                        let Some((&first, rest)) = cells.split_first() else { continue };
                        best_v.copy_from_slice(&xs[first..first + c]);
                        best_i.fill(first);
                        for &xi in rest {
                            for ((bv, bi), &v) in best_v.iter_mut().zip(best_i.iter_mut()).zip(&xs[xi..xi + c]) {
                                if v > *bv {
                                    *bv = v;
                                    *bi = xi;
                                }
                            }
                        }
                        for (ch, (&gv, &bi)) in g.iter().zip(best_i.iter()).enumerate() {
                            dx[bi + ch] += gv;
                        }
                    }
                    PoolKind::Avg => {
                        let n = cells.len().max(1) as f32;
                        for &xi in &cells {
                            dx[xi..xi + c].iter_mut().zip(g).for_each(|(d, &g)| *d += g / n);
                        }
                    }
                }
            }
        },
    );
    Ok(())
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

    /// The max-pool gradient goes to each window's first maximum per channel (ties keep the
    /// first cell in window order; a NaN first cell keeps it), checked against that definition.
    #[test]
    fn max_pool_gradient_goes_to_the_first_maximum() {
        let (h, w, c) = (5usize, 6usize, 5usize);
        let xs: Vec<f32> =
            (0..2 * h * w * c).map(|i| if i % 23 == 4 { f32::NAN } else { ((i * 31) % 7) as f32 }).collect();
        let x = Tensor::from_f32(&[2, h, w, c], xs.clone()).unwrap();
        let a = PoolAttrs { kind: PoolKind::Max, window: vec![3, 2], strides: vec![2, 2], pads: vec![(1, 1), (0, 1)] };
        let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 1 - 2) / 2 + 1);
        let dys: Vec<f32> = (0..2 * oh * ow * c).map(|i| 1.0 + i as f32 * 0.25).collect();
        let dy = Tensor::from_f32(&[2, oh, ow, c], dys.clone()).unwrap();
        let got = pool_grad(&Op::PoolGrad(a.clone()), &a, &x, &dy).unwrap().to_f32_vec();
        let mut want = vec![0f32; xs.len()];
        for n in 0..2 {
            for (oy, ox, ch) in (0..oh).flat_map(|y| (0..ow).flat_map(move |x| (0..c).map(move |ch| (y, x, ch)))) {
                let mut best: Option<usize> = None;
                for ky in 0..3 {
                    for kx in 0..2 {
                        let (iy, ix) = ((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64);
                        if iy < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue;
                        }
                        let i = ((n * h + iy as usize) * w + ix as usize) * c + ch;
                        if best.is_none_or(|b| xs[i] > xs[b]) {
                            best = Some(i);
                        }
                    }
                }
                if let Some(b) = best {
                    want[b] += dys[((n * oh + oy) * ow + ox) * c + ch];
                }
            }
        }
        assert_eq!(got, want);
    }

    /// Every instruction set against the cell-by-cell definition, on windows with padding on
    /// every side, strides, channel counts below, at and past a vector, and NaN inputs (skipped
    /// by max as `f32::max` does).
    #[test]
    fn pool_rows_match_the_definition_on_every_instruction_set() {
        for (c, k, st, pad) in [(3usize, 3usize, 1usize, 1usize), (16, 2, 2, 0), (20, 3, 2, 1), (33, 2, 1, 1)] {
            let (h, w) = (7usize, 9usize);
            let xs: Vec<f32> = (0..2 * h * w * c)
                .map(|i| if i % 37 == 5 { f32::NAN } else { ((i * 7919) % 101) as f32 - 50.0 })
                .collect();
            let (oh, ow) = ((h + 2 * pad - k) / st + 1, (w + 2 * pad - k) / st + 1);
            for max in [true, false] {
                let g = PoolGeo {
                    inp: [1, h, w],
                    out: [1, oh, ow],
                    k: [1, k, k],
                    s: [1, st, st],
                    pad: [0, pad, pad],
                    c,
                    max,
                };
                let mut want = vec![0f32; 2 * oh * ow * c];
                for (i, v) in want.iter_mut().enumerate() {
                    let (ch, ox, oy, n) = (i % c, (i / c) % ow, (i / (c * ow)) % oh, i / (c * ow * oh));
                    let mut cells = Vec::new();
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) =
                                ((oy * st + ky) as isize - pad as isize, (ox * st + kx) as isize - pad as isize);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                cells.push(xs[((n * h + iy as usize) * w + ix as usize) * c + ch]);
                            }
                        }
                    }
                    *v = if max {
                        cells.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
                    } else {
                        cells.iter().sum::<f32>() * (1.0 / cells.len() as f32)
                    };
                }
                for isa in crate::simd::Isa::available() {
                    let mut got = vec![0f32; want.len()];
                    crate::simd::dispatch(isa, PoolRows(PoolRow { g: &g, x: &xs, r: 0, dst: &mut got }));
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        let same = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                        assert!(same, "{isa:?} c {c} k {k} s {st} pad {pad} max {max}: element {i}: {a} vs {b}");
                    }
                }
            }
        }
    }
}
