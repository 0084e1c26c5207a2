//! The fused optimizer update (`kernels::optim::update_all`) over a wide MLP's weights
//! (256×1024, 1024×1024, 1024×10 and biases: 1.3M values), per rule and clipping, against the
//! same pass after copying the gradients out of the step, on one thread (what `fit` did before the
//! update read the gradients in the step's arena and split across threads).
//!
//! `cargo bench -p kernels --bench optim` (`RAYON_NUM_THREADS=1` for one thread). Prints the
//! fewest milliseconds of 30 runs of each, and their ratio.
#![allow(clippy::unwrap_used)]

use ir::{GradClip, Tensor, UpdateRule};
use std::time::Instant;

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 * 0.37 + seed) * 1.7).sin() * 1e-2).collect()
}

fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let shapes: [&[usize]; 6] = [&[256, 1024], &[1024], &[1024, 1024], &[1024], &[1024, 10], &[10]];
    let grads: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(k, s)| values(s.iter().product(), k as f32)).collect();
    let total: usize = grads.iter().map(Vec::len).sum();
    println!("{total} weights, {} thread(s)", rayon::current_num_threads());
    println!("{:<34} {:>10} {:>12} {:>8}", "rule / clipping", "in place", "copied, 1t", "ratio");
    let cases = [
        (UpdateRule::Sgd { momentum: 0.0, nesterov: false }, GradClip::None),
        (UpdateRule::Sgd { momentum: 0.9, nesterov: true }, GradClip::None),
        (UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, GradClip::None),
        (UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, GradClip::Norm(1.0)),
        (UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, GradClip::GlobalNorm(1.0)),
        (UpdateRule::RmsProp { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false }, GradClip::None),
        (UpdateRule::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }, GradClip::None),
    ];
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for (rule, clip) in cases {
        let mut ws: Vec<Tensor> =
            shapes.iter().zip(&grads).map(|(s, g)| Tensor::from_f32(s, g.clone()).unwrap()).collect();
        let mut slots: Vec<Vec<f32>> = grads.iter().map(|g| vec![0.0; rule.slots() * g.len()]).collect();
        let s = rule.scalars(1e-3, None, 1, 1.0);
        let fused =
            best(30, || kernels::optim::update_all(&rule, &s, clip, &mut ws, &mut slots, |i| &grads[i]).unwrap());
        let serial = best(30, || {
            one_thread.install(|| {
                let copies: Vec<Vec<f32>> = grads.iter().map(|g| g.to_vec()).collect();
                kernels::optim::update_all(&rule, &s, clip, &mut ws, &mut slots, |i| &copies[i]).unwrap()
            })
        });
        let name = format!("{rule:?}").split(" {").next().unwrap_or_default().to_string();
        let variant = match rule {
            UpdateRule::Sgd { momentum, .. } if momentum > 0.0 => " (Nesterov)",
            _ => "",
        };
        println!("{:<34} {fused:>10.3} {serial:>12.3} {:>8.2}", format!("{name}{variant} {clip:?}"), serial / fused);
    }
}
