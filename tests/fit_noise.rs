//! Noise layers in training beyond Dropout's plain form: AlphaDropout, and Dropout with a
//! `noise_shape` (`tests/models/train/noise_layers.h5`, compiled by Keras; Keras's random
//! streams are its own, so the run is checked for being active, seeded and switchable).

mod common;

use common::{kerasc, models_dir, tmpdir};

fn weights_of(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let m = kerasc::load(path).unwrap();
    let mut w: Vec<(String, Vec<f32>)> =
        m.graph.constants().iter().map(|(v, t)| (m.graph.value(*v).name.clone(), t.to_f32_vec())).collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn alpha_dropout_and_noise_shapes_train_seeded() {
    let dir = tmpdir("fit-noise");
    let train = models_dir().join("train");
    let (m, data) = (train.join("noise_layers.h5"), train.join("sequence.npz"));
    let fit = |out: &str, extra: &[&str]| {
        let o = dir.join(out);
        let mut args =
            vec!["fit", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--output", o.to_str().unwrap()];
        args.extend(["--epochs", "2", "--batch-size", "16", "--verbose", "0"]);
        args.extend(extra);
        let r = kerasc(&args);
        assert!(r.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&r.stderr));
        weights_of(&o)
    };
    let a = fit("a.h5", &["--seed", "1"]);
    assert_eq!(a, fit("b.h5", &["--seed", "1"]), "the same seed must give the same run");
    assert_ne!(a, fit("c.h5", &["--seed", "2"]), "another seed must draw other masks");
    assert_ne!(a, fit("d.h5", &["--seed", "1", "--no-dropout"]), "--no-dropout must turn the noise off");
    let before = weights_of(&m);
    assert!(a.iter().zip(&before).all(|(x, y)| x.0 == y.0) && a != before, "the weights must train");
}
