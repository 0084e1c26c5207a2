//! The optimized plan against the naive one and against Keras, on every dev model.

mod common;

use common::{models_dir, DEV_MODELS};
use kerasc::{ir::Tolerance, npy, OptimizeOptions, Session, SessionOptions};

#[test]
fn optimized_plan_matches_naive_and_keras_on_every_dev_model() {
    let mut failures = Vec::new();
    for name in DEV_MODELS {
        let dir = models_dir();
        let model = kerasc::load(&dir.join(format!("{name}.keras"))).unwrap();
        let inputs = vec![npy::read(&dir.join(format!("{name}.input.npy"))).unwrap()];
        let naive = Session::new(model.graph.clone(), SessionOptions::default()).unwrap();
        let want = naive.run(&inputs).unwrap();
        let (planned, report) =
            kerasc::compile(&model.graph, &OptimizeOptions::default(), SessionOptions::default()).unwrap();
        assert!(report.seconds < 5.0, "{name}: optimizer took {} s", report.seconds);
        // Twice, so the second run reuses the arena of the first.
        for _ in 0..2 {
            let got = planned.run(&inputs).unwrap();
            let expected = npy::read(&dir.join(format!("{name}.expected.npy"))).unwrap();
            for (what, w) in [("naive", &want[0]), ("Keras", &expected)] {
                assert_eq!(got[0].shape(), w.shape(), "{name}");
                let c = Tolerance::MODEL.compare(&got[0].to_f64_vec(), &w.to_f64_vec());
                if !c.passed() {
                    failures.push(format!("{name}: optimized vs {what}: {c}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
