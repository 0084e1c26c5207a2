//! The in-arena kernels write what the allocating kernels return.
#![allow(clippy::unwrap_used)]

use ir::{Op, Tensor};
use kernels::arena::{run_into, supports};
use kernels::run_op;

fn check(op: Op, inputs: Vec<Tensor>) {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let want = run_op(&op, &refs).unwrap().remove(0);
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    assert!(supports(&op, &shapes), "{op:?}");
    let ins: Vec<&[f32]> = inputs.iter().map(|t| t.as_f32().unwrap()).collect();
    let mut out = vec![f32::NAN; want.len()];
    let views: Vec<Option<&[f32]>> = ins.iter().map(|v| Some(*v)).collect();
    run_into(&op, &views, &shapes, &mut out, want.shape()).unwrap();
    assert_eq!(out.len(), want.as_f32().unwrap().len());
    for (a, b) in out.iter().zip(want.as_f32().unwrap()) {
        assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{op:?}: {a} vs {b}");
    }
}

fn seq(shape: &[usize], s: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(|i| ((i as f32) * s).sin()).collect()).unwrap()
}

#[test]
fn match_the_allocating_kernels() {
    check(Op::Softmax { axes: vec![2] }, vec![seq(&[2, 3, 5], 0.7)]);
    check(Op::LogSoftmax { axis: 1 }, vec![seq(&[4, 6], 0.3)]);
    check(Op::LayerNorm { axes: vec![2], epsilon: 1e-3 }, vec![seq(&[2, 3, 4], 0.9), seq(&[4], 0.2), seq(&[4], 0.5)]);
    check(Op::Concat { axis: 1 }, vec![seq(&[2, 3, 2], 0.1), seq(&[2, 1, 2], 0.4), seq(&[2, 2, 2], 0.8)]);
    check(Op::Concat { axis: 0 }, vec![seq(&[1, 3], 0.1), seq(&[2, 3], 0.4)]);
    check(Op::Transpose { perm: vec![0, 2, 3, 1] }, vec![seq(&[2, 3, 4, 5], 0.3)]);
    check(Op::Transpose { perm: vec![1, 0] }, vec![seq(&[3, 7], 0.3)]);
    check(Op::Reduce { kind: ir::ReduceKind::Mean, axes: vec![1, 2], keepdims: false }, vec![seq(&[2, 3, 4, 5], 0.3)]);
    check(Op::Reduce { kind: ir::ReduceKind::Max, axes: vec![1], keepdims: true }, vec![seq(&[2, 3, 4], 0.7)]);
    check(Op::RepeatInterleave { axis: 1, repeats: 2 }, vec![seq(&[2, 3, 4, 5], 0.3)]);
    check(Op::RepeatInterleave { axis: 2, repeats: 3 }, vec![seq(&[2, 3, 4, 5], 0.3)]);
    check(Op::RepeatInterleave { axis: 2, repeats: 2 }, vec![seq(&[2, 3, 4], 0.3)]);
    let nearest = ir::ResizeMode::Nearest;
    check(Op::Resize { sizes: vec![6, 10], mode: nearest.clone() }, vec![seq(&[2, 3, 4, 5], 0.3)]);
    check(Op::Resize { sizes: vec![2, 3], mode: nearest.clone() }, vec![seq(&[2, 5, 7, 3], 0.3)]);
    check(Op::Resize { sizes: vec![3, 7], mode: nearest.clone() }, vec![seq(&[1, 3, 4, 2], 0.3)]);
    check(Op::Resize { sizes: vec![9], mode: nearest.clone() }, vec![seq(&[2, 4, 3], 0.3)]);
}

/// The backward ops of a training step run in the arena too.
#[test]
fn gradients_match_the_allocating_kernels() {
    use ir::{BinaryOp, ConvAttrs, PoolAttrs, PoolKind, UnaryOp};
    for u in [UnaryOp::Relu, UnaryOp::Square, UnaryOp::Tanh, UnaryOp::Sigmoid] {
        check(Op::UnaryGrad(u), vec![seq(&[2, 3, 5], 0.7), seq(&[2, 3, 5], 0.3)]);
    }
    for (b, wrt) in [(BinaryOp::Div, 0), (BinaryOp::Div, 1), (BinaryOp::Sub, 1), (BinaryOp::Max, 0)] {
        let ins =
            vec![seq(&[2, 3, 4], 0.7), Tensor::from_f32(&[3, 1], vec![2.0, 2.5, 3.0]).unwrap(), seq(&[2, 3, 4], 0.2)];
        check(Op::BinaryGrad { op: b, wrt }, ins);
    }
    check(Op::Pad { pads: vec![(0, 0), (1, 2), (3, 0)], value: 0.0 }, vec![seq(&[2, 3, 4], 0.3)]);
    check(Op::Pad { pads: vec![(2, 1)], value: -1.5 }, vec![seq(&[5], 0.3)]);
    let sl = |axes: Vec<usize>, starts: Vec<i64>, ends: Vec<i64>| Op::Slice {
        steps: vec![1; axes.len()],
        axes,
        starts,
        ends,
    };
    check(sl(vec![2], vec![3], vec![6]), vec![seq(&[2, 5, 9], 0.3)]);
    check(sl(vec![0, 1], vec![1, -3], vec![2, i64::MAX]), vec![seq(&[2, 5, 9], 0.3)]);
    check(Op::MeanGrad { axes: vec![0, 1, 2] }, vec![seq(&[1, 1, 1, 5], 0.3), seq(&[2, 3, 4, 5], 0.1)]);
    let c = ConvAttrs { strides: vec![2, 1], dilations: vec![1, 1], pads: vec![(1, 0), (1, 1)], groups: 1 };
    check(
        Op::ConvInputGrad { conv: c.clone(), input_dims: vec![7, 6, 3] },
        vec![seq(&[2, 3, 6, 4], 0.3), seq(&[3, 3, 3, 4], 0.2)],
    );
    check(
        Op::ConvFilterGrad { conv: c, kernel_dims: vec![3, 3, 3, 4] },
        vec![seq(&[2, 7, 6, 3], 0.3), seq(&[2, 3, 6, 4], 0.2)],
    );
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let a = PoolAttrs { kind, window: vec![3, 3], strides: vec![2, 2], pads: vec![(1, 1), (1, 1)] };
        check(Op::PoolGrad(a), vec![seq(&[2, 7, 7, 3], 0.37), seq(&[2, 4, 4, 3], 0.2)]);
    }
    // More pieces than the stack holds (a recurrent layer's steps).
    check(Op::Concat { axis: 1 }, (0..40).map(|k| seq(&[2, 1, 3], 0.1 + k as f32 * 0.01)).collect());
    for axis in [1, 3] {
        let x = seq(&[2, 3, 4, 5], 0.3);
        let c = x.shape()[axis];
        check(Op::Moments { axis }, vec![x.clone()]);
        check(Op::MomentsGrad { axis }, vec![x.clone(), seq(&[2, c], 0.7), seq(&[2, c], 0.9)]);
        check(Op::BatchNormSums { axis }, vec![seq(&[2, 3, 4, 5], 0.2), x.clone(), seq(&[c], 0.5)]);
        let p = seq(&[c], 0.4);
        check(Op::BatchNorm { axis, epsilon: 1e-3 }, vec![x, p.clone(), p.clone(), p.clone(), Tensor::full(&[c], 0.6)]);
    }
}

/// Shapes with an axis of size 0 (a sequence of no steps, as a fuzzer wrote): every op gives
/// its empty output or, reducing over the empty axis, values, and no kernel panics.
#[test]
fn axes_of_size_zero_run() {
    let empty = Tensor::from_f32(&[1, 0, 16], vec![]).unwrap();
    let gamma = seq(&[16], 0.2);
    let ops: Vec<(Op, Vec<Tensor>)> = vec![
        (Op::LayerNorm { axes: vec![2], epsilon: 1e-3 }, vec![empty.clone(), gamma.clone(), gamma.clone()]),
        (Op::Softmax { axes: vec![2] }, vec![empty.clone()]),
        (Op::Moments { axis: 2 }, vec![empty.clone()]),
        (Op::BatchNormSums { axis: 2 }, vec![empty.clone(), empty.clone(), gamma.clone()]),
        (Op::Transpose { perm: vec![0, 2, 1] }, vec![empty.clone()]),
        (Op::RepeatInterleave { axis: 1, repeats: 2 }, vec![empty.clone()]),
        (Op::Reduce { kind: ir::ReduceKind::Mean, axes: vec![1], keepdims: false }, vec![empty.clone()]),
        (Op::Reduce { kind: ir::ReduceKind::Sum, axes: vec![1], keepdims: false }, vec![empty.clone()]),
        (Op::Unary(ir::UnaryOp::Relu), vec![empty.clone()]),
        (Op::Binary(ir::BinaryOp::Add), vec![empty.clone(), gamma.clone()]),
    ];
    for (op, inputs) in ops {
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let out = run_op(&op, &refs).unwrap_or_else(|e| panic!("{op:?}: {e}")).remove(0);
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        if supports(&op, &shapes) {
            let ins: Vec<Option<&[f32]>> = inputs.iter().map(|t| t.as_f32()).collect();
            let mut buf = vec![0f32; out.len()];
            run_into(&op, &ins, &shapes, &mut buf, out.shape()).unwrap();
        }
    }
}
