//! Identities: `x·1`, `x+0`, `x−0`, `x/1`, ops that return their input unchanged, and
//! `x·sigmoid(x)` as the one op it is (SiLU, Keras's swish).

use super::rule::{is_splat, ops_in, ty, Build, FnRule};
use crate::egraph::TensorEGraph;
use egg::Id;
use ir::{BinaryOp, Op, UnaryOp};

pub const RULES: [FnRule; 3] = [
    FnRule { name: "neutral-element", find: neutral_element },
    FnRule { name: "remove-identity", find: remove_identity },
    FnRule { name: "mul-sigmoid-as-silu", find: mul_sigmoid_as_silu },
];

/// `x·sigmoid(x) → silu(x)` (either order): how ONNX exporters (tf2onnx, PyTorch) write swish,
/// which then fuses into the epilogue of the convolution that produced `x` instead of running
/// as an element-wise pass of its own.
fn mul_sigmoid_as_silu(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Binary(BinaryOp::Mul) = op else { continue };
        for (x, s) in [(c[0], c[1]), (c[1], c[0])] {
            let sig_of_x =
                ops_in(eg, s).any(|(o, sc)| matches!(o, Op::Unary(UnaryOp::Sigmoid)) && eg.find(sc[0]) == eg.find(x));
            if sig_of_x && ty(eg, x) == ty(eg, id) {
                out.push(Build::Op(Op::Unary(UnaryOp::Silu), vec![Build::Class(x)]));
                break;
            }
        }
    }
    out
}

/// `x·1 → x`, `1·x → x`, `x+0 → x`, `0+x → x`, `x−0 → x`, `x/1 → x` (when the constant does not
/// broadcast `x` to a larger shape).
fn neutral_element(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Binary(b) = op else { continue };
        let (l, r) = (c[0], c[1]);
        let keep = |x: Id| ty(eg, x) == ty(eg, id);
        let pick = match b {
            BinaryOp::Mul if is_splat(eg, r, 1.0) && keep(l) => Some(l),
            BinaryOp::Mul if is_splat(eg, l, 1.0) && keep(r) => Some(r),
            BinaryOp::Add if is_splat(eg, r, 0.0) && keep(l) => Some(l),
            BinaryOp::Add if is_splat(eg, l, 0.0) && keep(r) => Some(r),
            BinaryOp::Sub if is_splat(eg, r, 0.0) && keep(l) => Some(l),
            BinaryOp::Div if is_splat(eg, r, 1.0) && keep(l) => Some(l),
            _ => None,
        };
        out.extend(pick.map(Build::Class));
    }
    out
}

/// Ops that are the identity on their input: `identity`, `affine(1, 0)`, a cast to the same
/// dtype, the identity permutation, a reshape or pad or tile that changes nothing, a one-input
/// concat, a bias of zeros.
fn remove_identity(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Some(&x) = c.first() else { continue };
        let same_type = ty(eg, x).is_some() && ty(eg, x) == ty(eg, id);
        let identity = match op {
            Op::Unary(UnaryOp::Identity) => true,
            Op::Unary(UnaryOp::Affine { scale, offset }) => *scale == 1.0 && *offset == 0.0,
            Op::Cast { .. } | Op::Reshape { .. } => same_type,
            Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| i == p),
            Op::Pad { pads, .. } => pads.iter().all(|&p| p == (0, 0)),
            Op::Tile { repeats } => repeats.iter().all(|&r| r == 1),
            Op::Concat { .. } => c.len() == 1,
            Op::BiasAdd { .. } => c.len() == 2 && is_splat(eg, c[1], 0.0),
            _ => false,
        };
        if identity && same_type {
            out.push(Build::Class(x));
        }
    }
    out
}
