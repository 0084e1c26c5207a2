//! `kerasc compile` and `kerasc bench` from the command line.

mod common;

use common::{kerasc, models_dir, tmpdir};

fn model(name: &str) -> String {
    models_dir().join(name).to_str().unwrap().to_string()
}

#[test]
fn compile_emits_every_stage() {
    let m = model("resnet_block.keras");
    let ir = kerasc(&["compile", &m, "--emit", "ir"]);
    assert!(ir.status.success(), "{}", String::from_utf8_lossy(&ir.stderr));
    let ir = String::from_utf8_lossy(&ir.stdout).to_string();
    assert!(ir.contains("BatchNorm(") && ir.contains("Conv2D("), "{ir}");
    let opt = String::from_utf8_lossy(&kerasc(&["compile", &m, "--emit", "optimized"]).stdout).to_string();
    assert!(opt.contains("FusedConv2D(") && !opt.contains("BatchNorm("), "{opt}");
    assert!(opt.contains("egraph-rewrite") && opt.contains("stopped: saturated"), "{opt}");
    let plan = String::from_utf8_lossy(&kerasc(&["compile", &m, "--emit", "plan", "--batch", "4"]).stdout).to_string();
    assert!(plan.contains("memory plan at batch 4") && plan.contains("lower bound"), "{plan}");
    let dot = String::from_utf8_lossy(&kerasc(&["compile", &m, "--emit", "dot"]).stdout).to_string();
    assert_eq!(dot.matches("digraph").count(), 2, "{dot}");
    let dir = tmpdir("compile-out");
    let out = kerasc(&["compile", &m, "--out", dir.to_str().unwrap()]);
    assert!(out.status.success());
    for f in ["ir.txt", "optimized.txt", "plan.txt", "before.dot", "after.dot"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 0, "{f}");
    }
}

#[test]
fn bench_json_has_the_documented_fields() {
    let out = kerasc(&["bench", &model("cnn_mnist.keras"), "--json", "--runs", "3", "--warmup", "1", "--batch", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for path in [
        "/model",
        "/device",
        "/batch",
        "/naive/median_ms",
        "/optimized/median_ms",
        "/speedup",
        "/memory/naive_bytes",
        "/memory/arena_bytes",
        "/memory/lower_bound_bytes",
        "/max_abs_diff",
        "/optimizer/seconds",
        "/optimizer/stop_reason",
    ] {
        assert!(v.pointer(path).is_some(), "missing {path} in {v}");
    }
    assert_eq!(v["batch"], 2);
    assert_eq!(v["device"], "/CPU:0");
    assert!(v["max_abs_diff"].as_f64().unwrap() < 1e-4);
    assert!(v["memory"]["arena_bytes"].as_u64().unwrap() <= v["memory"]["naive_bytes"].as_u64().unwrap());
    assert!(v["optimized"]["kernels"].as_u64().unwrap() < v["naive"]["kernels"].as_u64().unwrap());
}

#[test]
fn bench_text_profile_and_report() {
    let dir = tmpdir("bench-report");
    let report = dir.join("r.html");
    let out = kerasc(&[
        "bench",
        &model("text_embed.keras"),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--profile",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for s in ["naive", "optimized", "speedup", "arena", "top ops, naive:", "top ops, optimized:"] {
        assert!(text.contains(s), "missing {s} in {text}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() == 3, "report");
}

#[test]
fn bench_and_compile_refuse_bad_input_cleanly() {
    let dir = tmpdir("bench-bad");
    let junk = dir.join("junk.keras");
    std::fs::write(&junk, b"not a model").unwrap();
    for args in [
        vec!["bench", junk.to_str().unwrap()],
        vec!["compile", junk.to_str().unwrap()],
        vec!["bench", &model("mlp.keras"), "--device", "/GPU:0"],
        vec!["bench", &model("mlp.keras"), "--device", "/TPU:0"],
    ] {
        let out = kerasc(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:") || err.contains("\nerror:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn devices_and_placement_say_what_they_do() {
    let out = kerasc(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PhysicalDevice(name='/physical_device:CPU:0', device_type='CPU')"), "{text}");
    let gpu = kerasc::runtime::cuda_status();
    if let Some(why) = &gpu.why_no_gpu {
        assert!(text.contains(&format!("no GPU: {why}")), "{text}");
        let m = model("mlp.keras");
        let x = models_dir().join("mlp.input.npy");
        let x = x.to_str().unwrap();
        let run = kerasc(&["run", &m, "-i", x]);
        assert!(run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains("running on /CPU:0 (no GPU:"));
        let hard = kerasc(&["run", &m, "-i", x, "--device", "/GPU:0"]);
        assert_eq!(hard.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&hard.stderr).contains("available devices: /CPU:0"));
        let soft = kerasc(&["run", &m, "-i", x, "--device", "/GPU:0", "--soft-placement"]);
        assert!(soft.status.success());
        assert!(String::from_utf8_lossy(&soft.stderr).contains("soft placement: running on /CPU:0 instead"));
    }
    let m = model("mlp.keras");
    let x = models_dir().join("mlp.input.npy");
    let bf16 = kerasc(&["run", &m, "-i", x.to_str().unwrap(), "--precision", "bf16", "--device", "/CPU:0"]);
    assert_eq!(bf16.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bf16.stderr).contains("tensor cores"));
    let bad = kerasc(&["run", &m, "-i", x.to_str().unwrap(), "--precision", "fp8"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown precision 'fp8'"));
}

/// `compile --target cuda --precision tf32|bf16|fp16` writes tensor-core GEMMs (mma.sync).
#[test]
fn compile_for_cuda_in_tensor_core_precisions() {
    for p in ["tf32", "bf16", "fp16"] {
        let dir = tmpdir(&format!("cuda-{p}"));
        let out = kerasc(&[
            "compile",
            &model("resnet_block.keras"),
            "--target",
            "cuda",
            "--precision",
            p,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{p}: {}", String::from_utf8_lossy(&out.stderr));
        let mma = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cu"))
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .contains(&format!(".{}", if p == "fp16" { "f16" } else { p }))
            })
            .count();
        assert!(mma >= 4, "{p}: {mma} tensor-core kernels");
    }
}

#[test]
fn compile_for_cuda_writes_every_kernel() {
    let dir = tmpdir("cuda-out");
    let out = kerasc(&["compile", &model("transformer.keras"), "--target", "cuda", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kernels.json")).unwrap()).unwrap();
    let kernels = manifest["kernels"].as_array().unwrap();
    assert!(kernels.len() > 10);
    let with_ptx = kerasc::runtime::cuda::nvrtc_version(&kerasc::runtime::cuda::default_nvrtc_dirs()).is_ok();
    for k in kernels {
        let name = k["kernel"].as_str().unwrap();
        let cu = std::fs::read_to_string(dir.join(format!("{name}.cu"))).unwrap();
        assert!(cu.contains("extern \"C\" __global__ void ") && cu.contains(&format!(" {name}(")), "{name}");
        assert!(!cu.contains("#include"), "{name} is not self-contained");
        assert_eq!(dir.join(format!("{name}.ptx")).exists(), with_ptx, "{name}");
    }
    let bad = kerasc(&["compile", &model("mlp.keras"), "--target", "cuda"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn threads_are_set_by_flag_or_environment_and_do_not_change_results() {
    let dir = models_dir();
    let (m, x) = (dir.join("cnn_mnist.keras"), dir.join("cnn_mnist.input.npy"));
    let out = common::tmpdir("threads");
    let mut results = Vec::new();
    for (flag, env) in [(None, None), (Some("1"), None), (Some("2"), None), (None, Some("1"))] {
        let y = out.join(format!("y{}.npy", results.len()));
        let mut args = vec!["run", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "-o", y.to_str().unwrap()];
        if let Some(n) = flag {
            args.extend(["--threads", n]);
        }
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kerasc"));
        cmd.args(&args);
        if let Some(n) = env {
            cmd.env("KERASC_NUM_THREADS", n);
        }
        let r = cmd.output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        results.push(std::fs::read(&y).unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "outputs differ with the thread count");
    for (args, env) in [(vec!["--threads", "0", "devices"], None), (vec!["devices"], Some("many"))] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kerasc"));
        cmd.args(&args);
        if let Some(v) = env {
            cmd.env("KERASC_NUM_THREADS", v);
        }
        let r = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && (err.contains("must be at least 1") || err.contains("KERASC_NUM_THREADS")),
            "{err}"
        );
    }
}
