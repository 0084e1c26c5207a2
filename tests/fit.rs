//! Fine-tuning against Keras's own trace: the dev `mlp` and `cnn_mnist` (SGD 0.01, batch 16,
//! 2 epochs, no shuffle, sparse categorical cross-entropy; cnn_mnist without dropout, as its
//! reference was made): every step's loss, the weights after the first step and after the run.

mod common;

use common::models_dir;
use kerasc::ir::{DType, Tensor, TensorData, Tolerance};
use kerasc::runtime::training::{Loss, Optimizer, Sgd, TrainStep};
use std::collections::HashMap;
use std::io::Read;

/// String members of an .npz (numpy `<U` arrays of one element), by member name.
fn npz_strings(path: &std::path::Path) -> HashMap<String, String> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = HashMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().trim_end_matches(".npy").to_string();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        let header = String::from_utf8_lossy(&b[10..10 + hl]).to_string();
        if header.contains("<U") {
            let s: String = b[10 + hl..]
                .chunks(4)
                .filter_map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            out.insert(name, s.trim_end_matches('\0').to_string());
        }
    }
    out
}

fn rows(t: &Tensor, start: usize, end: usize) -> Tensor {
    let per: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = end - start;
    let data = match t.data() {
        TensorData::F32(v) => TensorData::F32(v[start * per..end * per].to_vec()),
        TensorData::I32(v) => TensorData::I32(v[start * per..end * per].to_vec()),
        TensorData::I64(v) => TensorData::I64(v[start * per..end * per].to_vec()),
        other => panic!("unexpected data {:?}", other.dtype()),
    };
    Tensor::new(shape, data).unwrap()
}

fn close(what: &str, got: &Tensor, want: &Tensor, tol: Tolerance) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let c = tol.compare(&got.to_f64_vec(), &want.to_f64_vec());
    assert!(c.passed(), "{what}: {c}");
}

/// Every group, dataset and attribute of an HDF5 file, as `path -> description` (datasets by
/// dtype and shape, attributes by value).
fn h5_layout(bytes: Vec<u8>) -> std::collections::BTreeMap<String, String> {
    let f = hdf5_pure::File::from_bytes(bytes).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(p) = stack.pop() {
        let g = if p.is_empty() { f.root() } else { f.group(&p).unwrap() };
        // training_config is kept as the input file had it: Keras's own re-save writes the
        // compiled loss as an object instead of its name, and load_model reads both.
        let mut attrs: Vec<(String, String)> = g
            .attrs()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k != "training_config")
            .map(|(k, v)| (k, format!("{v:?}")))
            .collect();
        attrs.sort();
        out.insert(format!("{p}/"), format!("{attrs:?}"));
        for c in g.groups().unwrap() {
            stack.push(if p.is_empty() { c } else { format!("{p}/{c}") });
        }
        for d in g.datasets().unwrap() {
            let at = if p.is_empty() { d.clone() } else { format!("{p}/{d}") };
            let ds = f.dataset(&at).unwrap();
            out.insert(at, format!("{:?} {:?}", ds.dtype().unwrap(), ds.shape().unwrap()));
        }
    }
    out
}

fn fine_tune(name: &str) {
    fine_tune_from(name, "h5");
}

fn fine_tune_from(name: &str, ext: &str) {
    let dir = models_dir();
    let model = kerasc::load(&dir.join(format!("{name}.{ext}"))).unwrap();
    let g = &model.graph;
    let trainable: Vec<_> = g.constants().keys().copied().collect();
    let step =
        TrainStep::new(g, Loss::SparseCategoricalCrossentropy { from_logits: false }, &trainable, DType::I32).unwrap();
    let mut weights: Vec<Tensor> = trainable.iter().map(|v| g.constant(*v).unwrap().clone()).collect();
    let data: HashMap<String, Tensor> =
        kerasc::npy::read_npz(&dir.join(format!("{name}.finetune.npz"))).unwrap().into_iter().collect();
    let (x, y) = (&data["x_train"], &data["y_train"]);
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.finetune_losses.json"))).unwrap()).unwrap();
    let step_loss: Vec<f64> = trace["step_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let epoch_loss: Vec<f64> = trace["epoch_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mut sgd = Sgd::new(0.01, 0.0, false);
    let n = x.shape()[0];
    let mut k = 0;
    for (epoch, &want_epoch) in epoch_loss.iter().enumerate() {
        let mut sum = 0.0;
        let mut count = 0;
        for start in (0..n).step_by(16) {
            let end = (start + 16).min(n);
            let (loss, grads, _) = step.run(&[rows(x, start, end)], &rows(y, start, end), &weights).unwrap();
            let want = step_loss[k];
            assert!(((loss as f64) - want).abs() <= 1e-4 * want.abs(), "{name} step {k}: loss {loss} vs Keras {want}");
            sum += loss as f64;
            count += 1;
            sgd.apply(&mut weights, &grads).unwrap();
            k += 1;
            if k == 1 {
                let path = dir.join(format!("{name}.finetune_after_step1.npz"));
                let names = npz_strings(&path);
                let arrays: HashMap<String, Tensor> = kerasc::npy::read_npz(&path).unwrap().into_iter().collect();
                for (key, full) in &names {
                    let w = &arrays[&key.replace("name", "w")];
                    let i = step.weights.iter().position(|(_, n)| full.ends_with(&format!("/{n}"))).unwrap();
                    close(&format!("{name} after step 1: {full}"), &weights[i], w, Tolerance { atol: 1e-5, rtol: 0.0 });
                }
            }
        }
        let mean = sum / count as f64;
        assert!((mean - want_epoch).abs() <= 1e-4 * want_epoch, "{name} epoch {epoch}: {mean} vs {want_epoch}");
    }
    assert_eq!(k, step_loss.len());
    assert_eq!(sgd.iterations(), k as u64);
    let done = kerasc::load(&dir.join(format!("{name}.finetuned.h5"))).unwrap();
    for (_, wname) in &step.weights {
        let i = step.weights.iter().position(|(_, n)| n == wname).unwrap();
        let want = done.graph.constants().iter().find(|(c, _)| done.graph.value(**c).name == *wname).unwrap().1;
        close(&format!("{name} final {wname}"), &weights[i], want, Tolerance { atol: 1e-5, rtol: 0.0 });
    }
    // Written back in the input's format, loaded again: the trained weights, Keras's layout.
    let out_dir = common::tmpdir(&format!("fit-{name}-{ext}"));
    let out = out_dir.join(format!("trained.{ext}"));
    let updates: Vec<(String, Tensor)> =
        step.weights.iter().zip(&weights).map(|((v, _), w)| (model.weight_sources[v].clone(), w.clone())).collect();
    let state = kerasc::frontend::keras::save::OptimizerState {
        iterations: k as i64,
        learning_rate: 0.01,
        variables: Vec::new(),
    };
    kerasc::frontend::keras::save::save_trained(&dir.join(format!("{name}.{ext}")), &out, &updates, Some(&state))
        .unwrap();
    let again = kerasc::load(&out).unwrap();
    for ((v, wname), w) in step.weights.iter().zip(&weights) {
        let _ = v;
        let got = again.graph.constants().iter().find(|(c, _)| again.graph.value(**c).name == *wname).unwrap().1;
        close(&format!("{name} reloaded {wname}"), got, w, Tolerance::EXACT);
    }
    if ext == "h5" {
        let ours = h5_layout(std::fs::read(&out).unwrap());
        let keras = h5_layout(std::fs::read(dir.join(format!("{name}.finetuned.h5"))).unwrap());
        assert_eq!(ours, keras, "{name}: the written file's layout differs from Keras's");
        let f = hdf5_pure::File::from_bytes(std::fs::read(&out).unwrap()).unwrap();
        let it = f.dataset("optimizer_weights/sgd/iteration").unwrap().read_i64().unwrap();
        assert_eq!(it, vec![k as i64]);
    }
}

#[test]
fn mlp_fine_tunes_from_a_keras_archive_and_writes_one() {
    fine_tune_from("mlp", "keras");
}

#[test]
fn mlp_fine_tunes_like_keras() {
    fine_tune("mlp");
}

#[test]
fn cnn_mnist_fine_tunes_like_keras() {
    fine_tune("cnn_mnist");
}

#[test]
fn fit_from_the_command_line_writes_keras_history_and_a_model() {
    let dir = models_dir();
    let out_dir = common::tmpdir("fit-cli");
    let out = out_dir.join("mlp_trained.h5");
    let hist = out_dir.join("history.json");
    let report = out_dir.join("report.html");
    let m = dir.join("mlp.h5");
    let data = dir.join("mlp.finetune.npz");
    let r = common::kerasc(&[
        "fit",
        m.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--no-shuffle",
        "--history",
        hist.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Epoch 1/2") && err.contains("val_loss"), "{err}");
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hist).unwrap()).unwrap();
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("mlp.finetune_losses.json")).unwrap()).unwrap();
    for (ours, keras) in [
        ("loss", "epoch_loss"),
        ("accuracy", "epoch_accuracy"),
        ("val_loss", "epoch_val_loss"),
        ("val_accuracy", "epoch_val_accuracy"),
        ("step_loss", "step_loss"),
    ] {
        let a: Vec<f64> = h[ours].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let b: Vec<f64> = trace[keras].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(a.len(), b.len(), "{ours}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * y.abs().max(1e-3), "{ours}: {x} vs Keras {y}");
        }
    }
    // The report: a page with the epoch curves (training and validation), one point per step in
    // the per-step loss, the learning rate, and the step's time by op kind.
    let page = std::fs::read_to_string(&report).unwrap();
    let steps = h["step_loss"].as_array().unwrap().len();
    for want in ["kerasc fit: mlp.h5", ">val_loss<", ">val_accuracy<", "learning rate", "MatMul", "ms per step"] {
        assert!(page.contains(want), "the report lacks {want:?}");
    }
    let step_chart = page.split("loss of each batch").nth(1).unwrap();
    let points = step_chart.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(points.split(' ').count(), steps, "one point per step");
    // The written model runs and gives the trained model's predictions.
    let pred = out_dir.join("pred.npy");
    let r = common::kerasc(&[
        "run",
        out.to_str().unwrap(),
        "-i",
        dir.join("mlp.input.npy").to_str().unwrap(),
        "-o",
        pred.to_str().unwrap(),
    ]);
    assert!(r.status.success());
    let keras_model = kerasc::load(&dir.join("mlp.finetuned.h5")).unwrap();
    let s = kerasc::Session::new(keras_model.graph, kerasc::SessionOptions::default()).unwrap();
    let want = s.run(&[kerasc::npy::read(&dir.join("mlp.input.npy")).unwrap()]).unwrap();
    close("predictions of the written model", &kerasc::npy::read(&pred).unwrap(), &want[0], Tolerance::MODEL);
}

#[test]
fn fit_refuses_what_it_cannot_do_and_leaves_outputs_alone() {
    let dir = models_dir();
    let out_dir = common::tmpdir("fit-bad");
    let out = out_dir.join("keep.h5");
    std::fs::write(&out, b"precious").unwrap();
    let data = dir.join("mlp.finetune.npz");
    let base = |model: &str| {
        vec![
            "fit".to_string(),
            dir.join(model).to_str().unwrap().to_string(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--output".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        ([base("mlp.h5"), vec!["--optimizer".into(), "lion".into()]].concat(), "not implemented yet"),
        ([base("mlp.h5"), vec!["--loss".into(), "cosine_similarity".into()]].concat(), "not implemented yet"),
        (
            [base("mlp.h5"), vec!["--learning-rate".into(), "1e30".into(), "--no-shuffle".into()]].concat(),
            "nothing was written",
        ),
        ([base("mlp.h5"), vec!["--device".into(), "/GPU:0".into()]].concat(), "not available"),
        ([base("mlp.onnx"), vec!["--loss".into(), "mse".into(), "--optimizer".into(), "sgd".into()]].concat(), "ONNX"),
        (
            vec![
                "fit".into(),
                dir.join("mlp.h5").to_str().unwrap().into(),
                "--data".into(),
                dir.join("mlp.input.npy").to_str().unwrap().into(),
                "--output".into(),
                out.to_str().unwrap().into(),
            ],
            "zip",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = common::kerasc(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{a:?}: {err}");
        assert!(err.contains(want) && !err.contains("panicked"), "{a:?}: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"precious", "{a:?} touched the output");
    }
}

/// Models compiled with each loss and optimizer family and trained by Keras itself
/// (`scripts/make-train-fixtures.py`): `kerasc fit` with the files' own training_config must
/// end at Keras's weights and history.
#[test]
fn losses_and_optimizers_train_like_keras() {
    let dir = models_dir().join("train");
    for name in
        ["reg_mse_adam", "reg_mae_rmsprop", "reg_huber_nadam", "bin_bce_adagrad", "bin_bce_adamw_sched", "reg_bn_sgd"]
    {
        let data = if name.starts_with("reg") { "regression.npz" } else { "binary.npz" };
        let out_dir = common::tmpdir(&format!("fixture-{name}"));
        let out = out_dir.join("out.h5");
        let hist = out_dir.join("h.json");
        let m = dir.join(format!("{name}.h5"));
        // The batch-norm fixture was trained with validation_split=0.25 (validation in
        // inference mode, training with batch statistics).
        let split = if name.contains("_bn_") { "0.25" } else { "0" };
        fit_as_keras_did(&m, &dir.join(data), &out, &hist, &["--validation-split", split]);
        ends_like_keras(name, &out, &hist, &dir);
        // The optimizer's iteration count as Keras wrote it after training.
        let iteration = |p: &std::path::Path| -> Option<Vec<u8>> {
            let f = hdf5_pure::File::from_bytes(std::fs::read(p).unwrap()).ok()?;
            let g = f.group("optimizer_weights").ok()?.groups().ok()?.into_iter().next()?;
            f.dataset(&format!("optimizer_weights/{g}/iteration")).ok()?.read_raw().ok()
        };
        assert_eq!(
            iteration(&out),
            iteration(&dir.join(format!("{name}.trained.h5"))),
            "{name}: the iteration count differs from Keras's"
        );
        // The optimizer's slots (and Nadam's momentum product), added to the file as Keras
        // would have written them.
        let opt = |p: &std::path::Path| kerasc::frontend::keras::save::read_optimizer(p).unwrap().unwrap();
        let (o, k) = (opt(&out), opt(&dir.join(format!("{name}.trained.h5"))));
        assert_eq!(o.variables.len(), k.variables.len(), "{name}: optimizer variables");
        for (i, (a, b)) in o.variables.iter().zip(&k.variables).enumerate() {
            close(&format!("{name}: optimizer variable {i}"), a, b, Tolerance { atol: 1e-5, rtol: 1e-4 });
        }
    }
}

/// `kerasc fit` as Keras trained the fixtures: 3 epochs, batch 16, no shuffling, with a history.
fn fit_as_keras_did(
    model: &std::path::Path,
    data: &std::path::Path,
    out: &std::path::Path,
    hist: &std::path::Path,
    extra: &[&str],
) {
    let mut args = vec!["fit", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
    args.extend(["--output", out.to_str().unwrap(), "--history", hist.to_str().unwrap()]);
    args.extend(["--epochs", "3", "--batch-size", "16", "--no-shuffle", "--verbose", "0"]);
    args.extend(extra);
    let r = common::kerasc(&args);
    assert!(r.status.success(), "{}: {}", model.display(), String::from_utf8_lossy(&r.stderr));
}

/// `kerasc fit`'s written model and history (`out`, `hist`) against the weights and history
/// Keras wrote for fixture `name` in `dir` (`NAME.trained.h5`, `NAME.history.json`).
fn ends_like_keras(name: &str, out: &std::path::Path, hist: &std::path::Path, dir: &std::path::Path) {
    let ours = kerasc::load(out).unwrap();
    let keras = kerasc::load(&dir.join(format!("{name}.trained.h5"))).unwrap();
    for (v, t) in ours.graph.constants() {
        let wname = &ours.graph.value(*v).name;
        let want = keras.graph.constants().iter().find(|(c, _)| keras.graph.value(**c).name == *wname).unwrap().1;
        close(&format!("{name}: {wname}"), t, want, Tolerance { atol: 1e-5, rtol: 1e-4 });
    }
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(hist).unwrap()).unwrap();
    let k: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.history.json"))).unwrap()).unwrap();
    for (key, vals) in k.as_object().unwrap() {
        let ours: Vec<f64> = h[key]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no {key}"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), vals.as_array().unwrap().len(), "{name} {key}");
        for (a, b) in ours.iter().zip(vals.as_array().unwrap()) {
            let b = b.as_f64().unwrap();
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-2), "{name} {key}: {a} vs Keras {b}");
        }
    }
}

fn fit_args(model: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let data = models_dir().join("mlp.finetune.npz");
    let mut a: Vec<String> = vec![
        "fit".into(),
        model.to_str().unwrap().into(),
        "--data".into(),
        data.to_str().unwrap().into(),
        "--output".into(),
        out.to_str().unwrap().into(),
        "--batch-size".into(),
        "16".into(),
        "--verbose".into(),
        "0".into(),
        "--optimizer".into(),
        "adam".into(),
    ];
    if !extra.contains(&"--learning-rate") {
        a.extend(["--learning-rate".to_string(), "0.01".to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_fit(args: &[String]) -> std::process::Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    common::kerasc(&a)
}

fn weights_of(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let m = kerasc::load(path).unwrap();
    m.graph.constants().iter().map(|(v, t)| (m.graph.value(*v).name.clone(), t.to_f32_vec())).collect()
}

#[test]
fn a_killed_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does() {
    let dir = common::tmpdir("fit-resume");
    let m = models_dir().join("mlp.h5");
    let whole = dir.join("whole.h5");
    let r = run_fit(&fit_args(&m, &whole, &["--epochs", "3", "--seed", "5"]));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let ck = dir.join("ck");
    let resumed = dir.join("resumed.h5");
    // Killed in the middle of the second epoch (step 20 of 16 per epoch).
    let ck_s = ck.to_str().unwrap().to_string();
    let killed = run_fit(&fit_args(
        &m,
        &resumed,
        &["--epochs", "3", "--seed", "5", "--checkpoint", &ck_s, "--abort-after-steps", "20"],
    ));
    assert!(!killed.status.success());
    assert!(!resumed.exists(), "a killed run must not leave the output");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(ck.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"], 1);
    let r = run_fit(&fit_args(&m, &resumed, &["--epochs", "3", "--seed", "5", "--checkpoint", &ck_s, "--resume"]));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(weights_of(&resumed), weights_of(&whole), "resumed weights differ from the uninterrupted run's");
}

#[test]
fn frozen_layers_keep_their_weights() {
    let dir = common::tmpdir("fit-freeze");
    let m = models_dir().join("mlp.h5");
    let before = weights_of(&m);
    for (flags, frozen) in
        [(vec!["--freeze", "dense"], vec!["dense/"]), (vec!["--trainable-from", "dense_2"], vec!["dense/", "dense_1/"])]
    {
        let out = dir.join("out.h5");
        let mut extra = vec!["--epochs", "1"];
        extra.extend(flags.iter().copied());
        let r = run_fit(&fit_args(&m, &out, &extra));
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let after = weights_of(&out);
        assert_eq!(before.len(), after.len());
        for ((name, w0), (_, w1)) in before.iter().zip(after) {
            let is_frozen = frozen.iter().any(|p| name.starts_with(p));
            assert_eq!(w0 == &w1, is_frozen, "{flags:?}: {name} frozen={is_frozen}");
        }
    }
    let r = run_fit(&fit_args(&m, &dir.join("x.h5"), &["--freeze", "nope"]));
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no layer 'nope'"));
}

#[test]
fn validation_split_and_early_stopping() {
    let dir = common::tmpdir("fit-split");
    let m = models_dir().join("mlp.h5");
    // The data file has x_val; a split applies only without it, so train on x/y of a copy.
    let arrays = kerasc::npy::read_npz(&models_dir().join("mlp.finetune.npz")).unwrap();
    let npz = dir.join("xy.npz");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, t) in arrays.iter().filter(|(n, _)| n == "x_train" || n == "y_train") {
            use std::io::Write;
            z.start_file(format!("{}.npy", &name[..1]), o).unwrap();
            z.write_all(&kerasc::npy::to_bytes(t)).unwrap();
        }
        z.finish().unwrap();
    }
    let hist = dir.join("h.json");
    let args: Vec<String> = fit_args(
        &m,
        &dir.join("o.h5"),
        &[
            "--epochs",
            "6",
            "--validation-split",
            "0.25",
            "--early-stopping",
            "1",
            "--learning-rate",
            "0",
            "--history",
            hist.to_str().unwrap(),
        ],
    )
    .into_iter()
    .map(|a| if a.ends_with("mlp.finetune.npz") { npz.to_str().unwrap().to_string() } else { a })
    .collect();
    // A zero learning rate never improves val_loss: stopped after the epoch following the best.
    let r = run_fit(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&hist).unwrap()).unwrap();
    assert_eq!(h["val_loss"].as_array().unwrap().len(), 2, "{h}");
    // 256 samples, a quarter held out, batches of 16: 12 steps per epoch.
    assert_eq!(h["step_loss"].as_array().unwrap().len(), 24);
}

/// cnn_mnist has a Dropout layer: active by default, seeded, and off with --no-dropout.
#[test]
fn dropout_is_active_seeded_and_resumable() {
    let dir = common::tmpdir("fit-dropout");
    let m = models_dir().join("cnn_mnist.h5");
    let data = models_dir().join("cnn_mnist.finetune.npz");
    let args = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "fit".to_string(),
            m.to_str().unwrap().into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--output".into(),
            dir.join(out).to_str().unwrap().into(),
            "--epochs".into(),
            "2".into(),
            "--verbose".into(),
            "0".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let fit = |out: &str, extra: &[&str]| {
        let r = run_fit(&args(out, extra));
        assert!(r.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&r.stderr));
        weights_of(&dir.join(out))
    };
    let a = fit("a.h5", &["--seed", "1"]);
    assert_eq!(a, fit("b.h5", &["--seed", "1"]), "the same seed must give the same run");
    assert_ne!(a, fit("c.h5", &["--seed", "2"]), "another seed must draw other dropout masks");
    assert_ne!(a, fit("d.h5", &["--seed", "1", "--no-dropout"]), "--no-dropout must turn dropout off");
    // Killed mid-run (step 11 of 16) and resumed: the same masks as the uninterrupted run.
    let ck = dir.join("ck");
    let ck_s = ck.to_str().unwrap();
    let killed = run_fit(&args("e.h5", &["--seed", "1", "--checkpoint", ck_s, "--abort-after-steps", "11"]));
    assert!(!killed.status.success());
    assert_eq!(a, fit("e.h5", &["--seed", "1", "--checkpoint", ck_s, "--resume"]), "resumed run differs");
}

/// A frozen BatchNormalization runs in inference mode, as in Keras: neither gamma/beta nor the
/// moving statistics change, while the other layers train.
#[test]
fn a_frozen_batch_norm_keeps_its_statistics() {
    let dir = common::tmpdir("fit-frozen-bn");
    let train = models_dir().join("train");
    let m = train.join("reg_bn_sgd.h5");
    let out = dir.join("o.h5");
    let r = run_fit(
        &[
            "fit",
            m.to_str().unwrap(),
            "--data",
            train.join("regression.npz").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--freeze",
            "bn",
            "--verbose",
            "0",
        ]
        .map(String::from),
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (before, after) = (weights_of(&m), weights_of(&out));
    assert_eq!(before.len(), after.len());
    for ((name, w0), (_, w1)) in before.iter().zip(after) {
        assert_eq!(w0 == &w1, name.starts_with("bn/"), "{name}");
    }
}

/// The same data as .npz, as two .npy files (--x/--y) and as CSV (--label-column, by name and
/// by index) trains to the same weights; malformed CSV is a clear error.
#[test]
fn data_from_npy_pairs_and_csv_trains_the_same() {
    let dir = common::tmpdir("fit-data");
    let train = models_dir().join("train");
    let m = train.join("bin_bce_adagrad.h5");
    let arrays: HashMap<String, Tensor> =
        kerasc::npy::read_npz(&train.join("binary.npz")).unwrap().into_iter().collect();
    let (x, y) = (&arrays["x"], &arrays["y"]);
    kerasc::npy::write(&dir.join("x.npy"), x).unwrap();
    kerasc::npy::write(&dir.join("y.npy"), y).unwrap();
    let (xv, yv) = (x.to_f32_vec(), y.to_f32_vec());
    // Label in the middle column, to check it is taken out of the features.
    let mut csv = String::from("f0,f1,label,f2,f3\n");
    for i in 0..yv.len() {
        let r = &xv[i * 4..i * 4 + 4];
        // Rust's shortest round-trip formatting: parsing gives back the same f32.
        csv += &format!("{},{},{},{},{}\n", r[0], r[1], yv[i], r[2], r[3]);
    }
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    let fit = |out: &str, data: &[&str]| {
        let o = dir.join(out);
        let mut a: Vec<String> = [
            "fit",
            m.to_str().unwrap(),
            "--output",
            o.to_str().unwrap(),
            "--no-shuffle",
            "--epochs",
            "2",
            "--verbose",
            "0",
        ]
        .map(String::from)
        .to_vec();
        a.extend(data.iter().map(|s| s.to_string()));
        let r = run_fit(&a);
        (r.status.code(), String::from_utf8_lossy(&r.stderr).to_string(), o)
    };
    let (c, e, npz) = fit("npz.h5", &["--data", train.join("binary.npz").to_str().unwrap()]);
    assert_eq!(c, Some(0), "{e}");
    let want = weights_of(&npz);
    let (xs, ys) = (dir.join("x.npy"), dir.join("y.npy"));
    let (c, e, o) = fit("npy.h5", &["--x", xs.to_str().unwrap(), "--y", ys.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{e}");
    assert_eq!(weights_of(&o), want, "--x/--y");
    let csv_path = dir.join("d.csv");
    for col in ["label", "2"] {
        let (c, e, o) = fit("csv.h5", &["--data", csv_path.to_str().unwrap(), "--label-column", col]);
        assert_eq!(c, Some(0), "{e}");
        assert_eq!(weights_of(&o), want, "CSV with --label-column {col}");
    }
    std::fs::write(dir.join("bad.csv"), "a,b,label\n1,2,0\n1,x,1\n").unwrap();
    let bad = dir.join("bad.csv");
    for (args, want) in [
        (vec!["--data", csv_path.to_str().unwrap()], "--label-column"),
        (vec!["--data", csv_path.to_str().unwrap(), "--label-column", "nope"], "no column 'nope'"),
        (vec!["--data", bad.to_str().unwrap(), "--label-column", "label"], "line 3, column 2"),
        (vec!["--x", xs.to_str().unwrap()], "--y"),
    ] {
        let (c, e, _) = fit("never.h5", &args);
        assert_ne!(c, Some(0), "{args:?} succeeded");
        assert!(e.contains(want) && !e.contains("panicked"), "{args:?}: {e}");
    }
    assert!(!dir.join("never.h5").exists());
}

/// A model with several inputs and outputs takes its arrays by name, and says which it needs.
#[test]
fn several_inputs_and_outputs_need_named_arrays() {
    let dir = common::tmpdir("fit-multi-io");
    let train = models_dir().join("train");
    let out = dir.join("o.h5");
    let r = run_fit(
        &[
            "fit",
            train.join("multi_io_adam.h5").to_str().unwrap(),
            "--data",
            train.join("binary.npz").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("x_left") && err.contains("x_right") && !err.contains("panicked"), "{err}");
    assert!(!out.exists());
}

/// Two inputs and two outputs trained by Keras (`scripts/make-train-fixtures.py`), once with
/// `loss_weights` {cls: 1, reg: 0.25}: `kerasc fit` ends at Keras's weights, and its history has
/// Keras's numbers — the weighted total as `loss`, each output's loss unweighted, each output's
/// metrics.
#[test]
fn several_outputs_and_loss_weights_train_like_keras() {
    let train = models_dir().join("train");
    for name in ["multi_io_adam", "multi_io_weighted"] {
        let dir = common::tmpdir(&format!("fit-{name}"));
        let (out, hist) = (dir.join("o.h5"), dir.join("h.json"));
        fit_as_keras_did(&train.join(format!("{name}.h5")), &train.join("multi_io.npz"), &out, &hist, &[]);
        ends_like_keras(name, &out, &hist, &train);
    }
}
