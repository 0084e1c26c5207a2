//! Shared helpers of the integration tests.
#![allow(dead_code, clippy::type_complexity)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every model of the dev set (each committed as .h5, .k2.h5 and .keras with its input).
pub const DEV_MODELS: &[&str] = &[
    "mlp",
    "cnn_mnist",
    "resnet_block",
    "sepconv",
    "mobilenetv2",
    "text_embed",
    "lstm",
    "gru",
    "conv1d",
    "activations",
    "pool_pad_up",
    "reshape_ln",
    "transformer",
    "long_names",
];

/// The committed test models.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

/// Runs the `kerasc` binary.
pub fn kerasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kerasc")).args(args).output().expect("kerasc runs")
}

/// A fresh temporary folder.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kerasc-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of a `.keras` archive with its config.json replaced.
pub fn with_config(archive: &Path, config: &serde_json::Value) -> Vec<u8> {
    let bytes = std::fs::read(archive).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().map(|n| n.to_string()).unwrap_or_default();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name == "config.json" {
            data = serde_json::to_vec(config).unwrap();
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// One layer's weights for [`keras_archive`]: archive key, layer name, tensors (shape, data).
pub struct LayerWeights {
    pub key: String,
    pub name: String,
    pub vars: Vec<(Vec<usize>, Vec<f32>)>,
    /// Sub-objects (e.g. an RNN's `cell`), each with its own vars.
    pub children: Vec<(String, Vec<(Vec<usize>, Vec<f32>)>)>,
}

fn vars_group(b: &mut hdf5_pure::GroupBuilder, name: &str, vars: &[(Vec<usize>, Vec<f32>)]) {
    let mut v = b.create_group("vars");
    v.set_attr("name", hdf5_pure::AttrValue::VarLenString(name.to_string()));
    for (i, (shape, data)) in vars.iter().enumerate() {
        let s: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        v.create_dataset(&i.to_string()).with_f32_data(data).with_shape(&s);
    }
    b.add_group(v.finish());
}

/// Builds a Keras 3 `.keras` archive from a model config and per-layer weights.
pub fn keras_archive(config: &serde_json::Value, layers: &[LayerWeights]) -> Vec<u8> {
    let mut fb = hdf5_pure::FileBuilder::new();
    let mut lg = fb.create_group("layers");
    for l in layers {
        let mut g = lg.create_group(&l.key);
        vars_group(&mut g, &l.name, &l.vars);
        for (child, vars) in &l.children {
            let mut c = g.create_group(child);
            vars_group(&mut c, child, vars);
            g.add_group(c.finish());
        }
        lg.add_group(g.finish());
    }
    fb.add_group(lg.finish());
    let weights = fb.finish().unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    out.start_file("metadata.json", opts).unwrap();
    out.write_all(br#"{"keras_version": "3.15.1"}"#).unwrap();
    out.start_file("config.json", opts).unwrap();
    out.write_all(&serde_json::to_vec(config).unwrap()).unwrap();
    out.start_file("model.weights.h5", opts).unwrap();
    out.write_all(&weights).unwrap();
    out.finish().unwrap().into_inner()
}

/// For a test that cannot run on this machine: a failure when the `KERASC_REQUIRE_*` variable
/// `var` is set (CI requires NVRTC and the emulator, the device script the GPU), else a line on
/// stderr saying why, after which the caller returns.
pub fn cannot_run(var: &str, why: &str) {
    assert!(std::env::var_os(var).is_none(), "{var} is set, but this test cannot run here: {why}");
    eprintln!("skipped: {why} (set {var}=1 to make this a failure)");
}

/// The sorted stems of the files in `dir` ending with `suffix` (`NAME.expected.npy` → `NAME`):
/// a generated check set. Empty when there is none.
pub fn stems(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(suffix)).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
