//! The ONNX frontend: every dev `.onnx` export (tf2onnx) and the channels-first fixtures of
//! `tests/models/onnx` (made by scripts/make-onnx-fixtures.py, outputs from ONNX Runtime) run
//! through `kerasc run`, optimized and naive; the optimizer's rules fire on ONNX graphs; hostile
//! protobufs give clear errors.

mod common;

use common::{kerasc, models_dir, tmpdir, DEV_MODELS};
use kerasc::frontend::onnx::proto::{
    self, tensor_proto, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use kerasc::{ir::Tolerance, npy};
use prost::Message;
use std::path::{Path, PathBuf};

/// Runs `model` with `inputs` and compares each output with its expected file.
fn run_and_compare(model: &Path, inputs: &[PathBuf], expected: &[PathBuf], extra: &[&str]) -> Result<(), String> {
    // Tests run in parallel: one folder per model and mode.
    let mode = if extra.contains(&"--naive") { "naive" } else { "opt" };
    let tmp = tmpdir(&format!("onnx-{}-{mode}", model.file_stem().unwrap().to_string_lossy()));
    let mut args = vec!["run".to_string(), model.to_str().unwrap().to_string()];
    for i in inputs {
        args.extend(["--input".to_string(), i.to_str().unwrap().to_string()]);
    }
    let outs: Vec<PathBuf> = (0..expected.len()).map(|k| tmp.join(format!("out{k}.npy"))).collect();
    for o in &outs {
        args.extend(["--output".to_string(), o.to_str().unwrap().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = kerasc(&a);
    if !r.status.success() {
        return Err(format!("{}: {}", model.display(), String::from_utf8_lossy(&r.stderr)));
    }
    if outs.len() != expected.len() {
        return Err(format!("{}: {} outputs compared, {} expected", model.display(), outs.len(), expected.len()));
    }
    for (o, e) in outs.iter().zip(expected) {
        let (got, want) = (npy::read(o).unwrap(), npy::read(e).unwrap());
        if got.shape() != want.shape() {
            return Err(format!("{}: shape {:?}, expected {:?}", o.display(), got.shape(), want.shape()));
        }
        let cmp = Tolerance::MODEL.compare(&got.to_f64_vec(), &want.to_f64_vec());
        if !cmp.passed() {
            return Err(format!("{}: {cmp}", model.display()));
        }
    }
    Ok(())
}

fn numbered(dir: &Path, stem: &str, what: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        (0..16).map(|k| dir.join(format!("{stem}.{what}{k}.npy"))).filter(|p| p.exists()).collect();
    if v.is_empty() {
        v.push(dir.join(format!("{stem}.{what}.npy")));
    }
    v
}

fn dev_models_match_keras(extra: &[&str]) {
    let dir = models_dir();
    let failures: Vec<String> = DEV_MODELS
        .iter()
        .filter_map(|m| {
            let model = dir.join(format!("{m}.onnx"));
            run_and_compare(&model, &numbered(&dir, m, "input"), &numbered(&dir, m, "expected"), extra).err()
        })
        .collect();
    assert!(failures.is_empty(), "{} ONNX model(s) differ from Keras:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn dev_onnx_exports_match_keras_optimized() {
    dev_models_match_keras(&["--device", "/CPU:0"]);
}

#[test]
fn dev_onnx_exports_match_keras_naive() {
    dev_models_match_keras(&["--naive"]);
}

fn fixtures(extra: &[&str]) {
    let dir = models_dir().join("onnx");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert!(names.len() >= 7, "fixtures missing: {names:?}");
    let failures: Vec<String> = names
        .iter()
        .filter_map(|m| {
            let model = dir.join(format!("{m}.onnx"));
            run_and_compare(&model, &numbered(&dir, m, "input"), &numbered(&dir, m, "expected"), extra).err()
        })
        .collect();
    assert!(failures.is_empty(), "{} fixture(s) differ from ONNX Runtime:\n{}", failures.len(), failures.join("\n"));
}

/// Channels-first convolutions and pooling, normalizations, resizing, comparisons, recurrent
/// ops in every direction, Loop and If, opset-11 attribute forms, external data.
#[test]
fn onnx_fixtures_match_onnx_runtime_optimized() {
    fixtures(&[]);
}

#[test]
fn onnx_fixtures_match_onnx_runtime_naive() {
    fixtures(&["--naive"]);
}

/// The optimizer's rules fire on ONNX graphs: the batch norm folds into the convolution before
/// it, bias and relu fuse into it, and the layout transposes cancel.
#[test]
fn optimizer_folds_and_fuses_onnx_graphs() {
    let m = kerasc::load(&models_dir().join("onnx/nchw_cnn.onnx")).unwrap();
    let ops: Vec<String> = m.graph.nodes().iter().map(|n| n.op.name()).collect();
    assert!(ops.iter().any(|o| o == "BatchNorm"), "{ops:?}");
    let o = kerasc::optimizer::optimize(&m.graph, &Default::default()).unwrap();
    let applied = |rule: &str| -> usize {
        o.report.passes.iter().flat_map(|p| &p.changes).filter(|(n, _)| n == rule).map(|(_, c)| c).sum()
    };
    for rule in ["fold-batchnorm-into-linear", "fuse-linear-bias", "fuse-linear-activation", "transpose-chain"] {
        assert!(applied(rule) > 0, "{rule} did not fire: {:?}", o.report.passes);
    }
    let after: Vec<&kerasc::ir::Op> = o.graph.nodes().iter().map(|n| &n.op).collect();
    assert!(!after.iter().any(|op| matches!(op, kerasc::ir::Op::BatchNorm { .. })), "{after:?}");
    assert!(
        after.iter().any(|op| matches!(op, kerasc::ir::Op::FusedConv { epilogue, .. }
            if epilogue.bias && epilogue.activation == Some(kerasc::ir::UnaryOp::Relu))),
        "no conv+bias+relu: {after:?}"
    );
    // tf2onnx's cnn_mnist: every transpose around its convolutions cancels.
    let m = kerasc::load(&models_dir().join("cnn_mnist.onnx")).unwrap();
    let o = kerasc::optimizer::optimize(&m.graph, &Default::default()).unwrap();
    let transposes = o.graph.nodes().iter().filter(|n| matches!(n.op, kerasc::ir::Op::Transpose { .. })).count();
    assert_eq!(transposes, 0, "{:?}", o.graph.nodes().iter().map(|n| n.op.name()).collect::<Vec<_>>());
}

#[test]
fn inspect_and_bench_take_onnx() {
    let model = models_dir().join("resnet_block.onnx");
    let r = kerasc(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(j.to_string().contains("ONNX"), "{j}");
    let r = kerasc(&["bench", model.to_str().unwrap(), "--runs", "3", "--warmup", "1", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(j["speedup"].as_f64().unwrap() > 0.0 && j["max_abs_diff"].as_f64().unwrap() < 1e-4, "{j}");
}

/// A graph whose sizes and shape-deciding values are inputs: `inspect` names what compiling
/// needs; the specializer compiles once per distinct shapes and values and keeps the plans.
#[test]
fn graphs_compile_for_the_inputs_they_run_on() {
    let dir = models_dir().join("onnx");
    let model = dir.join("runtime_values.onnx");
    let r = kerasc(&["inspect", model.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    for want in ["the shape of input 'x'", "the values of input 'scales' (Resize 'rs': resize scales)"] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    let arrays: Vec<npy::Array> =
        (0..9).map(|k| npy::read_array(&dir.join(format!("runtime_values.input{k}.npy"))).unwrap()).collect();
    let (m, bound) = kerasc::specialize::load_for(&model, &arrays).unwrap();
    assert_eq!(bound, [false, true, true, true, true, true, true, true, true]);
    assert_eq!(m.graph.inputs().len(), 1, "only x stays an input");
    let builds = std::cell::Cell::new(0);
    let plans = kerasc::specialize::Specializing::<()>::new(&model);
    let build = |_: &kerasc::Model| {
        builds.set(builds.get() + 1);
        Ok(())
    };
    plans.get(&arrays, build).unwrap();
    // Another batch size is the same plan; other values or sizes are another.
    let mut more = arrays.clone();
    let npy::Array::Tensor(x) = &arrays[0] else { panic!() };
    more[0] = npy::Array::Tensor(x.gather_rows(&[0]).unwrap());
    plans.get(&more, build).unwrap();
    assert_eq!((builds.get(), plans.kept()), (1, 1));
    let mut other = arrays.clone();
    other[5] = npy::Array::Tensor(kerasc::ir::Tensor::new(vec![8], kerasc::ir::TensorData::I64(vec![0; 8])).unwrap());
    let c = plans.get(&other, build).unwrap();
    assert_eq!((builds.get(), plans.kept()), (2, 2));
    assert_eq!(c.model.graph.outputs().len(), 1);
    plans.get(&arrays, build).unwrap();
    assert_eq!(builds.get(), 2, "a kept plan is not compiled again");
    // Too few arrays: a clear error naming what is missing.
    let e = kerasc::specialize::load_for(&model, &arrays[..1]).unwrap_err().to_string();
    assert!(e.contains("1 array(s) were given") && e.contains("scales"), "{e}");
}

// ---- hostile and unsupported input ----

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(if d < 0 {
                tensor_shape_proto::dimension::Value::DimParam("N".into())
            } else {
                tensor_shape_proto::dimension::Value::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            initializer: inits,
            input: vec![vi("x", &[-1, 4])],
            output: vec![vi("y", &[-1, 4])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// Runs `inspect` on `path`: a clean failure whose message has every part of `want`.
fn refused(path: &Path, want: &[&str]) {
    let r = kerasc(&["inspect", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{}: {err}", path.display());
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "{}: '{w}' not in: {err}", path.display());
    }
}

#[test]
fn hostile_and_unsupported_onnx_files_give_clear_errors() {
    let dir = tmpdir("onnx-hostile");
    let relu = |i: &str, o: &str| node("Relu", &format!("relu_{o}"), &[i], &[o]);
    // A well-formed model works (the baseline the cases below break).
    let ok = write(&dir, "ok.onnx", &model(vec![relu("x", "y")], vec![], 17));
    let r = kerasc(&["inspect", ok.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // Truncated at every few bytes of a real export.
    let bytes = std::fs::read(models_dir().join("cnn_mnist.onnx")).unwrap();
    for cut in [1, 7, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 5] {
        let p = dir.join(format!("cut{cut}.onnx"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        refused(&p, &[]);
    }
    // Garbage that starts like a protobuf.
    let p = dir.join("garbage.onnx");
    std::fs::write(&p, [0x08, 0x07, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x3a, 0xff, 0xff]).unwrap();
    refused(&p, &["ONNX"]);
    // Huge and negative dimensions in an initializer with no data behind them.
    let huge =
        TensorProto { name: Some("w".into()), dims: vec![1 << 40, 1 << 30], data_type: Some(1), ..Default::default() };
    refused(
        &write(&dir, "huge.onnx", &model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![huge], 17)),
        &["too large"],
    );
    let neg = TensorProto { name: Some("w".into()), dims: vec![-3], data_type: Some(1), ..Default::default() };
    refused(
        &write(&dir, "neg.onnx", &model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![neg], 17)),
        &["negative"],
    );
    // Data shorter than its dimensions.
    let short = TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        raw_data: Some(vec![0; 8]),
        ..Default::default()
    };
    refused(
        &write(&dir, "short.onnx", &model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![short], 17)),
        &["raw_data"],
    );
    // A cycle, and an edge to nothing.
    refused(
        &write(
            &dir,
            "cycle.onnx",
            &model(
                vec![
                    node("Add", "a", &["x", "b_out"], &["a_out"]),
                    node("Relu", "b", &["a_out"], &["b_out"]),
                    relu("b_out", "y"),
                ],
                vec![],
                17,
            ),
        ),
        &["cycle"],
    );
    refused(
        &write(&dir, "dangling.onnx", &model(vec![node("Add", "a", &["x", "ghost"], &["y"])], vec![], 17)),
        &["'ghost'", "nothing defines"],
    );
    // Fills, tiles and pads to absurd sizes are refused before anything is allocated.
    let i64t = |name: &str, v: Vec<i64>| TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v,
        ..Default::default()
    };
    let fill = model(
        vec![node("ConstantOfShape", "fill", &["shape"], &["f"]), node("Add", "add", &["x", "f"], &["y"])],
        vec![i64t("shape", vec![1 << 40, 1 << 40])],
        17,
    );
    refused(&write(&dir, "fill.onnx", &fill), &["too large"]);
    let tile = model(vec![node("Tile", "tile", &["x", "reps"], &["y"])], vec![i64t("reps", vec![1, 1 << 40])], 17);
    refused(&write(&dir, "tile.onnx", &tile), &["tile"]);
    let pad = model(vec![node("Pad", "pad", &["x", "pads"], &["y"])], vec![i64t("pads", vec![0, 0, 0, 1 << 40])], 17);
    refused(&write(&dir, "pad.onnx", &pad), &["pad"]);
    // An output nothing computes.
    refused(&write(&dir, "no_output.onnx", &model(vec![relu("x", "z")], vec![], 17)), &["'y'"]);
    // Every unsupported op listed at once, with node names.
    let mut custom = node("MyOp", "mine", &["b"], &["c"]);
    custom.domain = Some("com.example".into());
    refused(
        &write(
            &dir,
            "unsupported.onnx",
            &model(
                vec![
                    node("TopK", "top", &["x"], &["a"]),
                    node("NonMaxSuppression", "nms", &["a"], &["b"]),
                    custom,
                    relu("c", "y"),
                ],
                vec![],
                17,
            ),
        ),
        &["3 unsupported", "top (TopK)", "nms (NonMaxSuppression)", "mine (com.example::MyOp)"],
    );
    // Opsets outside 1..=21.
    refused(&write(&dir, "new.onnx", &model(vec![relu("x", "y")], vec![], 99)), &["opset 99", "1 to 21"]);
    refused(&write(&dir, "zero.onnx", &model(vec![relu("x", "y")], vec![], 0)), &["opset 0"]);
    // External data that leaves the model's folder.
    let ext = TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        data_location: Some(tensor_proto::DataLocation::External as i32),
        external_data: vec![proto::StringStringEntryProto {
            key: Some("location".into()),
            value: Some("../../etc/passwd".into()),
        }],
        ..Default::default()
    };
    refused(
        &write(&dir, "escape.onnx", &model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![ext], 17)),
        &["leaves the model's folder"],
    );
    // A loop whose trip count depends on data.
    let body = GraphProto {
        name: Some("body".into()),
        node: vec![node("Identity", "i", &["c"], &["c2"]), node("Relu", "r", &["v"], &["v2"])],
        input: vec![vi("i", &[]), vi("c", &[]), vi("v", &[-1, 4])],
        output: vec![vi("c2", &[]), vi("v2", &[-1, 4])],
        ..Default::default()
    };
    let mut lp = node("Loop", "loop", &["", "x", "x"], &["y"]);
    lp.attribute.push(AttributeProto {
        name: Some("body".into()),
        g: Some(body),
        r#type: Some(5),
        ..Default::default()
    });
    refused(&write(&dir, "data_loop.onnx", &model(vec![lp], vec![], 17)), &["loop", "depends on data"]);
    // Deeply nested subgraphs are cut by the decoder's recursion limit, not the stack.
    let mut g = GraphProto { name: Some("leaf".into()), ..Default::default() };
    for _ in 0..200 {
        let mut n = node("If", "if", &["x"], &["y"]);
        n.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            g: Some(g),
            r#type: Some(5),
            ..Default::default()
        });
        g = GraphProto { name: Some("nest".into()), node: vec![n], ..Default::default() };
    }
    let mut deep = model(vec![], vec![], 17);
    deep.graph.as_mut().unwrap().node = g.node;
    refused(&write(&dir, "deep.onnx", &deep), &[]);
}
