//! kerasc's optimizer: e-graph rewrites (fold, fuse, cancel layouts, algebra), element-wise
//! chain fusion and the memory plan, run as one ordered pipeline of named passes.

mod copy;
pub mod egraph;
mod fold;
pub mod fusion;
pub mod layout;
pub mod memory_plan;
pub mod pipeline;
pub mod rules;

pub use fold::fold_constants;
pub use memory_plan::{concrete_shapes, naive_plan_for_shapes, plan, plan_for_shapes};
pub use pipeline::{optimize, EGraphStats, OptimizeOptions, OptimizeReport, Optimized, PassReport, PASSES};

/// Errors of the optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error(transparent)]
    Ir(#[from] ir::IrError),
    #[error("graph: {0}")]
    Graph(String),
    #[error("pass '{pass}' produced an invalid graph: {message}")]
    Pass { pass: String, message: String },
    /// Evaluating a node whose operands are all constants failed (the error names the node).
    #[error("constant folding: {0}")]
    Fold(kernels::KernelError),
}
