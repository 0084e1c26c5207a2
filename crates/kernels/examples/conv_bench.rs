//! Times one convolution through `kernels::run_op`, each instruction set in turn:
//! `cargo run --release -p kernels --example conv_bench -- N H W C F K S [PAD] [GROUPS] [EPI]`
//! (channels-last, square kernel K, stride S, padding PAD each side; EPI 1 adds a bias and a
//! ReLU as the optimizer's fused epilogue), printing µs per call: through `run_op` (a new output
//! each call) and into one reused buffer (as in a model's arena). `REPS=N` sets the call count;
//! `TRANSPOSED=1` times the transposed convolution (VALID) of input H x W instead.
use ir::{ConvAttrs, Op, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse()).collect::<Result<_, _>>()?;
    let (n, h, w, c, f, k, s) = (a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    let pad = a.get(7).copied().unwrap_or(0);
    let groups = a.get(8).copied().unwrap_or(1);
    let epi = a.get(9).copied().unwrap_or(0) == 1;
    let x = Tensor::from_f32(&[n, h, w, c], (0..n * h * w * c).map(|i| (i % 7) as f32 * 0.1).collect())?;
    let kern =
        Tensor::from_f32(&[k, k, c / groups, f], (0..k * k * c / groups * f).map(|i| (i % 5) as f32 * 0.1).collect())?;
    let attrs = ConvAttrs { strides: vec![s, s], dilations: vec![1, 1], pads: vec![(pad, pad); 2], groups };
    let bias = Tensor::from_f32(&[f], (0..f).map(|i| i as f32 * 0.01).collect())?;
    // TRANSPOSED=1: the transposed convolution (stride S, kernel K, VALID) of the same sizes.
    let transposed = std::env::var("TRANSPOSED").is_ok_and(|v| v == "1");
    let kern_t = Tensor::from_f32(&[k, k, f, c], (0..k * k * c * f).map(|i| (i % 5) as f32 * 0.1).collect())?;
    let (op, inputs) = if transposed {
        let ta = ir::ConvTransposeAttrs {
            strides: vec![s, s],
            dilations: vec![1, 1],
            padding: ir::PaddingMode::Valid,
            output_padding: None,
        };
        (Op::ConvTranspose(ta), vec![&x, &kern_t])
    } else if epi {
        let e =
            ir::Epilogue { bias: true, activation: Some(ir::UnaryOp::Relu), residual: false, post_activation: None };
        (Op::FusedConv { conv: attrs, epilogue: e }, vec![&x, &kern, &bias])
    } else {
        (Op::Conv(attrs), vec![&x, &kern])
    };
    let macs = if transposed {
        n * h * w * k * k * c * f
    } else {
        let oh = (h + 2 * pad - k) / s + 1;
        let ow = (w + 2 * pad - k) / s + 1;
        n * oh * ow * f * k * k * c / groups
    };
    for _ in 0..20 {
        kernels::run_op(&op, &inputs)?;
    }
    let reps = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or((2e8 / macs as f64).clamp(20.0, 20000.0) as usize);
    let t = Instant::now();
    for _ in 0..reps {
        kernels::run_op(&op, &inputs)?;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    // The same op into one output buffer reused across calls, as inside a model's arena.
    let out_shape = kernels::run_op(&op, &inputs)?[0].shape().to_vec();
    let mut out = vec![0f32; out_shape.iter().product()];
    let views: Vec<Option<&[f32]>> = inputs.iter().map(|t| t.as_f32()).collect();
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let t = Instant::now();
    for _ in 0..reps {
        kernels::arena::run_into(&op, &views, &shapes, &mut out, &out_shape)?;
    }
    let us_arena = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!(
        "{:?}: {us:.2} µs, {:.1} GMAC/s; into a reused buffer {us_arena:.2} µs, {:.1} GMAC/s",
        kernels::simd::isa(),
        macs as f64 / us / 1e3,
        macs as f64 / us_arena / 1e3
    );
    Ok(())
}
