//! Code generation for kerasc plans. Its output is text: CUDA C kernels with their launch
//! dimensions and argument slots, snapshot-tested and compiled by NVRTC elsewhere. It never
//! links a GPU library.

pub mod cuda;

/// Errors of code generation.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The op (or this form of it) has no CUDA kernel yet.
    #[error("no CUDA kernel for {op} in '{node}': {why}")]
    Unsupported { op: String, node: String, why: String },
    /// The graph and the plan disagree.
    #[error("plan: {0}")]
    Plan(String),
}
