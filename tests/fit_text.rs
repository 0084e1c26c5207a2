//! Fine-tuning through the host stage: a text classifier (TextVectorization and Hashing on
//! string inputs) that Keras fine-tuned on string data (`tests/models/train/text_fit.*`, made by
//! scripts/make-text-fixture.py): `kerasc fit` on the same strings ends at Keras's weights and
//! history.

mod common;

use common::{kerasc, models_dir, tmpdir};
use kerasc::ir::Tolerance;

#[test]
fn a_text_model_fine_tunes_like_keras_on_strings() {
    let dir = models_dir().join("train");
    let tmp = tmpdir("fit-text");
    let (out, hist) = (tmp.join("out.keras"), tmp.join("h.json"));
    let (m, data) = (dir.join("text_fit.keras"), dir.join("text_fit.data.npz"));
    let mut args = vec!["fit", m.to_str().unwrap(), "--data", data.to_str().unwrap()];
    args.extend(["--output", out.to_str().unwrap(), "--history", hist.to_str().unwrap()]);
    args.extend(["--epochs", "2", "--batch-size", "4", "--no-shuffle", "--verbose", "0"]);
    let r = kerasc(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (ours, keras) = (kerasc::load(&out).unwrap(), kerasc::load(&dir.join("text_fit.trained.keras")).unwrap());
    for (v, t) in ours.graph.constants() {
        let name = &ours.graph.value(*v).name;
        let want = keras.graph.constants().iter().find(|(c, _)| keras.graph.value(**c).name == *name).unwrap().1;
        let c = Tolerance { atol: 1e-6, rtol: 1e-5 }.compare(&t.to_f64_vec(), &want.to_f64_vec());
        assert!(c.passed(), "{name}: {c}");
    }
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hist).unwrap()).unwrap();
    let k: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("text_fit.history.json")).unwrap()).unwrap();
    for (key, vals) in k.as_object().unwrap() {
        for (a, b) in h[key].as_array().unwrap_or_else(|| panic!("no {key}")).iter().zip(vals.as_array().unwrap()) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-2), "{key}: {a} vs Keras {b}");
        }
    }
}
