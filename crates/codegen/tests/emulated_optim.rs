//! The CUDA optimizer update (`codegen::cuda::optim`) against the CPU's fused update
//! (`kernels::optim`), run by the CPU emulator: every rule, with each kind of clipping and with
//! weight decay, over weights of one, several and partial chunks, for two steps. A check that
//! cannot run here (no g++) says so, or fails when KERASC_REQUIRE_EMULATOR asks for it.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use codegen::cuda::optim::{update_chunks, update_kernels, UPDATE_THREADS};
use ir::{GradClip, Tensor, Tolerance, UpdateRule};
use std::fmt::Write as _;

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 * 0.37 + seed) * 1.7).sin()).collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn the_cuda_update_is_the_cpu_update() {
    if !common::have_compiler() {
        common::cannot_run("KERASC_REQUIRE_EMULATOR", "optimizer update: no g++ to build the CUDA emulator");
        return;
    }
    let rules = UpdateRule::test_cases();
    let clips = [GradClip::None, GradClip::Norm(0.5), GradClip::GlobalNorm(1.0), GradClip::Value(0.3)];
    // One exactly full chunk, one partial chunk, two full and a partial one (every chunk's
    // partial sum weighs in the norms).
    let sizes = [4096usize, 3, 9000];
    let (chunks, spans) = update_chunks(&sizes);
    let steps = 2u64;
    // Buffer 0: the chunk table; 1: a finite loss; 2: a NaN loss.
    let mut bufs: Vec<Vec<u8>> =
        vec![chunks.iter().flat_map(|c| c.to_le_bytes()).collect(), bytes(&[0.25]), bytes(&[f32::NAN])];
    let mut sources = String::new();
    let mut body = String::new();
    let mut cases = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (r, rule) in rules.iter().enumerate() {
        for (c, &clip) in clips.iter().enumerate() {
            let decay = (r + c) % 3 == 0;
            let ns = rule.slots();
            // The CPU's result.
            let mut ws: Vec<Tensor> = sizes.iter().map(|&n| Tensor::from_f32(&[n], values(n, 0.5)).unwrap()).collect();
            let mut sl: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![rule.slot_init(); ns * n]).collect();
            // Buffers: weights, slots, then per step the gradients and the scalars, then partial sums.
            let first = bufs.len();
            bufs.extend(ws.iter().map(|w| bytes(w.as_f32().unwrap())));
            bufs.extend(sl.iter().map(|s| bytes(s)));
            let mut prod = 1.0f32;
            let k = kernels_for(rule, clip, decay, &mut seen, &mut sources);
            let _ = writeln!(body, "  {{ std::vector<unsigned long long> params({});", sizes.len() * 6);
            for (i, &n) in sizes.iter().enumerate() {
                let _ = writeln!(
                    body,
                    "    params[{o}] = (unsigned long long)b{w}.data(); params[{o} + 2] = (unsigned long long)b{s}.data(); params[{o} + 3] = {n}; params[{o} + 4] = {f}; params[{o} + 5] = {k};",
                    o = i * 6,
                    w = first + i,
                    s = first + sizes.len() + i,
                    f = spans[i].0,
                    k = spans[i].1
                );
            }
            for t in 1..=steps {
                let gs: Vec<Vec<f32>> = sizes.iter().map(|&n| values(n, t as f32 * 2.1 + r as f32)).collect();
                prod = rule.next_u_product(prod, t);
                let s = rule.scalars(0.01 * t as f32, decay.then_some(0.004), t, prod);
                let g0 = bufs.len();
                bufs.extend(gs.iter().map(|g| bytes(g)));
                let scal = bufs.len();
                bufs.push(bytes(&s.to_array()));
                let partial = bufs.len();
                bufs.push(vec![0u8; 4 * chunks.len()]);
                for i in 0..sizes.len() {
                    let _ = writeln!(body, "    params[{}] = (unsigned long long)b{}.data();", i * 6 + 1, g0 + i);
                }
                // The second step of one case has a NaN loss: it changes nothing.
                let nan = r == 4 && c == 1 && t == steps;
                if !nan {
                    kernels::optim::update_all(rule, &s, clip, &mut ws, &mut sl, |i| &gs[i]).unwrap();
                }
                let args = format!(
                    "params.data(), (const unsigned*)b0.data(), (const float*)b{scal}.data(), (float*)b{partial}.data(), (const float*)b{}.data()",
                    if nan { 2 } else { 1 }
                );
                for (ns_name, entry) in &k {
                    let _ = writeln!(
                        body,
                        "    kc_launch({{{}, 1, 1}}, {{{UPDATE_THREADS}, 1, 1}}, [&] {{ {ns_name}::{entry}({args}); }});",
                        chunks.len()
                    );
                }
            }
            body.push_str("  }\n");
            cases.push((format!("{rule:?} {clip:?} decay {decay}"), first, ws, sl));
        }
    }
    let out = common::run_program("optim", &sources, &body, &bufs);
    let tol = Tolerance::REDUCTION;
    for (what, first, ws, sl) in cases {
        for (i, w) in ws.iter().enumerate() {
            let c = tol.compare(&to64(&floats(&out[first + i])), &to64(w.as_f32().unwrap()));
            assert!(c.passed(), "{what}: weight {i}: {c}");
            let c = tol.compare(&to64(&floats(&out[first + sizes.len() + i])), &to64(&sl[i]));
            assert!(c.passed(), "{what}: slots of weight {i}: {c}");
        }
    }
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Appends the update's kernels (each entry point once) in namespaces of their own; returns
/// (namespace, entry) in launch order.
fn kernels_for(
    rule: &UpdateRule,
    clip: GradClip,
    decay: bool,
    seen: &mut std::collections::HashMap<String, String>,
    sources: &mut String,
) -> Vec<(String, String)> {
    let k = update_kernels(rule, clip, decay);
    let mut order = Vec::new();
    for kernel in k.sumsq.iter().chain(std::iter::once(&k.update)) {
        let ns = seen.entry(kernel.name.clone()).or_insert_with(|| {
            let ns = format!("ns_{}", kernel.name);
            let _ = writeln!(sources, "namespace {ns} {{\n{}\n}}", kernel.source);
            ns
        });
        order.push((ns.clone(), kernel.name.clone()));
    }
    order
}
