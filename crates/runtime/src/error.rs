use thiserror::Error;

/// Errors of device selection and execution.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A device string that is not a TensorFlow or short device name.
    #[error("cannot parse device '{0}': expected /CPU:0, /GPU:1, /device:GPU:0, cpu, gpu:1 or cuda:1")]
    BadDevice(String),
    /// A split into logical devices that cannot be made.
    #[error("logical devices {0}")]
    Logical(String),
    /// A device that does not exist on this machine.
    #[error("device {requested} is not available: {reason}; available devices: {available}")]
    Unavailable { requested: String, reason: String, available: String },
    /// The inputs given do not fit the model.
    #[error("input {index} ('{name}'): {message}")]
    Input { index: usize, name: String, message: String },
    /// Not as many inputs as the model takes.
    #[error("the model takes {expected} input(s), {given} given (its inputs: {names})")]
    InputCount { expected: usize, given: usize, names: String },
    /// A kernel failed (bad indices, unsupported dtype, ...).
    #[error("{op} in '{node}': {message}")]
    Kernel { op: String, node: String, message: String },
    /// NVRTC could not compile a generated kernel (or is not available).
    #[error("cannot compile kernel {kernel}: {log}")]
    Compile { kernel: String, log: String },
    /// The CUDA driver reported an error.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// The workers of a multi-worker run could not join, or fell out.
    #[error("multi-worker run: {0}")]
    Cluster(String),
    /// The memory plan could not be made or does not fit the graph.
    #[error("memory plan: {0}")]
    Plan(String),
    /// The run's tensors would not fit in the memory it may use (refused before allocating).
    #[error("the run needs {needed} for its tensors at these input shapes, more than {available}; use a smaller batch, or raise --memory-limit")]
    Memory { needed: String, available: String },
    /// An IR-level error surfaced while running.
    #[error(transparent)]
    Ir(#[from] ir::IrError),
}

impl RuntimeError {
    pub(crate) fn kernel(op: &ir::Op, message: impl Into<String>) -> Self {
        RuntimeError::Kernel { op: op.name(), node: String::new(), message: message.into() }
    }
}

impl From<kernels::KernelError> for RuntimeError {
    fn from(e: kernels::KernelError) -> Self {
        match e {
            kernels::KernelError::Kernel { op, node, message } => RuntimeError::Kernel { op, node, message },
            kernels::KernelError::Ir(e) => RuntimeError::Ir(e),
        }
    }
}
