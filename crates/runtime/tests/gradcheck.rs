//! Every gradient rule against central finite differences: the op applied to small random
//! inputs, the loss `sum(y · r)` for a fixed random `r`, its gradient from
//! `ir::grad::append_backward` run by the CPU executor, and the numeric one.
#![allow(clippy::unwrap_used, clippy::panic)]

use ir::{
    BinaryOp, ConvAttrs, DType, Graph, Op, PoolAttrs, PoolKind, ReduceKind, Shape, Tensor, TensorData, TensorType,
    UnaryOp, ValueId,
};
use runtime::{Session, SessionOptions};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|_| lo + (self.f() + 1.0) * 0.5 * (hi - lo)).collect()).unwrap()
    }
}

/// Checks the gradient of `sum(f(inputs) · r)` with respect to every float input.
fn check(name: &str, inputs: Vec<Tensor>, f: impl Fn(&mut Graph, &[ValueId]) -> ValueId) {
    check_first(name, inputs, usize::MAX, f)
}

/// Checks the gradient with respect to the first `k` float inputs (the rest are data).
fn check_first(name: &str, inputs: Vec<Tensor>, k: usize, f: impl Fn(&mut Graph, &[ValueId]) -> ValueId) {
    let mut rng = Rng(name.len() as u64 * 7919);
    let mut g = Graph::new(name);
    let vs: Vec<ValueId> =
        inputs.iter().enumerate().map(|(i, t)| g.add_input(format!("in{i}"), t.tensor_type())).collect();
    let y = f(&mut g, &vs);
    let ys = g.value(y).ty.shape.as_fixed().unwrap();
    let r = g.add_constant("r", rng.tensor(&ys, -1.0, 1.0));
    let p = g.add("p", Op::Binary(BinaryOp::Mul), &[y, r]).unwrap();
    let rank = ys.len();
    let loss =
        g.add("loss", Op::Reduce { kind: ReduceKind::Sum, axes: (0..rank).collect(), keepdims: false }, &[p]).unwrap();
    let wrt: Vec<ValueId> = vs.iter().copied().filter(|v| g.value(*v).ty.dtype == DType::F32).take(k).collect();
    let grads = ir::grad::append_backward(&mut g, loss, &wrt).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut outs = vec![loss];
    outs.extend(&grads);
    g.set_outputs(outs);
    let s = Session::new(g, SessionOptions::default()).unwrap();
    let res = s.run(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    let loss_at = |ins: &[Tensor]| s.run(ins).unwrap()[0].to_f64_vec()[0];
    let eps = 1e-2f32;
    for (k, &w) in wrt.iter().enumerate() {
        let i = vs.iter().position(|v| *v == w).unwrap();
        let analytic = res[1 + k].to_f64_vec();
        let n = inputs[i].len();
        for e in (0..n).step_by((n / 12).max(1)) {
            let mut plus = inputs.clone();
            let mut minus = inputs.clone();
            let mut pv = plus[i].to_f32_vec();
            pv[e] += eps;
            plus[i] = Tensor::from_f32(inputs[i].shape(), pv).unwrap();
            let mut mv = minus[i].to_f32_vec();
            mv[e] -= eps;
            minus[i] = Tensor::from_f32(inputs[i].shape(), mv).unwrap();
            let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * eps as f64);
            let a = analytic[e];
            assert!(
                (a - numeric).abs() <= 2e-2 * (a.abs() + numeric.abs()) + 3e-3,
                "{name}: d/d in{i}[{e}]: analytic {a} vs numeric {numeric}"
            );
        }
    }
}

fn op1(op: Op) -> impl Fn(&mut Graph, &[ValueId]) -> ValueId {
    move |g, v| g.add("y", op.clone(), v).unwrap()
}

#[test]
fn unary_ops() {
    let ops = [
        UnaryOp::Identity,
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Square,
        UnaryOp::Erf,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Relu,
        UnaryOp::Relu6,
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::Elu { alpha: 0.7 },
        UnaryOp::Selu,
        UnaryOp::Sigmoid,
        UnaryOp::HardSigmoid,
        UnaryOp::HardSigmoidLegacy,
        UnaryOp::HardSilu,
        UnaryOp::Tanh,
        UnaryOp::Softplus,
        UnaryOp::Softsign,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Silu,
        UnaryOp::Mish,
        UnaryOp::Affine { scale: 1.5, offset: -2.0 },
        UnaryOp::Clip { lo: -0.6, hi: 0.5 },
        UnaryOp::ReluClip { max_value: Some(1.0), negative_slope: 0.1, threshold: 0.3 },
    ];
    for (i, u) in ops.into_iter().enumerate() {
        let mut rng = Rng(i as u64 + 11);
        // Values at least 0.05 away from every kink used here (0, 0.3, -0.6, 0.5, 1, ±2.5, ±3).
        let x: Vec<f32> = (0..14).map(|k| (k as f32 - 7.0) / 3.5 + 0.07 + rng.f() * 0.01).collect();
        check(&format!("{u:?}"), vec![Tensor::from_f32(&[2, 7], x).unwrap()], op1(Op::Unary(u)));
    }
    for u in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt, UnaryOp::Reciprocal, UnaryOp::Abs] {
        let mut rng = Rng(5);
        check(&format!("{u:?}"), vec![rng.tensor(&[3, 4], 0.5, 2.0)], op1(Op::Unary(u)));
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    let mut rng = Rng(3);
    for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow] {
        let a = rng.tensor(&[2, 3, 4], 0.5, 2.0);
        let c = rng.tensor(&[3, 1], 0.6, 1.9);
        check(&format!("{b:?}"), vec![a, c], op1(Op::Binary(b)));
    }
}

#[test]
fn matmuls() {
    let mut rng = Rng(4);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { rng.tensor(&[2, 5, 3], -1.0, 1.0) } else { rng.tensor(&[2, 3, 5], -1.0, 1.0) };
        let b = if tb { rng.tensor(&[4, 5], -1.0, 1.0) } else { rng.tensor(&[5, 4], -1.0, 1.0) };
        check(&format!("matmul {ta} {tb}"), vec![a, b], op1(Op::MatMul { transpose_a: ta, transpose_b: tb }));
    }
    check("bias", vec![rng.tensor(&[2, 3, 4], -1.0, 1.0), rng.tensor(&[3], -1.0, 1.0)], op1(Op::BiasAdd { axis: 1 }));
}

#[test]
fn convolutions() {
    let mut rng = Rng(6);
    for (x, w, a) in [
        (
            vec![2, 5, 6, 3],
            vec![3, 3, 3, 4],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 },
        ),
        (
            vec![1, 7, 6, 4],
            vec![2, 3, 2, 6],
            ConvAttrs { strides: vec![2, 1], dilations: vec![1, 2], pads: vec![(0, 1), (2, 0)], groups: 2 },
        ),
        (
            vec![2, 9, 2],
            vec![3, 2, 3],
            ConvAttrs { strides: vec![2], dilations: vec![1], pads: vec![(2, 0)], groups: 1 },
        ),
        (
            vec![1, 5, 5, 3],
            vec![3, 3, 1, 3],
            ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 3 },
        ),
    ] {
        check("conv", vec![rng.tensor(&x, -1.0, 1.0), rng.tensor(&w, -1.0, 1.0)], op1(Op::Conv(a)));
    }
}

#[test]
fn pooling_and_reductions() {
    let mut rng = Rng(7);
    // Distinct values keep the max-pool gradient away from ties.
    let x: Vec<f32> = (0..2 * 5 * 4 * 3).map(|i| ((i * 37 % 120) as f32) / 40.0 + rng.f() * 0.001).collect();
    let x = Tensor::from_f32(&[2, 5, 4, 3], x).unwrap();
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let a = PoolAttrs { kind, window: vec![2, 3], strides: vec![2, 1], pads: vec![(0, 1), (1, 1)] };
        check(&format!("{kind:?} pool"), vec![x.clone()], op1(Op::Pool(a)));
    }
    for (kind, axes, keep) in
        [(ReduceKind::Sum, vec![1, 2], false), (ReduceKind::Mean, vec![3], true), (ReduceKind::Mean, vec![0, 2], false)]
    {
        check("reduce", vec![x.clone()], op1(Op::Reduce { kind, axes, keepdims: keep }));
    }
    check("softmax", vec![x.clone()], op1(Op::Softmax { axes: vec![2] }));
    check("log_softmax", vec![x.clone()], op1(Op::LogSoftmax { axis: 3 }));
}

#[test]
fn data_movement() {
    let mut rng = Rng(8);
    let x = rng.tensor(&[2, 3, 4], -1.0, 1.0);
    check("reshape", vec![x.clone()], op1(Op::Reshape { shape: vec![2, 12] }));
    check("transpose", vec![x.clone()], op1(Op::Transpose { perm: vec![2, 0, 1] }));
    check("pad", vec![x.clone()], op1(Op::Pad { pads: vec![(0, 0), (1, 2), (0, 1)], value: 0.5 }));
    check("concat", vec![x.clone(), rng.tensor(&[2, 1, 4], -1.0, 1.0)], op1(Op::Concat { axis: 1 }));
    check("broadcast", vec![rng.tensor(&[3, 1], -1.0, 1.0), x], op1(Op::BroadcastTo));
}

#[test]
fn normalizations_embedding_and_slices() {
    let mut rng = Rng(10);
    let x = rng.tensor(&[2, 3, 4], -1.0, 1.0);
    check_first(
        "layer norm",
        vec![x.clone(), rng.tensor(&[4], 0.5, 1.5), rng.tensor(&[4], -0.5, 0.5)],
        3,
        op1(Op::LayerNorm { axes: vec![2], epsilon: 1e-3 }),
    );
    check_first(
        "layer norm over two axes",
        vec![x.clone(), rng.tensor(&[3, 4], 0.5, 1.5), rng.tensor(&[3, 4], -0.5, 0.5)],
        3,
        op1(Op::LayerNorm { axes: vec![1, 2], epsilon: 1e-3 }),
    );
    // Batch norm with fixed statistics (gradients for x, gamma and beta; mean and variance are
    // data), then with statistics that are themselves differentiated (inputs that depend on
    // weights).
    let bn_inputs = vec![
        x.clone(),
        rng.tensor(&[4], 0.5, 1.5),
        rng.tensor(&[4], -0.5, 0.5),
        rng.tensor(&[4], -0.2, 0.2),
        rng.tensor(&[4], 0.5, 1.0),
    ];
    for (name, k) in [("batch norm (inference)", 3), ("batch norm (every input)", 5)] {
        check_first(name, bn_inputs.clone(), k, op1(Op::BatchNorm { axis: 2, epsilon: 1e-3 }));
    }
    check("moments, channels last", vec![x.clone()], op1(Op::Moments { axis: 2 }));
    check("moments, channels first", vec![x.clone()], op1(Op::Moments { axis: 1 }));
    // Training mode: normalized by the batch's own statistics, the gradient through both.
    for (axis, c) in [(2usize, 4usize), (1, 3)] {
        let params = vec![x.clone(), rng.tensor(&[c], 0.5, 1.5), rng.tensor(&[c], -0.5, 0.5)];
        check(&format!("batch norm in training, axis {axis}"), params, move |g, v| {
            let m = g.add("moments", Op::Moments { axis }, &[v[0]]).unwrap();
            let row = |g: &mut Graph, k: i64| {
                let r = g
                    .add("row", Op::Slice { axes: vec![0], starts: vec![k], ends: vec![k + 1], steps: vec![1] }, &[m])
                    .unwrap();
                g.add("stat", Op::Reshape { shape: vec![c as i64] }, &[r]).unwrap()
            };
            let (mean, var) = (row(g, 0), row(g, 1));
            g.add("y", Op::BatchNorm { axis, epsilon: 1e-3 }, &[v[0], v[1], v[2], mean, var]).unwrap()
        });
    }
    let ids = Tensor::new(vec![2, 3], TensorData::I32(vec![1, 4, 1, 0, 2, 4])).unwrap();
    check("embedding", vec![rng.tensor(&[5, 3], -1.0, 1.0), ids], op1(Op::Gather { axis: 0 }));
    check(
        "slice",
        vec![x],
        op1(Op::Slice { axes: vec![1, 2], starts: vec![1, -3], ends: vec![3, 4], steps: vec![1, 1] }),
    );
}

#[test]
fn softmax_cross_entropy() {
    let mut rng = Rng(9);
    let logits = rng.tensor(&[4, 5], -2.0, 2.0);
    let ids = Tensor::new(vec![4], TensorData::I32(vec![0, 4, 2, 2])).unwrap();
    check("sparse ce", vec![logits.clone(), ids], op1(Op::SoftmaxCrossEntropy { sparse: true }));
    let p = rng.tensor(&[4, 5], 0.0, 1.0);
    check_first("dense ce", vec![logits.clone(), p], 1, op1(Op::SoftmaxCrossEntropy { sparse: false }));
    // Labels that do not sum to one (label smoothing gone wrong) still get the exact gradient.
    let q = rng.tensor(&[4, 5], 0.0, 0.5);
    check_first("dense ce, unnormalised", vec![logits, q], 1, op1(Op::SoftmaxCrossEntropy { sparse: false }));
}

#[test]
fn ops_without_a_rule_say_so() {
    // The optimizer's fused ops are made after training graphs are built: no rule.
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[2, 3])));
    let w = g.add_input("w", TensorType::new(DType::F32, Shape::fixed(&[3, 2])));
    let op = Op::FusedMatMul { transpose_a: false, transpose_b: false, epilogue: Default::default() };
    let y = g.add("fused", op, &[x, w]).unwrap();
    let l = g.add("l", Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 1], keepdims: false }, &[y]).unwrap();
    let e = ir::grad::append_backward(&mut g, l, &[x]).unwrap_err().to_string();
    assert!(e.contains("FusedMatMul") && e.contains("not implemented"), "{e}");
}

#[test]
fn products_and_bilinear_resizing() {
    let mut rng = Rng(13);
    // Products with no zero, one zero and two zeros in a row.
    let x = Tensor::from_f32(&[3, 4], vec![0.5, -1.2, 0.8, 1.5, 0.0, 0.7, -0.9, 1.1, 0.0, 0.6, 0.0, -1.3]).unwrap();
    for keep in [false, true] {
        check(
            "reduce_prod",
            vec![x.clone()],
            op1(Op::Reduce { kind: ReduceKind::Prod, axes: vec![1], keepdims: keep }),
        );
    }
    check(
        "reduce_prod_all",
        vec![rng.tensor(&[2, 3], 0.5, 1.5)],
        op1(Op::Reduce { kind: ReduceKind::Prod, axes: vec![0, 1], keepdims: false }),
    );
    for sizes in [vec![5, 7], vec![2, 3], vec![4, 2]] {
        check(
            "resize_bilinear",
            vec![rng.tensor(&[2, 3, 4, 2], -1.0, 1.0)],
            op1(Op::Resize { sizes, mode: ir::ResizeMode::Bilinear }),
        );
    }
}

#[test]
fn transposed_convolutions() {
    use ir::{ConvTransposeAttrs, PaddingMode};
    let mut rng = Rng(9);
    for (x, w, a) in [
        (
            vec![2, 4, 3, 3],
            vec![3, 3, 2, 3],
            ConvTransposeAttrs {
                strides: vec![2, 2],
                dilations: vec![1, 1],
                padding: PaddingMode::Same,
                output_padding: None,
            },
        ),
        (
            vec![1, 3, 4, 2],
            vec![3, 2, 4, 2],
            ConvTransposeAttrs {
                strides: vec![1, 2],
                dilations: vec![1, 1],
                padding: PaddingMode::Valid,
                output_padding: None,
            },
        ),
        (
            vec![2, 5, 2],
            vec![3, 3, 2],
            ConvTransposeAttrs {
                strides: vec![2],
                dilations: vec![2],
                padding: PaddingMode::Valid,
                output_padding: None,
            },
        ),
    ] {
        check("conv_transpose", vec![rng.tensor(&x, -1.0, 1.0), rng.tensor(&w, -1.0, 1.0)], op1(Op::ConvTranspose(a)));
    }
}

#[test]
fn max_min_tile_repeat_resize_and_norms() {
    let mut rng = Rng(10);
    let x = || Rng(11).tensor(&[2, 3, 4], -1.0, 1.0);
    // Distinct values 0.1 apart, so that a finite step never changes which element is extreme.
    let spread = Tensor::from_f32(&[2, 3, 4], (0..24).map(|k| ((k * 7) % 24) as f32 * 0.1 - 1.2).collect()).unwrap();
    for (kind, keep) in [(ReduceKind::Max, false), (ReduceKind::Min, true)] {
        check("reduce_extreme", vec![spread.clone()], op1(Op::Reduce { kind, axes: vec![1, 2], keepdims: keep }));
        check("reduce_extreme_axis", vec![spread.clone()], op1(Op::Reduce { kind, axes: vec![0], keepdims: keep }));
    }
    check("tile", vec![x()], op1(Op::Tile { repeats: vec![1, 2, 3] }));
    check("repeat_interleave", vec![x()], op1(Op::RepeatInterleave { axis: 1, repeats: 2 }));
    check(
        "resize_nearest",
        vec![rng.tensor(&[2, 2, 3, 2], -1.0, 1.0)],
        op1(Op::Resize { sizes: vec![4, 9], mode: ir::ResizeMode::Nearest }),
    );
    check("l2_normalize", vec![x()], op1(Op::L2Normalize { axes: vec![2], epsilon: 1e-12 }));
    check(
        "group_norm",
        vec![rng.tensor(&[2, 3, 2, 6], -1.0, 1.0), rng.tensor(&[6], 0.5, 1.5), rng.tensor(&[6], -0.5, 0.5)],
        op1(Op::GroupNorm { groups: 3, axis: 3, epsilon: 1e-3 }),
    );
}

/// Backpropagation through time: every cell kind, both directions, sequences and last outputs,
/// and the final states.
#[test]
fn recurrent_layers_through_time() {
    use ir::{RnnAttrs, RnnKind};
    let mut rng = Rng(12);
    let (n, t, f, u) = (2, 4, 3, 2);
    for (kind, gates) in [
        (RnnKind::Simple, 1),
        (RnnKind::Lstm, 4),
        (RnnKind::Gru { reset_after: true }, 3),
        (RnnKind::Gru { reset_after: false }, 3),
    ] {
        for (seq, back, init) in [(true, false, false), (false, true, false), (true, true, true)] {
            let a = RnnAttrs {
                kind,
                units: u,
                activation: UnaryOp::Tanh,
                recurrent_activation: UnaryOp::Sigmoid,
                return_sequences: seq,
                go_backwards: back,
                initial_state: init,
                masked: false,
                zero_output_for_mask: false,
            };
            let bshape = if kind == (RnnKind::Gru { reset_after: true }) { vec![2, 3 * u] } else { vec![gates * u] };
            let mut inputs = vec![
                rng.tensor(&[n, t, f], -1.0, 1.0),
                rng.tensor(&[f, gates * u], -0.8, 0.8),
                rng.tensor(&[u, gates * u], -0.8, 0.8),
                rng.tensor(&bshape, -0.5, 0.5),
            ];
            if init {
                // The gradient reaches the initial states too.
                for _ in 0..a.n_states() {
                    inputs.push(rng.tensor(&[n, u], -0.9, 0.9));
                }
            }
            let name = format!("{kind:?} seq={seq} backwards={back} initial_state={init}");
            // The loss reads the output and the final state (and the cell state for LSTM).
            check(&name, inputs, move |g, v| {
                let outs = g.add_node("rnn", Op::Rnn(a.clone()), v).unwrap();
                let y = if seq {
                    g.add("flat", Op::Reshape { shape: vec![-1, (t * u) as i64] }, &[outs[0]]).unwrap()
                } else {
                    outs[0]
                };
                let mut parts = vec![y, outs[1]];
                parts.extend(outs.get(2));
                g.add("all", Op::Concat { axis: 1 }, &parts).unwrap()
            });
        }
    }
}

/// Masked sequences through time: at a masked step the state holds and the output repeats
/// (or is zero); the gradient reaches the weights and the input through the kept steps only.
#[test]
fn masked_recurrent_layers_through_time() {
    use ir::{RnnAttrs, RnnKind};
    let mut rng = Rng(14);
    let (n, t, f, u) = (3, 5, 2, 2);
    // Sample 0 keeps every step, sample 1 masks the end, sample 2 masks the start and a middle step.
    let mask = Tensor::from_f32(&[n, t], vec![1., 1., 1., 1., 1., 1., 1., 1., 0., 0., 0., 1., 0., 1., 1.]).unwrap();
    for (kind, gates) in [(RnnKind::Lstm, 4), (RnnKind::Gru { reset_after: true }, 3), (RnnKind::Simple, 1)] {
        for (seq, back, zero) in [(true, false, false), (false, true, false), (true, true, true)] {
            let a = RnnAttrs {
                kind,
                units: u,
                activation: UnaryOp::Tanh,
                recurrent_activation: UnaryOp::Sigmoid,
                return_sequences: seq,
                go_backwards: back,
                initial_state: false,
                masked: true,
                zero_output_for_mask: zero,
            };
            let bshape = if kind == (RnnKind::Gru { reset_after: true }) { vec![2, 3 * u] } else { vec![gates * u] };
            let inputs = vec![
                rng.tensor(&[n, t, f], -1.0, 1.0),
                rng.tensor(&[f, gates * u], -0.8, 0.8),
                rng.tensor(&[u, gates * u], -0.8, 0.8),
                rng.tensor(&bshape, -0.5, 0.5),
                mask.clone(),
            ];
            let name = format!("masked {kind:?} seq={seq} backwards={back} zero={zero}");
            // The mask is data: the gradient is checked for the first four inputs.
            check_first(&name, inputs, 4, move |g, v| {
                let outs = g.add_node("rnn", Op::Rnn(a.clone()), v).unwrap();
                let y = if seq {
                    g.add("flat", Op::Reshape { shape: vec![-1, (t * u) as i64] }, &[outs[0]]).unwrap()
                } else {
                    outs[0]
                };
                let mut parts = vec![y, outs[1]];
                parts.extend(outs.get(2));
                g.add("all", Op::Concat { axis: 1 }, &parts).unwrap()
            });
        }
    }
}

#[test]
fn reversing_slices() {
    let mut rng = Rng(15);
    let x = rng.tensor(&[2, 5, 3], -1.0, 1.0);
    // Whole-axis reverse (Bidirectional's), and a reversed middle span.
    check(
        "reverse",
        vec![x.clone()],
        op1(Op::Slice { axes: vec![1], starts: vec![-1], ends: vec![i64::MIN], steps: vec![-1] }),
    );
    check(
        "reverse_span",
        vec![x],
        op1(Op::Slice { axes: vec![1, 2], starts: vec![3, 0], ends: vec![0, 2], steps: vec![-1, 1] }),
    );
}
