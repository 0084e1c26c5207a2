//! Building one-layer and small `.keras` models in memory and running them both ways (naive and
//! optimized, which must agree).

use crate::common::{keras_archive, LayerWeights};
use kerasc::ir::{Tensor, Tolerance};
use kerasc::{OptimizeOptions, PlannedSession, RuntimeError, Session, SessionOptions};
use serde_json::{json, Value};

pub(crate) fn seq(n: usize, s: f64) -> Vec<f32> {
    (0..n).map(|i| ((i as f64) * s + 0.3).sin() as f32).collect()
}

pub(crate) fn input_layer(name: &str, shape: &[usize], dtype: &str) -> Value {
    let mut bs: Vec<Value> = vec![Value::Null];
    bs.extend(shape.iter().map(|&d| json!(d)));
    json!({"class_name": "InputLayer", "config": {"batch_shape": bs, "dtype": dtype, "name": name}, "name": name, "inbound_nodes": []})
}

pub(crate) fn lw(key: &str, name: &str, vars: Vec<(Vec<usize>, Vec<f32>)>) -> LayerWeights {
    LayerWeights { key: key.into(), name: name.into(), vars, children: vec![] }
}

/// A Sequential model of one layer on an input of `shape` (without batch).
pub(crate) fn one_layer(class: &str, cfg: Value, shape: &[usize], weights: Vec<LayerWeights>) -> Both {
    let mut cfg = cfg;
    cfg["name"] = json!("layer");
    let config = json!({"class_name": "Sequential", "config": {"name": "t", "layers": [
        input_layer("x", shape, "float32"), {"class_name": class, "config": cfg}]}});
    session(&config, &weights)
}

/// The model run both ways: the frontend's graph op by op, and optimized from an arena. Every
/// run checks that the two agree and returns the optimized result.
pub(crate) struct Both {
    pub(crate) naive: Session,
    pub(crate) planned: PlannedSession,
}

impl Both {
    pub(crate) fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let want = self.naive.run(inputs)?;
        let got = self.planned.run(inputs)?;
        assert_eq!(got.len(), want.len(), "outputs");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape(), w.shape());
            let c = Tolerance::REDUCTION.compare(&g.to_f64_vec(), &w.to_f64_vec());
            assert!(c.passed(), "optimized vs naive: {c}\n{}", kerasc::ir::render::to_text(self.planned.graph()));
        }
        Ok(got)
    }
}

pub(crate) fn session(config: &Value, weights: &[LayerWeights]) -> Both {
    let bytes = keras_archive(config, weights);
    let model = kerasc::load_bytes(bytes, "test.keras").unwrap_or_else(|e| panic!("{e}"));
    let (planned, _) = kerasc::compile(&model.graph, &OptimizeOptions::default(), SessionOptions::default()).unwrap();
    Both { naive: Session::new(model.graph, SessionOptions::default()).unwrap(), planned }
}

pub(crate) fn run1(s: &Both, x: Tensor) -> Tensor {
    s.run(&[x]).unwrap_or_else(|e| panic!("{e}")).remove(0)
}

pub(crate) fn assert_close(got: &Tensor, shape: &[usize], want: &[f64], tol: Tolerance) {
    assert_eq!(got.shape(), shape);
    let c = tol.compare(&got.to_f64_vec(), want);
    assert!(c.passed(), "{c}");
}

pub(crate) fn t(shape: &[usize], s: f64) -> Tensor {
    Tensor::from_f32(shape, seq(shape.iter().product(), s)).unwrap()
}

pub(crate) fn kt(layer: &str, tensor: usize) -> Value {
    json!({"class_name": "__keras_tensor__", "config": {"keras_history": [layer, 0, tensor]}})
}
