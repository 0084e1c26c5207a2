//! The micro-kernels ([`super::direct`], [`super::narrow`], [`super::depthwise`]) against the
//! textbook loop nest, on every instruction set this CPU has.

use super::depthwise::depthwise;
use super::direct::direct;
use super::geo::Geo;
use crate::fused::EpilogueArgs;
use crate::simd::Isa;

/// The textbook loop nest: `y[n, o..., f] = Σ x[n, o·s + k·d − pad, c] · w[k, c, f]`
/// (`groups` groups of `c/groups` input and `f/groups` output channels).
fn reference(g: &Geo, groups: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (cg, fg) = (g.c / groups, g.f / groups);
    let [od, oh, ow] = g.out;
    let mut y = vec![0f32; g.n * od * oh * ow * g.f];
    for n in 0..g.n {
        for oz in 0..od {
            for oy in 0..oh {
                for ox in 0..ow {
                    for f in 0..g.f {
                        let grp = f / fg;
                        let mut s = 0f64;
                        for kz in 0..g.k[0] {
                            for ky in 0..g.k[1] {
                                for kx in 0..g.k[2] {
                                    let iz = (oz * g.s[0] + kz * g.d[0]) as isize - g.pad[0] as isize;
                                    let iy = (oy * g.s[1] + ky * g.d[1]) as isize - g.pad[1] as isize;
                                    let ix = (ox * g.s[2] + kx * g.d[2]) as isize - g.pad[2] as isize;
                                    if iz < 0
                                        || iy < 0
                                        || ix < 0
                                        || iz as usize >= g.inp[0]
                                        || iy as usize >= g.inp[1]
                                        || ix as usize >= g.inp[2]
                                    {
                                        continue;
                                    }
                                    let xb = (((n * g.inp[0] + iz as usize) * g.inp[1] + iy as usize) * g.inp[2]
                                        + ix as usize)
                                        * g.c;
                                    let tap = (kz * g.k[1] + ky) * g.k[2] + kx;
                                    for ci in 0..cg {
                                        s += x[xb + grp * cg + ci] as f64 * w[(tap * cg + ci) * g.f + f] as f64;
                                    }
                                }
                            }
                        }
                        y[(((n * od + oz) * oh + oy) * ow + ox) * g.f + f] = s as f32;
                    }
                }
            }
        }
    }
    y
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn out_size(i: usize, k: usize, s: usize, d: usize, pad: usize) -> usize {
    (i + 2 * pad - d * (k - 1) - 1) / s + 1
}

/// Geometries that reach every path: filter counts that are and are not multiples of 8 and
/// 16 (full blocks of 4, 2 and 1 vectors and the padded tail), rows shorter and longer than
/// a pixel block, padding on every side, strides, dilations, 1-D, 2-D and 3-D.
fn geometries() -> Vec<Geo> {
    let mut v = Vec::new();
    type Case = ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], usize, usize);
    let cases: [Case; 23] = [
        ([1, 9, 11], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 1, 1], 3, 8),
        ([1, 16, 16], [1, 3, 3], [1, 2, 2], [1, 1, 1], [0, 1, 1], 3, 32),
        ([1, 7, 5], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0], 5, 70),
        ([1, 6, 20], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0], 24, 24),
        ([1, 8, 8], [1, 5, 5], [1, 1, 1], [1, 2, 2], [0, 4, 4], 4, 16),
        ([1, 1, 30], [1, 1, 5], [1, 1, 3], [1, 1, 1], [0, 0, 2], 6, 9),
        ([4, 5, 6], [3, 3, 3], [1, 2, 1], [1, 1, 1], [1, 1, 1], 2, 12),
        ([1, 4, 4], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 2, 2], 16, 64),
        ([1, 3, 40], [1, 2, 7], [1, 1, 2], [1, 1, 1], [0, 1, 3], 1, 17),
        ([1, 2, 2], [1, 2, 2], [1, 1, 1], [1, 1, 1], [0, 0, 0], 33, 48),
        ([1, 6, 21], [1, 5, 5], [1, 1, 1], [1, 1, 1], [0, 2, 2], 20, 20),
        ([1, 5, 20], [1, 3, 3], [1, 1, 1], [1, 2, 2], [0, 2, 2], 1, 5),
        ([1, 3, 11], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0], 8, 144),
        ([1, 7, 23], [1, 5, 5], [1, 2, 2], [1, 1, 1], [0, 2, 2], 5, 11),
        ([2, 4, 12], [2, 2, 3], [1, 2, 1], [1, 1, 1], [1, 0, 1], 4, 2),
        // Dilated along every axis, strided along the depth, padded: the padded rows' slots.
        ([6, 7, 9], [2, 3, 3], [2, 1, 1], [2, 2, 2], [1, 2, 2], 3, 20),
        // Narrow layers: whole and partial blocks of 8 filters, a stride of 2, 16 channels.
        ([1, 16, 16], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 1, 1], 8, 8),
        ([1, 9, 21], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0], 8, 8),
        ([1, 10, 33], [1, 3, 3], [1, 2, 2], [1, 1, 1], [0, 1, 1], 3, 8),
        ([1, 6, 18], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 1, 1], 16, 6),
        // A narrow layer strided and dilated along the row (taps in both phases of the stride).
        ([1, 9, 40], [1, 3, 3], [1, 2, 2], [1, 3, 3], [0, 1, 1], 3, 6),
        // Narrow in filters and channels, but past the narrow kernel's tables: 81 kernel rows,
        // and 16 channels × 17 kernel columns.
        ([2, 10, 12], [1, 9, 9], [1, 1, 1], [1, 1, 1], [1, 4, 4], 2, 4),
        ([1, 3, 30], [1, 1, 17], [1, 1, 1], [1, 1, 1], [0, 0, 8], 16, 8),
    ];
    for (inp, k, s, d, pad, c, f) in cases {
        let out: [usize; 3] = std::array::from_fn(|i| out_size(inp[i], k[i], s[i], d[i], pad[i]));
        v.push(Geo { n: 2, inp, out, k, s, d, pad, c, f });
    }
    v
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what}: element {i}: {a} vs {b}");
    }
}

#[test]
fn direct_matches_the_loop_nest_on_every_instruction_set() {
    for (i, g) in geometries().into_iter().enumerate() {
        let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
        let w = values(g.taps() * g.c * g.f, 100 + i as u32);
        let want = reference(&g, 1, &x, &w);
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; want.len()];
            direct(isa, &g, &x, &w, &mut y, None);
            close(&y, &want, &format!("{isa:?} {g:?}"));
        }
    }
}

#[test]
fn depthwise_matches_the_loop_nest_on_every_instruction_set() {
    for (i, g0) in geometries().into_iter().enumerate() {
        for dm in [1, 3] {
            let g = Geo { f: g0.c * dm, ..g0 };
            let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
            let w = values(g.taps() * g.f, 200 + i as u32);
            let want = reference(&g, g.c, &x, &w);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; want.len()];
                depthwise(isa, &g, &x, &w, dm, &mut y, None);
                close(&y, &want, &format!("{isa:?} dm {dm} {g:?}"));
            }
        }
    }
}

/// The epilogue applied in registers (bias, a clip, a residual, a ReLU) and after the
/// kernel (an activation it does not do in registers) gives `post(act(y + b) + r)` of the
/// loop nest's `y`, on every kernel and instruction set.
#[test]
fn epilogues_match_in_registers_and_after() {
    use ir::{Epilogue, UnaryOp};
    let clip =
        Epilogue { bias: true, activation: Some(UnaryOp::Relu6), residual: true, post_activation: Some(UnaryOp::Relu) };
    let sigmoid = Epilogue { bias: true, activation: Some(UnaryOp::Sigmoid), residual: false, post_activation: None };
    let act = |u: Option<UnaryOp>, v: f32| match u {
        None => v,
        Some(UnaryOp::Relu6) => v.clamp(0.0, 6.0),
        Some(UnaryOp::Relu) => v.max(0.0),
        Some(u) => crate::scalar::unary_scalar(u, v),
    };
    for (i, g0) in geometries().into_iter().enumerate() {
        for depthwise_kernel in [false, true] {
            let g = if depthwise_kernel { Geo { f: g0.c * 2, ..g0 } } else { g0 };
            let groups = if depthwise_kernel { g.c } else { 1 };
            let x = values(g.n * g.inp.iter().product::<usize>() * g.c, i as u32);
            let w = values(g.taps() * g.c / groups * g.f, 300 + i as u32);
            let y = reference(&g, groups, &x, &w);
            let bias: Vec<f32> = values(g.f, 400 + i as u32).iter().map(|v| v * 4.0).collect();
            let res = values(y.len(), 500 + i as u32);
            for e in [&clip, &sigmoid] {
                let want: Vec<f32> = y
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| {
                        let mut v = act(e.activation, v + bias[k % g.f]);
                        if e.residual {
                            v += res[k];
                        }
                        act(e.post_activation, v)
                    })
                    .collect();
                let args = EpilogueArgs { epilogue: e, bias: Some(&bias), residual: e.residual.then_some(&res[..]) };
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; y.len()];
                    if depthwise_kernel {
                        depthwise(isa, &g, &x, &w, 2, &mut got, Some(&args));
                    } else {
                        direct(isa, &g, &x, &w, &mut got, Some(&args));
                    }
                    close(&got, &want, &format!("{isa:?} {e:?} depthwise {depthwise_kernel} {g:?}"));
                }
            }
        }
    }
}
