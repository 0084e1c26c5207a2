//! Folding per-channel arithmetic into the weights of the Conv or MatMul before it: batch
//! normalization, scales and shifts, and explicit zero padding into the conv's own padding.
//! The folded weights are weight-only terms that constant folding evaluates once.

use super::rule::{as_vector, bin, channel_vector, ops_in, ty, weight_only, Build, FnRule};
use crate::egraph::TensorEGraph;
use egg::Id;
use ir::{BinaryOp, Op, Tensor, UnaryOp};

pub const RULES: [FnRule; 4] = [
    FnRule { name: "fold-batchnorm-into-linear", find: fold_batchnorm },
    FnRule { name: "fold-scale-into-linear", find: fold_scale },
    FnRule { name: "shift-to-bias", find: shift_to_bias },
    FnRule { name: "fold-pad-into-conv", find: fold_pad },
];

/// A Conv or MatMul whose weights are constant and whose output channels are the last axis.
pub(crate) struct Linear {
    pub op: Op,
    pub x: Id,
    pub w: Id,
}

pub(crate) fn linears(eg: &TensorEGraph, id: Id) -> Vec<Linear> {
    ops_in(eg, id)
        .filter(|(op, c)| {
            c.len() == 2
                && weight_only(eg, c[1])
                && match op {
                    Op::Conv(_) => true,
                    Op::MatMul { transpose_a: false, transpose_b: false } => {
                        ty(eg, c[1]).is_some_and(|t| t.shape.rank() == 2)
                    }
                    _ => false,
                }
        })
        .map(|(op, c)| Linear { op: op.clone(), x: c[0], w: c[1] })
        .collect()
}

/// For each way `y` is a linear op (optionally plus a bias), the term computing
/// `y·scale + shift` with the scale folded into the weights.
fn scaled(eg: &TensorEGraph, y: Id, scale: &Build, shift: Option<Build>) -> Vec<Build> {
    let mut out = Vec::new();
    let rebuild = |l: &Linear| {
        Build::Op(l.op.clone(), vec![Build::Class(l.x), bin(BinaryOp::Mul, Build::Class(l.w), scale.clone())])
    };
    let Some(rank) = ty(eg, y).map(|t| t.shape.rank()) else { return out };
    let axis = rank.saturating_sub(1);
    for l in linears(eg, y) {
        match &shift {
            Some(s) => out.push(Build::Op(Op::BiasAdd { axis }, vec![rebuild(&l), s.clone()])),
            None => out.push(rebuild(&l)),
        }
    }
    for (op, c) in ops_in(eg, y) {
        let Op::BiasAdd { axis: a } = op else { continue };
        if *a != axis || !weight_only(eg, c[1]) {
            continue;
        }
        for l in linears(eg, c[0]) {
            let mut b = bin(BinaryOp::Mul, Build::Class(c[1]), scale.clone());
            if let Some(s) = &shift {
                b = bin(BinaryOp::Add, b, s.clone());
            }
            out.push(Build::Op(Op::BiasAdd { axis }, vec![rebuild(&l), b]));
        }
    }
    out
}

/// `batchnorm(linear(x, W)) → linear(x, W·s) + (β − μ·s)` with `s = γ / √(σ² + ε)`.
fn fold_batchnorm(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::BatchNorm { axis, epsilon } = op else { continue };
        let rank = ty(eg, c[0]).map(|t| t.shape.rank()).unwrap_or(0);
        if *axis + 1 != rank || !c[1..].iter().all(|&p| weight_only(eg, p)) {
            continue;
        }
        let (gamma, beta, mean, var) = (Build::Class(c[1]), Build::Class(c[2]), Build::Class(c[3]), Build::Class(c[4]));
        let inv = Build::Op(
            Op::Unary(UnaryOp::Rsqrt),
            vec![bin(BinaryOp::Add, var, Build::Weight(Tensor::scalar(*epsilon)))],
        );
        let s = bin(BinaryOp::Mul, gamma, inv);
        // The bias becomes b·s + (β − μ·s) = (b − μ)·s + β; without a bias, β − μ·s.
        let shift = bin(BinaryOp::Sub, beta, bin(BinaryOp::Mul, mean, s.clone()));
        out.extend(scaled(eg, c[0], &s, Some(shift)));
    }
    out
}

/// `linear(x, W) · s → linear(x, W·s)` for a per-output-channel constant `s`, and
/// `affine(linear(x, W), s, o) → linear(x, W·s) + o`.
fn fold_scale(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let Some(t) = ty(eg, id).cloned() else { return out };
    for (op, c) in ops_in(eg, id) {
        if let Op::Unary(UnaryOp::Affine { scale, offset }) = op {
            let Some(f) = t.shape.dims().last().and_then(|d| d.fixed()) else { continue };
            let shift = (*offset != 0.0).then(|| Build::Weight(Tensor::full(&[f], *offset)));
            out.extend(scaled(eg, c[0], &Build::Weight(Tensor::scalar(*scale)), shift));
            continue;
        }
        let Op::Binary(BinaryOp::Mul) = op else { continue };
        for (y, s) in [(c[0], c[1]), (c[1], c[0])] {
            if weight_only(eg, y) {
                continue;
            }
            if let Some(f) = channel_vector(eg, s, &t) {
                out.extend(scaled(eg, y, &as_vector(eg, s, f), None));
            }
        }
    }
    out
}

/// `y + c → bias_add(y, c)` for a per-channel constant `c`, and two biases merged into one.
fn shift_to_bias(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let Some(t) = ty(eg, id).cloned() else { return out };
    let axis = t.shape.rank().saturating_sub(1);
    for (op, c) in ops_in(eg, id) {
        match op {
            Op::Binary(BinaryOp::Add) => {
                for (y, s) in [(c[0], c[1]), (c[1], c[0])] {
                    if weight_only(eg, y) || ty(eg, y) != Some(&t) {
                        continue;
                    }
                    if let Some(f) = channel_vector(eg, s, &t) {
                        out.push(Build::Op(Op::BiasAdd { axis }, vec![Build::Class(y), as_vector(eg, s, f)]));
                    }
                }
            }
            Op::BiasAdd { axis: a } if *a == axis && weight_only(eg, c[1]) => {
                for (inner, ic) in ops_in(eg, c[0]) {
                    // A class equal to its own bias-add (x ≡ x + 0 after neutral-element) would
                    // otherwise grow sums of sums without end.
                    if eg.find(ic[0]) == eg.find(c[0]) || eg.find(ic[0]) == eg.find(id) {
                        continue;
                    }
                    if matches!(inner, Op::BiasAdd { axis: b } if *b == axis) && weight_only(eg, ic[1]) {
                        let sum = bin(BinaryOp::Add, Build::Class(ic[1]), Build::Class(c[1]));
                        out.push(Build::Op(Op::BiasAdd { axis }, vec![Build::Class(ic[0]), sum]));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `conv(pad(x, p, 0), W) → conv(x, W)` with the spatial padding added to the conv's own.
fn fold_pad(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Conv(a) = op else { continue };
        for (inner, ic) in ops_in(eg, c[0]) {
            let Op::Pad { pads, value } = inner else { continue };
            let r = a.pads.len();
            if *value != 0.0 || pads.len() != r + 2 || pads[0] != (0, 0) || pads[r + 1] != (0, 0) {
                continue;
            }
            let mut conv = a.clone();
            for (i, p) in conv.pads.iter_mut().enumerate() {
                p.0 += pads[i + 1].0;
                p.1 += pads[i + 1].1;
            }
            out.push(Build::Op(Op::Conv(conv), vec![Build::Class(ic[0]), Build::Class(c[1])]));
        }
    }
    out
}
