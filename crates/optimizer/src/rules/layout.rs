//! Layout rules: chains of reshapes and transposes collapse to one (or none), and element-wise
//! functions move through them towards the op that produced their input.

use super::rule::{ops_in, ty, weight_only, Build, FnRule};
use crate::egraph::TensorEGraph;
use egg::Id;
use ir::{Dim, Op, TensorType};

pub const RULES: [FnRule; 8] = [
    FnRule { name: "reshape-chain", find: reshape_chain },
    FnRule { name: "transpose-chain", find: transpose_chain },
    FnRule { name: "unary-through-layout", find: unary_through_layout },
    FnRule { name: "binary-through-transpose", find: binary_through_transpose },
    FnRule { name: "bias-through-transpose", find: bias_through_transpose },
    FnRule { name: "transpose-as-reshape", find: transpose_as_reshape },
    FnRule { name: "pad-reduce-norm-through-transpose", find: pad_reduce_norm_through_transpose },
    FnRule { name: "concat-through-transpose", find: concat_through_transpose },
];

/// `concat(transpose(a, p), transpose(b, p), ..., axis) → transpose(concat(a, b, ..., p[axis]), p)`
/// when every operand is a transpose by the same `p`: the skip connections of an ONNX U-Net
/// (each side brought channels-last for its convolution) then concatenate channels-last, with no
/// transposes between.
fn concat_through_transpose(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Concat { axis } = op else { continue };
        let Some(&first) = c.first() else { continue };
        for (inner, _) in ops_in(eg, first) {
            let Op::Transpose { perm } = inner else { continue };
            if *axis >= perm.len() {
                continue;
            }
            let sources: Option<Vec<Id>> = c
                .iter()
                .map(|&k| {
                    ops_in(eg, k).find_map(|(o, kc)| matches!(o, Op::Transpose { perm: q } if q == perm).then(|| kc[0]))
                })
                .collect();
            if let Some(sources) = sources {
                let cat = Build::Op(Op::Concat { axis: perm[*axis] }, sources.into_iter().map(Build::Class).collect());
                out.push(Build::Op(Op::Transpose { perm: perm.clone() }, vec![cat]));
                break;
            }
        }
    }
    out
}

/// A reshape target that maps `from` to `to` without reference to any intermediate shape.
fn reshape_target(from: &TensorType, to: &TensorType) -> Option<Vec<i64>> {
    // One batch-sized axis: -1 (right whatever multiple of the batch it holds at run time).
    if to.shape.dims().iter().filter(|d| **d == Dim::Batch).count() == 1 {
        return Some(to.shape.dims().iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect());
    }
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

fn inverse(p: &[usize]) -> Vec<usize> {
    let mut q = vec![0; p.len()];
    for (i, &v) in p.iter().enumerate() {
        if let Some(slot) = q.get_mut(v) {
            *slot = i;
        }
    }
    q
}

/// A weight broadcast against `transpose(x, p)`, laid out to broadcast against `x` instead.
fn relayout(eg: &TensorEGraph, v: Id, p: &[usize]) -> Option<Build> {
    let dims = ty(eg, v)?.shape.as_fixed()?;
    let r = p.len();
    if dims.len() > r {
        return None;
    }
    if dims.iter().all(|&d| d == 1) {
        return Some(Build::Class(v));
    }
    let mut b = Build::Class(v);
    if dims.len() < r {
        let full: Vec<i64> = std::iter::repeat_n(1, r - dims.len()).chain(dims.iter().map(|&d| d as i64)).collect();
        b = Build::Op(Op::Reshape { shape: full }, vec![b]);
    }
    Some(Build::Op(Op::Transpose { perm: inverse(p) }, vec![b]))
}

/// `transpose(a, p) ⊕ transpose(b, p) → transpose(a ⊕ b, p)` and `transpose(x, p) ⊕ w →
/// transpose(x ⊕ w', p)` (w' the weight laid out like x): element-wise binaries move through
/// layout changes, so that transposes meet and cancel (ONNX's channels-first convolutions
/// followed by a bias, a batch norm's scale or a residual add).
fn binary_through_transpose(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Binary(b) = op else { continue };
        let (a, bb) = (c[0], c[1]);
        for (side, (t, other)) in [(a, bb), (bb, a)].into_iter().enumerate() {
            for (inner, ic) in ops_in(eg, t) {
                let Op::Transpose { perm } = inner else { continue };
                let moved = |x: Build, y: Build| -> Build {
                    let (l, r) = if side == 0 { (x, y) } else { (y, x) };
                    Build::Op(Op::Transpose { perm: perm.clone() }, vec![Build::Op(Op::Binary(*b), vec![l, r])])
                };
                if side == 0 {
                    for (o, oc) in ops_in(eg, other) {
                        if matches!(o, Op::Transpose { perm: q } if q == perm) {
                            out.push(moved(Build::Class(ic[0]), Build::Class(oc[0])));
                        }
                    }
                }
                if weight_only(eg, other) {
                    if let Some(w) = relayout(eg, other, perm) {
                        out.push(moved(Build::Class(ic[0]), w));
                    }
                }
            }
        }
    }
    out
}

/// `bias_add(transpose(x, p), b, axis) → transpose(bias_add(x, b, p[axis]), p)`, and the same
/// for a batch normalization's channel axis.
fn bias_through_transpose(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let axis = match op {
            Op::BiasAdd { axis } | Op::BatchNorm { axis, .. } => *axis,
            _ => continue,
        };
        for (inner, ic) in ops_in(eg, c[0]) {
            let Op::Transpose { perm } = inner else { continue };
            let Some(&a) = perm.get(axis) else { continue };
            let moved_op = match op {
                Op::BatchNorm { epsilon, .. } => Op::BatchNorm { axis: a, epsilon: *epsilon },
                _ => Op::BiasAdd { axis: a },
            };
            let args = std::iter::once(Build::Class(ic[0])).chain(c[1..].iter().map(|&k| Build::Class(k))).collect();
            out.push(Build::Op(Op::Transpose { perm: perm.clone() }, vec![Build::Op(moved_op, args)]));
        }
    }
    out
}

/// A transpose that moves only unit axes (the order of the others kept) is a reshape, which
/// then merges with its neighbours (`(N, 28, 28, 1) → (N, 1, 28, 28) → (N, 28, 28, 1)`).
fn transpose_as_reshape(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let Some(to) = ty(eg, id) else { return out };
    for (op, c) in ops_in(eg, id) {
        let Op::Transpose { perm } = op else { continue };
        let Some(from) = ty(eg, c[0]) else { continue };
        let big: Vec<usize> = perm.iter().copied().filter(|&p| from.shape.dims()[p] != Dim::Fixed(1)).collect();
        if big.windows(2).all(|w| w[0] < w[1]) {
            if let Some(shape) = reshape_target(from, to) {
                out.push(Build::Op(Op::Reshape { shape }, vec![Build::Class(c[0])]));
            }
        }
    }
    out
}

/// `pad(transpose(x, p)) → transpose(pad'(x), p)` and, for reductions that keep their axes,
/// `reduce(transpose(x, p), axes) → transpose(reduce(x, p[axes]), p)`, and
/// `group_norm(transpose(x, p), axis) → transpose(group_norm(x, p[axis]), p)` where `p` keeps the
/// batch first: the padding then meets the convolution it can fold into, the reduction and the
/// normalization the producer's layout (no transposes around an ONNX model's GroupNormalization
/// or InstanceNormalization).
fn pad_reduce_norm_through_transpose(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        for (inner, ic) in ops_in(eg, c[0]) {
            let Op::Transpose { perm } = inner else { continue };
            let moved = match op {
                Op::Pad { pads, value } if pads.len() == perm.len() => {
                    let mut p2 = vec![(0, 0); pads.len()];
                    for (i, &pi) in perm.iter().enumerate() {
                        p2[pi] = pads[i];
                    }
                    Op::Pad { pads: p2, value: *value }
                }
                Op::Reduce { kind, axes, keepdims: true } if axes.iter().all(|&a| a < perm.len()) => {
                    let mut a2: Vec<usize> = axes.iter().map(|&a| perm[a]).collect();
                    a2.sort_unstable();
                    Op::Reduce { kind: *kind, axes: a2, keepdims: true }
                }
                // A group (or instance) normalization, statistics per sample: its channel axis
                // moves with the transpose, whose batch axis must stay first. (Batch norms move
                // with bias-through-transpose.)
                Op::GroupNorm { groups, axis, epsilon } if perm.first() == Some(&0) && *axis < perm.len() => {
                    Op::GroupNorm { groups: *groups, axis: perm[*axis], epsilon: *epsilon }
                }
                _ => continue,
            };
            // The moved op reads the transpose's input; its other operands (gamma, beta, ...)
            // are per channel and stay as they are.
            let mut args = vec![Build::Class(ic[0])];
            args.extend(c[1..].iter().map(|&k| Build::Class(k)));
            out.push(Build::Op(Op::Transpose { perm: perm.clone() }, vec![Build::Op(moved, args)]));
        }
    }
    out
}
