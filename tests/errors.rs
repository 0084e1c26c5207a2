//! Bad input gets a one-line error naming the problem and a non-zero exit, never a panic.

mod common;

use common::{kerasc, models_dir, tmpdir, with_config};
use serde_json::Value;

/// Runs the CLI and asserts a clean failure whose message contains every `needles` entry.
fn assert_clean_failure(args: &[&str], needles: &[&str]) -> String {
    let out = kerasc(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let err_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(err_lines.len(), 1, "expected one error line: {stderr}");
    for n in needles {
        assert!(stderr.to_lowercase().contains(&n.to_lowercase()), "'{n}' not in: {stderr}");
    }
    stderr
}

fn mlp_config() -> Value {
    let bytes = std::fs::read(models_dir().join("mlp.keras")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut z.by_name("config.json").unwrap(), &mut s).unwrap();
    serde_json::from_str(&s).unwrap()
}

#[test]
fn lambda_and_unknown_layers_are_all_listed_at_once() {
    let mut cfg = mlp_config();
    let layers = cfg["config"]["layers"].as_array_mut().unwrap();
    let mut lambda = layers[1].clone();
    lambda["class_name"] = "Lambda".into();
    lambda["config"] = serde_json::json!({"name": "my_lambda", "function": "lambda x: x"});
    let mut unknown = layers[1].clone();
    unknown["class_name"] = "FancyLayer".into();
    unknown["config"] = serde_json::json!({"name": "fancy"});
    let mut custom = layers[1].clone();
    custom["class_name"] = "MyBlock".into();
    custom["module"] = "my_project.layers".into();
    custom["config"] = serde_json::json!({"name": "block"});
    layers.push(lambda);
    layers.push(unknown);
    layers.push(custom);
    let dir = tmpdir("unsupported");
    let path = dir.join("bad.keras");
    std::fs::write(&path, with_config(&models_dir().join("mlp.keras"), &cfg)).unwrap();
    let msg = assert_clean_failure(
        &["inspect", path.to_str().unwrap()],
        &[
            "3 unsupported layer(s)",
            "Lambda 'my_lambda'",
            "Python code",
            "FancyLayer 'fancy'",
            "MyBlock 'block'",
            "custom class",
        ],
    );
    assert!(msg.contains("bad.keras"), "{msg}");
}

#[test]
fn weight_shape_that_disagrees_with_config() {
    let mut cfg = mlp_config();
    cfg["config"]["layers"][1]["config"]["units"] = 31.into();
    let dir = tmpdir("weights");
    let path = dir.join("bad_units.keras");
    std::fs::write(&path, with_config(&models_dir().join("mlp.keras"), &cfg)).unwrap();
    assert_clean_failure(&["inspect", path.to_str().unwrap()], &["kernel has shape [20, 32]", "[20, 31]", "dense"]);
}

#[test]
fn truncated_and_foreign_files() {
    let dir = tmpdir("truncated");
    for name in ["mlp.h5", "mlp.k2.h5", "mlp.keras", "mobilenetv2.h5"] {
        let bytes = std::fs::read(models_dir().join(name)).unwrap();
        for cut in [bytes.len() / 2, 600, 9] {
            let path = dir.join(format!("cut_{cut}_{name}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let out = kerasc(&["inspect", path.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name} cut at {cut}: {stderr}");
            assert!(!stderr.contains("panicked") && stderr.contains("cut_"), "{stderr}");
        }
    }
    let text = dir.join("notes.h5");
    std::fs::write(&text, "just some text, not a model").unwrap();
    assert_clean_failure(&["inspect", text.to_str().unwrap()], &["not a model kerasc reads"]);
    let empty = dir.join("empty.keras");
    std::fs::write(&empty, "").unwrap();
    assert_clean_failure(&["run", empty.to_str().unwrap(), "--input", "x.npy"], &["empty"]);
    assert_clean_failure(&["inspect", dir.join("missing.h5").to_str().unwrap()], &["missing.h5"]);
}

#[test]
fn zip_without_config_json() {
    let dir = tmpdir("noconfig");
    let path = dir.join("weights_only.keras");
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("metadata.json", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut w, b"{\"keras_version\": \"3.15.1\"}").unwrap();
    std::fs::write(&path, w.finish().unwrap().into_inner()).unwrap();
    assert_clean_failure(&["inspect", path.to_str().unwrap()], &["no config.json"]);
}

#[test]
fn hdf5_without_model_config() {
    let dir = tmpdir("noconfig_h5");
    let path = dir.join("weights.h5");
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("w").with_f32_data(&[1.0, 2.0]).with_shape(&[2]);
    std::fs::write(&path, b.finish().unwrap()).unwrap();
    assert_clean_failure(&["inspect", path.to_str().unwrap()], &["model_config"]);
}

#[test]
fn wrong_input_shape_dtype_and_count() {
    let m = models_dir();
    let model = m.join("mlp.h5");
    let bad = m.join("cnn_mnist.input.npy");
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "--input", bad.to_str().unwrap()],
        &["input 0", "features", "expected shape (None, 20)", "[4, 28, 28, 1]"],
    );
    // Floats into token ids (integers into a float input are converted, as Keras does).
    let text = m.join("text_embed.keras");
    let floats = m.join("mlp.input.npy");
    assert_clean_failure(
        &["run", text.to_str().unwrap(), "--input", floats.to_str().unwrap()],
        &["input 0", "expected int32 but got float32"],
    );
    let good = m.join("mlp.input.npy");
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "--input", good.to_str().unwrap(), "--input", good.to_str().unwrap()],
        &["takes 1 input(s), 2 given"],
    );
    let dir = tmpdir("badnpy");
    let broken = dir.join("broken.npy");
    std::fs::write(&broken, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',").unwrap();
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "--input", broken.to_str().unwrap()],
        &["broken.npy", "not a valid .npy"],
    );
}

#[test]
fn out_of_range_token_ids() {
    let dir = tmpdir("tokens");
    let ids = kerasc::ir::Tensor::new(vec![1, 12], kerasc::ir::TensorData::I32(vec![1_000_000; 12])).unwrap();
    let p = dir.join("ids.npy");
    kerasc::npy::write(&p, &ids).unwrap();
    let model = models_dir().join("text_embed.keras");
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "--input", p.to_str().unwrap()],
        &["index 1000000 is out of range"],
    );
}

#[test]
fn unknown_and_unavailable_devices() {
    let m = models_dir();
    let model = m.join("mlp.h5");
    let x = m.join("mlp.input.npy");
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "-i", x.to_str().unwrap(), "--device", "/TPU:0"],
        &["cannot parse device"],
    );
    assert_clean_failure(
        &["run", model.to_str().unwrap(), "-i", x.to_str().unwrap(), "--device", "/GPU:0"],
        &["/GPU:0 is not available", "available devices: /CPU:0"],
    );
}

#[test]
fn output_is_not_half_written_on_failure() {
    let dir = tmpdir("atomic");
    let out = dir.join("y.npy");
    std::fs::write(&out, b"previous result").unwrap();
    let m = models_dir();
    let bad = m.join("cnn_mnist.input.npy");
    let r =
        kerasc(&["run", m.join("mlp.h5").to_str().unwrap(), "-i", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"previous result");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Strings where numbers go, numbers where a text layer wants strings, a text array of the wrong
/// shape, and string `.npy` headers that lie about their size: one error line each.
#[test]
fn string_arrays_that_do_not_fit() {
    let extra = models_dir().join("extra");
    let text = extra.join("text_vocab.input0.npy");
    let colors = extra.join("text_vocab.input1.npy");
    let (t, c) = (text.to_str().unwrap(), colors.to_str().unwrap());
    let mlp = models_dir().join("mlp.keras");
    assert_clean_failure(&["run", mlp.to_str().unwrap(), "--input", t], &["holds strings"]);
    let m = extra.join("text_vocab.keras");
    let m = m.to_str().unwrap();
    let ids = extra.join("hashing.input1.npy");
    assert_clean_failure(&["run", m, "--input", ids.to_str().unwrap(), "--input", c], &["takes strings"]);
    assert_clean_failure(&["run", m, "--input", c, "--input", c], &["one string per row"]);
    let dir = tmpdir("errors-strings");
    for (name, descr, shape) in
        [("long.npy", "<U99999999999999999", "(2,)"), ("huge.npy", "<U3", "(99999999999, 99999999999)")]
    {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        h.push_str(&" ".repeat(63 - h.len() % 64));
        h.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h.as_bytes());
        bytes.extend(b"abc");
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        assert_clean_failure(&["run", m, "--input", p.to_str().unwrap(), "--input", c], &["not a valid .npy"]);
    }
}
