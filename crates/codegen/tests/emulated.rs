//! The generated CUDA against the CPU executor, run by the CPU emulator and, where there is a GPU,
//! on the GPU: one graph per op family with awkward shapes, and the whole optimized plan of the
//! dev models. Models are read from KERASC_MODELS when set (the device bundle). A check that
//! cannot run here (no g++ for the emulator, no GPU) says so, or fails when
//! KERASC_REQUIRE_EMULATOR or KERASC_REQUIRE_GPU asks for it.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use ir::{
    BinaryOp, ConvAttrs, ConvTransposeAttrs, DType, Dim, Epilogue, Graph, Op, PaddingMode, PoolAttrs, PoolKind,
    ReduceKind, ResizeMode, RnnAttrs, RnnKind, Shape, Tensor, TensorData, TensorType, Tolerance, UnaryOp, ValueId,
};
use runtime::{Session, SessionOptions};

fn seq(shape: &[usize], s: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(|i| ((i as f32) * s + 0.1).sin()).collect()).unwrap()
}

fn input(g: &mut Graph, name: &str, dims: &[usize]) -> ValueId {
    let mut d = vec![Dim::Batch];
    d.extend(dims.iter().map(|&n| Dim::Fixed(n)));
    g.add_input(name, TensorType::new(DType::F32, Shape(d)))
}

fn compare(tag: &str, what: &str, g: &Graph, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{tag} ({what}): outputs");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.shape(), b.shape(), "{tag} ({what}): output {k}");
        let c = Tolerance::REDUCTION.compare(&a.to_f64_vec(), &b.to_f64_vec());
        assert!(c.passed(), "{tag} ({what}): output {k}: {c}\n{}", ir::render::to_text(g));
    }
}

/// Emits every node of `g` (no optimization) and compares, against the CPU executor, the
/// emulated run (where g++ is) and the run on GPU 0 (where there is one).
fn check(g: &Graph, inputs: Vec<Tensor>, tag: &str) {
    let want = Session::new(g.clone(), SessionOptions::default()).unwrap().run(&inputs).unwrap();
    if common::have_compiler() {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let plan = optimizer::plan_for_shapes(g, &shapes).unwrap();
        let steps = codegen::cuda::emit_plan(g, &plan).unwrap();
        let got = common::run(g, &steps, &plan.shapes, &inputs, tag);
        compare(tag, "emulated", g, &got, &want);
    } else {
        common::cannot_run("KERASC_REQUIRE_EMULATOR", &format!("{tag}: no g++ to build the CUDA emulator"));
    }
    match runtime::Device::Cuda(0).ensure_available() {
        Ok(_) => {
            let opts = runtime::cuda::CudaOptions::new(0, std::env::temp_dir().join("kerasc-test-ptx"));
            let s = runtime::cuda::CudaSession::new(g.clone(), opts).unwrap();
            for run in 0..2 {
                let got = s.run(&inputs).unwrap_or_else(|e| panic!("{tag} on the GPU: {e}"));
                compare(tag, &format!("GPU run {run}"), g, &got, &want);
            }
        }
        Err(e) => common::cannot_run("KERASC_REQUIRE_GPU", &format!("{tag}: {e}")),
    }
}

#[test]
fn elementwise_and_activations() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[3, 5]);
    let y = input(&mut g, "y", &[1, 5]);
    let acts = [
        UnaryOp::Relu,
        UnaryOp::Relu6,
        UnaryOp::ReluClip { max_value: Some(0.5), negative_slope: 0.1, threshold: 0.2 },
        UnaryOp::LeakyRelu { alpha: 0.3 },
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
        UnaryOp::Exp,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Square,
        UnaryOp::Affine { scale: 2.0, offset: -0.5 },
        UnaryOp::Clip { lo: -0.3, hi: 0.4 },
    ];
    let mut outs = Vec::new();
    for a in acts {
        outs.push(g.add("act", Op::Unary(a), &[x]).unwrap());
    }
    let b = g.add_constant("b", seq(&[5], 0.3));
    let m = g.add_constant("m", seq(&[3, 1], 0.9));
    outs.push(g.add("sub", Op::Binary(BinaryOp::Sub), &[x, y]).unwrap());
    outs.push(g.add("max", Op::Binary(BinaryOp::Max), &[m, x]).unwrap());
    outs.push(g.add("bias", Op::BiasAdd { axis: 2 }, &[x, b]).unwrap());
    let p = g.add_constant("p", seq(&[3], 0.4));
    outs.push(g.add("bias1", Op::BiasAdd { axis: 1 }, &[x, p]).unwrap());
    let gam = g.add_constant("gamma", seq(&[5], 0.2));
    let var = g.add_constant("var", Tensor::full(&[5], 0.7));
    outs.push(g.add("bn", Op::BatchNorm { axis: 2, epsilon: 1e-3 }, &[x, gam, b, b, var]).unwrap());
    g.set_outputs(outs);
    check(&g, vec![seq(&[2, 3, 5], 0.37), seq(&[2, 1, 5], 0.11)], "elementwise");
}

#[test]
fn fused_expressions_after_optimization() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[4, 6]);
    let two = g.add_constant("two", Tensor::scalar(2.0));
    let v = g.add_constant("v", seq(&[6], 0.5));
    let a = g.add("relu", Op::Unary(UnaryOp::Relu), &[x]).unwrap();
    let a = g.add("mul", Op::Binary(BinaryOp::Mul), &[a, two]).unwrap();
    let a = g.add("sub", Op::Binary(BinaryOp::Sub), &[a, v]).unwrap();
    let z = g.add("tanh", Op::Unary(UnaryOp::Tanh), &[a]).unwrap();
    g.set_outputs(vec![z]);
    let opt = optimizer::optimize(&g, &optimizer::OptimizeOptions::default()).unwrap().graph;
    assert!(matches!(opt.nodes()[0].op, Op::Fused(_)));
    check(&opt, vec![seq(&[3, 4, 6], 0.21)], "fused");
}

#[test]
fn integer_arithmetic_and_casts() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::new(DType::I32, Shape(vec![Dim::Batch, Dim::Fixed(4)])));
    let k = g.add_constant("k", Tensor::new(vec![4], TensorData::I32(vec![3, -2, 5, 1])).unwrap());
    let d = g.add("div", Op::Binary(BinaryOp::Div), &[x, k]).unwrap();
    let s = g.add("add", Op::Binary(BinaryOp::Add), &[d, k]).unwrap();
    let f = g.add("cast", Op::Cast { to: DType::F32 }, &[s]).unwrap();
    g.set_outputs(vec![f]);
    let xs = Tensor::new(vec![2, 4], TensorData::I32(vec![7, -7, 0, 9, -3, 4, 11, -1])).unwrap();
    check(&g, vec![xs], "ints");
}

#[test]
fn data_movement() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[3, 4, 2]);
    let y = input(&mut g, "y", &[3, 1, 2]);
    let t = g.add("t", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[x]).unwrap();
    let c = g.add("c", Op::Concat { axis: 2 }, &[x, y]).unwrap();
    let p = g.add("p", Op::Pad { pads: vec![(0, 0), (1, 0), (2, 1), (0, 1)], value: -1.5 }, &[x]).unwrap();
    let s = g
        .add("s", Op::Slice { axes: vec![1, 2], starts: vec![-1, 0], ends: vec![-4, 4], steps: vec![-1, 2] }, &[x])
        .unwrap();
    let r = g.add("r", Op::RepeatInterleave { axis: 2, repeats: 3 }, &[x]).unwrap();
    let tl = g.add("tile", Op::Tile { repeats: vec![1, 2, 1, 3] }, &[x]).unwrap();
    let rs = g.add("reshape", Op::Reshape { shape: vec![0, 24] }, &[t]).unwrap();
    // numpy broadcasting of a lower-rank value against `like` (ONNX Expand / batch fills).
    let bc = g.add("bcast", Op::BroadcastTo, &[y, x]).unwrap();
    let row = g
        .add("row", Op::Slice { axes: vec![0, 1], starts: vec![0, 0], ends: vec![1, 1], steps: vec![1, 1] }, &[y])
        .unwrap();
    let row = g.add("row3", Op::Reshape { shape: vec![1, 2] }, &[row]).unwrap();
    let bc2 = g.add("bcast2", Op::BroadcastTo, &[row, x]).unwrap();
    g.set_outputs(vec![t, c, p, s, r, tl, rs, bc, bc2]);
    check(&g, vec![seq(&[2, 3, 4, 2], 0.3), seq(&[2, 3, 1, 2], 0.7)], "movement");
}

#[test]
fn resize_and_gather() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[3, 4, 2]);
    let n = g.add("near", Op::Resize { sizes: vec![6, 8], mode: ResizeMode::Nearest }, &[x]).unwrap();
    let b = g.add("bil", Op::Resize { sizes: vec![7, 4], mode: ResizeMode::Bilinear }, &[x]).unwrap();
    let b2 = g.add("bil2", Op::Resize { sizes: vec![5, 9], mode: ResizeMode::Bilinear }, &[x]).unwrap();
    // ONNX's general resize: cubic antialiased down and up; a crop with extrapolation; nearest
    // rounding up with align_corners.
    use ir::interp::{CoordMode, InterpKind, Interpolation, NearestRound};
    let bits = |v: f32| v.to_bits();
    let onnx = |coord, kind, antialias, axes: Vec<(f32, f32, f32)>| {
        ResizeMode::Onnx(Box::new(Interpolation {
            coord,
            kind,
            antialias,
            exclude_outside: antialias,
            extrapolation: bits(-3.5),
            axes: axes.into_iter().map(|(s, a, b)| (bits(s), bits(a), bits(b))).collect(),
        }))
    };
    let cubic = InterpKind::Cubic { a: bits(-0.5) };
    let c = g
        .add(
            "cubic",
            Op::Resize {
                sizes: vec![2, 7],
                mode: onnx(CoordMode::HalfPixel, cubic, true, vec![(0.6, 0.0, 1.0), (1.8, 0.0, 1.0)]),
            },
            &[x],
        )
        .unwrap();
    let crop = onnx(CoordMode::TfCropAndResize, InterpKind::Linear, false, vec![(1.5, -0.2, 0.9), (1.0, 0.1, 1.3)]);
    let cr = g.add("crop", Op::Resize { sizes: vec![4, 4], mode: crop }, &[x]).unwrap();
    let up = onnx(
        CoordMode::AlignCorners,
        InterpKind::Nearest(NearestRound::Ceil),
        false,
        vec![(1.7, 0.0, 1.0), (0.5, 0.0, 1.0)],
    );
    let nc = g.add("nearest_ceil", Op::Resize { sizes: vec![5, 2], mode: up }, &[x]).unwrap();
    let ids = g.add_input("ids", TensorType::new(DType::I32, Shape(vec![Dim::Batch, Dim::Fixed(3)])));
    let emb = g.add_constant("emb", seq(&[5, 4], 0.9));
    let e = g.add("emb", Op::Gather { axis: 0 }, &[emb, ids]).unwrap();
    g.set_outputs(vec![n, b, b2, e, c, cr, nc]);
    let idx = Tensor::new(vec![2, 3], TensorData::I32(vec![4, 0, 2, 1, 1, 3])).unwrap();
    check(&g, vec![seq(&[2, 3, 4, 2], 0.3), idx], "resize");
}

#[test]
fn matmuls_with_batches_transposes_and_epilogues() {
    let mut g = Graph::new("t");
    let a = input(&mut g, "a", &[2, 70, 9]);
    let b = input(&mut g, "b", &[1, 67, 9]);
    let m = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: true }, &[a, b]).unwrap();
    let w = g.add_constant("w", seq(&[9, 5], 0.3));
    let bias = g.add_constant("bias", seq(&[5], 0.8));
    let res = g.add("res", Op::MatMul { transpose_a: false, transpose_b: false }, &[a, w]).unwrap();
    let e =
        Epilogue { bias: true, activation: Some(UnaryOp::Gelu), residual: true, post_activation: Some(UnaryOp::Tanh) };
    let f = g
        .add("fused", Op::FusedMatMul { transpose_a: false, transpose_b: false, epilogue: e }, &[a, w, bias, res])
        .unwrap();
    let at = g.add("at", Op::Transpose { perm: vec![0, 1, 3, 2] }, &[a]).unwrap();
    let t = g.add("ta", Op::MatMul { transpose_a: true, transpose_b: false }, &[at, w]).unwrap();
    g.set_outputs(vec![m, f, t]);
    check(&g, vec![seq(&[3, 2, 70, 9], 0.13), seq(&[3, 1, 67, 9], 0.29)], "matmul");
}

#[test]
fn convolutions() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[9, 8, 4]);
    let conv = |g: &mut Graph, x, k: [usize; 4], s: [usize; 2], d: [usize; 2], p: [(usize, usize); 2], groups| {
        let w = g.add_constant("w", seq(&k, 0.17));
        let a = ConvAttrs { strides: s.to_vec(), dilations: d.to_vec(), pads: p.to_vec(), groups };
        g.add("conv", Op::Conv(a), &[x, w]).unwrap()
    };
    let c1 = conv(&mut g, x, [3, 3, 4, 6], [1, 1], [1, 1], [(1, 1), (1, 1)], 1);
    let c2 = conv(&mut g, x, [3, 2, 2, 6], [2, 3], [1, 1], [(0, 1), (1, 0)], 2);
    let c3 = conv(&mut g, x, [3, 3, 4, 5], [1, 1], [2, 2], [(2, 2), (0, 0)], 1);
    let dw = conv(&mut g, x, [3, 3, 1, 8], [2, 1], [1, 2], [(1, 1), (2, 2)], 4);
    let w = g.add_constant("w", seq(&[1, 1, 4, 4], 0.23));
    let b = g.add_constant("b", seq(&[4], 0.6));
    let e =
        Epilogue { bias: true, activation: Some(UnaryOp::Relu6), residual: true, post_activation: Some(UnaryOp::Relu) };
    let a = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(0, 0), (0, 0)], groups: 1 };
    let f = g.add("fused", Op::FusedConv { conv: a, epilogue: e.clone() }, &[x, w, b, x]).unwrap();
    let wd = g.add_constant("wd", seq(&[3, 3, 1, 4], 0.31));
    let ad = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 4 };
    let fd = g.add("fused_dw", Op::FusedConv { conv: ad, epilogue: e }, &[x, wd, b, x]).unwrap();
    let wt = g.add_constant("wt", seq(&[3, 3, 5, 4], 0.19));
    let ta = ConvTransposeAttrs {
        strides: vec![2, 2],
        dilations: vec![1, 1],
        padding: PaddingMode::Same,
        output_padding: None,
    };
    let tc = g.add("convt", Op::ConvTranspose(ta), &[x, wt]).unwrap();
    let tv = ConvTransposeAttrs {
        strides: vec![2, 1],
        dilations: vec![1, 1],
        padding: PaddingMode::Valid,
        output_padding: None,
    };
    let tc2 = g.add("convt2", Op::ConvTranspose(tv), &[x, wt]).unwrap();
    g.set_outputs(vec![c1, c2, c3, dw, f, fd, tc, tc2]);
    check(&g, vec![seq(&[2, 9, 8, 4], 0.37)], "conv");
}

#[test]
fn conv_1d_and_3d() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[11, 3]);
    let w = g.add_constant("w", seq(&[3, 3, 4], 0.17));
    let a = ConvAttrs { strides: vec![2], dilations: vec![1], pads: vec![(2, 0)], groups: 1 };
    let c = g.add("c1", Op::Conv(a), &[x, w]).unwrap();
    let v = input(&mut g, "v", &[4, 3, 5, 2]);
    let w3 = g.add_constant("w3", seq(&[2, 2, 3, 2, 3], 0.13));
    let a3 =
        ConvAttrs { strides: vec![1, 2, 1], dilations: vec![1, 1, 2], pads: vec![(0, 1), (1, 0), (1, 1)], groups: 1 };
    let c3 = g.add("c3", Op::Conv(a3), &[v, w3]).unwrap();
    g.set_outputs(vec![c, c3]);
    check(&g, vec![seq(&[2, 11, 3], 0.41), seq(&[2, 4, 3, 5, 2], 0.23)], "conv13");
}

#[test]
fn pooling_reductions_and_normalizations() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[5, 6, 4]);
    let pool = |kind| PoolAttrs { kind, window: vec![3, 2], strides: vec![2, 2], pads: vec![(1, 1), (0, 1)] };
    let mp = g.add("max", Op::Pool(pool(PoolKind::Max)), &[x]).unwrap();
    let ap = g.add("avg", Op::Pool(pool(PoolKind::Avg)), &[x]).unwrap();
    let mut outs = vec![mp, ap];
    for (kind, axes, keep) in [
        (ReduceKind::Mean, vec![1, 2], false),
        (ReduceKind::Sum, vec![3], true),
        (ReduceKind::Max, vec![1], false),
        (ReduceKind::Min, vec![0, 2], true),
        (ReduceKind::Prod, vec![3], false),
    ] {
        outs.push(g.add("red", Op::Reduce { kind, axes, keepdims: keep }, &[x]).unwrap());
    }
    outs.push(g.add("sm", Op::Softmax { axes: vec![3] }, &[x]).unwrap());
    outs.push(g.add("sm2", Op::Softmax { axes: vec![1, 2] }, &[x]).unwrap());
    outs.push(g.add("lsm", Op::LogSoftmax { axis: 2 }, &[x]).unwrap());
    let gam = g.add_constant("g", seq(&[4], 0.7));
    let bet = g.add_constant("b", seq(&[4], 0.2));
    outs.push(g.add("ln", Op::LayerNorm { axes: vec![3], epsilon: 1e-3 }, &[x, gam, bet]).unwrap());
    let g2 = g.add_constant("g2", seq(&[6, 4], 0.5));
    outs.push(g.add("ln2", Op::LayerNorm { axes: vec![2, 3], epsilon: 1e-5 }, &[x, g2, g2]).unwrap());
    outs.push(g.add("gn", Op::GroupNorm { groups: 2, axis: 3, epsilon: 1e-3 }, &[x, gam, bet]).unwrap());
    // Rows long enough for a block per row.
    let wide = g.add("wide", Op::Reshape { shape: vec![0, 1, 120] }, &[x]).unwrap();
    outs.push(g.add("sm_wide", Op::Softmax { axes: vec![2] }, &[wide]).unwrap());
    outs.push(g.add("lsm_wide", Op::LogSoftmax { axis: 2 }, &[wide]).unwrap());
    let gw = g.add_constant("gw", seq(&[120], 0.3));
    outs.push(g.add("ln_wide", Op::LayerNorm { axes: vec![2], epsilon: 1e-3 }, &[wide, gw, gw]).unwrap());
    outs.push(g.add("l2", Op::L2Normalize { axes: vec![3], epsilon: 1e-12 }, &[x]).unwrap());
    g.set_outputs(outs);
    check(&g, vec![seq(&[2, 5, 6, 4], 0.33)], "reduce");
}

#[test]
fn recurrent_layers() {
    for (kind, units, gates, bias_rows, back, seqs) in [
        (RnnKind::Simple, 5, 1, 1, false, true),
        (RnnKind::Lstm, 6, 4, 1, true, false),
        (RnnKind::Lstm, 40, 4, 0, false, true),
        (RnnKind::Gru { reset_after: true }, 5, 3, 2, false, true),
        (RnnKind::Gru { reset_after: false }, 7, 3, 1, true, false),
    ] {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[4, 3]);
        let w = g.add_constant("w", seq(&[3, gates * units], 0.31));
        let r = g.add_constant("r", seq(&[units, gates * units], 0.17));
        let mut ins = vec![x, w, r];
        if bias_rows > 0 {
            let shape = if bias_rows == 2 { vec![2, gates * units] } else { vec![gates * units] };
            ins.push(g.add_constant("b", seq(&shape, 0.5)));
        }
        // Every other case starts from given states (h, and c for an LSTM); some are masked.
        let initial_state = units % 2 == 1 || kind == RnnKind::Lstm;
        let masked = units != 40;
        let mut inputs = vec![seq(&[3, 4, 3], 0.29)];
        if initial_state {
            let n = if kind == RnnKind::Lstm { 2 } else { 1 };
            for k in 0..n {
                ins.push(input(&mut g, &format!("s{k}"), &[units]));
                inputs.push(seq(&[3, units], 0.11 + k as f32 * 0.2));
            }
        }
        if masked {
            ins.push(input(&mut g, "mask", &[4]));
            inputs.push(Tensor::from_f32(&[3, 4], vec![1., 1., 0., 0., 0., 1., 1., 0., 1., 1., 1., 1.]).unwrap());
        }
        let a = RnnAttrs {
            kind,
            units,
            activation: UnaryOp::Tanh,
            recurrent_activation: UnaryOp::Sigmoid,
            return_sequences: seqs,
            go_backwards: back,
            initial_state,
            masked,
            zero_output_for_mask: masked && back,
        };
        let outs = g.add_node("rnn", Op::Rnn(a), &ins).unwrap();
        g.set_outputs(outs);
        check(&g, inputs, &format!("rnn{units}"));
    }
}

#[test]
fn dev_models_whole_plans() {
    for name in [
        "mlp",
        "cnn_mnist",
        "resnet_block",
        "sepconv",
        "text_embed",
        "lstm",
        "gru",
        "conv1d",
        "activations",
        "pool_pad_up",
        "reshape_ln",
        "transformer",
        "long_names",
    ] {
        let dir = common::models_dir();
        let model = frontend::load(&dir.join(format!("{name}.keras")), &frontend::LoadOptions::default()).unwrap();
        let opt = optimizer::optimize(&model.graph, &optimizer::OptimizeOptions::default()).unwrap().graph;
        let npy = std::fs::read(dir.join(format!("{name}.input.npy"))).unwrap();
        let x = npy_f32_or_int(&npy);
        let x = if x.dtype() != opt.value(opt.inputs()[0]).ty.dtype {
            x.cast(opt.value(opt.inputs()[0]).ty.dtype)
        } else {
            x
        };
        check(&opt, vec![x], name);
    }
}

/// The models Keras wrote for cases the dev set lacks (`tests/models/extra`: `keras.ops` layers
/// and EinsumDense, masked recurrent layers, attention masks, initial states), optimized.
#[test]
fn extra_models_whole_plans() {
    for name in ["ops_model", "masked_rnn", "mha_mask", "seq2seq"] {
        let dir = common::models_dir().join("extra");
        let model = frontend::load(&dir.join(format!("{name}.keras")), &frontend::LoadOptions::default()).unwrap();
        let opt = optimizer::optimize(&model.graph, &optimizer::OptimizeOptions::default()).unwrap().graph;
        let mut xs = Vec::new();
        for (k, &v) in opt.inputs().iter().enumerate() {
            let x = npy_f32_or_int(&std::fs::read(dir.join(format!("{name}.input{k}.npy"))).unwrap());
            let want = opt.value(v).ty.dtype;
            xs.push(if x.dtype() != want { x.cast(want) } else { x });
        }
        check(&opt, xs, name);
    }
}

/// A minimal .npy reader for the committed inputs (little-endian f4, i4 or i8, C order).
fn npy_f32_or_int(b: &[u8]) -> Tensor {
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    let shape_s = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_s.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data = &b[10 + hl..];
    let t = if header.contains("<f4") {
        TensorData::F32(data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    } else if header.contains("<i4") {
        TensorData::I32(data.chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect())
    } else {
        TensorData::I64(data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
    };
    Tensor::new(shape, t).unwrap()
}

fn fixed_input(g: &mut Graph, name: &str, dims: &[usize], dtype: DType) -> ValueId {
    g.add_input(name, TensorType::new(dtype, Shape::fixed(dims)))
}

/// The backward kernels: a training step's graph (forward, loss, `ir::grad::append_backward`)
/// for a small CNN — convolutions with padding, stride and groups, max and average pooling,
/// activations, a dense layer, sparse softmax cross-entropy — every gradient against the CPU.
#[test]
fn training_step_cnn() {
    let mut g = Graph::new("train_cnn");
    let x = fixed_input(&mut g, "x", &[3, 7, 6, 2], DType::F32);
    let labels = fixed_input(&mut g, "labels", &[3], DType::I32);
    let w1 = fixed_input(&mut g, "w1", &[3, 3, 2, 4], DType::F32);
    let b1 = fixed_input(&mut g, "b1", &[4], DType::F32);
    let w2 = fixed_input(&mut g, "w2", &[2, 3, 2, 6], DType::F32);
    let wd = fixed_input(&mut g, "wd", &[24, 5], DType::F32);
    let c1 = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 };
    let h = g.add("conv1", Op::Conv(c1), &[x, w1]).unwrap();
    let h = g.add("bias1", Op::BiasAdd { axis: 3 }, &[h, b1]).unwrap();
    let h = g.add("act1", Op::Unary(UnaryOp::Elu { alpha: 0.7 }), &[h]).unwrap();
    let pool = PoolAttrs { kind: PoolKind::Max, window: vec![2, 2], strides: vec![2, 2], pads: vec![(0, 1), (0, 0)] };
    let h = g.add("maxpool", Op::Pool(pool), &[h]).unwrap();
    let c2 = ConvAttrs { strides: vec![2, 1], dilations: vec![1, 1], pads: vec![(0, 1), (1, 1)], groups: 2 };
    let h = g.add("conv2", Op::Conv(c2), &[h, w2]).unwrap();
    let h = g.add("act2", Op::Unary(UnaryOp::Silu), &[h]).unwrap();
    let avg = PoolAttrs { kind: PoolKind::Avg, window: vec![2, 2], strides: vec![1, 2], pads: vec![(0, 1), (0, 1)] };
    let h = g.add("avgpool", Op::Pool(avg), &[h]).unwrap();
    let h = g.add("flat", Op::Reshape { shape: vec![3, -1] }, &[h]).unwrap();
    let logits = g.add("dense", Op::MatMul { transpose_a: false, transpose_b: false }, &[h, wd]).unwrap();
    let ce = g.add("ce", Op::SoftmaxCrossEntropy { sparse: true }, &[logits, labels]).unwrap();
    let loss = g.add("loss", Op::Reduce { kind: ReduceKind::Mean, axes: vec![0], keepdims: false }, &[ce]).unwrap();
    let grads = ir::grad::append_backward(&mut g, loss, &[x, w1, b1, w2, wd]).unwrap();
    let mut outs = vec![loss];
    outs.extend(grads);
    g.set_outputs(outs);
    let ids = Tensor::new(vec![3], TensorData::I32(vec![4, 0, 2])).unwrap();
    let inputs = vec![
        seq(&[3, 7, 6, 2], 0.37),
        ids,
        seq(&[3, 3, 2, 4], 0.53),
        seq(&[4], 0.9),
        seq(&[2, 3, 2, 6], 0.71),
        seq(&[24, 5], 0.29),
    ];
    check(&g, inputs, "training_step_cnn");
}

/// Batch normalization in training: the batch's statistics (`Moments`), the per-channel sums of
/// the backward pass (`BatchNormSums`) and the statistics' gradient (`MomentsGrad`), with the
/// channels last and, through a transposed input, in the middle.
#[test]
fn training_step_batch_norm() {
    let mut g = Graph::new("train_bn");
    let x = fixed_input(&mut g, "x", &[3, 5, 4, 6], DType::F32);
    let w = fixed_input(&mut g, "w", &[1, 1, 6, 6], DType::F32);
    let gamma = fixed_input(&mut g, "gamma", &[6], DType::F32);
    let beta = fixed_input(&mut g, "beta", &[6], DType::F32);
    let r = g.add_constant("r", seq(&[3, 5, 4, 6], 0.77));
    let c1 = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(0, 0), (0, 0)], groups: 1 };
    let h = g.add("conv", Op::Conv(c1), &[x, w]).unwrap();
    let mut outs = Vec::new();
    let mut parts = Vec::new();
    for (axis, src) in [(3usize, h), (1, g.add("nchw", Op::Transpose { perm: vec![0, 3, 1, 2] }, &[h]).unwrap())] {
        let m = g.add("moments", Op::Moments { axis }, &[src]).unwrap();
        let row = |g: &mut Graph, k: i64| {
            let s = Op::Slice { axes: vec![0], starts: vec![k], ends: vec![k + 1], steps: vec![1] };
            let s = g.add("row", s, &[m]).unwrap();
            g.add("stat", Op::Reshape { shape: vec![6] }, &[s]).unwrap()
        };
        let (mean, var) = (row(&mut g, 0), row(&mut g, 1));
        let y = g.add("bn", Op::BatchNorm { axis, epsilon: 1e-3 }, &[src, gamma, beta, mean, var]).unwrap();
        let y = if axis == 1 { g.add("nhwc", Op::Transpose { perm: vec![0, 2, 3, 1] }, &[y]).unwrap() } else { y };
        let p = g.add("p", Op::Binary(BinaryOp::Mul), &[y, r]).unwrap();
        parts.push(
            g.add("sum", Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 1, 2, 3], keepdims: false }, &[p]).unwrap(),
        );
        outs.push(m);
    }
    let loss = g.add("loss", Op::Binary(BinaryOp::Add), &[parts[0], parts[1]]).unwrap();
    let grads = ir::grad::append_backward(&mut g, loss, &[x, w, gamma, beta]).unwrap();
    outs.push(loss);
    outs.extend(grads);
    g.set_outputs(outs);
    let inputs = vec![seq(&[3, 5, 4, 6], 0.37), seq(&[1, 1, 6, 6], 0.53), seq(&[6], 0.9), seq(&[6], 0.4)];
    check(&g, inputs, "training_step_batch_norm");
}

/// The element-wise and lookup backward kernels: every activation's derivative, binary
/// partials under broadcasting, means, embeddings and dense-label cross-entropy.
#[test]
fn training_step_elementwise_and_embedding() {
    let mut g = Graph::new("train_ew");
    let ids = fixed_input(&mut g, "ids", &[4, 3], DType::I32);
    let table = fixed_input(&mut g, "table", &[6, 5], DType::F32);
    let s = fixed_input(&mut g, "s", &[1, 5], DType::F32);
    let probs = fixed_input(&mut g, "probs", &[4, 5], DType::F32);
    let e = g.add("embed", Op::Gather { axis: 0 }, &[table, ids]).unwrap();
    let e = g.add("mean", Op::Reduce { kind: ReduceKind::Mean, axes: vec![1], keepdims: false }, &[e]).unwrap();
    let mut h = e;
    for (k, u) in [
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Mish,
        UnaryOp::Softplus,
        UnaryOp::Selu,
        UnaryOp::LeakyRelu { alpha: 0.2 },
        UnaryOp::HardSilu,
        UnaryOp::Softsign,
        UnaryOp::Sigmoid,
    ]
    .into_iter()
    .enumerate()
    {
        h = g.add(format!("act{k}"), Op::Unary(u), &[h]).unwrap();
        let op = [BinaryOp::Mul, BinaryOp::Add, BinaryOp::Max, BinaryOp::Div, BinaryOp::Sub][k % 5];
        h = g.add(format!("bin{k}"), Op::Binary(op), &[h, s]).unwrap();
    }
    let ce = g.add("ce", Op::SoftmaxCrossEntropy { sparse: false }, &[h, probs]).unwrap();
    let loss = g.add("loss", Op::Reduce { kind: ReduceKind::Sum, axes: vec![0], keepdims: false }, &[ce]).unwrap();
    let grads = ir::grad::append_backward(&mut g, loss, &[table, s]).unwrap();
    let mut outs = vec![loss];
    outs.extend(grads);
    g.set_outputs(outs);
    let ids_t = Tensor::new(vec![4, 3], TensorData::I32(vec![0, 5, 2, 2, 2, 1, 3, 4, 0, 5, 5, 5])).unwrap();
    let p = Tensor::from_f32(&[4, 5], (0..20).map(|i| ((i % 5) as f32 + 1.0) / 15.0).collect()).unwrap();
    let sv = Tensor::from_f32(&[1, 5], vec![1.3, 0.8, 1.1, 1.7, 0.9]).unwrap();
    check(&g, vec![ids_t, seq(&[6, 5], 0.41), sv, p], "training_step_elementwise");
}

/// The training steps `kerasc fit` runs on a GPU: mlp and cnn_mnist (softmax output, sparse
/// cross-entropy, every weight trained) as `TrainStep` builds them, emulated against the CPU.
#[test]
fn dev_model_training_steps() {
    for (name, x_shape) in [("mlp", vec![5, 20]), ("cnn_mnist", vec![3, 28, 28, 1])] {
        let dir = common::models_dir();
        let model = frontend::load(&dir.join(format!("{name}.h5")), &frontend::LoadOptions::default()).unwrap();
        let g = &model.graph;
        let trainable: Vec<ValueId> = g.constants().keys().copied().collect();
        let loss = runtime::training::Loss::from_name("sparse_categorical_crossentropy", false).unwrap();
        let step = runtime::training::TrainStep::new(g, loss, &trainable, DType::I32).unwrap();
        let sg = step.graph().clone();
        let n = x_shape[0];
        let mut inputs = vec![seq(&x_shape, 0.13)];
        inputs.push(Tensor::new(vec![n], TensorData::I32((0..n as i32).map(|i| (i * 7) % 3).collect())).unwrap());
        inputs.extend(trainable.iter().map(|v| g.constant(*v).unwrap().clone()));
        check(&sg, inputs, &format!("{name} training step"));
    }
}

/// The tensor-core GEMM (matmuls, batched matmuls with an epilogue, implicit-GEMM
/// convolutions) in tf32, bf16 and fp16 on the emulator (the PTX fragment layouts of
/// mma.sync, the hardware's roundings), against the float32 CPU executor: the relative error
/// is that of the precision — small, but not zero for the 16-bit formats.
#[test]
fn tensor_core_gemms() {
    if !common::have_compiler() {
        common::cannot_run("KERASC_REQUIRE_EMULATOR", "tensor_core_gemms: no g++ to build the CUDA emulator");
        return;
    }
    let mut g = Graph::new("tc");
    let a = fixed_input(&mut g, "a", &[37, 45], DType::F32);
    let b = fixed_input(&mut g, "b", &[45, 70], DType::F32);
    let ba = fixed_input(&mut g, "ba", &[3, 20, 33], DType::F32);
    let bb = fixed_input(&mut g, "bb", &[3, 18, 33], DType::F32);
    let bias = fixed_input(&mut g, "bias", &[18], DType::F32);
    let x = fixed_input(&mut g, "x", &[2, 9, 8, 5], DType::F32);
    let w = fixed_input(&mut g, "w", &[3, 3, 5, 12], DType::F32);
    let mm = g.add("mm", Op::MatMul { transpose_a: false, transpose_b: false }, &[a, b]).unwrap();
    let e = Epilogue { bias: true, activation: Some(UnaryOp::Relu), residual: false, post_activation: None };
    let fm = g
        .add("fused_mm", Op::FusedMatMul { transpose_a: false, transpose_b: true, epilogue: e }, &[ba, bb, bias])
        .unwrap();
    let conv = ConvAttrs { strides: vec![1, 1], dilations: vec![1, 1], pads: vec![(1, 1), (1, 1)], groups: 1 };
    let c = g.add("conv", Op::Conv(conv), &[x, w]).unwrap();
    g.set_outputs(vec![mm, fm, c]);
    let inputs = vec![
        seq(&[37, 45], 0.31),
        seq(&[45, 70], 0.17),
        seq(&[3, 20, 33], 0.23),
        seq(&[3, 18, 33], 0.41),
        seq(&[18], 0.7),
        seq(&[2, 9, 8, 5], 0.13),
        seq(&[3, 3, 5, 12], 0.29),
    ];
    let want = Session::new(g.clone(), SessionOptions::default()).unwrap().run(&inputs).unwrap();
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let plan = optimizer::plan_for_shapes(&g, &shapes).unwrap();
    for (p, tol) in [
        (codegen::cuda::Precision::Tf32, 2e-3),
        (codegen::cuda::Precision::Fp16, 2e-3),
        (codegen::cuda::Precision::Bf16, 1e-2),
    ] {
        let steps = codegen::cuda::emit_plan_with(&g, &plan, p).unwrap();
        assert!(steps.iter().flat_map(|s| &s.kernels).any(|k| k.source.contains("mma.sync")), "{p:?}: no mma");
        let got = common::run(&g, &steps, &plan.shapes, &inputs, &format!("tc_{}", p.name()));
        assert_eq!(got.len(), want.len(), "{p:?}: outputs");
        for (k, (o, w)) in got.iter().zip(&want).enumerate() {
            let (o, w) = (o.to_f64_vec(), w.to_f64_vec());
            assert_eq!(o.len(), w.len(), "{p:?}: output {k}");
            let num: f64 = o.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            let den: f64 = w.iter().map(|b| b * b).sum::<f64>().sqrt();
            let rel = num / den;
            assert!(rel <= tol && rel > 0.0, "{p:?} output {k}: relative error {rel:e} (tolerance {tol:e})");
            println!("{p:?} output {k}: relative error {rel:e}");
        }
    }
}

#[test]
fn arg_max_and_min() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", &[5, 3]);
    let mut outs = Vec::new();
    for (max, axis, last) in [(true, 1, false), (false, 2, true), (true, 0, true), (false, 1, false)] {
        outs.push(g.add("arg", Op::ArgReduce { max, axis, keepdims: axis == 1, last }, &[x]).unwrap());
    }
    g.set_outputs(outs);
    // Rounded, so that ties occur (the first or the last of equal elements).
    let v: Vec<f32> = seq(&[4, 5, 3], 0.7).to_f32_vec().iter().map(|v| (v * 3.0).round()).collect();
    check(&g, vec![Tensor::from_f32(&[4, 5, 3], v).unwrap()], "argmax");
}
