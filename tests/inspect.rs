//! `kerasc inspect` prints the layer table and parameter counts of Keras's `model.summary()`.

mod common;

use common::{kerasc, models_dir, DEV_MODELS};
use serde_json::Value;

fn inspect_json(path: &std::path::Path) -> Value {
    let out = kerasc(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(ext: &str, compare_names: bool) {
    let mut failures = Vec::new();
    for m in DEV_MODELS {
        let want: Value =
            serde_json::from_slice(&std::fs::read(models_dir().join(format!("{m}.summary.json"))).unwrap()).unwrap();
        let got = inspect_json(&models_dir().join(format!("{m}.{ext}")));
        for key in ["total_params", "trainable_params", "non_trainable_params"] {
            if got[key] != want[key] {
                failures.push(format!("{m}.{ext}: {key} {} vs Keras {}", got[key], want[key]));
            }
        }
        let (gl, wl) = (got["layers"].as_array().unwrap(), want["layers"].as_array().unwrap());
        if gl.len() != wl.len() {
            failures.push(format!("{m}.{ext}: {} layers vs Keras {}", gl.len(), wl.len()));
            continue;
        }
        for (g, w) in gl.iter().zip(wl) {
            let mut keys = vec!["class", "output_shape", "params"];
            if compare_names {
                keys.push("name");
            }
            for k in keys {
                if g[k] != w[k] {
                    failures.push(format!("{m}.{ext}: layer {} {k}: {} vs Keras {}", w["name"], g[k], w[k]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn keras_archive_summaries_match_keras() {
    check("keras", true);
}

#[test]
fn keras3_h5_summaries_match_keras() {
    check("h5", true);
}

#[test]
fn keras2_h5_summaries_match_keras() {
    // Keras 2 auto-names some layers differently (input_1 vs keras_tensor): compare the rest.
    check("k2.h5", false);
}

#[test]
fn table_shows_format_version_and_totals() {
    let out = kerasc(&["inspect", models_dir().join("resnet_block.k2.h5").to_str().unwrap()]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Keras 2 legacy HDF5"), "{s}");
    assert!(s.contains("2.21.0"), "{s}");
    assert!(s.contains("stem_bn (BatchNormalization)"), "{s}");
    assert!(s.contains("Total params: 2,009"), "{s}");
    assert!(s.contains("Non-trainable params: 48"), "{s}");
}
