//! Every kernel generated for every dev model (Keras and ONNX, and the training steps of mlp and
//! cnn_mnist, with the optimizer update of every rule) compiles with NVRTC 13.0 to PTX for sm_90 (no GPU
//! needed). `scripts/setup-test-deps.sh` installs NVRTC into `target/nvrtc`; without it the test
//! says why it is skipped, unless KERASC_REQUIRE_NVRTC is set (CI), when that is a failure.

mod common;

use common::{models_dir, DEV_MODELS};
use kerasc::runtime::cuda;

#[test]
fn every_dev_model_kernel_compiles_for_sm_90() {
    let dirs = cuda::default_nvrtc_dirs();
    match cuda::nvrtc_version(&dirs) {
        Ok(v) => assert_eq!(v.0, 13, "NVRTC {v:?}: the device machine's driver is CUDA 13.0"),
        Err(why) => {
            common::cannot_run("KERASC_REQUIRE_NVRTC", &format!("{why} (run scripts/setup-test-deps.sh)"));
            return;
        }
    }
    let mut kernels = Vec::new();
    // Keras archives and their ONNX exports (the ONNX graphs optimize to other kernels).
    for (name, ext) in DEV_MODELS.iter().flat_map(|n| [(n, "keras"), (n, "onnx")]) {
        let model = kerasc::load(&models_dir().join(format!("{name}.{ext}"))).unwrap();
        let opt = kerasc::optimizer::optimize(&model.graph, &kerasc::OptimizeOptions::default()).unwrap();
        for batch in [1, 64] {
            let plan = kerasc::optimizer::plan(&opt.graph, batch).unwrap();
            let steps = kerasc::codegen::cuda::emit_plan(&opt.graph, &plan).unwrap();
            kernels.extend(
                steps.into_iter().flat_map(|s| s.kernels).map(|k| (format!("{name}.{ext} (batch {batch})"), k)),
            );
        }
    }
    // Models Keras wrote for cases the dev set lacks (keras.ops and TF op layers, masks, initial states).
    for name in
        ["ops_model.keras", "masked_rnn.keras", "mha_mask.keras", "seq2seq.keras", "masked_text.keras", "tf_ops.k2.h5"]
    {
        let model = kerasc::load(&models_dir().join(format!("extra/{name}"))).unwrap();
        let opt = kerasc::optimizer::optimize(&model.graph, &kerasc::OptimizeOptions::default()).unwrap();
        let plan = kerasc::optimizer::plan(&opt.graph, 4).unwrap();
        let steps = kerasc::codegen::cuda::emit_plan(&opt.graph, &plan).unwrap();
        kernels.extend(steps.into_iter().flat_map(|s| s.kernels).map(|k| (format!("extra/{name}"), k)));
    }
    // Tensor-core GEMMs (inline mma.sync PTX) in every precision, on models with convolutions
    // and matmuls.
    for name in ["resnet_block", "transformer"] {
        let model = kerasc::load(&models_dir().join(format!("{name}.keras"))).unwrap();
        let opt = kerasc::optimizer::optimize(&model.graph, &kerasc::OptimizeOptions::default()).unwrap();
        let plan = kerasc::optimizer::plan(&opt.graph, 8).unwrap();
        for p in [
            kerasc::codegen::cuda::Precision::Tf32,
            kerasc::codegen::cuda::Precision::Bf16,
            kerasc::codegen::cuda::Precision::Fp16,
        ] {
            let steps = kerasc::codegen::cuda::emit_plan_with(&opt.graph, &plan, p).unwrap();
            kernels.extend(
                steps
                    .into_iter()
                    .flat_map(|s| s.kernels)
                    .filter(|k| k.source.contains("mma.sync"))
                    .map(|k| (format!("{name} ({})", p.name()), k)),
            );
        }
    }
    // The training steps `fit` runs on a GPU (forward, loss, backward kernels), batch 16.
    for (name, x) in [("mlp", vec![16, 20]), ("cnn_mnist", vec![16, 28, 28, 1])] {
        let model = kerasc::load(&models_dir().join(format!("{name}.h5"))).unwrap();
        let g = &model.graph;
        let trainable: Vec<_> = g.constants().keys().copied().collect();
        let loss = kerasc::runtime::training::Loss::from_name("sparse_categorical_crossentropy", false).unwrap();
        let step = kerasc::runtime::training::TrainStep::new(g, loss, &trainable, kerasc::ir::DType::I32).unwrap();
        let mut shapes = vec![x, vec![16]];
        shapes.extend(trainable.iter().map(|v| g.constant(*v).unwrap().shape().to_vec()));
        let plan = kerasc::optimizer::plan_for_shapes(step.graph(), &shapes).unwrap();
        let steps = kerasc::codegen::cuda::emit_plan(step.graph(), &plan).unwrap();
        kernels.extend(steps.into_iter().flat_map(|s| s.kernels).map(|k| (format!("{name} training step"), k)));
    }
    // Batch normalization in training (the batch's statistics, the backward sums), channels last
    // and in the middle.
    for axis in [3usize, 1] {
        use kerasc::ir::{BinaryOp, DType, Graph, Op, ReduceKind, Shape, TensorType};
        let mut g = Graph::new("bn_train");
        let dims = if axis == 3 { [8, 5, 4, 6] } else { [8, 6, 5, 4] };
        let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&dims)));
        let gamma = g.add_input("gamma", TensorType::new(DType::F32, Shape::fixed(&[6])));
        let m = g.add("moments", Op::Moments { axis }, &[x]).unwrap();
        let mut stat = Vec::new();
        for k in 0..2 {
            let r = g.add("row", Op::Slice { axes: vec![0], starts: vec![k], ends: vec![k + 1], steps: vec![1] }, &[m]);
            stat.push(g.add("stat", Op::Reshape { shape: vec![6] }, &[r.unwrap()]).unwrap());
        }
        let y = g.add("bn", Op::BatchNorm { axis, epsilon: 1e-3 }, &[x, gamma, gamma, stat[0], stat[1]]).unwrap();
        let sq = g.add("sq", Op::Binary(BinaryOp::Mul), &[y, y]).unwrap();
        let loss = g.add("loss", Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 1, 2, 3], keepdims: false }, &[sq]);
        let grads = kerasc::ir::grad::append_backward(&mut g, loss.unwrap(), &[x, gamma]).unwrap();
        g.set_outputs(grads);
        let plan = kerasc::optimizer::plan_for_shapes(&g, &[dims.to_vec(), vec![6]]).unwrap();
        let steps = kerasc::codegen::cuda::emit_plan(&g, &plan).unwrap();
        kernels.extend(steps.into_iter().flat_map(|s| s.kernels).map(|k| (format!("batch norm axis {axis}"), k)));
    }
    // The optimizer update of a training step on the GPU: every rule, each kind of clipping,
    // with and without weight decay.
    {
        use kerasc::codegen::cuda::optim::update_kernels;
        use kerasc::ir::{GradClip, UpdateRule};
        let rules = UpdateRule::test_cases();
        let clips = [GradClip::None, GradClip::Norm(1.0), GradClip::GlobalNorm(1.0), GradClip::Value(0.5)];
        let mut seen = std::collections::HashSet::new();
        for (r, rule) in rules.iter().enumerate() {
            for clip in clips {
                let k = update_kernels(rule, clip, r % 2 == 0);
                for kernel in k.sumsq.into_iter().chain([k.update]) {
                    if seen.insert(kernel.name.clone()) {
                        let launch =
                            kerasc::codegen::cuda::Launch { grid: [1; 3], block: [256, 1, 1], shared_bytes: 0 };
                        let ks = kerasc::codegen::cuda::KernelSource {
                            name: kernel.name,
                            source: kernel.source,
                            launch,
                            args: Vec::new(),
                        };
                        kernels.push((format!("optimizer update {rule:?} {clip:?}"), ks));
                    }
                }
            }
        }
    }
    // The kernels of ONNX's backend node tests that kerasc passes on the CPU (target/onnx-tests,
    // fetched by scripts/onnx-tests-data.sh; tests/onnx_node.rs needs it too): every op and
    // attribute case ONNX tests, on the GPU.
    let no_cuda = node_test_kernels(&mut kernels);
    // NVRTC is thread-safe: compile on every core.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let results: Vec<Result<(), String>> = std::thread::scope(|sc| {
        let chunks: Vec<_> = kernels.chunks(kernels.len().div_ceil(threads).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let dirs = &dirs;
                sc.spawn(move || {
                    chunk
                        .iter()
                        .map(|(what, k)| match cuda::compile_ptx(&k.name, &k.source, "sm_90", dirs) {
                            Ok(ptx) if ptx.contains(&format!(".entry {}", k.name)) => Ok(()),
                            Ok(_) => Err(format!("{what}: {} has no entry point", k.name)),
                            Err(e) => Err(format!("{what}: {e}")),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let compiled = results.iter().filter(|r| r.is_ok()).count();
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{compiled} kernels compiled for sm_90");
    assert!(compiled > 100);
    println!("{} ONNX node test(s) with an op the CUDA code generator refuses:\n{}", no_cuda.len(), no_cuda.join("\n"));
}

/// Adds the kernels of every node test listed in tests/onnx_node/passing.txt; returns those
/// whose graph has an op the CUDA code generator refuses, with why.
fn node_test_kernels(kernels: &mut Vec<(String, kerasc::codegen::cuda::KernelSource)>) -> Vec<String> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/onnx-tests/node");
    let passing = std::fs::read_to_string(root.join("tests/onnx_node/passing.txt")).unwrap_or_default();
    if !dir.exists() {
        common::cannot_run(
            "KERASC_REQUIRE_ONNX_NODE",
            "no ONNX node tests in target/onnx-tests (run scripts/onnx-tests-data.sh)",
        );
        return Vec::new();
    }
    let mut refused = Vec::new();
    for name in passing.lines().filter(|l| !l.is_empty()) {
        let case = dir.join(name);
        let arrays: Vec<kerasc::npy::Array> = (0..)
            .map(|k| case.join(format!("test_data_set_0/input_{k}.pb")))
            .take_while(|p| p.exists())
            .map(|p| {
                kerasc::npy::Array::Tensor(kerasc::frontend::onnx::tensor_from_pb(&std::fs::read(p).unwrap()).unwrap())
            })
            .collect();
        let (m, bound) = kerasc::specialize::load_for(&case.join("model.onnx"), &arrays).unwrap();
        let opt = kerasc::optimizer::optimize(&m.graph, &kerasc::OptimizeOptions::default()).unwrap();
        let shapes: Vec<Vec<usize>> = arrays
            .iter()
            .zip(&bound)
            .filter(|(_, b)| !**b)
            .map(|(a, _)| kerasc::specialize::shape_of(a).to_vec())
            .collect();
        let Ok(plan) = kerasc::optimizer::plan_for_shapes(&opt.graph, &shapes) else { continue };
        match kerasc::codegen::cuda::emit_plan(&opt.graph, &plan) {
            Ok(steps) => kernels.extend(steps.into_iter().flat_map(|s| s.kernels).map(|k| (format!("ONNX {name}"), k))),
            Err(e) => refused.push(format!("{name}: {e}")),
        }
    }
    refused
}
