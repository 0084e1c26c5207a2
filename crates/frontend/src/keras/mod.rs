//! Keras model files: legacy HDF5 (`.h5`, Keras 2 and Keras 3) and the Keras 3 `.keras` zip.

pub mod archive;
mod build;
pub mod config;
pub mod h5;
mod host_inputs;
pub mod layers;
mod order;
pub mod save;
mod tf_op;
pub mod training_config;
mod weights;

use crate::model::{Model, ModelFormat};
use crate::FrontendError;
use serde_json::Value;

pub use weights::WeightStore;

fn parse_json(text: &str, origin: &str, what: &str) -> Result<Value, FrontendError> {
    serde_json::from_str(text)
        .or_else(|e| match python_json(text) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| e),
            None => Err(e),
        })
        .map_err(|e| FrontendError::Config { file: origin.into(), message: format!("{what} is not valid JSON: {e}") })
}

/// Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity` (a constant of `-inf` in a
/// `keras.ops.where`, say): as standard JSON, the infinities become ±f64::MAX (infinite once
/// narrowed to float32) and NaN becomes null. `None` when the text has none of them.
fn python_json(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let (mut in_str, mut esc, mut changed) = (false, false, false);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let rep = if c == b'"' {
            in_str = true;
            None
        } else if rest.starts_with(b"-Infinity") {
            Some((9, "-1.7976931348623157e308"))
        } else if rest.starts_with(b"Infinity") {
            Some((8, "1.7976931348623157e308"))
        } else if rest.starts_with(b"NaN") {
            Some((3, "null"))
        } else {
            None
        };
        match rep {
            Some((n, r)) => {
                out.push_str(&text[last..i]);
                out.push_str(r);
                i += n;
                last = i;
                changed = true;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[last..]);
    changed.then_some(out)
}

/// Reads a legacy HDF5 model (Keras 2 or Keras 3).
pub fn load_h5(bytes: Vec<u8>, origin: &str) -> Result<Model, FrontendError> {
    let file_len = bytes.len();
    let file = h5::open(bytes, origin)?;
    let root = file.root();
    let attrs = h5::group_attrs(&root, origin, "the root group")?;
    let get = |k: &str| attrs.get(k).and_then(h5::attr_string);
    let config_text = get("model_config").ok_or_else(|| FrontendError::Format {
        file: origin.into(),
        message:
            "HDF5 file has no 'model_config' attribute: it holds weights only (save the whole model with model.save)"
                .into(),
    })?;
    let config = parse_json(&config_text, origin, "model_config")?;
    let keras_version = get("keras_version").unwrap_or_else(|| "unknown".into());
    let keras2 = !keras_version.starts_with('3');
    let training_config = match get("training_config") {
        Some(t) => Some(parse_json(&t, origin, "training_config")?),
        None => None,
    };
    let store = WeightStore::from_legacy(&file, file_len, origin)?;
    let format = if keras2 { ModelFormat::Keras2H5 } else { ModelFormat::Keras3H5 };
    let facts = build::FileFacts {
        format,
        keras_version,
        backend: get("backend"),
        training_config,
        assets: Default::default(),
    };
    build::build(&config, store, origin, facts)
}

/// Reads a Keras 3 `.keras` zip archive.
pub fn load_keras_archive(bytes: &[u8], origin: &str) -> Result<Model, FrontendError> {
    let mut arc = archive::Archive::open(bytes, origin)?;
    let config_text = arc.text("config.json")?.ok_or_else(|| FrontendError::Format {
        file: origin.into(),
        message: "zip archive has no config.json: not a Keras .keras model".into(),
    })?;
    let config = parse_json(&config_text, origin, "config.json")?;
    let metadata = match arc.text("metadata.json")? {
        Some(t) => parse_json(&t, origin, "metadata.json")?,
        None => Value::Null,
    };
    let keras_version = metadata.get("keras_version").and_then(Value::as_str).unwrap_or("3").to_string();
    let weights = arc.bytes("model.weights.h5")?.ok_or_else(|| FrontendError::Format {
        file: origin.into(),
        message: "zip archive has no model.weights.h5".into(),
    })?;
    let weights_len = weights.len();
    let wfile = h5::open(weights, &format!("{origin}:model.weights.h5"))?;
    let store = WeightStore::from_archive(wfile, weights_len, &format!("{origin}:model.weights.h5"));
    let training_config = config.get("compile_config").cloned().filter(|v| !v.is_null());
    let assets = arc.vocabularies()?;
    let facts =
        build::FileFacts { format: ModelFormat::KerasArchive, keras_version, backend: None, training_config, assets };
    build::build(&config, store, origin, facts)
}
