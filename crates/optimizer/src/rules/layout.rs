//! Layout rules: chains of reshapes and transposes collapse to one (or none), and element-wise
//! functions move through them towards the op that produced their input.

use super::{ops_in, ty, Build, FnRule};
use crate::egraph::TensorEGraph;
use egg::Id;
use ir::{Dim, Op, TensorType};

pub const RULES: [FnRule; 3] = [
    FnRule { name: "reshape-chain", find: reshape_chain },
    FnRule { name: "transpose-chain", find: transpose_chain },
    FnRule { name: "unary-through-layout", find: unary_through_layout },
];

/// A reshape target that maps `from` to `to` without reference to any intermediate shape.
fn reshape_target(from: &TensorType, to: &TensorType) -> Option<Vec<i64>> {
    let mut inferred = false;
    let mut target = Vec::with_capacity(to.shape.rank());
    for (i, d) in to.shape.dims().iter().enumerate() {
        match d {
            Dim::Fixed(n) => target.push(*n as i64),
            Dim::Batch if from.shape.dims().get(i) == Some(&Dim::Batch) => target.push(0),
            Dim::Batch if !inferred => {
                inferred = true;
                target.push(-1)
            }
            Dim::Batch => return None,
        }
    }
    Some(target)
}

/// `reshape(reshape(x)) → reshape(x)`.
fn reshape_chain(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let Some(to) = ty(eg, id) else { return out };
    for (op, c) in ops_in(eg, id) {
        let Op::Reshape { .. } = op else { continue };
        for (inner, ic) in ops_in(eg, c[0]) {
            let Op::Reshape { .. } = inner else { continue };
            let Some(from) = ty(eg, ic[0]) else { continue };
            if let Some(shape) = reshape_target(from, to) {
                out.push(Build::Op(Op::Reshape { shape }, vec![Build::Class(ic[0])]));
            }
        }
    }
    out
}

/// `transpose(transpose(x, p), q) → transpose(x, p∘q)`.
fn transpose_chain(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Transpose { perm: q } = op else { continue };
        for (inner, ic) in ops_in(eg, c[0]) {
            let Op::Transpose { perm: p } = inner else { continue };
            if p.len() != q.len() || q.iter().any(|&i| i >= p.len()) {
                continue;
            }
            let perm: Vec<usize> = q.iter().map(|&i| p[i]).collect();
            out.push(Build::Op(Op::Transpose { perm }, vec![Build::Class(ic[0])]));
        }
    }
    out
}

/// `f(reshape(x)) → reshape(f(x))` and `f(transpose(x)) → transpose(f(x))` for an element-wise
/// `f`: moving it next to its producer lets it fold or fuse there.
fn unary_through_layout(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Unary(u) = op else { continue };
        for (inner, ic) in ops_in(eg, c[0]) {
            if matches!(inner, Op::Reshape { .. } | Op::Transpose { .. }) {
                let moved = Build::Op(Op::Unary(*u), vec![Build::Class(ic[0])]);
                out.push(Build::Op(inner.clone(), vec![moved]));
            }
        }
    }
    out
}
