use thiserror::Error;

/// Errors of reading and lowering a model file.
#[derive(Debug, Error)]
pub enum FrontendError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The container (HDF5, zip) is corrupt, truncated or not what it claims.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// The model config is malformed.
    #[error("{file}: bad model config: {message}")]
    Config { file: String, message: String },
    /// Layers that kerasc cannot run, all of them listed at once.
    #[error("{file}: {} unsupported layer(s): {}", .layers.len(), .layers.join("; "))]
    Unsupported { file: String, layers: Vec<String> },
    /// A layer's weights do not match its config.
    #[error("{file}: layer '{layer}' ({class}): {message}")]
    Weights { file: String, layer: String, class: String, message: String },
    /// A layer's config or inputs cannot be lowered.
    #[error("{file}: layer '{layer}' ({class}): {message}")]
    Layer { file: String, layer: String, class: String, message: String },
}
