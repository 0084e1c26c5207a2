//! Conv / MatMul fusion: a bias, an activation, a residual add and a second activation become
//! the epilogue of one fused op.

use super::rule::{ops_in, single_consumer, ty, Build, FnRule};
use crate::egraph::TensorEGraph;
use egg::Id;
use ir::{BinaryOp, Epilogue, Op, UnaryOp};

pub const RULES: [FnRule; 3] = [
    FnRule { name: "fuse-linear-bias", find: fuse_bias },
    FnRule { name: "fuse-linear-activation", find: fuse_activation },
    FnRule { name: "fuse-linear-residual", find: fuse_residual },
];

/// A Conv, MatMul or already-fused op in `id`, as (fused op with `epilogue`, operands); none
/// when the value of `id` is read elsewhere too (fusing would compute the op twice).
fn fusable(eg: &TensorEGraph, id: Id) -> Vec<(Op, Epilogue, Vec<Id>)> {
    let mut out = Vec::new();
    if !single_consumer(eg, id) {
        return out;
    }
    for (op, c) in ops_in(eg, id) {
        let item = match op {
            Op::Conv(a) => {
                Some((Op::FusedConv { conv: a.clone(), epilogue: Epilogue::default() }, Epilogue::default()))
            }
            Op::MatMul { transpose_a, transpose_b } => Some((
                Op::FusedMatMul { transpose_a: *transpose_a, transpose_b: *transpose_b, epilogue: Epilogue::default() },
                Epilogue::default(),
            )),
            Op::FusedConv { epilogue, .. } | Op::FusedMatMul { epilogue, .. } => Some((op.clone(), epilogue.clone())),
            _ => None,
        };
        if let Some((op, e)) = item {
            out.push((op, e, c.to_vec()));
        }
    }
    out
}

fn with_epilogue(op: &Op, e: Epilogue) -> Op {
    match op {
        Op::FusedConv { conv, .. } => Op::FusedConv { conv: conv.clone(), epilogue: e },
        Op::FusedMatMul { transpose_a, transpose_b, .. } => {
            Op::FusedMatMul { transpose_a: *transpose_a, transpose_b: *transpose_b, epilogue: e }
        }
        other => other.clone(),
    }
}

fn classes(ids: &[Id]) -> Vec<Build> {
    ids.iter().map(|&i| Build::Class(i)).collect()
}

/// `bias_add(linear(x, W), b) → fused(x, W, b)` (bias along the last axis).
fn fuse_bias(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let rank = ty(eg, id).map(|t| t.shape.rank()).unwrap_or(0);
    for (op, c) in ops_in(eg, id) {
        let Op::BiasAdd { axis } = op else { continue };
        if *axis + 1 != rank {
            continue;
        }
        for (f, e, operands) in fusable(eg, c[0]) {
            if e != Epilogue::default() {
                continue;
            }
            let mut args = classes(&operands);
            args.push(Build::Class(c[1]));
            out.push(Build::Op(with_epilogue(&f, Epilogue { bias: true, ..e }), args));
        }
    }
    out
}

/// `act(linear(...)) → fused(..., act)`; after a residual add it becomes the post-activation.
fn fuse_activation(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    for (op, c) in ops_in(eg, id) {
        let Op::Unary(u) = op else { continue };
        if *u == UnaryOp::Identity {
            continue;
        }
        for (f, e, operands) in fusable(eg, c[0]) {
            let e2 = if e.post_activation.is_none() && e.residual {
                Epilogue { post_activation: Some(*u), ..e }
            } else if e.activation.is_none() && !e.residual {
                Epilogue { activation: Some(*u), ..e }
            } else {
                continue;
            };
            out.push(Build::Op(with_epilogue(&f, e2), classes(&operands)));
        }
    }
    out
}

/// `linear(...) + r → fused(..., residual r)` for `r` of the output's own shape.
fn fuse_residual(eg: &TensorEGraph, id: Id) -> Vec<Build> {
    let mut out = Vec::new();
    let Some(t) = ty(eg, id) else { return out };
    for (op, c) in ops_in(eg, id) {
        let Op::Binary(BinaryOp::Add) = op else { continue };
        for (y, r) in [(c[0], c[1]), (c[1], c[0])] {
            if ty(eg, r) != Some(t) || ty(eg, y) != Some(t) {
                continue;
            }
            for (f, e, operands) in fusable(eg, y) {
                if e.residual || e.post_activation.is_some() {
                    continue;
                }
                let mut args = classes(&operands);
                args.push(Build::Class(r));
                out.push(Build::Op(with_epilogue(&f, Epilogue { residual: true, ..e }), args));
            }
        }
    }
    out
}
