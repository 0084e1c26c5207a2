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
    /// The graph can only be compiled for the inputs it will run on: an ONNX input with a
    /// symbolic size other than the batch, or one whose values decide shapes or layouts
    /// (Resize's scales, Slice's starts, Reshape's target given as graph inputs). Load again
    /// with those inputs' shapes and values ([`crate::LoadOptions`]).
    #[error("{file}: compiling needs the inputs it will run on, at least {}", show_needs(.needs))]
    NeedsInputs { file: String, needs: Vec<Need> },
}

/// What compiling a model needs of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The input's name and position (model input order).
    pub input: String,
    pub index: usize,
    /// Its values (they decide shapes or attributes), or else only its shape.
    pub values: bool,
    /// Which node needs it, and for what.
    pub why: String,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.values { "the values" } else { "the shape" };
        write!(f, "{what} of input '{}' ({})", self.input, self.why)
    }
}

fn show_needs(needs: &[Need]) -> String {
    let all: Vec<String> = needs.iter().map(Need::to_string).collect();
    format!("{} (`kerasc run` takes them from its --input arrays)", all.join("; "))
}
