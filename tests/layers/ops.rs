//! `keras.ops` calls: einsum, matmul and indexing, and the listing of unsupported ones.

use crate::common::keras_archive;
use crate::support::{assert_close, input_layer, kt, seq, session, t};
use kerasc::ir::Tolerance;
use serde_json::{json, Value};

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
