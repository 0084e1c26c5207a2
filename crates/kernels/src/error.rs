use thiserror::Error;

/// Errors of a CPU kernel.
#[derive(Debug, Error)]
pub enum KernelError {
    /// A kernel failed (bad indices, unsupported dtype, operands that do not fit, ...); `node`
    /// is empty until a caller that knows the node fills it in with [`KernelError::at`].
    #[error("{op} in '{node}': {message}")]
    Kernel { op: String, node: String, message: String },
    /// An IR-level error (shape inference, a tensor that does not fit its shape).
    #[error(transparent)]
    Ir(#[from] ir::IrError),
}

impl KernelError {
    pub(crate) fn new(op: &ir::Op, message: impl Into<String>) -> Self {
        KernelError::Kernel { op: op.name(), node: String::new(), message: message.into() }
    }

    /// The error with the name of the node that failed.
    pub fn at(self, node: &str) -> Self {
        match self {
            KernelError::Kernel { op, message, .. } => KernelError::Kernel { op, node: node.to_string(), message },
            other => other,
        }
    }
}
