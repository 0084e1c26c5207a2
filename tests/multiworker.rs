//! Multi-worker fine-tuning (`kerasc fit --strategy multi-worker`, launched by `mpirun`, the
//! gradients summed over MPI): two workers end at the weights of one process mirrored over two
//! logical CPU devices, bit for bit, and near those of one process on the whole batch; rank 0
//! alone writes; a worker that dies stops the run with an error, within a bounded time. MPI is a
//! cargo feature: `.ci/run` builds with `--features mpi` and sets KERASC_REQUIRE_MPI; without the
//! feature the command says how to build it.

mod common;

use common::{kerasc, models_dir, tmpdir};
#[cfg(feature = "mpi")]
use std::path::Path;

#[cfg(not(feature = "mpi"))]
#[test]
fn without_the_mpi_feature_multi_worker_says_how_to_build_it() {
    let dir = tmpdir("multiworker-no-mpi");
    let (m, data) = (models_dir().join("mlp.h5"), models_dir().join("mlp.finetune.npz"));
    let out = dir.join("never.h5");
    let o = kerasc(&[
        "fit",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--strategy",
        "multi-worker",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--features mpi"), "{err}");
    assert!(!out.exists());
    // run and bench spread over one process's devices.
    let x = models_dir().join("mlp.input.npy");
    let o = kerasc(&["run", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--strategy", "multi-worker"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("kerasc fit"), "{}", String::from_utf8_lossy(&o.stderr));
    common::cannot_run("KERASC_REQUIRE_MPI", "this test binary was built without --features mpi");
}

/// `kerasc fit` on the mlp or cnn_mnist fixture: `epochs` epochs of batches of 16, SGD.
#[cfg(feature = "mpi")]
fn fit_args(name: &str, epochs: &str, out: &Path, history: &Path) -> Vec<String> {
    let (m, data) = (models_dir().join(format!("{name}.h5")), models_dir().join(format!("{name}.finetune.npz")));
    [
        "fit",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--verbose",
        "0",
        "--output",
        out.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(feature = "mpi")]
fn weights(path: &Path) -> Vec<(String, Vec<f64>)> {
    let m = kerasc::load(path).unwrap();
    m.graph.constants().iter().map(|(v, t)| (m.graph.value(*v).name.clone(), t.to_f64_vec())).collect()
}

#[cfg(feature = "mpi")]
fn train_losses(history: &Path) -> Vec<f64> {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(history).unwrap()).unwrap();
    j["loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// `mpirun` with these per-rank argument lists (MPMD: one `-np 1` block each), one thread per
/// worker; its exit status and stderr, or `None` when it ran past `limit`.
#[cfg(feature = "mpi")]
fn mpirun(ranks: &[Vec<String>], limit: std::time::Duration) -> Option<(bool, String)> {
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe"]);
    for (k, args) in ranks.iter().enumerate() {
        if k > 0 {
            cmd.arg(":");
        }
        cmd.args(["-np", "1", "-x", "KERASC_NUM_THREADS=1", env!("CARGO_BIN_EXE_kerasc")]).args(args);
    }
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return Some((status.success(), err));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A scratch folder for a test that runs `mpirun`, or `None` (said, or a failure under
/// KERASC_REQUIRE_MPI) where there is no `mpirun`.
#[cfg(feature = "mpi")]
fn with_mpirun(tag: &str) -> Option<std::path::PathBuf> {
    let have = std::process::Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        common::cannot_run("KERASC_REQUIRE_MPI", "no mpirun (run scripts/setup-test-deps.sh)");
        return None;
    }
    Some(tmpdir(tag))
}

#[cfg(feature = "mpi")]
#[test]
fn two_workers_end_where_one_process_mirrored_over_two_devices_does() {
    let Some(dir) = with_mpirun("multiworker") else { return };
    for name in ["mlp", "cnn_mnist"] {
        let p = |f: &str| dir.join(format!("{name}.{f}"));
        // Two workers, one replica each.
        let mut args = fit_args(name, "2", &p("workers.h5"), &p("workers.json"));
        args.extend(["--strategy".into(), "multi-worker".into()]);
        let (ok, err) = mpirun(&[args.clone(), args], std::time::Duration::from_secs(300)).expect("mpirun hung");
        assert!(ok, "{name}: {err}");
        // One process mirrored over two logical CPU devices (one thread each), and one process
        // on the whole batch.
        let mut mirrored = fit_args(name, "2", &p("mirrored.h5"), &p("mirrored.json"));
        mirrored.extend(["--strategy", "mirrored", "--logical-devices", "cpu=2", "--threads", "2"].map(String::from));
        let mut one = fit_args(name, "2", &p("one.h5"), &p("one.json"));
        one.extend(["--threads", "1"].map(String::from));
        for a in [&mirrored, &one] {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let o = kerasc(&refs);
            assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let (w, m, o) = (weights(&p("workers.h5")), weights(&p("mirrored.h5")), weights(&p("one.h5")));
        let start = weights(&models_dir().join(format!("{name}.h5")));
        for ((((name_w, a), (_, b)), (_, c)), (_, s)) in w.iter().zip(&m).zip(&o).zip(&start) {
            assert_eq!(a, b, "{name}/{name_w}: two workers against one process mirrored over two devices");
            let cmp = kerasc::ir::Tolerance::REDUCTION.compare(a, c);
            assert!(cmp.passed(), "{name}/{name_w}: two workers against one process on the whole batch: {cmp}");
            assert!(a.iter().zip(s).any(|(x, y)| x != y), "{name}/{name_w} did not train");
        }
        assert_eq!(train_losses(&p("workers.json")), train_losses(&p("mirrored.json")), "{name}: history");
    }
}

#[cfg(feature = "mpi")]
#[test]
fn a_worker_that_dies_stops_the_others_and_nothing_is_written() {
    let Some(dir) = with_mpirun("multiworker-dies") else { return };
    let out = dir.join("never.h5");
    let mut args = fit_args("cnn_mnist", "50", &out, &dir.join("never.json"));
    args.extend(["--strategy".into(), "multi-worker".into()]);
    let mut dying = args.clone();
    dying.extend(["--abort-after-steps".into(), "3".into()]);
    let (ok, err) = mpirun(&[args, dying], std::time::Duration::from_secs(120)).expect("the other worker hung");
    assert!(!ok, "the run succeeded though a worker died");
    // The launcher saw the worker die (not an argument error before any step).
    assert!(err.contains("signal 6") || err.contains("Aborted"), "{err}");
    assert!(!out.exists(), "a file was written");
}

#[cfg(feature = "mpi")]
#[test]
fn workers_resume_from_rank_zeros_checkpoint_where_a_straight_run_ends() {
    let Some(dir) = with_mpirun("multiworker-resume") else { return };
    let p = |f: &str| dir.join(f);
    let run = |out: &str, epochs: &str, extra: &[&str]| {
        let mut args = fit_args("cnn_mnist", epochs, &p(out), &p(&format!("{out}.json")));
        args.extend(["--strategy", "multi-worker"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let (ok, err) = mpirun(&[args.clone(), args], std::time::Duration::from_secs(300)).expect("mpirun hung");
        assert!(ok, "{out}: {err}");
    };
    let ck = p("ck");
    let ck = ck.to_str().unwrap();
    run("straight.h5", "3", &[]);
    run("half.h5", "2", &["--checkpoint", ck]);
    run("resumed.h5", "3", &["--checkpoint", ck, "--resume"]);
    assert_eq!(weights(&p("straight.h5")), weights(&p("resumed.h5")), "resumed against straight");
    assert_eq!(train_losses(&p("straight.h5.json")), train_losses(&p("resumed.h5.json")));
}
