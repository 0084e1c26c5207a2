//! ONNX's own backend node tests (the onnx 1.16.2 wheel's `backend/test/data/node`: one small
//! model per op and attribute case, written by ONNX, with inputs and expected outputs), fetched
//! by scripts/onnx-tests-data.sh into target/onnx-tests. Each runs through kerasc (loaded for its
//! inputs, optimized, on the CPU) and its outputs are compared with ONNX's (rtol 1e-3, atol 1e-5;
//! integers and booleans exactly).
//!
//! In scope: tests whose ops kerasc's ONNX registry names and whose inputs and outputs are plain
//! tensors (float32 and the integer and boolean types; not float16, double, strings, sequences).
//! The test fails when a test listed in tests/onnx_node/passing.txt stops passing, or when an
//! in-scope test gives wrong numbers or panics: every failure must be a clear error.
//! `KERASC_ONNX_NODE_RECORD=1` rewrites passing.txt and tests/onnx_node/status.md (the pass
//! counts, and every in-scope failure with its reason). Without the data the test says so and is
//! skipped, unless KERASC_REQUIRE_ONNX_NODE is set (CI).

mod common;

use kerasc::frontend::onnx::{self, proto};
use kerasc::ir::{DType, Tensor};
use kerasc::{npy, Executor, ExecutorOptions, LogicalDevices, OptimizeOptions};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How one node test went.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pass,
    /// A clear error (kerasc refused the model or its inputs).
    Error(String),
    /// Outputs that differ from ONNX's.
    Wrong(String),
    Panic(String),
}

/// ONNX element types in scope: float32 and the integer and boolean types kerasc holds exactly.
const PLAIN: &[i32] = &[1, 2, 3, 5, 6, 7, 9];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The op types of a graph and its subgraphs (domain-qualified outside the default domain).
fn ops_of(g: &proto::GraphProto, out: &mut BTreeSet<String>) {
    for n in &g.node {
        let op = n.op_type.clone().unwrap_or_default();
        match n.domain.as_deref().unwrap_or("") {
            "" | "ai.onnx" => out.insert(op),
            d => out.insert(format!("{d}::{op}")),
        };
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                ops_of(sub, out);
            }
        }
    }
}

/// Why a test is out of scope, if it is.
fn out_of_scope(m: &proto::ModelProto) -> Option<String> {
    let g = m.graph.as_ref()?;
    let mut ops = BTreeSet::new();
    ops_of(g, &mut ops);
    let missing: Vec<&String> = ops.iter().filter(|o| !onnx::supports_op(o)).collect();
    if !missing.is_empty() {
        return Some(format!("ops kerasc does not name: {missing:?}"));
    }
    let weights: BTreeSet<&str> = g.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    for vi in g.input.iter().filter(|v| !weights.contains(v.name.as_deref().unwrap_or(""))).chain(&g.output) {
        match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(proto::type_proto::Value::TensorType(t)) if PLAIN.contains(&t.elem_type.unwrap_or(0)) => {}
            Some(proto::type_proto::Value::TensorType(t)) => {
                return Some(format!(
                    "element type {} ({})",
                    t.elem_type.unwrap_or(0),
                    vi.name.clone().unwrap_or_default()
                ))
            }
            _ => return Some(format!("a non-tensor input or output ({})", vi.name.clone().unwrap_or_default())),
        }
    }
    None
}

/// `input_0.pb`, `input_1.pb`, ... (or outputs) of a test's first data set, in order.
fn data(dir: &Path, what: &str) -> Result<Vec<Tensor>, String> {
    let set = dir.join("test_data_set_0");
    let mut out = Vec::new();
    for k in 0.. {
        let p = set.join(format!("{what}_{k}.pb"));
        if !p.exists() {
            break;
        }
        let bytes = std::fs::read(&p).map_err(|e| e.to_string())?;
        out.push(onnx::tensor_from_pb(&bytes).map_err(|e| format!("{what} {k}: {e}"))?);
    }
    Ok(out)
}

/// Whether `got` matches `want`: the same shape, numbers within rtol 1e-3 + atol 1e-5 (floats)
/// or equal (integers, booleans), NaN where ONNX has NaN.
fn compare(k: usize, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("output {k}: shape {:?}, ONNX has {:?}", got.shape(), want.shape()));
    }
    let exact = !want.dtype().is_float();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else if b.is_infinite() || exact {
            a == b
        } else {
            (a - b).abs() <= 1e-5 + 1e-3 * b.abs()
        };
        if !ok {
            return Err(format!("output {k}: element {i} is {a}, ONNX has {b}"));
        }
    }
    Ok(())
}

/// Runs one test: loaded for its inputs, compiled, run, compared.
fn run_case(dir: &Path, device: &kerasc::LogicalDevice) -> Outcome {
    let inputs = match data(dir, "input") {
        Ok(i) => i,
        Err(e) => return Outcome::Error(e),
    };
    let want = match data(dir, "output") {
        Ok(o) => o,
        Err(e) => return Outcome::Error(format!("expected {e}")),
    };
    let arrays: Vec<npy::Array> = inputs.into_iter().map(npy::Array::Tensor).collect();
    let model = dir.join("model.onnx");
    let (m, _) = match kerasc::specialize::load_for(&model, &arrays) {
        Ok(m) => m,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let options = ExecutorOptions {
        device: device.clone(),
        naive: false,
        optimize: OptimizeOptions::default(),
        ptx_cache: std::env::temp_dir(),
        precision: Default::default(),
        memory_limit: None,
    };
    let exec = match Executor::new(&m.graph, &options) {
        Ok((e, _)) => e,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let labels: Vec<PathBuf> = (0..arrays.len()).map(|k| PathBuf::from(format!("input {k}"))).collect();
    let raw = match kerasc::host::host_inputs(&m, arrays, &labels) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let tensors = kerasc::host::as_input_dtypes(&m.graph, raw);
    let got = match exec.run(&tensors) {
        Ok(g) => g,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    if got.len() != want.len() {
        return Outcome::Wrong(format!("{} outputs, ONNX has {}", got.len(), want.len()));
    }
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = if w.dtype() == DType::Bool { g.cast(DType::F32) } else { g.clone() };
        if let Err(e) = compare(k, &g, w) {
            return Outcome::Wrong(e);
        }
    }
    Outcome::Pass
}

/// The first line of an error, without the model's path.
fn reason(message: &str, dir: &Path) -> String {
    let model = dir.join("model.onnx").display().to_string();
    let line = message.lines().next().unwrap_or("").replace(&format!("{model}: "), "");
    let line = line.replace(&model, "model.onnx");
    if line.len() > 240 {
        format!("{}…", &line[..line.char_indices().nth(240).map_or(line.len(), |(i, _)| i)])
    } else {
        line
    }
}

#[test]
fn onnx_backend_node_tests() {
    let base =
        std::env::var_os("KERASC_ONNX_TESTS").map(PathBuf::from).unwrap_or_else(|| root().join("target/onnx-tests"));
    let node = base.join("node");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&node)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("model.onnx").exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    if dirs.is_empty() {
        common::cannot_run(
            "KERASC_REQUIRE_ONNX_NODE",
            "no ONNX node tests in target/onnx-tests/node (run scripts/onnx-tests-data.sh)",
        );
        return;
    }
    let device = LogicalDevices::physical().get(kerasc::Device::CPU).unwrap().clone();
    // A panic is an outcome here, not the end of the run; its message is kept quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut results: BTreeMap<String, (Option<String>, Outcome)> = BTreeMap::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let scope = std::fs::read(dir.join("model.onnx"))
            .ok()
            .and_then(|b| proto::ModelProto::decode(b.as_slice()).ok())
            .map_or(Some("the model does not decode".to_string()), |m| out_of_scope(&m));
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(dir, &device))) {
            Ok(o) => o,
            Err(p) => Outcome::Panic(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        };
        let outcome = match outcome {
            Outcome::Error(m) => Outcome::Error(reason(&m, dir)),
            o => o,
        };
        results.insert(name, (scope, outcome));
    }
    let _ = std::panic::take_hook();
    let count = |in_scope: bool, pass: bool| {
        results.values().filter(|(s, o)| (!in_scope || s.is_none()) && (!pass || *o == Outcome::Pass)).count()
    };
    let (scope_pass, scope_all, pass, all) =
        (count(true, true), count(true, false), count(false, true), count(false, false));
    let summary = format!(
        "in scope: {scope_pass} of {scope_all} pass ({:.1} %); all node tests: {pass} of {all} ({:.1} %)",
        100.0 * scope_pass as f64 / scope_all.max(1) as f64,
        100.0 * pass as f64 / all.max(1) as f64
    );
    println!("{summary}");
    // The status: per in-scope failure, its outcome and reason, grouped by reason.
    let mut status = format!("# ONNX backend node tests (onnx 1.16.2)\n\n{summary}\n\n");
    status.push_str("Written by `KERASC_ONNX_NODE_RECORD=1 cargo test --release --test onnx_node`.\n\n");
    status.push_str("## In-scope tests that do not pass\n\n| test | outcome | reason |\n|---|---|---|\n");
    for (name, (scope, o)) in &results {
        if scope.is_some() {
            continue;
        }
        let (kind, why) = match o {
            Outcome::Pass => continue,
            Outcome::Error(m) => ("error", m.clone()),
            Outcome::Wrong(m) => ("WRONG", m.clone()),
            Outcome::Panic(m) => ("PANIC", m.clone()),
        };
        status.push_str(&format!("| {name} | {kind} | {} |\n", why.replace('|', "\\|")));
    }
    std::fs::write(base.join("status.md"), &status).unwrap();
    // The in-scope list, for scripts/onnx-node-ort.py (ONNX Runtime on the same tests).
    let scope: String = results.iter().filter(|(_, (s, _))| s.is_none()).map(|(n, _)| format!("{n}\n")).collect();
    std::fs::write(base.join("in_scope.txt"), scope).unwrap();
    let passing: BTreeSet<&String> = results.iter().filter(|(_, (_, o))| *o == Outcome::Pass).map(|(n, _)| n).collect();
    let recorded = root().join("tests/onnx_node");
    if std::env::var_os("KERASC_ONNX_NODE_RECORD").is_some() {
        std::fs::create_dir_all(&recorded).unwrap();
        let list: String = passing.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(recorded.join("passing.txt"), list).unwrap();
        std::fs::write(recorded.join("status.md"), &status).unwrap();
    }
    let before = std::fs::read_to_string(recorded.join("passing.txt")).unwrap_or_default();
    let lost: Vec<&str> = before.lines().filter(|n| !n.is_empty() && !passing.contains(&n.to_string())).collect();
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, (s, o))| s.is_none() && matches!(o, Outcome::Wrong(_) | Outcome::Panic(_)))
        .map(|(n, (_, o))| format!("{n}: {o:?}"))
        .collect();
    assert!(lost.is_empty(), "{} node test(s) passed before and fail now: {lost:?}\n{summary}", lost.len());
    assert!(
        bad.is_empty(),
        "{} in-scope node test(s) give wrong numbers or panic:\n{}\n{summary}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        before.lines().count() > 0,
        "tests/onnx_node/passing.txt is missing: record it (KERASC_ONNX_NODE_RECORD=1)"
    );
}
