//! Layers the dev set does not exercise: small `.keras` models built here, run through the
//! library, and checked against computations written independently in this file.

#![allow(clippy::type_complexity)]

mod common;

use common::{keras_archive, LayerWeights};
use kerasc::ir::{Tensor, TensorData, Tolerance};
use kerasc::{OptimizeOptions, PlannedSession, RuntimeError, Session, SessionOptions};
use serde_json::{json, Value};

fn seq(n: usize, s: f64) -> Vec<f32> {
    (0..n).map(|i| ((i as f64) * s + 0.3).sin() as f32).collect()
}

fn input_layer(name: &str, shape: &[usize], dtype: &str) -> Value {
    let mut bs: Vec<Value> = vec![Value::Null];
    bs.extend(shape.iter().map(|&d| json!(d)));
    json!({"class_name": "InputLayer", "config": {"batch_shape": bs, "dtype": dtype, "name": name}, "name": name, "inbound_nodes": []})
}

fn lw(key: &str, name: &str, vars: Vec<(Vec<usize>, Vec<f32>)>) -> LayerWeights {
    LayerWeights { key: key.into(), name: name.into(), vars, children: vec![] }
}

/// A Sequential model of one layer on an input of `shape` (without batch).
fn one_layer(class: &str, cfg: Value, shape: &[usize], weights: Vec<LayerWeights>) -> Both {
    let mut cfg = cfg;
    cfg["name"] = json!("layer");
    let config = json!({"class_name": "Sequential", "config": {"name": "t", "layers": [
        input_layer("x", shape, "float32"), {"class_name": class, "config": cfg}]}});
    session(&config, &weights)
}

/// The model run both ways: the frontend's graph op by op, and optimized from an arena. Every
/// run checks that the two agree and returns the optimized result.
struct Both {
    naive: Session,
    planned: PlannedSession,
}

impl Both {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let want = self.naive.run(inputs)?;
        let got = self.planned.run(inputs)?;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape(), w.shape());
            let c = Tolerance::REDUCTION.compare(&g.to_f64_vec(), &w.to_f64_vec());
            assert!(c.passed(), "optimized vs naive: {c}\n{}", kerasc::ir::render::to_text(self.planned.graph()));
        }
        Ok(got)
    }
}

fn session(config: &Value, weights: &[LayerWeights]) -> Both {
    let bytes = keras_archive(config, weights);
    let model = kerasc::load_bytes(bytes, "test.keras").unwrap_or_else(|e| panic!("{e}"));
    let (planned, _) = kerasc::compile(&model.graph, &OptimizeOptions::default(), SessionOptions::default()).unwrap();
    Both { naive: Session::new(model.graph, SessionOptions::default()).unwrap(), planned }
}

fn run1(s: &Both, x: Tensor) -> Tensor {
    s.run(&[x]).unwrap_or_else(|e| panic!("{e}")).remove(0)
}

fn assert_close(got: &Tensor, shape: &[usize], want: &[f64], tol: Tolerance) {
    assert_eq!(got.shape(), shape);
    let c = tol.compare(&got.to_f64_vec(), want);
    assert!(c.passed(), "{c}");
}

fn t(shape: &[usize], s: f64) -> Tensor {
    Tensor::from_f32(shape, seq(shape.iter().product(), s)).unwrap()
}

#[test]
fn conv1d_causal_dilated() {
    let (n, l, c, f, k, d) = (2, 9, 3, 4, 3, 2);
    let w = seq(k * c * f, 0.17);
    let b = seq(f, 0.5);
    let s = one_layer(
        "Conv1D",
        json!({"filters": f, "kernel_size": [k], "strides": [1], "padding": "causal", "dilation_rate": [d], "activation": "linear", "use_bias": true}),
        &[l, c],
        vec![lw("conv1d", "layer", vec![(vec![k, c, f], w.clone()), (vec![f], b.clone())])],
    );
    let x = t(&[n, l, c], 0.31);
    let xv = x.to_f64_vec();
    let mut want = vec![0f64; n * l * f];
    for bi in 0..n {
        for o in 0..l {
            for ff in 0..f {
                let mut acc = b[ff] as f64;
                for kk in 0..k {
                    let i = o as i64 + (kk * d) as i64 - ((k - 1) * d) as i64;
                    if i >= 0 {
                        for cc in 0..c {
                            acc += xv[(bi * l + i as usize) * c + cc] * w[(kk * c + cc) * f + ff] as f64;
                        }
                    }
                }
                want[(bi * l + o) * f + ff] = acc;
            }
        }
    }
    assert_close(&run1(&s, x), &[n, l, f], &want, Tolerance::REDUCTION);
}

#[test]
fn conv3d_strided_valid_with_relu() {
    let (dd, hh, ww, c, f) = (4, 5, 4, 2, 3);
    let k = 2;
    let w = seq(k * k * k * c * f, 0.23);
    let s = one_layer(
        "Conv3D",
        json!({"filters": f, "kernel_size": [k, k, k], "strides": [2, 1, 2], "padding": "valid", "activation": "relu", "use_bias": false}),
        &[dd, hh, ww, c],
        vec![lw("conv3d", "layer", vec![(vec![k, k, k, c, f], w.clone())])],
    );
    let x = t(&[1, dd, hh, ww, c], 0.41);
    let xv = x.to_f64_vec();
    let (od, oh, ow) = ((dd - k) / 2 + 1, hh - k + 1, (ww - k) / 2 + 1);
    let mut want = Vec::new();
    for z in 0..od {
        for y in 0..oh {
            for xx in 0..ow {
                for ff in 0..f {
                    let mut acc = 0f64;
                    for a in 0..k {
                        for b2 in 0..k {
                            for e in 0..k {
                                for cc in 0..c {
                                    let xi = (((z * 2 + a) * hh + y + b2) * ww + xx * 2 + e) * c + cc;
                                    let wi = (((a * k + b2) * k + e) * c + cc) * f + ff;
                                    acc += xv[xi] * w[wi] as f64;
                                }
                            }
                        }
                    }
                    want.push(acc.max(0.0));
                }
            }
        }
    }
    assert_close(&run1(&s, x), &[1, od, oh, ow, f], &want, Tolerance::REDUCTION);
}

#[test]
fn conv2d_transpose_same_stride2() {
    let (h, w_, c, f, k, st) = (3, 4, 2, 3, 3, 2);
    let w = seq(k * k * f * c, 0.19);
    let s = one_layer(
        "Conv2DTranspose",
        json!({"filters": f, "kernel_size": [k, k], "strides": [st, st], "padding": "same", "activation": "linear", "use_bias": false}),
        &[h, w_, c],
        vec![lw("conv2d_transpose", "layer", vec![(vec![k, k, f, c], w.clone())])],
    );
    let x = t(&[1, h, w_, c], 0.37);
    let xv = x.to_f64_vec();
    let (oh, ow) = (h * st, w_ * st);
    // TensorFlow's SAME: the transposed conv is the gradient of a SAME conv from (oh, ow) to (h, w).
    let pad = |inn: usize, out: usize| ((inn - 1) * st + k).saturating_sub(out) / 2;
    let (ph, pw) = (pad(h, oh), pad(w_, ow));
    let mut want = vec![0f64; oh * ow * f];
    for i in 0..h {
        for j in 0..w_ {
            for a in 0..k {
                for b in 0..k {
                    let (oy, ox) = ((i * st + a) as i64 - ph as i64, (j * st + b) as i64 - pw as i64);
                    if oy < 0 || ox < 0 || oy as usize >= oh || ox as usize >= ow {
                        continue;
                    }
                    for ff in 0..f {
                        for cc in 0..c {
                            want[(oy as usize * ow + ox as usize) * f + ff] +=
                                xv[(i * w_ + j) * c + cc] * w[((a * k + b) * f + ff) * c + cc] as f64;
                        }
                    }
                }
            }
        }
    }
    assert_close(&run1(&s, x), &[1, oh, ow, f], &want, Tolerance::REDUCTION);
}

#[allow(clippy::too_many_arguments)]
fn simple_rnn_ref(
    x: &[f64],
    n: usize,
    tt: usize,
    fi: usize,
    u: usize,
    w: &[f32],
    r: &[f32],
    b: &[f32],
    backwards: bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut seq_out = vec![0f64; n * tt * u];
    let mut last = vec![0f64; n * u];
    for bi in 0..n {
        let mut h = vec![0f64; u];
        for step in 0..tt {
            let ti = if backwards { tt - 1 - step } else { step };
            let mut nh = vec![0f64; u];
            for j in 0..u {
                let mut a = b[j] as f64;
                for p in 0..fi {
                    a += x[(bi * tt + ti) * fi + p] * w[p * u + j] as f64;
                }
                for p in 0..u {
                    a += h[p] * r[p * u + j] as f64;
                }
                nh[j] = a.tanh();
            }
            h = nh;
            seq_out[(bi * tt + step) * u..(bi * tt + step + 1) * u].copy_from_slice(&h);
        }
        last[bi * u..(bi + 1) * u].copy_from_slice(&h);
    }
    (seq_out, last)
}

#[test]
fn simple_rnn_backwards_sequences_and_state() {
    let (n, tt, fi, u) = (2, 5, 3, 4);
    let (w, r, b) = (seq(fi * u, 0.3), seq(u * u, 0.7), seq(u, 1.1));
    let cfg = json!({"units": u, "activation": "tanh", "use_bias": true, "return_sequences": true, "return_state": true, "go_backwards": true});
    let config = json!({"class_name": "Functional", "config": {"name": "t", "layers": [
        input_layer("x", &[tt, fi], "float32"),
        {"class_name": "SimpleRNN", "config": {"name": "rnn"}, "name": "rnn", "inbound_nodes": []}],
        "input_layers": [["x", 0, 0]], "output_layers": [["rnn", 0, 0], ["rnn", 0, 1]]}});
    let mut config = config;
    config["config"]["layers"][1]["config"] = {
        let mut c = cfg;
        c["name"] = json!("rnn");
        c
    };
    config["config"]["layers"][1]["inbound_nodes"] =
        json!([{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}], "kwargs": {}}]);
    let s = session(
        &config,
        &[LayerWeights {
            key: "simple_rnn".into(),
            name: "rnn".into(),
            vars: vec![],
            children: vec![(
                "cell".into(),
                vec![(vec![fi, u], w.clone()), (vec![u, u], r.clone()), (vec![u], b.clone())],
            )],
        }],
    );
    let x = t(&[n, tt, fi], 0.29);
    let (want_seq, want_last) = simple_rnn_ref(&x.to_f64_vec(), n, tt, fi, u, &w, &r, &b, true);
    let outs = s.run(&[x]).unwrap();
    assert_close(&outs[0], &[n, tt, u], &want_seq, Tolerance::REDUCTION);
    assert_close(&outs[1], &[n, u], &want_last, Tolerance::REDUCTION);
}

#[test]
fn bidirectional_merge_modes() {
    let (n, tt, fi, u) = (2, 4, 3, 2);
    let (wf, rf, bf) = (seq(fi * u, 0.3), seq(u * u, 0.7), seq(u, 1.1));
    let (wb, rb, bb) = (seq(fi * u, 0.9), seq(u * u, 0.2), seq(u, 0.4));
    let x = t(&[n, tt, fi], 0.13);
    let xv = x.to_f64_vec();
    let (fseq, _) = simple_rnn_ref(&xv, n, tt, fi, u, &wf, &rf, &bf, false);
    let (bseq, _) = simple_rnn_ref(&xv, n, tt, fi, u, &wb, &rb, &bb, true);
    for mode in ["concat", "sum", "mul", "ave"] {
        let inner = json!({"class_name": "SimpleRNN", "config": {"name": "r", "units": u, "return_sequences": true, "use_bias": true}});
        let s = one_layer(
            "Bidirectional",
            json!({"layer": inner, "merge_mode": mode}),
            &[tt, fi],
            vec![LayerWeights {
                key: "bidirectional".into(),
                name: "layer".into(),
                vars: vec![],
                children: vec![
                    (
                        "forward_layer".into(),
                        vec![(vec![fi, u], wf.clone()), (vec![u, u], rf.clone()), (vec![u], bf.clone())],
                    ),
                    (
                        "backward_layer".into(),
                        vec![(vec![fi, u], wb.clone()), (vec![u, u], rb.clone()), (vec![u], bb.clone())],
                    ),
                ],
            }],
        );
        let y = run1(&s, x.clone());
        let mut want = Vec::new();
        for bi in 0..n {
            for step in 0..tt {
                let fv = &fseq[(bi * tt + step) * u..(bi * tt + step + 1) * u];
                // Keras flips the backward sequence back into time order.
                let bs = tt - 1 - step;
                let bv = &bseq[(bi * tt + bs) * u..(bi * tt + bs + 1) * u];
                match mode {
                    "concat" => want.extend(fv.iter().chain(bv).copied()),
                    "sum" => want.extend(fv.iter().zip(bv).map(|(a, b)| a + b)),
                    "mul" => want.extend(fv.iter().zip(bv).map(|(a, b)| a * b)),
                    _ => want.extend(fv.iter().zip(bv).map(|(a, b)| (a + b) / 2.0)),
                }
            }
        }
        let width = if mode == "concat" { 2 * u } else { u };
        assert_close(&y, &[n, tt, width], &want, Tolerance::REDUCTION);
    }
}

#[test]
fn gru_reset_before() {
    let (n, tt, fi, u) = (2, 3, 2, 3);
    let (w, r, b) = (seq(fi * 3 * u, 0.3), seq(u * 3 * u, 0.7), seq(3 * u, 1.1));
    let s = one_layer(
        "GRU",
        json!({"units": u, "reset_after": false, "use_bias": true}),
        &[tt, fi],
        vec![LayerWeights {
            key: "gru".into(),
            name: "layer".into(),
            vars: vec![],
            children: vec![(
                "cell".into(),
                vec![(vec![fi, 3 * u], w.clone()), (vec![u, 3 * u], r.clone()), (vec![3 * u], b.clone())],
            )],
        }],
    );
    let x = t(&[n, tt, fi], 0.47);
    let xv = x.to_f64_vec();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut want = Vec::new();
    for bi in 0..n {
        let mut h = vec![0f64; u];
        for ti in 0..tt {
            let xp = |g: usize, j: usize| -> f64 {
                let mut a = b[g * u + j] as f64;
                for p in 0..fi {
                    a += xv[(bi * tt + ti) * fi + p] * w[p * 3 * u + g * u + j] as f64;
                }
                a
            };
            let hp = |g: usize, j: usize, hv: &[f64]| -> f64 {
                (0..u).map(|p| hv[p] * r[p * 3 * u + g * u + j] as f64).sum()
            };
            let z: Vec<f64> = (0..u).map(|j| sig(xp(0, j) + hp(0, j, &h))).collect();
            let rr: Vec<f64> = (0..u).map(|j| sig(xp(1, j) + hp(1, j, &h))).collect();
            let rh: Vec<f64> = (0..u).map(|j| rr[j] * h[j]).collect();
            let hh: Vec<f64> = (0..u).map(|j| (xp(2, j) + hp(2, j, &rh)).tanh()).collect();
            h = (0..u).map(|j| z[j] * h[j] + (1.0 - z[j]) * hh[j]).collect();
        }
        want.extend(h);
    }
    assert_close(&run1(&s, x), &[n, u], &want, Tolerance::REDUCTION);
}

#[test]
fn time_distributed_dense() {
    let (n, tt, fi, u) = (2, 3, 4, 2);
    let (w, b) = (seq(fi * u, 0.3), seq(u, 0.8));
    let s = one_layer(
        "TimeDistributed",
        json!({"layer": {"class_name": "Dense", "config": {"name": "d", "units": u, "activation": "sigmoid"}}}),
        &[tt, fi],
        vec![LayerWeights {
            key: "time_distributed".into(),
            name: "layer".into(),
            vars: vec![],
            children: vec![("layer".into(), vec![(vec![fi, u], w.clone()), (vec![u], b.clone())])],
        }],
    );
    let x = t(&[n, tt, fi], 0.21);
    let xv = x.to_f64_vec();
    let mut want = Vec::new();
    for row in 0..n * tt {
        for j in 0..u {
            let a: f64 = b[j] as f64 + (0..fi).map(|p| xv[row * fi + p] * w[p * u + j] as f64).sum::<f64>();
            want.push(1.0 / (1.0 + (-a).exp()));
        }
    }
    assert_close(&run1(&s, x), &[n, tt, u], &want, Tolerance::REDUCTION);
}

fn kt(layer: &str, tensor: usize) -> Value {
    json!({"class_name": "__keras_tensor__", "config": {"keras_history": [layer, 0, tensor]}})
}

#[test]
fn merges_dot_several_inputs_and_outputs() {
    let f = 3;
    let layer = |class: &str, name: &str, args: Value, extra: Value| {
        let mut cfg = json!({"name": name});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        json!({"class_name": class, "config": cfg, "name": name, "inbound_nodes": [{"args": args, "kwargs": {}}]})
    };
    let config = json!({"class_name": "Functional", "config": {"name": "m", "layers": [
        input_layer("a", &[f], "float32"), input_layer("b", &[f], "float32"),
        layer("Subtract", "sub", json!([[kt("a", 0), kt("b", 0)]]), json!({})),
        layer("Multiply", "mul", json!([[kt("a", 0), kt("b", 0)]]), json!({})),
        layer("Maximum", "max", json!([[kt("a", 0), kt("b", 0)]]), json!({})),
        layer("Minimum", "min", json!([[kt("a", 0), kt("b", 0)]]), json!({})),
        layer("Average", "avg", json!([[kt("a", 0), kt("b", 0), kt("sub", 0)]]), json!({})),
        layer("Dot", "dot", json!([[kt("a", 0), kt("b", 0)]]), json!({"axes": 1, "normalize": true})),
        layer("Concatenate", "cat", json!([[kt("sub", 0), kt("mul", 0), kt("max", 0), kt("min", 0), kt("avg", 0)]]), json!({"axis": -1}))],
        "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["cat", 0, 0], ["dot", 0, 0]]}});
    let s = session(&config, &[]);
    let a = t(&[2, f], 0.5);
    let b = t(&[2, f], 1.7);
    let outs = s.run(&[a.clone(), b.clone()]).unwrap();
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let mut cat = Vec::new();
    let mut dot = Vec::new();
    for r in 0..2 {
        let (x, y) = (&av[r * f..(r + 1) * f], &bv[r * f..(r + 1) * f]);
        let sub: Vec<f64> = x.iter().zip(y).map(|(p, q)| p - q).collect();
        cat.extend(sub.iter().copied());
        cat.extend(x.iter().zip(y).map(|(p, q)| p * q));
        cat.extend(x.iter().zip(y).map(|(p, q)| p.max(*q)));
        cat.extend(x.iter().zip(y).map(|(p, q)| p.min(*q)));
        cat.extend((0..f).map(|i| (x[i] + y[i] + sub[i]) / 3.0));
        let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        let ny = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        dot.push(x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / (nx * ny));
    }
    assert_close(&outs[0], &[2, 5 * f], &cat, Tolerance::ELEMENTWISE);
    assert_close(&outs[1], &[2, 1], &dot, Tolerance::ELEMENTWISE);
}

#[test]
fn every_builtin_activation() {
    let x = Tensor::from_f32(&[1, 9], vec![-3.0, -1.5, -0.5, -0.01, 0.0, 0.2, 0.9, 2.5, 7.0]).unwrap();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let sp = |v: f64| (1.0 + v.exp()).ln();
    let erf = |v: f64| {
        // Abramowitz–Stegun 7.1.26 is too coarse; integrate instead.
        let steps = 20000;
        let h = v / steps as f64;
        let mut s = 0.0;
        for i in 0..steps {
            let t0 = (i as f64 + 0.5) * h;
            s += (-t0 * t0).exp();
        }
        s * h * 2.0 / std::f64::consts::PI.sqrt()
    };
    let cases: Vec<(&str, Box<dyn Fn(f64) -> f64>)> = vec![
        ("relu", Box::new(|v: f64| v.max(0.0))),
        ("relu6", Box::new(|v: f64| v.clamp(0.0, 6.0))),
        ("sigmoid", Box::new(sig)),
        ("hard_sigmoid", Box::new(|v: f64| ((v + 3.0).clamp(0.0, 6.0)) / 6.0)),
        ("hard_silu", Box::new(|v: f64| v * ((v + 3.0).clamp(0.0, 6.0)) / 6.0)),
        ("tanh", Box::new(f64::tanh)),
        ("softplus", Box::new(sp)),
        ("softsign", Box::new(|v: f64| v / (1.0 + v.abs()))),
        ("elu", Box::new(|v: f64| if v > 0.0 { v } else { v.exp() - 1.0 })),
        (
            "selu",
            Box::new(|v: f64| 1.0507009873554805 * if v > 0.0 { v } else { 1.6732632423543772 * (v.exp() - 1.0) }),
        ),
        ("gelu", Box::new(move |v: f64| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))),
        ("silu", Box::new(move |v: f64| v * sig(v))),
        ("swish", Box::new(move |v: f64| v * sig(v))),
        ("mish", Box::new(move |v: f64| v * sp(v).tanh())),
        ("exponential", Box::new(f64::exp)),
        ("leaky_relu", Box::new(|v: f64| if v >= 0.0 { v } else { 0.2 * v })),
        ("linear", Box::new(|v: f64| v)),
    ];
    for (name, f) in cases {
        let s = one_layer("Activation", json!({"activation": name}), &[9], vec![]);
        let want: Vec<f64> = x.to_f64_vec().into_iter().map(&f).collect();
        let got = run1(&s, x.clone());
        let c = Tolerance::ELEMENTWISE.compare(&got.to_f64_vec(), &want);
        assert!(c.passed(), "{name}: {c}");
    }
    let v = x.to_f64_vec();
    let m = v.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = v.iter().map(|a| (a - m).exp()).sum();
    let s = one_layer("Activation", json!({"activation": "softmax"}), &[9], vec![]);
    assert_close(
        &run1(&s, x.clone()),
        &[1, 9],
        &v.iter().map(|a| (a - m).exp() / z).collect::<Vec<_>>(),
        Tolerance::ELEMENTWISE,
    );
    let s = one_layer("Activation", json!({"activation": "log_softmax"}), &[9], vec![]);
    assert_close(&run1(&s, x), &[1, 9], &v.iter().map(|a| a - m - z.ln()).collect::<Vec<_>>(), Tolerance::ELEMENTWISE);
}

#[test]
fn activation_layers_with_parameters() {
    let x = Tensor::from_f32(&[1, 2, 3], vec![-2.0, -0.5, 0.5, 1.0, 3.0, 8.0]).unwrap();
    let v = x.to_f64_vec();
    let check = |class: &str, cfg: Value, w: Vec<LayerWeights>, f: &dyn Fn(usize, f64) -> f64| {
        let s = one_layer(class, cfg, &[2, 3], w);
        let want: Vec<f64> = v.iter().enumerate().map(|(i, &a)| f(i, a)).collect();
        assert_close(&run1(&s, x.clone()), &[1, 2, 3], &want, Tolerance::ELEMENTWISE);
    };
    check("ReLU", json!({"max_value": 6.0, "negative_slope": 0.1, "threshold": 0.75}), vec![], &|_, a| {
        if a >= 6.0 {
            6.0
        } else if a >= 0.75 {
            a
        } else {
            0.1 * (a - 0.75)
        }
    });
    check("LeakyReLU", json!({"negative_slope": 0.25}), vec![], &|_, a| if a > 0.0 { a } else { 0.25 * a });
    check("ELU", json!({"alpha": 0.5}), vec![], &|_, a| if a > 0.0 { a } else { 0.5 * (a.exp() - 1.0) });
    check("ThresholdedReLU", json!({"theta": 1.0}), vec![], &|_, a| if a > 1.0 { a } else { 0.0 });
    let alpha = vec![0.1f32, 0.2, 0.3];
    check(
        "PReLU",
        json!({"shared_axes": [1]}),
        vec![lw("p_re_lu", "layer", vec![(vec![1, 3], alpha.clone())])],
        &|i, a| {
            if a > 0.0 {
                a
            } else {
                alpha[i % 3] as f64 * a
            }
        },
    );
    // Softmax over axis 1 (the sequence axis).
    let s = one_layer("Softmax", json!({"axis": 1}), &[2, 3], vec![]);
    let mut want = vec![0f64; 6];
    for c in 0..3 {
        let (p, q) = (v[c], v[3 + c]);
        let m = p.max(q);
        let z = (p - m).exp() + (q - m).exp();
        want[c] = (p - m).exp() / z;
        want[3 + c] = (q - m).exp() / z;
    }
    assert_close(&run1(&s, x.clone()), &[1, 2, 3], &want, Tolerance::ELEMENTWISE);
    let s = one_layer("Rescaling", json!({"scale": 0.5, "offset": -1.0}), &[2, 3], vec![]);
    assert_close(
        &run1(&s, x),
        &[1, 2, 3],
        &v.iter().map(|a| a * 0.5 - 1.0).collect::<Vec<_>>(),
        Tolerance::ELEMENTWISE,
    );
}

#[test]
fn reshaping_padding_cropping_upsampling() {
    let x = t(&[1, 3, 4, 2], 0.7);
    let v = x.to_f64_vec();
    let at = |y: usize, xx: usize, c: usize| v[(y * 4 + xx) * 2 + c];
    let s = one_layer("Cropping2D", json!({"cropping": [[1, 0], [1, 2]]}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (1..3)
        .flat_map(|y| (1..2).flat_map(move |xx| (0..2).map(move |c| (y, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 2, 1, 2], &want, Tolerance::EXACT);
    let s = one_layer("ZeroPadding2D", json!({"padding": [[0, 1], [2, 0]]}), &[3, 4, 2], vec![]);
    let mut want = Vec::new();
    for y in 0..4 {
        for xx in 0..6 {
            for c in 0..2 {
                want.push(if y < 3 && xx >= 2 { at(y, xx - 2, c) } else { 0.0 });
            }
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, 4, 6, 2], &want, Tolerance::EXACT);
    let s = one_layer("UpSampling2D", json!({"size": [2, 1], "interpolation": "nearest"}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (0..6)
        .flat_map(|y| (0..4).flat_map(move |xx| (0..2).map(move |c| (y / 2, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 6, 4, 2], &want, Tolerance::EXACT);
    let s = one_layer("Permute", json!({"dims": [3, 1, 2]}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (0..2)
        .flat_map(|c| (0..3).flat_map(move |y| (0..4).map(move |xx| (y, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 2, 3, 4], &want, Tolerance::EXACT);
    let s = one_layer("Flatten", json!({}), &[3, 4, 2], vec![]);
    assert_close(&run1(&s, x.clone()), &[1, 24], &v, Tolerance::EXACT);
    let s = one_layer("Reshape", json!({"target_shape": [-1, 6]}), &[3, 4, 2], vec![]);
    assert_close(&run1(&s, x), &[1, 4, 6], &v, Tolerance::EXACT);
    let x1 = t(&[2, 3], 0.9);
    let s = one_layer("RepeatVector", json!({"n": 2}), &[3], vec![]);
    let v1 = x1.to_f64_vec();
    let want: Vec<f64> =
        (0..2).flat_map(|b| (0..2).flat_map(move |_| (0..3).map(move |c| b * 3 + c))).map(|i| v1[i]).collect();
    assert_close(&run1(&s, x1), &[2, 2, 3], &want, Tolerance::EXACT);
    let x3 = t(&[1, 2, 2, 2, 1], 0.3);
    let s = one_layer("UpSampling3D", json!({"size": [1, 2, 1]}), &[2, 2, 2, 1], vec![]);
    let v3 = x3.to_f64_vec();
    let want: Vec<f64> = (0..2)
        .flat_map(|z| (0..4).flat_map(move |y| (0..2).map(move |xx| (z * 2 + y / 2) * 2 + xx)))
        .map(|i| v3[i])
        .collect();
    assert_close(&run1(&s, x3), &[1, 2, 4, 2, 1], &want, Tolerance::EXACT);
}

#[test]
fn pooling_3d_and_global_keepdims() {
    let x = t(&[1, 4, 4, 4, 2], 0.37);
    let v = x.to_f64_vec();
    let at = |z: usize, y: usize, xx: usize, c: usize| v[((z * 4 + y) * 4 + xx) * 2 + c];
    let s = one_layer("AveragePooling3D", json!({"pool_size": [2, 2, 2], "padding": "valid"}), &[4, 4, 4, 2], vec![]);
    let mut want = Vec::new();
    for z in 0..2 {
        for y in 0..2 {
            for xx in 0..2 {
                for c in 0..2 {
                    let mut s = 0.0;
                    for a in 0..2 {
                        for b in 0..2 {
                            for e in 0..2 {
                                s += at(2 * z + a, 2 * y + b, 2 * xx + e, c);
                            }
                        }
                    }
                    want.push(s / 8.0);
                }
            }
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, 2, 2, 2, 2], &want, Tolerance::REDUCTION);
    let s = one_layer("GlobalMaxPooling3D", json!({"keepdims": true}), &[4, 4, 4, 2], vec![]);
    let want: Vec<f64> = (0..2).map(|c| (0..64).map(|p| v[p * 2 + c]).fold(f64::MIN, f64::max)).collect();
    assert_close(&run1(&s, x), &[1, 1, 1, 1, 2], &want, Tolerance::EXACT);
}

#[test]
fn group_and_unit_normalization_and_embedding() {
    let x = t(&[2, 3, 4], 0.61);
    let v = x.to_f64_vec();
    let (g, b) = (seq(4, 0.4), seq(4, 1.3));
    let s = one_layer(
        "GroupNormalization",
        json!({"groups": 2, "epsilon": 1e-3}),
        &[3, 4],
        vec![lw("group_normalization", "layer", vec![(vec![4], g.clone()), (vec![4], b.clone())])],
    );
    let mut want = vec![0f64; 24];
    for n in 0..2 {
        for grp in 0..2 {
            let idx: Vec<usize> = (0..3).flat_map(|tt| (0..2).map(move |k| n * 12 + tt * 4 + grp * 2 + k)).collect();
            let m = idx.iter().map(|&i| v[i]).sum::<f64>() / 6.0;
            let var = idx.iter().map(|&i| (v[i] - m).powi(2)).sum::<f64>() / 6.0;
            for &i in &idx {
                let c = i % 4;
                want[i] = (v[i] - m) / (var + 1e-3).sqrt() * g[c] as f64 + b[c] as f64;
            }
        }
    }
    assert_close(&run1(&s, x.clone()), &[2, 3, 4], &want, Tolerance::REDUCTION);
    // LayerNormalization(rms_scaling=True), Keras 3: x · rsqrt(var(x) + ε) · γ, no beta.
    let s = one_layer(
        "LayerNormalization",
        json!({"axis": -1, "epsilon": 1e-3, "rms_scaling": true}),
        &[3, 4],
        vec![lw("layer_normalization", "layer", vec![(vec![4], g.clone())])],
    );
    let want: Vec<f64> = v
        .chunks(4)
        .flat_map(|r| {
            let m = r.iter().sum::<f64>() / 4.0;
            let var = r.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 4.0;
            let g = g.clone();
            r.iter().enumerate().map(move |(c, a)| a / (var + 1e-3).sqrt() * g[c] as f64).collect::<Vec<_>>()
        })
        .collect();
    assert_close(&run1(&s, x.clone()), &[2, 3, 4], &want, Tolerance::REDUCTION);
    let s = one_layer("UnitNormalization", json!({"axis": -1}), &[3, 4], vec![]);
    let want: Vec<f64> = v
        .chunks(4)
        .flat_map(|r| {
            let n = r.iter().map(|a| a * a).sum::<f64>().sqrt();
            r.iter().map(move |a| a / n).collect::<Vec<_>>()
        })
        .collect();
    assert_close(&run1(&s, x), &[2, 3, 4], &want, Tolerance::REDUCTION);
    let table = seq(5 * 3, 0.77);
    let config = json!({"class_name": "Sequential", "config": {"name": "t", "layers": [
        input_layer("ids", &[4], "int32"), {"class_name": "Embedding", "config": {"name": "emb", "input_dim": 5, "output_dim": 3}}]}});
    let s = session(&config, &[lw("embedding", "emb", vec![(vec![5, 3], table.clone())])]);
    let ids = Tensor::new(vec![1, 4], TensorData::I32(vec![4, 0, 2, 2])).unwrap();
    let want: Vec<f64> =
        [4usize, 0, 2, 2].iter().flat_map(|&i| table[i * 3..i * 3 + 3].iter().map(|&a| a as f64)).collect();
    assert_close(&run1(&s, ids), &[1, 4, 3], &want, Tolerance::EXACT);
}

#[test]
fn normalization_layer_with_adapted_statistics() {
    let mean = vec![1.0f32, -2.0, 0.5];
    let var = vec![4.0f32, 0.25, 1.0];
    let s = one_layer(
        "Normalization",
        json!({"axis": -1}),
        &[3],
        vec![lw("normalization", "layer", vec![(vec![3], mean.clone()), (vec![3], var.clone()), (vec![], vec![10.0])])],
    );
    let x = t(&[2, 3], 0.9);
    let want: Vec<f64> =
        x.to_f64_vec().iter().enumerate().map(|(i, a)| (a - mean[i % 3] as f64) / (var[i % 3] as f64).sqrt()).collect();
    assert_close(&run1(&s, x), &[2, 3], &want, Tolerance::ELEMENTWISE);
}

#[test]
fn luong_attention_with_scale_and_causal_mask() {
    let (tq, tv, d) = (3, 4, 2);
    let config = json!({"class_name": "Functional", "config": {"name": "m", "layers": [
        input_layer("q", &[tq, d], "float32"), input_layer("v", &[tv, d], "float32"),
        {"class_name": "Attention", "config": {"name": "att", "use_scale": true, "score_mode": "dot"}, "name": "att",
         "inbound_nodes": [{"args": [[kt("q", 0), kt("v", 0)]], "kwargs": {"use_causal_mask": true}}]}],
        "input_layers": [["q", 0, 0], ["v", 0, 0]], "output_layers": [["att", 0, 0]]}});
    let s = session(&config, &[lw("attention", "att", vec![(vec![], vec![0.7])])]);
    let q = t(&[1, tq, d], 0.5);
    let v = t(&[1, tv, d], 1.1);
    let (qv, vv) = (q.to_f64_vec(), v.to_f64_vec());
    let mut want = Vec::new();
    for i in 0..tq {
        let scores: Vec<f64> = (0..tv)
            .map(|j| {
                if j > i {
                    f64::NEG_INFINITY
                } else {
                    0.7 * (0..d).map(|k| qv[i * d + k] * vv[j * d + k]).sum::<f64>()
                }
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
        for k in 0..d {
            want.push((0..tv).map(|j| (scores[j] - m).exp() / z * vv[j * d + k]).sum());
        }
    }
    assert_close(&s.run(&[q, v]).unwrap()[0], &[1, tq, d], &want, Tolerance::REDUCTION);
}

#[test]
fn separable_and_depthwise_conv1d() {
    let (l, c, dm, f, k) = (6, 2, 2, 3, 3);
    let dw = seq(k * c * dm, 0.31);
    let pw = seq(c * dm * f, 0.53);
    let b = seq(f, 0.9);
    let s = one_layer(
        "SeparableConv1D",
        json!({"filters": f, "kernel_size": k, "depth_multiplier": dm, "padding": "same"}),
        &[l, c],
        vec![lw(
            "separable_conv1d",
            "layer",
            vec![(vec![k, c, dm], dw.clone()), (vec![1, c * dm, f], pw.clone()), (vec![f], b.clone())],
        )],
    );
    let x = t(&[1, l, c], 0.44);
    let xv = x.to_f64_vec();
    let mut mid = vec![0f64; l * c * dm];
    for o in 0..l {
        for ch in 0..c {
            for m in 0..dm {
                let mut a = 0.0;
                for kk in 0..k {
                    let i = o as i64 + kk as i64 - 1;
                    if i >= 0 && (i as usize) < l {
                        a += xv[i as usize * c + ch] * dw[(kk * c + ch) * dm + m] as f64;
                    }
                }
                mid[o * c * dm + ch * dm + m] = a;
            }
        }
    }
    let mut want = Vec::new();
    for o in 0..l {
        for ff in 0..f {
            want.push(b[ff] as f64 + (0..c * dm).map(|j| mid[o * c * dm + j] * pw[j * f + ff] as f64).sum::<f64>());
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, l, f], &want, Tolerance::REDUCTION);
    let s = one_layer(
        "DepthwiseConv1D",
        json!({"kernel_size": k, "depth_multiplier": dm, "padding": "same", "use_bias": false}),
        &[l, c],
        vec![lw("depthwise_conv1d", "layer", vec![(vec![k, c, dm], dw.clone())])],
    );
    assert_close(&run1(&s, x), &[1, l, c * dm], &mid, Tolerance::REDUCTION);
}

/// A reference einsum over explicit index letters (every letter's size given), by enumeration.
fn einsum_ref(eq: &str, ops: &[(&[usize], Vec<f64>)]) -> (Vec<usize>, Vec<f64>) {
    let (lhs, out) = eq.split_once("->").unwrap();
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let mut size = std::collections::BTreeMap::new();
    for (t, (shape, _)) in terms.iter().zip(ops) {
        for (c, &n) in t.iter().zip(shape.iter()) {
            size.insert(*c, n);
        }
    }
    let letters: Vec<char> = size.keys().copied().collect();
    let out: Vec<char> = out.chars().collect();
    let oshape: Vec<usize> = out.iter().map(|c| size[c]).collect();
    let mut res = vec![0.0; oshape.iter().product()];
    let total: usize = letters.iter().map(|c| size[c]).product();
    for mut k in 0..total {
        let mut idx = std::collections::HashMap::new();
        for c in letters.iter().rev() {
            idx.insert(*c, k % size[c]);
            k /= size[c];
        }
        let flat = |t: &[char], shape: &[usize]| t.iter().zip(shape).fold(0, |a, (c, &n)| a * n + idx[c]);
        let p: f64 = terms.iter().zip(ops).map(|(t, (s, d))| d[flat(t, s)]).product();
        res[flat(&out, &oshape)] += p;
    }
    (oshape, res)
}

/// `keras.ops` layers: einsum in its forms (ellipsis, implicit output, one operand, a summed
/// index of one operand), matmul with a vector constant, GetItem with a new axis and a negative
/// step, against a reference written here.
#[test]
fn keras_ops_einsum_matmul_and_indexing() {
    let op = |class: &str, name: &str, args: Value, cfg: Value| {
        let mut c = json!({"name": name});
        for (k, v) in cfg.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"module": "keras.src.ops.numpy", "class_name": class, "config": c, "name": name,
               "inbound_nodes": [{"args": args, "kwargs": {}}]})
    };
    let w = seq(4 * 3, 0.9);
    let wv: Vec<Vec<f32>> = w.chunks(3).map(<[f32]>::to_vec).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "e1",
            op("Einsum", "e1", json!([kt("a", 0), kt("b", 0)]), json!({"subscripts": "...ij,...kj->...ik"})),
            "bij,bkj->bik",
        ),
        (
            "e2",
            op(
                "Einsum",
                "e2",
                json!([kt("a", 0), {"class_name": "__tensor__", "config": {"value": wv, "dtype": "float32"}}]),
                json!({"subscripts": "bij,jk"}),
            ),
            "bij,jk->bik",
        ),
        ("e3", op("Einsum", "e3", json!([kt("a", 0)]), json!({"subscripts": "bij->bji"})), "bij->bji"),
        (
            "e4",
            op("Einsum", "e4", json!([kt("a", 0), kt("b", 0)]), json!({"subscripts": "bij,bkl->bik"})),
            "bij,bkl->bik",
        ),
    ];
    let mut layers = vec![input_layer("a", &[2, 4], "float32"), input_layer("b", &[5, 4], "float32")];
    layers.extend(cases.iter().map(|c| c.1.clone()));
    layers.push(op("Matmul", "mv", json!([kt("b", 0), {"class_name": "__tensor__", "config": {"value": [1.0, 2.0, 3.0, 4.0], "dtype": "float32"}}]), json!({})));
    let sl = |s: Value, e: Value, st: Value| json!({"class_name": "__slice__", "config": {"start": s, "stop": e, "step": st}});
    layers.push(op(
        "GetItem",
        "gi",
        json!([
            kt("b", 0),
            [sl(json!(null), json!(null), json!(null)), null, sl(json!(null), json!(null), json!(-2)), 1]
        ]),
        json!({}),
    ));
    let mut outs: Vec<Value> = cases.iter().map(|c| json!([c.0, 0, 0])).collect();
    outs.push(json!(["mv", 0, 0]));
    outs.push(json!(["gi", 0, 0]));
    let config = json!({"class_name": "Functional", "config": {"name": "m", "layers": layers,
        "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": outs}});
    let s = session(&config, &[]);
    let (a, b) = (t(&[2, 2, 4], 0.4), t(&[2, 5, 4], 1.3));
    let got = s.run(&[a.clone(), b.clone()]).unwrap();
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let wd: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    for (k, (_, _, eq)) in cases.iter().enumerate() {
        let operands: Vec<(&[usize], Vec<f64>)> = match k {
            1 => vec![(&[2, 2, 4], av.clone()), (&[4, 3], wd.clone())],
            2 => vec![(&[2, 2, 4], av.clone())],
            _ => vec![(&[2, 2, 4], av.clone()), (&[2, 5, 4], bv.clone())],
        };
        let (shape, want) = einsum_ref(eq, &operands);
        assert_close(&got[k], &shape, &want, Tolerance::REDUCTION);
    }
    let (shape, want) = einsum_ref("bij,j->bi", &[(&[2, 5, 4], bv.clone()), (&[4], vec![1.0, 2.0, 3.0, 4.0])]);
    assert_close(&got[4], &shape, &want, Tolerance::REDUCTION);
    // b[:, None, ::-2, 1]
    let gi: Vec<f64> = (0..2).flat_map(|n| [4, 2, 0].map(|i| bv[n * 20 + i * 4 + 1])).collect();
    assert_close(&got[5], &[2, 1, 3], &gi, Tolerance::ELEMENTWISE);
}

/// Unsupported `keras.ops` calls are listed with every other unsupported layer, at once.
#[test]
fn unsupported_keras_ops_are_listed_together() {
    let layer = |class: &str, name: &str, module: &str| {
        json!({"module": module, "class_name": class, "config": {"name": name}, "name": name,
               "inbound_nodes": [{"args": [kt("a", 0)], "kwargs": {}}]})
    };
    let config = json!({"class_name": "Functional", "config": {"name": "m", "layers": [
        input_layer("a", &[4], "float32"), layer("Argmax", "am", "keras.src.ops.numpy"),
        layer("Fft", "fft", "keras.src.ops.math"), layer("Sqrt", "sq", "keras.src.ops.numpy")],
        "input_layers": [["a", 0, 0]], "output_layers": [["am", 0, 0], ["fft", 0, 0], ["sq", 0, 0]]}});
    let Err(e) = kerasc::load_bytes(keras_archive(&config, &[]), "test.keras") else { panic!("must fail") };
    let e = e.to_string();
    assert!(e.contains("keras.ops.argmax 'am'") && e.contains("keras.ops.fft 'fft'") && !e.contains("'sq'"), "{e}");
}
