//! Several devices on a machine with only CPUs: logical CPU devices, mirrored (data-parallel)
//! runs and fine-tuning against one device and against Keras's own MirroredStrategy, and the
//! refusals.

mod common;

use common::models_dir;
use kerasc::ir::{Tensor, Tolerance};
use kerasc::{npy, Device, Executor, ExecutorOptions, LogicalDevices, LogicalSpec, OptimizeOptions, Placement};

fn logical(spec: &str, threads: usize) -> LogicalDevices {
    let none = kerasc::runtime::cuda::CudaStatus { why_no_gpu: Some("not used here".into()), ..Default::default() };
    LogicalDevices::with_status(&LogicalSpec::parse(spec).unwrap(), threads, &none).unwrap()
}

/// `kerasc` on `n` logical CPU devices of one thread each.
fn on_cpus(n: usize, args: &[&str]) -> std::process::Output {
    let (t, spec) = (n.to_string(), format!("cpu={n}"));
    let mut a = vec!["--threads", &t, "--logical-devices", &spec];
    a.extend_from_slice(args);
    common::kerasc(&a)
}

fn options(devs: &LogicalDevices) -> ExecutorOptions {
    ExecutorOptions {
        device: devs.get(Device::CPU).unwrap().clone(),
        naive: false,
        optimize: OptimizeOptions::default(),
        ptx_cache: std::env::temp_dir(),
        precision: Default::default(),
        memory_limit: None,
    }
}

/// `n` rows of a dev model's input (its rows repeated).
fn rows(t: &Tensor, n: usize) -> Tensor {
    let have = t.shape()[0];
    t.gather_rows(&(0..n).map(|i| i % have).collect::<Vec<_>>()).unwrap()
}

#[test]
fn a_mirrored_run_equals_one_device_on_every_dev_model() {
    let devs = logical("cpu=3", 3);
    let replicas = devs.list().to_vec();
    assert_eq!(replicas.len(), 3);
    let dir = models_dir();
    for name in ["cnn_mnist", "mlp", "resnet_block", "sepconv", "lstm", "gru", "transformer", "text_embed", "conv1d"] {
        let model = kerasc::load(&dir.join(format!("{name}.keras"))).unwrap();
        let x = npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
        let want_dtype = model.graph.value(model.graph.inputs()[0]).ty.dtype;
        let x = if x.dtype() != want_dtype { x.cast(want_dtype) } else { x };
        let (one, _) = Executor::new(&model.graph, &options(&devs)).unwrap();
        let (mirrored, _) = Executor::mirrored(&model.graph, &options(&devs), &replicas).unwrap();
        // 7 rows: shares of 3, 2 and 2; 2 rows: the third replica has none.
        for n in [7, 2] {
            let xs = [rows(&x, n)];
            let want = one.run(&xs).unwrap();
            let got = mirrored.run(&xs).unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.shape(), w.shape(), "{name} at batch {n}");
                let c = Tolerance::REDUCTION.compare(&g.to_f64_vec(), &w.to_f64_vec());
                assert!(c.passed(), "{name} at batch {n}: {c}");
            }
        }
    }
}

#[test]
fn mirrored_run_from_the_command_line_equals_one_device() {
    let dir = common::tmpdir("mirrored-run");
    let m = models_dir().join("cnn_mnist.keras");
    let x = models_dir().join("cnn_mnist.input.npy");
    let (one, two) = (dir.join("one.npy"), dir.join("two.npy"));
    let o = common::kerasc(&["run", m.to_str().unwrap(), "-i", x.to_str().unwrap(), "-o", one.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = on_cpus(
        2,
        &[
            "run",
            m.to_str().unwrap(),
            "-i",
            x.to_str().unwrap(),
            "-o",
            two.to_str().unwrap(),
            "--strategy",
            "mirrored",
            "--devices",
            "/CPU:1,/CPU:0",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("mirrored over 2 device(s): /CPU:1, /CPU:0"), "{err}");
    let (a, b) = (npy::read(&one).unwrap(), npy::read(&two).unwrap());
    let c = Tolerance::REDUCTION.compare(&b.to_f64_vec(), &a.to_f64_vec());
    assert!(c.passed() && a.shape() == b.shape(), "{c}");
}

#[test]
fn logical_devices_are_listed_and_impossible_ones_refused() {
    let o = on_cpus(2, &["devices"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("PhysicalDevice(name='/physical_device:CPU:0'"), "{out}");
    for d in ["LogicalDevice(name='/device:CPU:0', device_type='CPU')  1 thread", "/device:CPU:1"] {
        assert!(out.contains(d), "{d} not in {out}");
    }
    let model = models_dir().join("mlp.keras");
    let input = models_dir().join("mlp.input.npy");
    let (m, x) = (model.to_str().unwrap(), input.to_str().unwrap());
    let two = |rest: &[&str]| -> Vec<String> {
        ["--threads", "2", "--logical-devices", "cpu=2"].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let plain = |rest: &[&str]| -> Vec<String> { rest.iter().map(|s| s.to_string()).collect() };
    let refusals: Vec<(Vec<String>, &str)> = vec![
        (plain(&["--threads", "2", "--logical-devices", "cpu=3", "devices"]), "3 logical CPU devices"),
        (plain(&["--logical-devices", "cpu=two", "devices"]), "cpu=two"),
        (plain(&["--logical-devices", "cpu=2,cpu=2", "devices"]), "split twice"),
        (two(&["run", m, "-i", x, "--device", "/CPU:2"]), "/CPU:2"),
        (plain(&["run", m, "-i", x, "--device", "/CPU:1"]), "--logical-devices cpu=N"),
        (two(&["run", m, "-i", x, "--strategy", "mirrored", "--devices", "/CPU:0,/CPU:7"]), "/CPU:7"),
        (two(&["run", m, "-i", x, "--strategy", "mirrored", "--device", "/CPU:0"]), "exclude each other"),
        (two(&["bench", m, "--batch", "64", "--strategy", "mirrored", "--memory-limit", "2KiB"]), "memory limit"),
    ];
    for (args, says) in refusals {
        let o = common::kerasc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
    // With no GPU here, splitting one is refused with the reason (on a GPU machine, a split
    // larger than the device is).
    let o = common::kerasc(&["--logical-devices", "gpu:0=2x4000GiB", "devices"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("GPU 0"), "{err}");
}

#[test]
fn bench_reports_mirrored_throughput_and_memory_per_device() {
    let m = models_dir().join("cnn_mnist.keras");
    let o = on_cpus(
        2,
        &[
            "bench",
            m.to_str().unwrap(),
            "--batch",
            "9",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--strategy",
            "mirrored",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mirrored = &j["spread"];
    assert_eq!(mirrored["kind"], "mirrored");
    assert_eq!(mirrored["devices"], serde_json::json!(["/CPU:0", "/CPU:1"]));
    assert!(mirrored["throughput"].as_f64().unwrap() > 0.0 && mirrored["scaling"].as_f64().unwrap() > 0.0);
    assert!(mirrored["max_abs_diff"].as_f64().unwrap() <= 1e-5, "{mirrored}");
    let mem = j["device_peak_bytes"].as_array().unwrap();
    assert_eq!(mem.len(), 2);
    // Shares of 5 and 4 rows: the first replica's arena is the larger; both hold the weights.
    let (a, b) = (mem[0]["bytes"].as_u64().unwrap(), mem[1]["bytes"].as_u64().unwrap());
    assert!(a > b && b > 0, "{mem:?}");
}

/// cnn_mnist fine-tuned on `n` logical CPUs (2 epochs of batches of 20, adam, seed 3) into
/// `out`, with `extra` flags; its weights.
fn fit_cnn_mnist(n: usize, out: &std::path::Path, extra: &[&str]) -> Vec<(String, Vec<f64>)> {
    let (m, data) = (models_dir().join("cnn_mnist.keras"), models_dir().join("cnn_mnist.finetune.npz"));
    let mut a = vec!["fit", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--epochs", "2"];
    a.extend(["--batch-size", "20", "--optimizer", "adam", "--learning-rate", "0.003", "--verbose", "0"]);
    a.extend(["--seed", "3", "--output", out.to_str().unwrap()]);
    a.extend_from_slice(extra);
    fit_on(n, &a);
    weights(out)
}

/// A `kerasc` command on `n` logical CPUs that must succeed.
fn fit_on(n: usize, args: &[&str]) -> std::process::Output {
    let o = on_cpus(n, args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn weights(path: &std::path::Path) -> Vec<(String, Vec<f64>)> {
    let m = kerasc::load(path).unwrap();
    m.graph.constants().iter().map(|(v, t)| (m.graph.value(*v).name.clone(), t.to_f64_vec())).collect()
}

#[test]
fn mirrored_fit_without_batch_norm_ends_where_one_device_does() {
    let dir = common::tmpdir("mirrored-fit");
    let m = models_dir().join("cnn_mnist.keras");
    // Global batches of 20 split 7/7/6; the epoch ends on a short batch.
    let run = |out: &str, extra: &[&str]| fit_cnn_mnist(3, &dir.join(out), extra);
    let one = run("one.keras", &[]);
    let three = run("three.keras", &["--strategy", "mirrored"]);
    let start = weights(&m);
    let tol = Tolerance::REDUCTION;
    for (((name, a), (_, b)), (_, s)) in one.iter().zip(&three).zip(&start) {
        let c = tol.compare(b, a);
        assert!(c.passed(), "{name}: mirrored against one device: {c}");
        assert!(a.iter().zip(s).any(|(x, y)| x != y), "{name} did not train");
    }
}

#[test]
fn mirrored_fit_with_batch_norm_matches_keras_mirrored_strategy() {
    // tests/models/train/reg_bn_sgd.mirrored.*: scripts/make-mirrored-fixture.py, Keras 3.15 on
    // TensorFlow 2.21 under MirroredStrategy over two logical CPU devices.
    let train = models_dir().join("train");
    let dir = common::tmpdir("mirrored-bn");
    let (out, hist) = (dir.join("out.h5"), dir.join("h.json"));
    fit_on(
        2,
        &[
            "fit",
            train.join("reg_bn_sgd.h5").to_str().unwrap(),
            "--data",
            train.join("regression.npz").to_str().unwrap(),
            "--validation-split",
            "0.25",
            "--batch-size",
            "14",
            "--epochs",
            "3",
            "--no-shuffle",
            "--verbose",
            "0",
            "--strategy",
            "mirrored",
            "--output",
            out.to_str().unwrap(),
            "--history",
            hist.to_str().unwrap(),
        ],
    );
    let want = weights(&train.join("reg_bn_sgd.mirrored.trained.h5"));
    let tol = Tolerance::REDUCTION;
    for (name, got) in weights(&out) {
        let (_, w) = want.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("{name} not in Keras's file"));
        let c = tol.compare(&got, w);
        assert!(c.passed(), "{name} (moving statistics included): {c}");
    }
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hist).unwrap()).unwrap();
    let k: serde_json::Value =
        serde_json::from_slice(&std::fs::read(train.join("reg_bn_sgd.mirrored.history.json")).unwrap()).unwrap();
    for (key, vals) in k.as_object().unwrap() {
        for (a, b) in h[key].as_array().unwrap().iter().zip(vals.as_array().unwrap()) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-2), "{key}: {a} vs Keras {b}");
        }
    }
}

#[test]
fn a_placed_run_equals_one_device_on_every_dev_model() {
    let devs = logical("cpu=3", 3);
    let dir = models_dir();
    for name in ["cnn_mnist", "mlp", "resnet_block", "sepconv", "mobilenetv2", "lstm", "transformer", "text_embed"] {
        let model = kerasc::load(&dir.join(format!("{name}.keras"))).unwrap();
        let x = npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
        let want_dtype = model.graph.value(model.graph.inputs()[0]).ty.dtype;
        let x = if x.dtype() != want_dtype { x.cast(want_dtype) } else { x };
        let xs = [rows(&x, 5)];
        let (one, _) = Executor::new(&model.graph, &options(&devs)).unwrap();
        let want = one.run(&xs).unwrap();
        // Every layer on the device after the previous one's, round robin: a transfer at every
        // layer boundary, devices revisited.
        let mut layers: Vec<String> = Vec::new();
        for n in model.graph.nodes() {
            let l = n.name.split('/').next().unwrap().to_string();
            if !layers.contains(&l) {
                layers.push(l);
            }
        }
        let round_robin =
            Placement::Layers(layers.iter().enumerate().map(|(i, l)| (l.clone(), Device::Cpu(i % 3))).collect());
        for (how, placement) in [("auto", Placement::Auto), ("round robin", round_robin)] {
            for k in [1, 2, 5] {
                let (placed, _) = Executor::placed(&model.graph, &options(&devs), devs.list(), &placement, k).unwrap();
                let Executor::Placed { placed: p, .. } = &placed else { panic!("not placed") };
                assert!(p.stages.len() >= 2, "{name} ({how}): {} stage(s)", p.stages.len());
                let got = placed.run(&xs).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    let c = Tolerance::REDUCTION.compare(&g.to_f64_vec(), &w.to_f64_vec());
                    assert!(c.passed() && g.shape() == w.shape(), "{name} ({how}, {k} micro-batches): {c}");
                }
            }
        }
    }
}

#[test]
fn placement_from_the_command_line_prints_and_refuses() {
    let dir = common::tmpdir("placement-cli");
    let model = models_dir().join("cnn_mnist.keras");
    let input = models_dir().join("cnn_mnist.input.npy");
    let (m, x) = (model.to_str().unwrap(), input.to_str().unwrap());
    let file = dir.join("place.txt");
    std::fs::write(
        &file,
        "# the convolutions on the first device, the classifier on the second\nconv2d /CPU:0\ndense /device:CPU:1\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let l = ["--threads", "2", "--logical-devices", "cpu=2"];
    let with = |rest: &[&str]| -> Vec<String> { l.iter().chain(rest).map(|s| s.to_string()).collect() };
    let o = common::kerasc(
        &with(&["compile", m, "--emit", "placement", "--placement", f, "--batch", "8"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // conv2d_1 and the pooling follow their input onto /CPU:0; dense's input moves: 8 × 400 floats.
    assert!(out.contains("/CPU:1     Transfer"), "{out}");
    assert!(out.contains("transfer flatten /CPU:0 -> /CPU:1: 12.5 KiB at batch 8"), "{out}");
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    let o = common::kerasc(&["run", m, "-i", x, "-o", a.to_str().unwrap()]);
    assert!(o.status.success());
    let o = common::kerasc(
        &with(&["run", m, "-i", x, "-o", b.to_str().unwrap(), "--placement", f, "--micro-batches", "3"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = Tolerance::REDUCTION.compare(&npy::read(&b).unwrap().to_f64_vec(), &npy::read(&a).unwrap().to_f64_vec());
    assert!(c.passed(), "{c}");
    let o = common::kerasc(
        &with(&["bench", m, "--batch", "8", "--runs", "2", "--warmup", "1", "--placement", "auto", "--json"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["spread"]["kind"], "placed");
    assert!(j["spread"]["max_abs_diff"].as_f64().unwrap() <= 1e-5);
    std::fs::write(dir.join("unknown.txt"), "conv2d /CPU:0\nno_such_layer /CPU:1\n").unwrap();
    std::fs::write(dir.join("bad.txt"), "conv2d\n").unwrap();
    std::fs::write(dir.join("elsewhere.txt"), "conv2d /CPU:5\n").unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let refusals: Vec<(Vec<String>, &str)> = vec![
        (with(&["run", m, "-i", x, "--placement", &p("unknown.txt")]), "no layer named no_such_layer"),
        (with(&["run", m, "-i", x, "--placement", &p("bad.txt")]), "line 1"),
        (with(&["run", m, "-i", x, "--placement", &p("elsewhere.txt")]), "/CPU:5"),
        (with(&["run", m, "-i", x, "--placement", &p("missing.txt")]), "missing.txt"),
        (with(&["run", m, "-i", x, "--placement", "auto", "--memory-limit", "1KiB"]), "memory limit"),
        (with(&["run", m, "-i", x, "--placement", "auto", "--strategy", "mirrored"]), "cannot be used with"),
        (with(&["run", m, "-i", x, "--devices", "/CPU:0"]), "--devices names the devices"),
        (with(&["fit", m, "--data", x, "--output", &p("o.keras"), "--placement", &p("unknown.txt")]), "no_such_layer"),
    ];
    for (args, says) in refusals {
        let o = common::kerasc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!dir.join("o.keras").exists());
}

#[test]
fn a_placed_fit_ends_where_one_device_does() {
    let dir = common::tmpdir("placed-fit");
    let m = models_dir().join("cnn_mnist.keras");
    let file = dir.join("place.txt");
    std::fs::write(&file, "conv2d /CPU:0\nconv2d_1 /CPU:1\ndense /CPU:0\n").unwrap();
    let run = |out: &str, extra: &[&str]| fit_cnn_mnist(2, &dir.join(out), extra);
    let one = run("one.keras", &[]);
    let start = weights(&m);
    let f = file.to_str().unwrap();
    for (how, extra) in [
        ("auto", vec!["--placement", "auto"]),
        ("file", vec!["--placement", f]),
        // Batches of 20 as micro-batches of 7, 7 and 6 (the last batch's 16 as 6, 5, 5),
        // pipelined, their gradients averaged by rows.
        ("file, 3 micro-batches", vec!["--placement", f, "--micro-batches", "3"]),
    ] {
        let placed = run(&format!("{how}.keras"), &extra);
        for (((name, a), (_, b)), (_, s)) in one.iter().zip(&placed).zip(&start) {
            let c = Tolerance::REDUCTION.compare(b, a);
            assert!(c.passed(), "{name} ({how}): placed against one device: {c}");
            assert!(a.iter().zip(s).any(|(x, y)| x != y), "{name} did not train");
        }
    }
    // The placed step: each layer's forward and backward nodes on its device, values crossing
    // both ways (activations forward, their gradients back).
    let model = kerasc::load(&m).unwrap();
    let devs = logical("cpu=2", 2);
    let layers = vec![
        ("conv2d".to_string(), Device::Cpu(0)),
        ("conv2d_1".into(), Device::Cpu(1)),
        ("dense".into(), Device::Cpu(0)),
    ];
    let placement = kerasc::runtime::training::StepPlacement {
        devices: devs
            .list()
            .iter()
            .map(|d| (d.device, kerasc::runtime::training::StageOn::Cpu(d.session_options(None))))
            .collect(),
        layers,
        micro_batches: 1,
    };
    let trainable: Vec<_> = model.graph.constants().keys().copied().collect();
    let opts = kerasc::runtime::training::TrainOptions { placement: Some(placement), ..Default::default() };
    let losses = [(
        kerasc::runtime::training::Loss::SparseCategoricalCrossentropy { from_logits: false },
        kerasc::ir::DType::I32,
    )];
    let step = kerasc::runtime::training::TrainStep::with_losses(&model.graph, &losses, &trainable, &opts).unwrap();
    let to: Vec<String> = step
        .graph()
        .nodes()
        .iter()
        .filter_map(|n| if let kerasc::ir::Op::Transfer { to } = &n.op { Some(to.clone()) } else { None })
        .collect();
    assert!(to.iter().any(|t| t == "/CPU:1") && to.iter().any(|t| t == "/CPU:0"), "{to:?}");
    // Micro-batches would change batch normalization's statistics: refused.
    let train = models_dir().join("train");
    let o = on_cpus(
        2,
        &[
            "fit",
            train.join("reg_bn_sgd.h5").to_str().unwrap(),
            "--data",
            train.join("regression.npz").to_str().unwrap(),
            "--output",
            dir.join("bn.h5").to_str().unwrap(),
            "--placement",
            "auto",
            "--micro-batches",
            "2",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("batch normalization"), "{err}");
    assert!(!dir.join("bn.h5").exists());
}
