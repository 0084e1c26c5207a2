//! kerasc's intermediate representation: a typed SSA dataflow graph of a closed set of core ops,
//! with weights as constants and only the batch dimension symbolic.

mod dtype;
mod error;
pub mod grad;
mod graph;
mod infer;
pub mod interp;
mod op;
mod plan;
pub mod render;
mod schedule;
mod shape;
mod tensor;
mod tolerance;
mod update;

pub use dtype::DType;
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Producer, Value, ValueId};
pub use infer::{
    broadcast, elements_per_sample, infer_concrete_types, infer_types, reshape_dims, slice_bounds, slice_len,
    MAX_ELEMENTS_PER_SAMPLE,
};
pub use op::*;
pub use plan::{MemoryPlan, Placement};
pub use schedule::Schedule;
pub use shape::{Dim, Shape, TensorType};
pub use tensor::{Tensor, TensorData};
pub use tolerance::{Comparison, Tolerance};
pub use update::{GradClip, UpdateRule, UpdateScalars, UPDATE_SCALARS};
