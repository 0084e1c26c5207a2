//! Golden models: every dev model in all three Keras formats, run end to end through the
//! `kerasc run` CLI and compared with Keras's own output at the model tolerance.

mod common;

use common::{kerasc, models_dir, DEV_MODELS};
use kerasc::{ir::Tolerance, npy};

fn check_format(ext: &str) {
    let dir = models_dir();
    let tmp = std::env::temp_dir().join(format!("kerasc-golden-{}-{ext}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for m in DEV_MODELS {
        let model = dir.join(format!("{m}.{ext}"));
        let input = dir.join(format!("{m}.input.npy"));
        // Keras 2 files carry Keras 2 semantics where they differ (NAME.k2.expected.npy).
        let k2_expected = dir.join(format!("{m}.k2.expected.npy"));
        let expected =
            if ext == "k2.h5" && k2_expected.exists() { k2_expected } else { dir.join(format!("{m}.expected.npy")) };
        let out = tmp.join(format!("{m}.npy"));
        let res = kerasc(&[
            "run",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--device",
            "/CPU:0",
        ]);
        if !res.status.success() {
            failures.push(format!("{m}.{ext}: exit {:?}: {}", res.status.code(), String::from_utf8_lossy(&res.stderr)));
            continue;
        }
        let got = npy::read(&out).unwrap();
        let want = npy::read(&expected).unwrap();
        if got.shape() != want.shape() {
            failures.push(format!("{m}.{ext}: shape {:?}, Keras gives {:?}", got.shape(), want.shape()));
            continue;
        }
        let cmp = Tolerance::MODEL.compare(&got.to_f64_vec(), &want.to_f64_vec());
        if !cmp.passed() {
            failures.push(format!("{m}.{ext}: {cmp}"));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{} model(s) differ from Keras:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn keras3_h5_models_match_keras() {
    check_format("h5");
}

#[test]
fn keras2_h5_models_match_keras() {
    check_format("k2.h5");
}

#[test]
fn keras_archives_match_keras() {
    check_format("keras");
}
