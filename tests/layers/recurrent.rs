//! Recurrent layers and wrappers: SimpleRNN backwards with states, Bidirectional merge modes,
//! GRU with reset_after=False, TimeDistributed.

use crate::common::LayerWeights;
use crate::support::{assert_close, input_layer, one_layer, run1, seq, session, t};
use kerasc::ir::Tolerance;
use serde_json::json;

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
