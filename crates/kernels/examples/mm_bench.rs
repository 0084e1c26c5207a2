//! Times one matrix product `[M, K] · [K, N]` through `kernels::arena::run_into` (the `gemm`
//! crate), printing µs per call: `cargo run --release -p kernels --example mm_bench -- M K N`
//! (set `RAYON_NUM_THREADS=1` for one thread; `TA=1`/`TB=1` for an operand stored transposed).
//! Beside examples/conv_bench, to compare a 1x1 convolution's two paths.
use ir::{Op, Tensor};
use std::time::Instant;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse()).collect::<Result<_, _>>()?;
    let (m, k, n) = (a[0], a[1], a[2]);
    // TA=1 / TB=1: the left / right operand stored transposed (as a backward pass reads them).
    let ta = std::env::var("TA").is_ok_and(|v| v == "1");
    let tb = std::env::var("TB").is_ok_and(|v| v == "1");
    let xs = if ta { [k, m] } else { [m, k] };
    let ws = if tb { [n, k] } else { [k, n] };
    let x = Tensor::from_f32(&xs, (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect())?;
    let w = Tensor::from_f32(&ws, (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect())?;
    let op = Op::MatMul { transpose_a: ta, transpose_b: tb };
    let mut out = vec![0f32; m * n];
    let shapes: Vec<&[usize]> = vec![x.shape(), w.shape()];
    let views = vec![x.as_f32(), w.as_f32()];
    for _ in 0..10 {
        kernels::arena::run_into(&op, &views, &shapes, &mut out, &[m, n])?;
    }
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        kernels::arena::run_into(&op, &views, &shapes, &mut out, &[m, n])?;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!("matmul {m}x{k}x{n}: {us:.1} µs, {:.1} GMAC/s", (m * k * n) as f64 / us / 1e3);
    Ok(())
}
