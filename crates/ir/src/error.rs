use thiserror::Error;

/// Errors of graph construction, shape inference and tensor handling.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// An op received inputs whose shapes or types it cannot accept.
    #[error("{op}: {message}")]
    Shape { op: String, message: String },
    /// An op received the wrong number of inputs.
    #[error("{op}: expected {expected} input(s), got {got}")]
    Arity { op: String, expected: String, got: usize },
    /// An op received a dtype it does not support.
    #[error("{op}: unsupported dtype {dtype}")]
    DType { op: String, dtype: String },
    /// A graph is malformed (dangling value, cycle, duplicate producer, ...).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// A tensor's data does not match its declared shape.
    #[error("tensor: {0}")]
    Tensor(String),
}

impl IrError {
    /// Shorthand for a [`IrError::Shape`] error.
    pub fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        IrError::Shape { op: op.into(), message: message.into() }
    }
}
