//! The extraction cost model, in rough nanoseconds on one batch element: a fixed price per
//! kernel launch, plus bytes moved and arithmetic. Weight-only values cost nothing (they are
//! folded once at compile time) and element-wise ops are priced as already fused.

use ir::{Op, TensorType};

/// Price of one kernel launch.
pub const LAUNCH: f64 = 500.0;
/// Price of an element-wise op, which chain fusion merges into its neighbours.
pub const ELEMENTWISE_LAUNCH: f64 = 50.0;
/// Price per byte read or written.
pub const PER_BYTE: f64 = 0.1;
/// Price per floating-point operation.
pub const PER_FLOP: f64 = 0.02;

fn elems(t: &TensorType) -> f64 {
    t.shape.dims().iter().map(|d| d.fixed().unwrap_or(1) as f64).product()
}

fn bytes(t: &TensorType) -> f64 {
    elems(t) * t.dtype.size() as f64
}

/// The cost of running `op` once on operands typed `ins` giving `outs`.
pub fn op_cost(op: &Op, ins: &[TensorType], outs: &[TensorType]) -> f64 {
    let out_elems: f64 = outs.iter().map(elems).sum();
    let out_bytes: f64 = outs.iter().map(bytes).sum();
    let in_bytes: f64 = ins.iter().map(bytes).sum();
    match op {
        Op::Reshape { .. } => 1.0,
        _ if op.is_elementwise() => ELEMENTWISE_LAUNCH + PER_BYTE * out_bytes,
        Op::Conv(_) | Op::FusedConv { .. } => {
            // Multiply-adds per output element: the kernel's size over its output channels.
            let k = ins
                .get(1)
                .map(|w| elems(w) / w.shape.dims().last().and_then(|d| d.fixed()).unwrap_or(1).max(1) as f64)
                .unwrap_or(1.0);
            LAUNCH + PER_BYTE * (in_bytes + out_bytes) + PER_FLOP * 2.0 * out_elems * k
        }
        Op::MatMul { transpose_a, .. } | Op::FusedMatMul { transpose_a, .. } => {
            let k = ins
                .first()
                .and_then(|a| {
                    let d = a.shape.dims();
                    let i = if *transpose_a { d.len().checked_sub(2)? } else { d.len().checked_sub(1)? };
                    d.get(i)?.fixed()
                })
                .unwrap_or(1) as f64;
            LAUNCH + PER_BYTE * (in_bytes + out_bytes) + PER_FLOP * 2.0 * out_elems * k
        }
        _ => LAUNCH + PER_BYTE * (in_bytes + out_bytes) + PER_FLOP * out_elems,
    }
}
