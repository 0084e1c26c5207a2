//! Snapshots of emitted CUDA: a change to a kernel's text shows up here as a diff to review.
//! `UPDATE_SNAPSHOTS=1 cargo test -p codegen --test snapshots` rewrites them.
#![allow(clippy::unwrap_used, clippy::panic)]

use ir::{
    BinaryOp, ConvAttrs, DType, Dim, Epilogue, ExprNode, FusedExpr, Graph, NodeId, Op, Shape, Tensor, TensorType,
    UnaryOp,
};
use std::path::Path;

fn check(name: &str, g: &Graph, node: usize, batch: usize) {
    let plan = optimizer::plan(g, batch).unwrap();
    let ks = codegen::cuda::emit_node(g, NodeId(node), node, &plan.shapes).unwrap();
    let mut text = String::new();
    for k in &ks {
        text.push_str(&format!(
            "// {} grid {:?} block {:?} args {:?}\n{}",
            k.name,
            k.launch.grid,
            k.launch.block,
            k.args.iter().map(|a| (a.value.0, a.output)).collect::<Vec<_>>(),
            k.source
        ));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.cu"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing snapshot {}", path.display()));
    assert!(want == text, "snapshot {name} changed; rerun with UPDATE_SNAPSHOTS=1 and review the diff");
}

fn input(g: &mut Graph, dims: &[usize]) -> ir::ValueId {
    let mut d = vec![Dim::Batch];
    d.extend(dims.iter().map(|&n| Dim::Fixed(n)));
    g.add_input("x", TensorType::new(DType::F32, Shape(d)))
}

#[test]
fn fused_expression() {
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8]);
    let b = g.add_constant("b", Tensor::zeros(&[8]));
    let e = FusedExpr {
        nodes: vec![
            ExprNode::Input(0),
            ExprNode::Input(1),
            ExprNode::Binary(BinaryOp::Add, 0, 1),
            ExprNode::Const(0.5),
            ExprNode::Binary(BinaryOp::Mul, 2, 3),
            ExprNode::Unary(UnaryOp::Gelu, 4),
        ],
    };
    let y = g.add("f", Op::Fused(e), &[x, b]).unwrap();
    g.set_outputs(vec![y]);
    check("fused_expression", &g, 0, 4);
}

#[test]
fn fused_matmul_with_epilogue() {
    let mut g = Graph::new("t");
    let x = input(&mut g, &[16]);
    let w = g.add_constant("w", Tensor::zeros(&[16, 32]));
    let b = g.add_constant("b", Tensor::zeros(&[32]));
    let e = Epilogue { bias: true, activation: Some(UnaryOp::Relu), ..Default::default() };
    let y = g.add("mm", Op::FusedMatMul { transpose_a: false, transpose_b: false, epilogue: e }, &[x, w, b]).unwrap();
    g.set_outputs(vec![y]);
    check("fused_matmul", &g, 0, 2);
}

#[test]
fn implicit_gemm_convolution() {
    let mut g = Graph::new("t");
    let x = input(&mut g, &[8, 8, 3]);
    let w = g.add_constant("w", Tensor::zeros(&[3, 3, 3, 16]));
    let b = g.add_constant("b", Tensor::zeros(&[16]));
    let a = ConvAttrs { strides: vec![2, 2], dilations: vec![1, 1], pads: vec![(0, 1), (0, 1)], groups: 1 };
    let e = Epilogue { bias: true, activation: Some(UnaryOp::Relu6), residual: false, post_activation: None };
    let y = g.add("conv", Op::FusedConv { conv: a, epilogue: e }, &[x, w, b]).unwrap();
    g.set_outputs(vec![y]);
    check("fused_conv", &g, 0, 1);
}

#[test]
fn softmax_rows() {
    let mut g = Graph::new("t");
    let x = input(&mut g, &[4, 10]);
    let y = g.add("sm", Op::Softmax { axes: vec![2] }, &[x]).unwrap();
    g.set_outputs(vec![y]);
    check("softmax", &g, 0, 2);
}
