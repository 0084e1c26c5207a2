//! ONNX's light model-zoo architectures (the onnx wheel's backend/test/data/light: AlexNet,
//! DenseNet-121, Inception v1 and v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, as
//! other frameworks' converters wrote them, opset 9, channels first) with seeded random weights,
//! made with ONNX Runtime's outputs by scripts/make-light-models.py into
//! target/onnx-tests/light-random (hundreds of MB: not in git). Each runs through kerasc,
//! optimized, and must match ONNX Runtime within a relative L2 error of 1e-4. Without the set
//! the test says so and is skipped, unless KERASC_REQUIRE_ONNX_NODE is set (CI).

mod common;

use kerasc::{npy, Executor, ExecutorOptions, LogicalDevices, OptimizeOptions};
use std::path::PathBuf;

#[test]
fn light_model_zoo_matches_onnx_runtime() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/onnx-tests/light-random");
    let names = common::stems(&dir, ".onnx");
    if names.is_empty() {
        common::cannot_run(
            "KERASC_REQUIRE_ONNX_NODE",
            "no light model-zoo set in target/onnx-tests/light-random (run scripts/setup-test-deps.sh)",
        );
        return;
    }
    let device = LogicalDevices::physical().get(kerasc::Device::CPU).unwrap().clone();
    let options = ExecutorOptions {
        device,
        naive: false,
        optimize: OptimizeOptions::default(),
        ptx_cache: std::env::temp_dir(),
        precision: Default::default(),
        memory_limit: None,
    };
    let mut failures = Vec::new();
    for name in &names {
        let model = dir.join(format!("{name}.onnx"));
        let x = npy::read_array(&dir.join(format!("{name}.input0.npy"))).unwrap();
        let want: Vec<kerasc::ir::Tensor> = (0..)
            .map(|k| dir.join(format!("{name}.expected{k}.npy")))
            .take_while(|p| p.exists())
            .map(|p| npy::read(&p).unwrap())
            .collect();
        let run = || -> Result<f64, String> {
            let (m, _) = kerasc::specialize::load_for(&model, std::slice::from_ref(&x)).map_err(|e| e.to_string())?;
            let info = format!("opset {}", m.info.keras_version);
            assert!(info.contains("opset 9"), "{name}: {info}");
            let (exec, _) = Executor::new(&m.graph, &options).map_err(|e| e.to_string())?;
            let npy::Array::Tensor(t) = &x else { return Err("a string input".into()) };
            let got = exec.run(std::slice::from_ref(t)).map_err(|e| e.to_string())?;
            if got.len() != want.len() {
                return Err(format!("{} outputs, ONNX Runtime's {}", got.len(), want.len()));
            }
            // The worst output (the probabilities, and the logits before a saturated softmax).
            let mut worst = 0f64;
            for (k, (got, want)) in got.iter().zip(&want).enumerate() {
                if got.shape() != want.shape() {
                    return Err(format!("output {k}: shape {:?}, ONNX Runtime's {:?}", got.shape(), want.shape()));
                }
                let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
                let err: f64 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                let norm: f64 = w.iter().map(|b| b * b).sum::<f64>().sqrt();
                worst = worst.max(err / norm.max(1e-30));
            }
            Ok(worst)
        };
        match run() {
            Ok(rel) if rel <= 1e-4 => println!("{name}: relative L2 error {rel:.2e}"),
            Ok(rel) => failures.push(format!("{name}: relative L2 error {rel:.2e} (above 1e-4)")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} light models fail:\n{}", failures.len(), names.len(), failures.join("\n"));
}
