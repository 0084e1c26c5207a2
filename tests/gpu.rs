//! On a machine with a GPU: every dev model on /GPU:0 (optimized with a CUDA graph, and naive)
//! against Keras's outputs and the CPU executor. Elsewhere each test prints why it is skipped,
//! or fails when KERASC_REQUIRE_GPU is set (scripts/gpu-check.sh sets it).
//! Models are read from KERASC_MODELS when set (the device machine's bundle), else tests/models.

mod common;

use common::DEV_MODELS;
use kerasc::ir::Tolerance;
use kerasc::{npy, Device, Executor, ExecutorOptions, OptimizeOptions};
use std::path::PathBuf;

fn models() -> PathBuf {
    std::env::var_os("KERASC_MODELS").map(PathBuf::from).unwrap_or_else(common::models_dir)
}

fn gpu() -> Option<Device> {
    match Device::Cuda(0).ensure_available() {
        Ok(d) => Some(d),
        Err(e) => {
            common::cannot_run("KERASC_REQUIRE_GPU", &e.to_string());
            None
        }
    }
}

/// The physical device `d`, to run on.
fn on(d: Device) -> kerasc::LogicalDevice {
    kerasc::LogicalDevices::physical().get(d).unwrap().clone()
}

#[test]
fn dev_models_on_the_gpu_match_keras_and_the_cpu() {
    let Some(device) = gpu() else { return };
    let cache = std::env::temp_dir().join("kerasc-test-ptx");
    let mut failures = Vec::new();
    // The Keras archives and their ONNX exports.
    for (name, ext) in DEV_MODELS.iter().flat_map(|n| [(n, "keras"), (n, "onnx")]) {
        let dir = models();
        let Ok(model) = kerasc::load(&dir.join(format!("{name}.{ext}"))) else {
            failures.push(format!("{name}.{ext}: not in the bundle or unreadable"));
            continue;
        };
        let x = npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
        let want_dtype = model.graph.value(model.graph.inputs()[0]).ty.dtype;
        let x = if x.dtype() != want_dtype { x.cast(want_dtype) } else { x };
        let expected = npy::read(&dir.join(format!("{name}.expected.npy"))).unwrap();
        for naive in [false, true] {
            let opts = ExecutorOptions {
                device: on(device),
                naive,
                optimize: OptimizeOptions::default(),
                ptx_cache: cache.clone(),
                precision: Default::default(),
                memory_limit: None,
            };
            let (exec, _) = match Executor::new(&model.graph, &opts) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{name}.{ext} (naive={naive}): {e}"));
                    continue;
                }
            };
            // Twice: the second run replays the captured CUDA graph.
            for run in 0..2 {
                match exec.run(std::slice::from_ref(&x)) {
                    Ok(got) => {
                        let c = Tolerance::MODEL.compare(&got[0].to_f64_vec(), &expected.to_f64_vec());
                        if !c.passed() || got[0].shape() != expected.shape() {
                            failures.push(format!("{name}.{ext} (naive={naive}, run {run}): {c}"));
                        }
                    }
                    Err(e) => failures.push(format!("{name}.{ext} (naive={naive}, run {run}): {e}")),
                }
            }
        }
        println!("{name}.{ext}: done on {device}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_gpu_that_does_not_exist_lists_the_devices() {
    let e = Device::Cuda(97).ensure_available().unwrap_err().to_string();
    assert!(e.contains("/GPU:97") && e.contains("available devices: /CPU:0"), "{e}");
}

/// `fit` on /GPU:0 (forward and backward kernels and the optimizer's update on the device):
/// mlp and cnn_mnist, SGD 0.01, batch 16, 2 epochs, no shuffle, end at Keras's fine-tuned
/// weights as the CPU run does.
#[test]
fn fit_on_the_gpu_matches_keras() {
    let Some(Device::Cuda(ordinal)) = gpu() else { return };
    let dir = models();
    let tmp = std::env::temp_dir().join(format!("kerasc-gpu-fit-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for name in ["mlp", "cnn_mnist"] {
        let source = dir.join(format!("{name}.h5"));
        let model = kerasc::load(&source).unwrap();
        let out = tmp.join(format!("{name}.h5"));
        let data = dir.join(format!("{name}.finetune.npz"));
        let mut opts = kerasc::fit::FitOptions::from_flags([
            "--data",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--epochs=2",
            "--batch-size=16",
            "--optimizer=sgd",
            "--learning-rate=0.01",
            "--loss=sparse_categorical_crossentropy",
            "--no-shuffle",
            "--no-dropout",
            "--verbose=0",
        ])
        .unwrap();
        opts.cuda =
            Some(kerasc::runtime::cuda::CudaOptions::new(ordinal, std::env::temp_dir().join("kerasc-test-ptx")));
        if let Err(e) = kerasc::fit::fit(&model, &source, &opts) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        let ours = kerasc::load(&out).unwrap();
        let keras = kerasc::load(&dir.join(format!("{name}.finetuned.h5"))).unwrap();
        for (v, t) in ours.graph.constants() {
            let wname = &ours.graph.value(*v).name;
            let Some((_, want)) = keras.graph.constants().iter().find(|(c, _)| keras.graph.value(**c).name == *wname)
            else {
                continue;
            };
            let c = Tolerance { atol: 1e-4, rtol: 1e-3 }.compare(&t.to_f64_vec(), &want.to_f64_vec());
            if !c.passed() {
                failures.push(format!("{name} {wname}: {c}"));
            }
        }
        println!("{name}: trained on /GPU:{ordinal}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The optimizer's update on the device (weights and slots kept there, only the batch crossing
/// the bus), for rules with slots and each kind of clipping: `fit` on /GPU:0 ends where `fit` on
/// the CPU does, epoch losses included, with a short last batch (its own plan) every epoch.
#[test]
fn the_device_update_trains_like_the_cpu() {
    let Some(Device::Cuda(ordinal)) = gpu() else { return };
    let dir = models();
    let tmp = std::env::temp_dir().join(format!("kerasc-gpu-update-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let source = dir.join("mlp.h5");
    let model = kerasc::load(&source).unwrap();
    let data = dir.join("mlp.finetune.npz");
    let mut failures = Vec::new();
    for flags in [
        &["--optimizer=adam", "--learning-rate=0.01", "--clipnorm=0.5"][..],
        &["--optimizer=adamw", "--learning-rate=0.01", "--global-clipnorm=1"],
        &["--optimizer=rmsprop", "--learning-rate=0.01", "--clipvalue=0.01"],
        &["--optimizer=sgd", "--learning-rate=0.05", "--momentum=0.9", "--nesterov"],
        &["--optimizer=nadam", "--learning-rate=0.01"],
    ] {
        let mut weights = Vec::new();
        let mut losses = Vec::new();
        for gpu in [false, true] {
            let out = tmp.join(format!("mlp.{gpu}.h5"));
            let hist = tmp.join(format!("mlp.{gpu}.json"));
            let mut args = vec![
                "--data".to_string(),
                data.to_str().unwrap().into(),
                "--output".into(),
                out.to_str().unwrap().into(),
                "--history".into(),
                hist.to_str().unwrap().into(),
                "--epochs=3".into(),
                "--batch-size=25".into(),
                "--no-dropout".into(),
                "--loss=sparse_categorical_crossentropy".into(),
                "--no-shuffle".into(),
                "--verbose=0".into(),
            ];
            args.extend(flags.iter().map(|f| f.to_string()));
            let mut opts = kerasc::fit::FitOptions::from_flags(args).unwrap();
            if gpu {
                let cache = std::env::temp_dir().join("kerasc-test-ptx");
                opts.cuda = Some(kerasc::runtime::cuda::CudaOptions::new(ordinal, cache));
            }
            if let Err(e) = kerasc::fit::fit(&model, &source, &opts) {
                failures.push(format!("{flags:?} (GPU: {gpu}): {e}"));
                break;
            }
            let m = kerasc::load(&out).unwrap();
            let mut ws: Vec<(String, Vec<f64>)> =
                m.graph.constants().iter().map(|(v, t)| (m.graph.value(*v).name.clone(), t.to_f64_vec())).collect();
            ws.sort_by(|a, b| a.0.cmp(&b.0));
            weights.push(ws);
            let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hist).unwrap()).unwrap();
            losses.push(h["loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<f64>>());
        }
        if weights.len() < 2 {
            continue;
        }
        let tol = Tolerance { atol: 1e-4, rtol: 1e-3 };
        for ((name, cpu), (_, gpu)) in weights[0].iter().zip(&weights[1]) {
            let c = tol.compare(gpu, cpu);
            if !c.passed() {
                failures.push(format!("{flags:?} {name}: GPU vs CPU: {c}"));
            }
        }
        let c = tol.compare(&losses[1], &losses[0]);
        if !c.passed() {
            failures.push(format!("{flags:?} epoch losses: GPU vs CPU: {c}"));
        }
        println!("{flags:?}: trained on /GPU:{ordinal} as on the CPU");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tensor-core precisions on /GPU:0: every dev model against Keras within the precision's
/// error (relative L2: tf32 and fp16 3e-3, bf16 2e-2).
#[test]
fn tensor_core_precisions_on_the_gpu() {
    use kerasc::codegen::cuda::Precision;
    let Some(device) = gpu() else { return };
    let cache = std::env::temp_dir().join("kerasc-test-ptx");
    let mut failures = Vec::new();
    for (p, tol) in [(Precision::Tf32, 3e-3), (Precision::Fp16, 3e-3), (Precision::Bf16, 2e-2)] {
        for name in DEV_MODELS {
            let dir = models();
            let Ok(model) = kerasc::load(&dir.join(format!("{name}.keras"))) else { continue };
            let x = npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
            let want_dtype = model.graph.value(model.graph.inputs()[0]).ty.dtype;
            let x = if x.dtype() != want_dtype { x.cast(want_dtype) } else { x };
            let expected = npy::read(&dir.join(format!("{name}.expected.npy"))).unwrap().to_f64_vec();
            let opts = ExecutorOptions {
                device: on(device),
                naive: false,
                optimize: OptimizeOptions::default(),
                ptx_cache: cache.clone(),
                precision: p,
                memory_limit: None,
            };
            let got = match Executor::new(&model.graph, &opts).and_then(|(e, _)| Ok(e.run(std::slice::from_ref(&x))?)) {
                Ok(o) => o[0].to_f64_vec(),
                Err(e) => {
                    failures.push(format!("{name} {}: {e:?}", p.name()));
                    continue;
                }
            };
            if got.len() != expected.len() {
                failures.push(format!("{name} {}: {} values, expected {}", p.name(), got.len(), expected.len()));
                continue;
            }
            let num: f64 = got.iter().zip(&expected).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            let den: f64 = expected.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-12);
            let rel = num / den;
            println!("{name} {}: relative L2 {rel:.2e}", p.name());
            if rel.is_nan() || rel > tol {
                failures.push(format!("{name} {}: relative L2 {rel:e} > {tol:e}", p.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Two logical GPUs of GPU 0 (4 GiB each): a mirrored and a placed run equal one device, and a
/// mirrored fit (mlp, adam, batch 16 split 8/8) ends at the weights of the same fit on the CPU.
#[test]
fn mirrored_on_two_logical_gpus_matches_one_device() {
    let Some(Device::Cuda(_)) = gpu() else { return };
    let spec = kerasc::LogicalSpec::parse("gpu:0=2x4GiB").unwrap();
    let devs = kerasc::LogicalDevices::new(&spec, 2).unwrap();
    let gpus: Vec<kerasc::LogicalDevice> =
        devs.select("/GPU:0,/GPU:1").unwrap().iter().map(|&d| devs.get(d).unwrap().clone()).collect();
    let dir = models();
    let cache = std::env::temp_dir().join("kerasc-test-ptx");
    let mut failures = Vec::new();
    for name in ["cnn_mnist", "mlp", "transformer"] {
        let model = kerasc::load(&dir.join(format!("{name}.keras"))).unwrap();
        let x = npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
        let want_dtype = model.graph.value(model.graph.inputs()[0]).ty.dtype;
        let x = if x.dtype() != want_dtype { x.cast(want_dtype) } else { x };
        let opts = ExecutorOptions {
            device: on(Device::CPU),
            naive: false,
            optimize: OptimizeOptions::default(),
            ptx_cache: cache.clone(),
            precision: Default::default(),
            memory_limit: None,
        };
        let result = Executor::new(&model.graph, &opts).and_then(|(one, _)| {
            let (m, _) = Executor::mirrored(&model.graph, &opts, &gpus)?;
            let (p, _) = Executor::placed(&model.graph, &opts, &gpus, &kerasc::Placement::Auto, 2)?;
            let x1 = std::slice::from_ref(&x);
            Ok((one.run(x1)?, m.run(x1)?, p.run(x1)?))
        });
        match result {
            Ok((want, got, placed)) => {
                for (how, out) in [("mirrored", got), ("placed", placed)] {
                    let c = Tolerance::MODEL.compare(&out[0].to_f64_vec(), &want[0].to_f64_vec());
                    if !c.passed() {
                        failures.push(format!("{name} {how} on /GPU:0,/GPU:1: {c}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{name} mirrored/placed: {e}")),
        }
    }
    let tmp = std::env::temp_dir().join(format!("kerasc-gpu-mirrored-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let source = dir.join("mlp.h5");
    let model = kerasc::load(&source).unwrap();
    let data = dir.join("mlp.finetune.npz");
    let fit_on = |out: &std::path::Path, replicas: Vec<kerasc::LogicalDevice>| {
        let mut o = kerasc::fit::FitOptions::from_flags([
            "--data",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--epochs=2",
            "--batch-size=16",
            "--optimizer=adam",
            "--no-shuffle",
            "--verbose=0",
        ])
        .unwrap();
        if let Some(first) = replicas.first() {
            o.cuda = first.cuda_options(cache.clone(), None);
        }
        o.replicas = replicas;
        kerasc::fit::fit(&model, &source, &o)
    };
    let (cpu, gpu2) = (tmp.join("cpu.h5"), tmp.join("gpu2.h5"));
    match fit_on(&cpu, Vec::new()).and_then(|_| fit_on(&gpu2, gpus.clone())) {
        Ok(_) => {
            let (a, b) = (kerasc::load(&cpu).unwrap(), kerasc::load(&gpu2).unwrap());
            for ((v, t), (_, u)) in a.graph.constants().iter().zip(b.graph.constants()) {
                let c = Tolerance::MODEL.compare(&u.to_f64_vec(), &t.to_f64_vec());
                if !c.passed() {
                    failures.push(format!("mirrored fit {}: {c}", a.graph.value(*v).name));
                }
            }
        }
        Err(e) => failures.push(format!("mirrored fit on two logical GPUs: {e}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
