//! The real-world check set (scripts/make-realworld.py into target/realworld; too large for git,
//! so scripts/setup-test-deps.sh generates CI's share of it): keras.applications architectures
//! with random weights and perturbed batch-norm statistics, a ViT and a masked BERT-like
//! classifier from plain Keras layers, saved by Keras 3 as .keras and .h5 — every one through
//! `kerasc run`, optimized and naive, within atol 1e-4 + rtol 1e-3 of Keras's output. Without the
//! set the test says so and is skipped, unless KERASC_REQUIRE_REALWORLD is set (CI).

mod common;

use common::{kerasc, tmpdir};
use kerasc::{ir::Tolerance, npy};
use std::path::PathBuf;

#[test]
fn real_world_models_match_keras() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("realworld");
    let names = common::stems(&dir, ".expected.npy");
    if names.is_empty() {
        common::cannot_run(
            "KERASC_REQUIRE_REALWORLD",
            "no real-world check set in target/realworld (run scripts/setup-test-deps.sh)",
        );
        return;
    }
    let tmp = tmpdir("realworld");
    let mut checked = 0;
    for name in &names {
        let want = npy::read(&dir.join(format!("{name}.expected.npy"))).unwrap();
        let input = dir.join(format!("{name}.input0.npy"));
        for ext in ["keras", "h5"] {
            let m = dir.join(format!("{name}.{ext}"));
            if !m.exists() {
                continue;
            }
            for naive in [false, true] {
                let out = tmp.join(format!("{name}-{ext}-{naive}.npy"));
                let mut args = vec!["run", m.to_str().unwrap(), "--input", input.to_str().unwrap()];
                args.extend(["--output", out.to_str().unwrap()]);
                if naive {
                    args.push("--naive");
                }
                let r = kerasc(&args);
                assert!(r.status.success(), "{name}.{ext}: {}", String::from_utf8_lossy(&r.stderr));
                let got = npy::read(&out).unwrap();
                assert_eq!(got.shape(), want.shape(), "{name}.{ext}");
                let c = Tolerance { atol: 1e-4, rtol: 1e-3 }.compare(&got.to_f64_vec(), &want.to_f64_vec());
                assert!(c.passed(), "{name}.{ext} (naive={naive}): {c}");
                checked += 1;
            }
        }
    }
    eprintln!("{checked} runs of {} real-world models match Keras", names.len());
}
