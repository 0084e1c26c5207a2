//! One start ⇒ goal test per rewrite rule and pass: the start graph, the rule(s) alone, the ops
//! the result must have, and the same numbers as the naive run.
#![allow(clippy::panic)]

mod common;

use common::*;
use ir::{BinaryOp, Epilogue, Graph, Op, Tensor, UnaryOp};
use optimizer::OptimizeOptions;

fn fused_epilogue(g: &Graph) -> Epilogue {
    match g.nodes().iter().find_map(|n| match &n.op {
        Op::FusedConv { epilogue, .. } | Op::FusedMatMul { epilogue, .. } => Some(epilogue.clone()),
        _ => None,
    }) {
        Some(e) => e,
        None => panic!("no fused op in\n{}", ir::render::to_text(g)),
    }
}

#[test]
fn fold_batchnorm_into_conv() {
    let mut rng = Rng(1);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[6, 6, 3]);
    let y = conv(&mut g, &mut rng, x, 3, 4, true);
    let z = batchnorm(&mut g, &mut rng, y, 4);
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-batchnorm-into-linear"]), &mut rng);
    assert_eq!(ops(&out), ["Conv2D", "BiasAdd"]);
}

#[test]
fn fold_batchnorm_into_dense_with_bias() {
    let mut rng = Rng(2);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5]);
    let w = g.add_constant("w", rng.tensor(&[5, 4]));
    let b = g.add_constant("b", rng.tensor(&[4]));
    let y = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
    let y = g.add("bias", Op::BiasAdd { axis: 1 }, &[y, b]).unwrap();
    let z = batchnorm(&mut g, &mut rng, y, 4);
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-batchnorm-into-linear"]), &mut rng);
    assert_eq!(ops(&out), ["MatMul", "BiasAdd"]);
}

#[test]
fn fold_per_channel_scale_into_conv() {
    let mut rng = Rng(3);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 3, false);
    let s = g.add_constant("s", rng.tensor(&[1, 1, 1, 3]));
    let z = g.add("scale", Op::Binary(BinaryOp::Mul), &[s, y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-scale-into-linear"]), &mut rng);
    assert_eq!(ops(&out), ["Conv2D"]);
}

#[test]
fn per_channel_shift_becomes_one_bias() {
    let mut rng = Rng(4);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 3, true);
    let c1 = g.add_constant("c1", rng.tensor(&[3]));
    let c2 = g.add_constant("c2", rng.tensor(&[3]));
    let y = g.add("shift", Op::Binary(BinaryOp::Add), &[y, c1]).unwrap();
    let z = g.add("bias", Op::BiasAdd { axis: 3 }, &[y, c2]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["shift-to-bias"]), &mut rng);
    assert_eq!(ops(&out), ["Conv2D", "BiasAdd"]);
}

#[test]
fn zero_padding_folds_into_the_conv() {
    let mut rng = Rng(5);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let p = g.add("pad", Op::Pad { pads: vec![(0, 0), (1, 2), (2, 1), (0, 0)], value: 0.0 }, &[x]).unwrap();
    let z = conv(&mut g, &mut rng, p, 2, 3, false);
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-pad-into-conv"]), &mut rng);
    assert_eq!(ops(&out), ["Conv2D"]);
    let Op::Conv(a) = &out.nodes()[0].op else { unreachable!() };
    assert_eq!(a.pads, [(1, 2), (2, 1)]);
}

#[test]
fn padding_with_a_nonzero_value_is_not_folded() {
    let mut rng = Rng(6);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let p = g.add("pad", Op::Pad { pads: vec![(0, 0), (1, 1), (1, 1), (0, 0)], value: 1.0 }, &[x]).unwrap();
    let z = conv(&mut g, &mut rng, p, 2, 3, false);
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-pad-into-conv"]), &mut rng);
    assert_eq!(ops(&out), ["Pad", "Conv2D"]);
}

#[test]
fn conv_bias_and_each_activation_fuse() {
    let acts = [
        UnaryOp::Relu,
        UnaryOp::Relu6,
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::Elu { alpha: 1.0 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Silu,
        UnaryOp::HardSigmoid,
        UnaryOp::ReluClip { max_value: Some(6.0), negative_slope: 0.0, threshold: 0.0 },
    ];
    for (i, act) in acts.into_iter().enumerate() {
        let mut rng = Rng(10 + i as u64);
        let mut g = Graph::new("t");
        let x = input(&mut g, &[4, 4, 2]);
        let y = conv(&mut g, &mut rng, x, 2, 3, true);
        let b = g.add_constant("b", rng.tensor(&[3]));
        let y = g.add("bias", Op::BiasAdd { axis: 3 }, &[y, b]).unwrap();
        let z = g.add("act", Op::Unary(act), &[y]).unwrap();
        g.set_outputs(vec![z]);
        let out = optimize_and_check(&g, &only(&["fuse-linear-bias", "fuse-linear-activation"]), &mut rng);
        assert_eq!(ops(&out), ["FusedConv2D"], "{act:?}");
        assert_eq!(fused_epilogue(&out), Epilogue { bias: true, activation: Some(act), ..Default::default() });
    }
}

#[test]
fn dense_bias_activation_fuses_into_matmul() {
    let mut rng = Rng(30);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[7]);
    let w = g.add_constant("w", rng.tensor(&[7, 5]));
    let b = g.add_constant("b", rng.tensor(&[5]));
    let y = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
    let y = g.add("bias", Op::BiasAdd { axis: 1 }, &[y, b]).unwrap();
    let z = g.add("gelu", Op::Unary(UnaryOp::Gelu), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fuse-linear-bias", "fuse-linear-activation"]), &mut rng);
    assert_eq!(ops(&out), ["FusedMatMul"]);
}

#[test]
fn residual_add_and_activation_join_the_epilogue() {
    let mut rng = Rng(31);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4, 4, 3]);
    let y = conv(&mut g, &mut rng, x, 3, 3, true);
    let b = g.add_constant("b", rng.tensor(&[3]));
    let y = g.add("bias", Op::BiasAdd { axis: 3 }, &[y, b]).unwrap();
    let y = g.add("relu1", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let y = g.add("add", Op::Binary(BinaryOp::Add), &[x, y]).unwrap();
    let z = g.add("relu2", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let rules = ["fuse-linear-bias", "fuse-linear-activation", "fuse-linear-residual"];
    let out = optimize_and_check(&g, &only(&rules), &mut rng);
    assert_eq!(ops(&out), ["FusedConv2D"]);
    assert_eq!(
        fused_epilogue(&out),
        Epilogue { bias: true, activation: Some(UnaryOp::Relu), residual: true, post_activation: Some(UnaryOp::Relu) }
    );
}

#[test]
fn neutral_elements_vanish() {
    let mut rng = Rng(40);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[3, 4]);
    let one = g.add_constant("one", Tensor::full(&[4], 1.0));
    let zero = g.add_constant("zero", Tensor::scalar(0.0));
    let y = g.add("mul", Op::Binary(BinaryOp::Mul), &[x, one]).unwrap();
    let y = g.add("add", Op::Binary(BinaryOp::Add), &[zero, y]).unwrap();
    let y = g.add("relu", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let z = g.add("div", Op::Binary(BinaryOp::Div), &[y, one]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["neutral-element"]), &mut rng);
    assert_eq!(ops(&out), ["relu"]);
}

#[test]
fn a_neutral_constant_that_broadcasts_stays() {
    let mut rng = Rng(41);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4]);
    let one = g.add_constant("one", Tensor::full(&[2, 1, 4], 1.0));
    let z = g.add("mul", Op::Binary(BinaryOp::Mul), &[x, one]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["neutral-element"]), &mut rng);
    assert_eq!(ops(&out), ["mul"]);
}

#[test]
fn identity_ops_vanish() {
    let mut rng = Rng(42);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[3, 4]);
    let y = g.add("id", Op::Unary(UnaryOp::Identity), &[x]).unwrap();
    let y = g.add("t", Op::Transpose { perm: vec![0, 1, 2] }, &[y]).unwrap();
    let y = g.add("r", Op::Reshape { shape: vec![0, 3, 4] }, &[y]).unwrap();
    let y = g.add("p", Op::Pad { pads: vec![(0, 0); 3], value: 0.0 }, &[y]).unwrap();
    let z = g.add("tanh", Op::Unary(UnaryOp::Tanh), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["remove-identity"]), &mut rng);
    assert_eq!(ops(&out), ["tanh"]);
}

#[test]
fn reshape_chains_collapse() {
    let mut rng = Rng(43);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[3, 4]);
    let y = g.add("r1", Op::Reshape { shape: vec![0, 12] }, &[x]).unwrap();
    let y = g.add("r2", Op::Reshape { shape: vec![0, 2, 6] }, &[y]).unwrap();
    let z = g.add("r3", Op::Reshape { shape: vec![0, 6, 2] }, &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["reshape-chain"]), &mut rng);
    assert_eq!(ops(&out), ["Reshape"]);
}

#[test]
fn transpose_chains_compose_and_inverse_pairs_cancel() {
    let mut rng = Rng(44);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[2, 3, 4]);
    let y = g.add("t1", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[x]).unwrap();
    let z = g.add("t2", Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["transpose-chain"]), &mut rng);
    assert_eq!(ops(&out), ["Transpose"]);

    let mut g = Graph::new("t");
    let x = input(&mut g, &[2, 3, 4]);
    let y = g.add("t1", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[x]).unwrap();
    let y = g.add("t2", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[y]).unwrap();
    let z = g.add("neg", Op::Unary(UnaryOp::Neg), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["transpose-chain", "remove-identity"]), &mut rng);
    assert_eq!(ops(&out), ["neg"]);
}

#[test]
fn weight_only_subgraphs_fold_to_constants() {
    let mut rng = Rng(45);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4]);
    let w = g.add_constant("w", rng.tensor(&[4, 3]));
    let two = g.add_constant("two", Tensor::scalar(2.0));
    let w2 = g.add("scale_w", Op::Binary(BinaryOp::Mul), &[w, two]).unwrap();
    let wt = g.add("wt", Op::Transpose { perm: vec![1, 0] }, &[w2]).unwrap();
    let z = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: true }, &[x, wt]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["none"]), &mut rng);
    assert_eq!(ops(&out), ["MatMul"]);
    assert!(out.constant(out.nodes()[0].inputs[1]).is_some());
}

#[test]
fn elementwise_chains_become_one_fused_op() {
    let mut rng = Rng(46);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8]);
    let y = g.add_input("y", ir::TensorType::new(ir::DType::F32, ir::Shape(vec![ir::Dim::Batch, ir::Dim::Fixed(8)])));
    let two = g.add_constant("two", Tensor::scalar(2.0));
    let v = g.add_constant("v", rng.tensor(&[8]));
    let a = g.add("relu", Op::Unary(UnaryOp::Relu), &[x]).unwrap();
    let a = g.add("mul", Op::Binary(BinaryOp::Mul), &[a, two]).unwrap();
    let a = g.add("add", Op::Binary(BinaryOp::Add), &[a, y]).unwrap();
    let a = g.add("sub", Op::Binary(BinaryOp::Sub), &[a, v]).unwrap();
    let z = g.add("sig", Op::Unary(UnaryOp::Sigmoid), &[a]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
    assert_eq!(ops(&out), ["Fused"]);
    let Op::Fused(e) = &out.nodes()[0].op else { unreachable!() };
    assert_eq!(e.render(), "sigmoid(sub(add(mul(relu(in0), 2), in1), in2))");
}

#[test]
fn a_value_read_twice_ends_a_fused_chain() {
    let mut rng = Rng(47);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8]);
    let a = g.add("exp", Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let b = g.add("neg", Op::Unary(UnaryOp::Neg), &[a]).unwrap();
    let c = g.add("sum", Op::Reduce { kind: ir::ReduceKind::Sum, axes: vec![1], keepdims: true }, &[a]).unwrap();
    let z = g.add("div", Op::Binary(BinaryOp::Div), &[b, c]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
    assert_eq!(ops(&out), ["Fused", "ReduceSum", "Fused"]);
}

#[test]
fn ill_typed_terms_are_refused() {
    use optimizer::egraph::{TensorAnalysis, TensorEGraph, TensorLang};
    use optimizer::rules::{add_build, Build};
    let mut a = TensorAnalysis::default();
    a.inputs = vec![ir::TensorType::new(ir::DType::F32, ir::Shape::fixed(&[2, 3]))];
    let mut eg = TensorEGraph::new(a);
    let x = eg.add(TensorLang::Input(0));
    let bad = Build::Op(Op::MatMul { transpose_a: false, transpose_b: false }, vec![Build::Class(x), Build::Class(x)]);
    assert!(add_build(&mut eg, &bad).is_none());
    let good = Build::Op(Op::MatMul { transpose_a: false, transpose_b: true }, vec![Build::Class(x), Build::Class(x)]);
    assert!(add_build(&mut eg, &good).is_some());
}

#[test]
fn runner_limits_are_reported() {
    let mut rng = Rng(48);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4, 4, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 2, true);
    let z = batchnorm(&mut g, &mut rng, y, 2);
    let z = g.add("relu", Op::Unary(UnaryOp::Relu), &[z]).unwrap();
    g.set_outputs(vec![z]);
    let opts = OptimizeOptions { iter_limit: 1, ..Default::default() };
    let out = optimizer::optimize(&g, &opts).unwrap();
    assert_eq!(out.report.egraph.stop_reason, "iteration limit (1)");
    let out = optimizer::optimize(&g, &OptimizeOptions::default()).unwrap();
    assert_eq!(out.report.egraph.stop_reason, "saturated");
    assert!(out.report.count("fold-batchnorm-into-linear") > 0);
    assert_eq!(ops(&out.graph), ["FusedConv2D"]);
}

#[test]
fn extraction_counts_a_shared_subgraph_once() {
    use optimizer::egraph::{convert, extract};
    let mut rng = Rng(49);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4, 4, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 2, true);
    let a = g.add("a", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let b = g.add("b", Op::Unary(UnaryOp::Tanh), &[y]).unwrap();
    g.set_outputs(vec![a, b]);
    let loaded = convert::load(&g).unwrap();
    let ex = extract::extract(&loaded.egraph, &loaded.roots);
    let mut want = 0.0;
    for c in loaded.egraph.classes() {
        want += extract::node_cost(&loaded.egraph, c.id, &ex.choice[&c.id]);
    }
    assert!((ex.cost - want).abs() < 1e-6, "{} vs {}", ex.cost, want);
    let conv_cost = extract::node_cost(
        &loaded.egraph,
        loaded.egraph.find(loaded.roots[0]),
        &ex.choice[&loaded.egraph.find(loaded.roots[0])],
    );
    assert!(ex.cost < want + conv_cost);
}

#[test]
fn a_scale_moves_through_layout_ops_into_the_weights() {
    let mut rng = Rng(50);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4, 6]);
    let w = g.add_constant("w", rng.tensor(&[6, 6]));
    let b = g.add_constant("b", rng.tensor(&[6]));
    let y = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w]).unwrap();
    let y = g.add("bias", Op::BiasAdd { axis: 2 }, &[y, b]).unwrap();
    let y = g.add("split", Op::Reshape { shape: vec![0, 4, 2, 3] }, &[y]).unwrap();
    let y = g.add("heads", Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y]).unwrap();
    let z = g.add("scale", Op::Unary(UnaryOp::Affine { scale: 0.25, offset: 0.0 }), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["unary-through-layout", "fold-scale-into-linear"]), &mut rng);
    assert_eq!(ops(&out), ["MatMul", "BiasAdd", "Reshape", "Transpose"]);
}

#[test]
fn a_constant_scale_after_a_conv_folds_into_its_weights() {
    let mut rng = Rng(51);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 3, true);
    let z = g.add("affine", Op::Unary(UnaryOp::Affine { scale: -1.5, offset: 0.0 }), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &only(&["fold-scale-into-linear"]), &mut rng);
    assert_eq!(ops(&out), ["Conv2D"]);
    // With an offset the bias it becomes and the affine cost the same; either is correct.
    let mut g = Graph::new("t");
    let x = input(&mut g, &[5, 5, 2]);
    let y = conv(&mut g, &mut rng, x, 2, 3, true);
    let z = g.add("affine", Op::Unary(UnaryOp::Affine { scale: -1.5, offset: 0.5 }), &[y]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
    assert_eq!(ops(&out), ["FusedConv2D"]);
}

/// A channels-first graph as the ONNX frontend imports it: conv → bias → batch norm → relu →
/// pad → depthwise conv → residual add → mean, all on NCHW tensors between NHWC transposes.
#[allow(clippy::unwrap_used)]
fn nchw_block(rng: &mut Rng) -> Graph {
    let mut g = Graph::new("t");
    let x = input(&mut g, &[6, 6, 3]);
    let to_cf = g.add("to_cf", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[x]).unwrap();
    let w = g.add_constant("w", rng.tensor(&[3, 3, 3, 4]));
    let conv = ir::ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 };
    let c = g.add("conv", Op::ChannelsFirst(Box::new(Op::Conv(conv))), &[to_cf, w]).unwrap();
    let b = g.add_constant("b", rng.tensor(&[4]));
    let c = g.add("bias", Op::BiasAdd { axis: 1 }, &[c, b]).unwrap();
    let stats: Vec<_> = (0..4).map(|i| g.add_constant(format!("s{i}"), rng.positive(&[4]))).collect();
    let bn =
        g.add("bn", Op::BatchNorm { axis: 1, epsilon: 1e-3 }, &[c, stats[0], stats[1], stats[2], stats[3]]).unwrap();
    let r = g.add("relu", Op::Unary(UnaryOp::Relu), &[bn]).unwrap();
    let p = g.add("pad", Op::Pad { pads: vec![(0, 0), (0, 0), (1, 1), (1, 1)], value: 0.0 }, &[r]).unwrap();
    let dw = g.add_constant("dw", rng.tensor(&[3, 3, 1, 4]));
    let dconv = ir::ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(0, 0), (0, 0)], groups: 4 };
    let d = g.add("dconv", Op::ChannelsFirst(Box::new(Op::Conv(dconv))), &[p, dw]).unwrap();
    let scale = g.add_constant("scale", rng.tensor(&[1, 4, 1, 1]));
    let d = g.add("scale", Op::Binary(BinaryOp::Mul), &[d, scale]).unwrap();
    let sum = g.add("residual", Op::Binary(BinaryOp::Add), &[d, r]).unwrap();
    let m = g.add("mean", Op::Reduce { kind: ir::ReduceKind::Mean, axes: vec![2, 3], keepdims: true }, &[sum]).unwrap();
    g.set_outputs(vec![m]);
    g
}

#[test]
fn channels_first_ops_lower_and_their_transposes_cancel() {
    let mut rng = Rng(60);
    let g = nchw_block(&mut rng);
    // Only the layout pass and transpose cancelling: the conv sits between two transposes.
    let out = optimize_and_check(&g, &only(&["transpose-chain", "remove-identity"]), &mut rng);
    assert!(!ops(&out).iter().any(|o| o.contains("NCHW")), "{:?}", ops(&out));
    // With the through-transpose rules every transpose goes (the last, over unit axes, is a
    // reshape), the batch norm and scale fold into the convolutions, the pad into the
    // depthwise one, bias, relu and the residual add into their epilogues.
    let out = optimize_and_check(&g, &OptimizeOptions { no_elementwise_fusion: true, ..Default::default() }, &mut rng);
    assert_eq!(ops(&out), ["FusedConv2D", "FusedConv2D", "ReduceMean", "Reshape"]);
}

#[test]
fn binaries_bias_batchnorm_pad_reductions_and_group_norms_move_through_transposes() {
    let mut rng = Rng(61);
    for rule in
        ["binary-through-transpose", "bias-through-transpose", "pad-reduce-norm-through-transpose", "group-norm"]
    {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[4, 5, 3]);
        let t = g.add("t", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[x]).unwrap();
        let y = match rule {
            "binary-through-transpose" => {
                let c = g.add_constant("c", rng.tensor(&[3, 1, 1]));
                let t2 = g.add("t2", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[x]).unwrap();
                let a = g.add("add", Op::Binary(BinaryOp::Add), &[t, c]).unwrap();
                g.add("mul", Op::Binary(BinaryOp::Mul), &[a, t2]).unwrap()
            }
            "bias-through-transpose" => {
                let b = g.add_constant("b", rng.tensor(&[3]));
                g.add("bias", Op::BiasAdd { axis: 1 }, &[t, b]).unwrap()
            }
            "group-norm" => {
                let (gamma, beta) =
                    (g.add_constant("gamma", rng.tensor(&[3])), g.add_constant("beta", rng.tensor(&[3])));
                g.add("gn", Op::GroupNorm { groups: 3, axis: 1, epsilon: 1e-3 }, &[t, gamma, beta]).unwrap()
            }
            _ => {
                let p = g.add("pad", Op::Pad { pads: vec![(0, 0), (0, 0), (1, 0), (0, 2)], value: 0.5 }, &[t]).unwrap();
                g.add("max", Op::Reduce { kind: ir::ReduceKind::Max, axes: vec![1, 3], keepdims: true }, &[p]).unwrap()
            }
        };
        let back = g.add("back", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[y]).unwrap();
        g.set_outputs(vec![back]);
        let rule = if rule == "group-norm" { "pad-reduce-norm-through-transpose" } else { rule };
        let out = optimize_and_check(&g, &only(&[rule, "transpose-chain", "remove-identity"]), &mut rng);
        assert!(!ops(&out).iter().any(|o| o == "Transpose"), "{rule}: {:?}", ops(&out));
    }
}

#[test]
fn transposes_of_unit_axes_are_reshapes() {
    let mut rng = Rng(62);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[28, 28, 1]);
    let r = g.add("r", Op::Reshape { shape: vec![-1, 1, 28, 28] }, &[x]).unwrap();
    let t = g.add("t", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[r]).unwrap();
    let y = g.add("neg", Op::Unary(UnaryOp::Neg), &[t]).unwrap();
    g.set_outputs(vec![y]);
    let out = optimize_and_check(&g, &only(&["transpose-as-reshape", "reshape-chain", "remove-identity"]), &mut rng);
    assert_eq!(ops(&out), ["neg"]);
}

#[test]
fn prelu_after_a_convolution_keeps_one_convolution() {
    let mut rng = Rng(77);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8, 8, 4]);
    let y = conv(&mut g, &mut rng, x, 4, 8, true);
    let b = g.add_constant("b", rng.tensor(&[8]));
    let y = g.add("bias", Op::BiasAdd { axis: 3 }, &[y, b]).unwrap();
    let alpha = g.add_constant("alpha", rng.tensor(&[8, 8, 8]));
    let pos = g.add("pos", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let nx = g.add("negx", Op::Unary(UnaryOp::Neg), &[y]).unwrap();
    let rn = g.add("relu_negx", Op::Unary(UnaryOp::Relu), &[nx]).unwrap();
    let neg = g.add("neg", Op::Binary(BinaryOp::Mul), &[alpha, rn]).unwrap();
    let z = g.add("prelu", Op::Binary(BinaryOp::Sub), &[pos, neg]).unwrap();
    g.set_outputs(vec![z]);
    let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
    let convs: Vec<String> = ops(&out).into_iter().filter(|o| o.contains("Conv")).collect();
    // One convolution, with the bias fused; the PReLU after it is one element-wise kernel.
    assert_eq!(convs, ["FusedConv2D"], "{}", ir::render::to_text(&out));
    let e = optimizer::optimize(&g, &OptimizeOptions::default()).unwrap().report.egraph;
    assert!(e.cost_after < e.cost_before, "{} -> {}", e.cost_before, e.cost_after);
}

#[test]
fn prelu_after_a_channels_first_convolution_keeps_one_convolution() {
    let mut rng = Rng(78);
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8, 8, 4]);
    let to_cf = g.add("to_cf", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[x]).unwrap();
    let w = g.add_constant("w", rng.tensor(&[3, 3, 4, 8]));
    let a = ir::ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 };
    let y = g.add("conv", Op::ChannelsFirst(Box::new(Op::Conv(a))), &[to_cf, w]).unwrap();
    let b = g.add_constant("b", rng.tensor(&[8]));
    let y = g.add("bias", Op::BiasAdd { axis: 1 }, &[y, b]).unwrap();
    let alpha = g.add_constant("alpha", rng.tensor(&[8, 1, 1]));
    let pos = g.add("pos", Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let nx = g.add("negx", Op::Unary(UnaryOp::Neg), &[y]).unwrap();
    let rn = g.add("relu_negx", Op::Unary(UnaryOp::Relu), &[nx]).unwrap();
    let neg = g.add("neg", Op::Binary(BinaryOp::Mul), &[alpha, rn]).unwrap();
    let z = g.add("prelu", Op::Binary(BinaryOp::Sub), &[pos, neg]).unwrap();
    let back = g.add("to_cl", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[z]).unwrap();
    g.set_outputs(vec![back]);
    let out = optimize_and_check(&g, &OptimizeOptions::default(), &mut rng);
    let opt = optimizer::optimize(&g, &OptimizeOptions::default()).unwrap();
    let convs = out.nodes().iter().filter(|n| n.op.name().contains("Conv")).count();
    assert_eq!(convs, 1, "{}", ir::render::to_text(&out));
    assert!(opt.report.egraph.cost_after <= opt.report.egraph.cost_before);
}

#[test]
fn x_times_its_sigmoid_is_silu_in_either_order() {
    let mut rng = Rng(63);
    for swapped in [false, true] {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[6, 4]);
        let s = g.add("sig", Op::Unary(UnaryOp::Sigmoid), &[x]).unwrap();
        let ins = if swapped { [s, x] } else { [x, s] };
        let y = g.add("mul", Op::Binary(BinaryOp::Mul), &ins).unwrap();
        g.set_outputs(vec![y]);
        let out = optimize_and_check(&g, &only(&["mul-sigmoid-as-silu"]), &mut rng);
        assert_eq!(ops(&out), ["silu"], "swapped {swapped}");
    }
    // After a convolution, the swish joins its epilogue: the sigmoid reading the convolution's
    // output is no second reader of it.
    let mut g = Graph::new("t");
    let x = input(&mut g, &[6, 6, 3]);
    let w = g.add_constant("w", rng.tensor(&[3, 3, 3, 4]));
    let conv = ir::ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 };
    let c = g.add("conv", Op::Conv(conv), &[x, w]).unwrap();
    let s = g.add("sig", Op::Unary(UnaryOp::Sigmoid), &[c]).unwrap();
    let y = g.add("mul", Op::Binary(BinaryOp::Mul), &[s, c]).unwrap();
    g.set_outputs(vec![y]);
    let out = optimize_and_check(&g, &only(&["mul-sigmoid-as-silu", "fuse-linear-activation"]), &mut rng);
    assert_eq!(ops(&out), ["FusedConv2D"]);
    // x · sigmoid(z) of another value stays as it is.
    let mut g = Graph::new("t");
    let x = input(&mut g, &[6, 4]);
    let z = g.add("neg", Op::Unary(UnaryOp::Neg), &[x]).unwrap();
    let s = g.add("sig", Op::Unary(UnaryOp::Sigmoid), &[z]).unwrap();
    let y = g.add("mul", Op::Binary(BinaryOp::Mul), &[x, s]).unwrap();
    g.set_outputs(vec![y]);
    let out = optimize_and_check(&g, &only(&["mul-sigmoid-as-silu"]), &mut rng);
    assert!(ops(&out).iter().any(|o| o == "sigmoid"), "{:?}", ops(&out));
}

#[test]
fn a_concat_of_transposes_is_a_transpose_of_the_concat() {
    let mut rng = Rng(64);
    let mut g = Graph::new("t");
    let a = input(&mut g, &[4, 5, 3]);
    let b = input(&mut g, &[4, 5, 2]);
    let ta = g.add("ta", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[a]).unwrap();
    let tb = g.add("tb", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[b]).unwrap();
    let cat = g.add("cat", Op::Concat { axis: 1 }, &[ta, tb]).unwrap();
    let back = g.add("back", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[cat]).unwrap();
    g.set_outputs(vec![back]);
    let out =
        optimize_and_check(&g, &only(&["concat-through-transpose", "transpose-chain", "remove-identity"]), &mut rng);
    assert_eq!(ops(&out), ["Concat"]);
}
