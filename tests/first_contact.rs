//! What a new user meets first: a truncated file named as truncated, a failing command whose
//! error is the only line it prints, inputs named in a count mismatch, counts that must be
//! positive, every `fit` option described, the install line in the README, a readable report
//! with memory in KiB/MiB, and folded weights named after their layers.

mod common;

use common::{kerasc, models_dir, tmpdir};
use kerasc::ir::{DType, Tensor};
use kerasc::npy;

fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let out = kerasc(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_truncated_model_is_called_truncated() {
    let dir = tmpdir("first-truncated");
    for name in ["mlp.h5", "mlp.k2.h5", "mlp.keras", "cnn_mnist.h5"] {
        let bytes = std::fs::read(models_dir().join(name)).unwrap();
        for cut in [bytes.len() * 3 / 4, bytes.len() / 2, 600] {
            let path = dir.join(format!("cut_{cut}_{name}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let (code, err) = stderr_of(&["inspect", path.to_str().unwrap()]);
            assert_eq!(code, Some(1), "{name} cut at {cut}: {err}");
            assert!(err.contains("truncated"), "{name} cut at {cut}: {err}");
            assert!(!err.contains("weights only"), "{err}");
        }
    }
}

#[test]
fn a_failing_command_prints_its_error_alone() {
    let m = models_dir();
    let model = m.join("mlp.keras");
    let wrong = m.join("cnn_mnist.input.npy");
    for args in [
        vec!["run", model.to_str().unwrap(), "--input", wrong.to_str().unwrap()],
        vec![
            "run",
            model.to_str().unwrap(),
            "--input",
            wrong.to_str().unwrap(),
            "--device",
            "/GPU:0",
            "--soft-placement",
        ],
        vec!["bench", m.join("missing.keras").to_str().unwrap()],
        vec!["fit", model.to_str().unwrap(), "--data", "nothing.npz", "--output", "/tmp/never.keras"],
    ] {
        let (code, err) = stderr_of(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() == 1 && lines[0].starts_with("error: "), "{args:?}: {err}");
    }
    // On success the device is said; with --verbose it is said before running.
    let input = m.join("mlp.input.npy");
    let (code, err) = stderr_of(&["run", model.to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.starts_with("running on /CPU:0"), "{err}");
    let (code, err) = stderr_of(&["run", model.to_str().unwrap(), "--input", wrong.to_str().unwrap(), "--verbose"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("running on /CPU:0") && err.lines().nth(1).is_some_and(|l| l.starts_with("error:")),
        "{err}"
    );
}

#[test]
fn too_many_inputs_name_the_model_inputs() {
    let m = models_dir();
    let (model, x) = (m.join("mlp.keras"), m.join("mlp.input.npy"));
    let (code, err) =
        stderr_of(&["run", model.to_str().unwrap(), "--input", x.to_str().unwrap(), "--input", x.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("takes 1 input(s), 2 given") && err.contains("'features'") && !err.contains("''"), "{err}");
}

#[test]
fn counts_must_be_positive() {
    let model = models_dir().join("mlp.keras");
    for args in [
        vec!["bench", model.to_str().unwrap(), "--runs", "0"],
        vec!["bench", model.to_str().unwrap(), "--batch", "0"],
        vec!["compile", model.to_str().unwrap(), "--batch", "0"],
        vec!["fit", model.to_str().unwrap(), "--data", "x.npz", "--output", "o.keras", "--batch-size", "0"],
        vec!["run", model.to_str().unwrap(), "--input", "x.npy", "--memory-limit", "lots"],
    ] {
        let (code, err) = stderr_of(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("must be at least 1") || err.contains("unknown unit"), "{args:?}: {err}");
    }
}

#[test]
fn a_memory_limit_refuses_a_run_before_it_allocates() {
    let m = models_dir();
    let (model, x) = (m.join("mobilenetv2.keras"), m.join("mobilenetv2.input.npy"));
    for naive in [false, true] {
        let mut args = vec!["run", model.to_str().unwrap(), "--input", x.to_str().unwrap(), "--memory-limit", "64KiB"];
        if naive {
            args.push("--naive");
        }
        let (code, err) = stderr_of(&args);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("needs") && err.contains("64.0 KiB") && err.contains("memory limit"), "{err}");
    }
    let (code, err) =
        stderr_of(&["bench", model.to_str().unwrap(), "--batch", "1000000000000", "--runs", "1", "--warmup", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs") && err.contains("available on this machine"), "{err}");
}

#[test]
fn a_memory_limit_refuses_a_fit_and_writes_nothing() {
    let m = models_dir();
    let out = std::env::temp_dir().join(format!("kerasc-fit-limit-{}.keras", std::process::id()));
    let (model, data) = (m.join("cnn_mnist.keras"), m.join("cnn_mnist.finetune.npz"));
    let args = [
        "fit",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--memory-limit",
        "100KiB",
        "--optimizer",
        "sgd",
        "--loss",
        "sparse_categorical_crossentropy",
        "--verbose",
        "0",
    ];
    let (code, err) = stderr_of(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs") && err.contains("100.0 KiB") && err.contains("memory limit"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists());
}

#[test]
fn every_fit_option_is_described() {
    let out = kerasc(&["fit", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = help.lines().collect();
    let mut bare = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with("--") || t.starts_with("-h") {
            // clap puts the help on the same line, or on the next, indented further.
            let same = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
            let next = lines.get(i + 1).is_some_and(|n| n.starts_with("          ") && !n.trim().starts_with('['));
            if !same && !next {
                bare.push(t.to_string());
            }
        }
    }
    assert!(help.contains("--learning-rate") && bare.is_empty(), "options without a description: {bare:?}");
}

#[test]
fn the_readme_says_how_to_install_kerasc() {
    let readme = std::fs::read_to_string(models_dir().join("../../README.md")).unwrap();
    let head: String = readme.lines().take(12).collect::<Vec<_>>().join("\n");
    assert!(head.contains("cargo install --path ."), "{head}");
}

#[test]
fn the_report_fills_the_page_and_shows_memory_in_kib() {
    let dir = tmpdir("first-report");
    let report = dir.join("r.html");
    let model = models_dir().join("resnet_block.keras");
    let out = kerasc(&["bench", model.to_str().unwrap(), "--runs", "2", "--report", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("KiB") && !html.contains(" B, arena"), "memory units");
    assert!(html.contains("grid-template-columns:1fr 1fr") && html.matches("width=\"100%\"").count() == 2, "layout");
    // No node label is cut: every node's name appears whole in the page.
    assert!(html.contains("res_relu1/activation") && html.contains("branch_3x3/activation"), "labels");
}

#[test]
fn folded_weights_are_named_after_their_layers() {
    let model = models_dir().join("mobilenetv2.keras");
    let out = kerasc(&["compile", model.to_str().unwrap(), "--emit", "optimized"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let consts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("const @"))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert!(consts.len() > 50);
    let anonymous: Vec<&&str> = consts
        .iter()
        .filter(|n| {
            let stem = n.rsplit('_').next().unwrap_or("");
            !n.contains('/') && stem.chars().all(|c| c.is_ascii_digit())
        })
        .collect();
    assert!(anonymous.is_empty(), "weights named by a counter: {anonymous:?}");
    assert!(consts.contains(&"Conv1/kernel/mul"), "{consts:?}");
}

/// Integer arrays (uint8 images, int64) into a float model are converted as Keras converts them;
/// floats into an integer (token id) input stay an error.
#[test]
fn integer_images_into_a_float_model_are_converted() {
    let dir = tmpdir("int-images");
    let m = models_dir().join("cnn_mnist.keras");
    let x = npy::read(&models_dir().join("cnn_mnist.input.npy")).unwrap();
    // The same picture as whole numbers 0..=255, in uint8 and int64, and as the floats they are.
    let pixels: Vec<f32> = x.to_f32_vec().iter().map(|v| (v.abs() * 255.0).round().min(255.0)).collect();
    let as_float = Tensor::from_f32(x.shape(), pixels).unwrap();
    let mut outs = Vec::new();
    for (name, t) in [("f32", as_float.clone()), ("u8", as_float.cast(DType::U8)), ("i64", as_float.cast(DType::I64))] {
        let (input, out) = (dir.join(format!("{name}.npy")), dir.join(format!("{name}.out.npy")));
        npy::write(&input, &t).unwrap();
        let o = kerasc(&["run", m.to_str().unwrap(), "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        outs.push(npy::read(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
    let ids = models_dir().join("text_embed.keras");
    let floats = dir.join("ids.npy");
    npy::write(&floats, &Tensor::from_f32(&[1, 12], vec![1.0; 12]).unwrap()).unwrap();
    let o = kerasc(&["run", ids.to_str().unwrap(), "-i", floats.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("expected int32 but got float32"), "{err}");
}
