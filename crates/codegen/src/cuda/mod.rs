//! CUDA C for every step of an optimized plan. Each step becomes zero or more
//! [`KernelSource`]s: self-contained CUDA C (no includes) specialised to the step's concrete
//! shapes, with its launch dimensions and the graph values its pointer arguments bind to.
//! Kernels: element-wise and fused expressions from a table of op → C expression; implicit-GEMM
//! convolution and tiled matmul with fused epilogues; direct depthwise and transposed
//! convolution; pooling, reductions, softmax and normalizations; data movement; recurrent layers.
//! Beside the plan, [`optim`] emits the optimizer update of a training step.

mod context;
mod conv;
mod elementwise;
mod emit;
mod expr;
mod loss;
mod matmul;
mod norm;
pub mod optim;
mod pool;
mod reduce;
mod rnn;
mod shape_ops;

pub use context::{ctype, Precision};
pub use emit::{emit_node, emit_node_with, emit_plan, emit_plan_with};
pub use expr::{binary, lit, unary};

use ir::{NodeId, ValueId};

/// Launch dimensions of one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes (kernels here use static shared memory: 0).
    pub shared_bytes: u32,
}

/// One pointer argument: the graph value it points at, and whether the kernel writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSlot {
    pub value: ValueId,
    pub output: bool,
}

/// One kernel: its name (also the `extern "C"` entry point), CUDA C source, launch and arguments
/// in parameter order.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSource {
    pub name: String,
    pub source: String,
    pub launch: Launch,
    pub args: Vec<ArgSlot>,
}

/// The kernels of one plan step (none for a reshape that aliases its input's buffer).
#[derive(Debug, Clone, PartialEq)]
pub struct StepKernels {
    pub node: NodeId,
    pub kernels: Vec<KernelSource>,
}

/// The scalar helpers every kernel source starts with.
pub const PRELUDE: &str = include_str!("templates/prelude.cu");
