//! Merges and Dot with several inputs and outputs, activations, normalizations, embeddings and
//! attention.

use crate::common::LayerWeights;
use crate::support::{assert_close, input_layer, kt, lw, one_layer, run1, seq, session, t};
use kerasc::ir::{Tensor, TensorData, Tolerance};
use serde_json::{json, Value};

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
