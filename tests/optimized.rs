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

#[test]
fn arena_is_near_the_lower_bound_and_saturation_finishes() {
    let mut lines = Vec::new();
    for name in DEV_MODELS {
        let model = kerasc::load(&models_dir().join(format!("{name}.keras"))).unwrap();
        let opt = kerasc::optimizer::optimize(&model.graph, &OptimizeOptions::default()).unwrap();
        assert_eq!(opt.report.egraph.stop_reason, "saturated", "{name}");
        for batch in [1, 32] {
            let p = kerasc::optimizer::plan(&opt.graph, batch).unwrap();
            let ratio = p.arena_bytes as f64 / p.lower_bound_bytes.max(1) as f64;
            lines.push(format!(
                "{name} b{batch}: arena {} lower bound {} naive {}",
                p.arena_bytes, p.lower_bound_bytes, p.naive_bytes
            ));
            assert!(
                ratio <= 1.10,
                "{name} at batch {batch}: arena {} vs lower bound {}",
                p.arena_bytes,
                p.lower_bound_bytes
            );
            assert!(p.arena_bytes <= p.naive_bytes, "{name}");
        }
    }
    println!("{}", lines.join("\n"));
}
