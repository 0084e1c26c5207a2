//! Matrix products: the strided GEMM every family builds on (through `gemm`), batched matmul
//! with broadcast batch axes, and the optimizer's matmul with a fused epilogue.

use crate::fused::EpilogueArgs;
use crate::util::{f32s, strides, tensor};
use crate::KernelError;
use ir::{Epilogue, Op, Tensor};
use rayon::prelude::*;

mod skinny;

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` with explicit (row, column) strides, through `gemm`.
///
/// Fails, computing nothing, unless each slice covers every element its strides address.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    accumulate: bool,
    threads: usize,
) -> Result<(), KernelError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        return Ok(());
    }
    // The offset of a matrix's last element, which must lie inside its slice.
    let covers = |len: usize, rows: usize, rs: usize, cols: usize, cs: usize| {
        let last = (rows - 1).checked_mul(rs).zip((cols - 1).checked_mul(cs)).and_then(|(a, b)| a.checked_add(b));
        last.is_some_and(|l| l < len)
    };
    if !(covers(dst.len(), m, dst_rs, n, 1)
        && covers(lhs.len(), m, lhs_rs, k, lhs_cs)
        && covers(rhs.len(), k, rhs_rs, n, rhs_cs))
    {
        return Err(KernelError::Kernel {
            op: "gemm".into(),
            node: String::new(),
            message: format!("operands too short for a ({m}, {k}) x ({k}, {n}) product"),
        });
    }
    if skinny::takes(m, n, k, lhs_cs) {
        let p = skinny::Product { m, n, k, lhs, lhs_rs, rhs, rhs_rs, rhs_cs };
        let threads = if m * n * k >= 1 << 18 { threads } else { 1 };
        skinny::gemm(&p, dst, dst_rs, accumulate, threads);
        return Ok(());
    }
    let par =
        if threads > 1 && m * n * k >= 1 << 18 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: checked just above: every element the strides address lies inside its slice, and
    // `dst` is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Batched matrix product with broadcast batch axes (`ta`/`tb`: the last two axes of `a`/`b`
/// transposed), with the optimizer's epilogue when one is given: `inputs` are `[a, b, (bias),
/// (residual)]`.
pub fn matmul(
    op: &Op,
    (ta, tb): (bool, bool),
    epilogue: Option<&Epilogue>,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let epi = epilogue.map(|e| EpilogueArgs::from_tensors(op, e, &inputs[2..])).transpose()?;
    let (a, b) = (inputs[0], inputs[1]);
    let mut out = vec![0f32; out_shape.iter().product()];
    matmul_into((f32s(op, a)?, a.shape()), (f32s(op, b)?, b.shape()), ta, tb, &mut out, out_shape, epi.as_ref())?;
    tensor(out_shape, out)
}

/// Batched matrix product into `out` (any prior contents), then the epilogue if one is given.
pub fn matmul_into(
    (x, ash): (&[f32], &[usize]),
    (y, bsh): (&[f32], &[usize]),
    ta: bool,
    tb: bool,
    out: &mut [f32],
    out_shape: &[usize],
    epi: Option<&EpilogueArgs>,
) -> Result<(), KernelError> {
    let (ar, br) = (ash.len(), bsh.len());
    let (m, k) = if ta { (ash[ar - 1], ash[ar - 2]) } else { (ash[ar - 2], ash[ar - 1]) };
    let n = if tb { bsh[br - 2] } else { bsh[br - 1] };
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
    let threads = rayon::current_num_threads();
    let batch_shape = &out_shape[..out_shape.len() - 2];
    let batches: usize = batch_shape.iter().product();
    if br == 2 && !ta && batches > 0 {
        // The common Dense case: fold every batch axis of `a` into the rows.
        sgemm(batches * m, n, k, out, n, x, k, 1, y, b_rs, b_cs, false, threads)?;
        if let Some(e) = epi {
            e.apply_all(out, n);
        }
        return Ok(());
    }
    let off = |shape: &[usize], bi: &[usize]| -> usize {
        let r = shape.len() - 2;
        let st = strides(&shape[..r]);
        let lead = bi.len() - r;
        (0..r).map(|i| if shape[i] == 1 { 0 } else { bi[lead + i] * st[i] }).sum::<usize>() * shape[r] * shape[r + 1]
    };
    let bstr = strides(batch_shape);
    let work = |bidx: usize, dst: &mut [f32]| {
        let bi: Vec<usize> = bstr.iter().zip(batch_shape).map(|(&s, &d)| (bidx / s) % d.max(1)).collect();
        let ao = off(ash, &bi);
        let bo = off(bsh, &bi);
        sgemm(m, n, k, dst, n, &x[ao..], a_rs, a_cs, &y[bo..], b_rs, b_cs, false, 1)
    };
    if m * n > 0 {
        if batches > 1 && m * n * k * batches >= 1 << 16 {
            out.par_chunks_mut(m * n).enumerate().try_for_each(|(i, d)| work(i, d))?;
        } else {
            out.chunks_mut(m * n).enumerate().try_for_each(|(i, d)| work(i, d))?;
        }
    }
    if let Some(e) = epi {
        e.apply_all(out, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    fn seq(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * s).sin()).collect()
    }

    #[test]
    fn matches_naive_with_transposes_and_batches() {
        let op = Op::MatMul { transpose_a: false, transpose_b: false };
        let (m, k, n) = (5, 7, 3);
        let a = Tensor::from_f32(&[2, m, k], seq(2 * m * k, 0.3)).unwrap();
        let b = Tensor::from_f32(&[k, n], seq(k * n, 0.7)).unwrap();
        let c = matmul(&op, (false, false), None, &[&a, &b], &[2, m, n]).unwrap();
        let av = a.as_f32().unwrap();
        let bv = b.as_f32().unwrap();
        let mut want = naive(&av[..m * k], bv, m, k, n);
        want.extend(naive(&av[m * k..], bv, m, k, n));
        assert_eq!(c.len(), want.len());
        for (x, y) in c.as_f32().unwrap().iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        // transpose_b over a batched rhs
        let bt: Vec<f32> = (0..n * k).map(|i| bv[(i % k) * n + i / k]).collect();
        let btt = Tensor::from_f32(&[1, n, k], bt).unwrap();
        let c2 = matmul(&op, (false, true), None, &[&a, &btt], &[2, m, n]).unwrap();
        assert_eq!(c2.len(), want.len());
        for (x, y) in c2.as_f32().unwrap().iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
    }
}
