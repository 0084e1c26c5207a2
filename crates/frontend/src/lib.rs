//! kerasc's model readers: Keras `.h5` (Keras 2 and Keras 3 legacy HDF5), `.keras` (Keras 3
//! zip) and ONNX `.onnx` into one [`ir::Graph`], with a Keras-style summary of the layers.

mod error;
pub mod farmhash;
pub mod keras;
mod model;
pub mod onnx;
mod options;
pub mod text;

pub use error::{FrontendError, Need};
pub use model::{LayerSummary, Model, ModelFormat, ModelInfo};
pub use options::LoadOptions;

use std::path::Path;

/// Loads a model file, picking the reader from the file's content (HDF5 signature or zip).
pub fn load(path: &Path, options: &LoadOptions) -> Result<Model, FrontendError> {
    let bytes = std::fs::read(path)
        .map_err(|e| FrontendError::Io { path: path.display().to_string(), message: e.to_string() })?;
    let origin = path.display().to_string();
    let is_onnx = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx || (!bytes.starts_with(b"\x89HDF") && !bytes.starts_with(b"PK") && onnx::looks_like_onnx(&bytes)) {
        return onnx::load_onnx_with(&bytes, &origin, path.parent(), options);
    }
    load_bytes(bytes, &origin)
}

/// Loads a model from its bytes; `origin` names it in errors.
pub fn load_bytes(bytes: Vec<u8>, origin: &str) -> Result<Model, FrontendError> {
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") || hdf5_pure::is_hdf5_bytes(&bytes) {
        keras::load_h5(bytes, origin)
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        keras::load_keras_archive(&bytes, origin)
    } else if onnx::looks_like_onnx(&bytes) {
        onnx::load_onnx(&bytes, origin, None)
    } else if bytes.is_empty() {
        Err(FrontendError::Format { file: origin.into(), message: "the file is empty".into() })
    } else {
        Err(FrontendError::Format {
            file: origin.into(),
            message: "not a model kerasc reads: neither HDF5 (.h5), a zip archive (.keras) nor ONNX (.onnx)".into(),
        })
    }
}
