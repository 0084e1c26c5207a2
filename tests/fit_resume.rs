//! The optimizer's state across Keras and kerasc (`tests/models/train/resume`, made by
//! scripts/make-resume-fixtures.py): models compiled and saved by Keras before training, after 3
//! epochs of Keras's fit (with its optimizer's whole state), and Keras's weights after a 4th.
//! `kerasc fit` must write the state Keras would have (so Keras continues where kerasc stopped)
//! and continue from the state Keras wrote, in `.keras` and `.h5`.

mod common;

use common::{kerasc, models_dir, tmpdir};
use kerasc::frontend::keras::save::read_optimizer;
use kerasc::ir::{Tensor, Tolerance};
use std::path::{Path, PathBuf};

const CASES: [&str; 4] = ["adam_amsgrad", "rmsprop_centered", "nadam", "sgd_momentum_bn"];

fn dir() -> PathBuf {
    models_dir().join("train").join("resume")
}

fn fit(model: &Path, out: &Path, epochs: &str) {
    let data = models_dir().join("train").join("regression.npz");
    let r = kerasc(&[
        "fit",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--no-shuffle",
        "--verbose",
        "0",
    ]);
    assert!(r.status.success(), "{}: {}", model.display(), String::from_utf8_lossy(&r.stderr));
}

/// A file's weights in Keras's `model.weights` order.
fn weights(path: &Path) -> Vec<Tensor> {
    let m = kerasc::load(path).unwrap();
    m.weight_order
        .iter()
        .map(|p| {
            let v = m.weight_sources.iter().find(|(_, q)| *q == p).map(|(v, _)| *v).unwrap();
            m.graph.constant(v).unwrap().clone()
        })
        .collect()
}

fn close(what: &str, got: &Tensor, want: &Tensor, tol: Tolerance) {
    assert_eq!(got.shape().iter().product::<usize>(), want.shape().iter().product::<usize>(), "{what}");
    let c = tol.compare(&got.to_f64_vec(), &want.to_f64_vec());
    assert!(c.passed(), "{what}: {c}");
}

/// Three epochs of `kerasc fit` from a model Keras saved untrained write the optimizer variables
/// (and iteration count) Keras's own three epochs wrote, in Keras's order and shapes: added to
/// a file that has none yet, or rewritten where it has them.
#[test]
fn fit_writes_the_optimizer_state_keras_would_have() {
    for name in CASES {
        for ext in ["keras", "h5"] {
            let tmp = tmpdir(&format!("resume-write-{name}-{ext}"));
            let out = tmp.join(format!("out.{ext}"));
            let src = dir().join(format!("{name}.{ext}"));
            // The .keras holds the iteration count and learning rate only (kerasc adds the rest);
            // the .h5, written from it loaded back, a fresh state (kerasc rewrites it).
            match read_optimizer(&src).unwrap() {
                None => assert_eq!(ext, "keras"),
                Some(s) => assert!(ext == "h5" && s.iterations == 0, "{name}.{ext}: trained already"),
            }
            fit(&src, &out, "3");
            let ours =
                read_optimizer(&out).unwrap().unwrap_or_else(|| panic!("{name}.{ext}: no optimizer state written"));
            let keras = read_optimizer(&dir().join(format!("{name}.k3.{ext}"))).unwrap().unwrap();
            assert_eq!(ours.iterations, keras.iterations, "{name}.{ext}: iterations");
            assert_eq!(ours.variables.len(), keras.variables.len(), "{name}.{ext}: how many optimizer variables");
            for (k, (a, b)) in ours.variables.iter().zip(&keras.variables).enumerate() {
                assert_eq!(a.shape(), b.shape(), "{name}.{ext}: optimizer variable {k}");
                close(&format!("{name}.{ext}: optimizer variable {k}"), a, b, Tolerance { atol: 1e-5, rtol: 1e-4 });
            }
            let (w, k) = (weights(&out), weights(&dir().join(format!("{name}.k3.{ext}"))));
            for (i, (a, b)) in w.iter().zip(&k).enumerate() {
                close(&format!("{name}.{ext}: weight {i}"), a, b, Tolerance { atol: 1e-5, rtol: 1e-4 });
            }
        }
    }
}

/// One epoch of `kerasc fit` from the file Keras saved after three continues Keras's training
/// (its slots and iteration count, so Adam's bias correction and Nadam's momentum product go
/// on): the weights equal Keras's after four epochs in one run.
#[test]
fn fit_continues_from_the_optimizer_state_keras_saved() {
    for name in CASES {
        let want: Vec<Tensor> =
            kerasc::npy::read_npz(&dir().join(format!("{name}.k4.npz"))).unwrap().into_iter().map(|(_, t)| t).collect();
        for ext in ["keras", "h5"] {
            let tmp = tmpdir(&format!("resume-read-{name}-{ext}"));
            let out = tmp.join(format!("out.{ext}"));
            fit(&dir().join(format!("{name}.k3.{ext}")), &out, "1");
            let got = weights(&out);
            assert_eq!(got.len(), want.len(), "{name}.{ext}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                close(&format!("{name}.{ext}: weight {i}"), a, b, Tolerance { atol: 1e-6, rtol: 1e-5 });
            }
            assert_eq!(
                read_optimizer(&out).unwrap().unwrap().iterations,
                16,
                "{name}.{ext}: iterations after 4 epochs"
            );
        }
    }
}
