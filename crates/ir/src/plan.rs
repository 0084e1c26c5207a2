//! The memory plan a session executes: where every value lives for one batch size.

use crate::NodeId;

/// Where one value lives during a planned run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `bytes` at byte `offset` of the one arena (offsets are 64-byte aligned).
    Arena { offset: usize, bytes: usize },
    /// The i-th graph input, read in place.
    Input(usize),
    /// A weight, read in place.
    Constant,
    /// Its own buffer (non-float32 intermediates, rare).
    Separate,
}

/// An execution order and an arena offset for every float32 intermediate.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// The leading size of the first input (the batch size) the plan is laid out for.
    pub batch: usize,
    /// Nodes in execution order.
    pub order: Vec<NodeId>,
    /// One placement per graph value.
    pub placements: Vec<Placement>,
    /// Nodes whose output overwrites one of their inputs.
    pub in_place: Vec<NodeId>,
    /// Reshapes served by aliasing their input's buffer.
    pub aliases: usize,
    /// Size of the arena.
    pub arena_bytes: usize,
    /// One buffer per intermediate tensor, as the naive executor allocates.
    pub naive_bytes: usize,
    /// The largest sum of simultaneously live buffers: no placement can do better.
    pub lower_bound_bytes: usize,
    /// The offset heuristic that gave the smaller arena.
    pub heuristic: String,
    /// The concrete shape of every value.
    pub shapes: Vec<Vec<usize>>,
}
