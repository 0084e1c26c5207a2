//! The shape of the code, checked: no crate's modules import each other in a circle, no source
//! file is over 800 lines (the generated ONNX protobuf types aside), every op family has a file
//! of its name in `kernels`, `codegen/src/cuda` and `ir/src/grad`, the optimizer depends on
//! neither the runtime nor cudarc, and CI requires the tests that would otherwise skip.

mod modules;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every crate root of the workspace: libraries, the binary and each integration test.
fn crate_roots() -> Vec<PathBuf> {
    let r = root();
    let mut roots = vec![r.join("src/lib.rs"), r.join("src/main.rs")];
    let mut dirs = vec![r.clone()];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(r.join("crates")).unwrap().map(|e| e.unwrap().path()).collect();
    crates.sort();
    for c in crates {
        roots.push(c.join("src/lib.rs"));
        dirs.push(c);
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d.join("tests")) else { continue };
        let mut tests: Vec<PathBuf> = rd
            .map(|e| e.unwrap().path())
            .filter_map(|p| match p.extension() {
                Some(e) if e == "rs" => Some(p),
                None if p.join("main.rs").exists() => Some(p.join("main.rs")),
                _ => None,
            })
            .collect();
        tests.sort();
        roots.extend(tests);
    }
    roots
}

#[test]
fn no_crate_imports_in_a_circle() {
    let crates = modules::Crates::load(&crate_roots());
    let edges = crates.edges();
    assert!(edges.len() > 100, "only {} files found", edges.len());
    let circles = modules::circles(&edges);
    let rel = |p: &Path| p.strip_prefix(root()).unwrap_or(p).display().to_string();
    let report: Vec<String> = circles
        .iter()
        .map(|c| {
            let mut s = String::from("circle:\n");
            for a in c {
                for (b, why) in &edges[a] {
                    if c.contains(b) {
                        s += &format!("  {} -> {}  ({why})\n", rel(a), rel(b));
                    }
                }
            }
            s
        })
        .collect();
    assert!(circles.is_empty(), "{} import circle(s):\n{}", circles.len(), report.join(""));
}

#[test]
fn the_checker_sees_a_circle() {
    let dir = std::env::temp_dir().join(format!("kerasc-arch-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src/a")).unwrap();
    let w = |p: &str, s: &str| std::fs::write(dir.join(p), s).unwrap();
    std::fs::create_dir_all(dir.join("src/elsewhere")).unwrap();
    w("src/lib.rs", "mod a;\nmod b;\n#[path = \"elsewhere/c.rs\"]\nmod c;\npub use a::Thing;\n/// Doc: crate::b::Other.\npub struct Root;\n");
    w("src/elsewhere/c.rs", "pub fn f() -> crate::b::Other { crate::b::Other }\n");
    w("src/a.rs", "mod inner;\nuse crate::b::helper;\npub struct Thing;\nfn f() { helper(); }\n");
    w("src/a/inner.rs", "pub(crate) fn g() -> super::Thing { super::Thing }\n");
    w("src/b.rs", "pub fn helper() { let _ = crate::Thing; let _s = \"crate::a::nothing\"; }\npub struct Other;\n");
    let edges = modules::Crates::load(&[dir.join("src/lib.rs")]).edges();
    let c = modules::circles(&edges);
    assert_eq!(c.len(), 1, "{edges:#?}");
    assert_eq!(c[0], vec![dir.join("src/a.rs"), dir.join("src/b.rs")]);
    // inner -> a is one way; lib re-exports a's item without using it; comments and strings
    // name nothing.
    assert!(edges[&dir.join("src/a/inner.rs")].contains_key(&dir.join("src/a.rs")));
    assert!(edges[&dir.join("src/lib.rs")].is_empty(), "{:?}", edges[&dir.join("src/lib.rs")]);
    // A module at a #[path].
    assert!(edges[&dir.join("src/elsewhere/c.rs")].contains_key(&dir.join("src/b.rs")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_source_file_is_over_800_lines() {
    let r = root();
    let mut files = Vec::new();
    for d in ["src", "tests", "crates", "tools"] {
        rust_files(&r.join(d), &mut files);
    }
    assert!(files.len() > 100);
    let generated = r.join("crates/frontend/src/onnx/proto.rs");
    let long: Vec<String> = files
        .iter()
        .filter(|f| **f != generated)
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.strip_prefix(&r).unwrap_or(f).display()))
        })
        .collect();
    assert!(long.is_empty(), "over 800 lines: {}", long.join(", "));
}

#[test]
fn every_op_family_has_a_file_in_every_stage() {
    let r = root();
    let mut missing = Vec::new();
    for f in kerasc::ir::OpFamily::ALL {
        for dir in ["crates/kernels/src", "crates/codegen/src/cuda", "crates/ir/src/grad"] {
            let p = r.join(dir).join(format!("{}.rs", f.file_stem()));
            if !p.exists() {
                missing.push(p.strip_prefix(&r).unwrap_or(&p).display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "missing: {}", missing.join(", "));
}

#[test]
fn the_optimizer_depends_on_neither_the_runtime_nor_cudarc() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "optimizer", "--prefix", "none", "-e", "normal,build,dev"])
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("egg v") && text.contains("kernels v"), "{text}");
    for dep in ["runtime v", "cudarc v"] {
        assert!(!text.lines().any(|l| l.starts_with(dep)), "optimizer depends on {dep}:\n{text}");
    }
}

#[test]
fn ci_requires_the_tests_that_could_skip() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    for var in
        ["KERASC_REQUIRE_NVRTC", "KERASC_REQUIRE_EMULATOR", "KERASC_REQUIRE_REALWORLD", "KERASC_REQUIRE_ONNX_NODE"]
    {
        assert!(ci.lines().any(|l| l.trim() == format!("export {var}=1")), ".ci/run does not set {var}");
    }
    assert!(
        ci.lines().any(|l| l.trim().starts_with("KERASC_REQUIRE_MPI=1 cargo test --release --features mpi")),
        ".ci/run does not require the multi-worker test"
    );
    let gpu = std::fs::read_to_string(root().join("scripts/gpu-check.sh")).unwrap();
    assert!(
        gpu.lines().any(|l| l.trim() == "export KERASC_REQUIRE_GPU=1"),
        "gpu-check.sh does not set KERASC_REQUIRE_GPU"
    );
}
