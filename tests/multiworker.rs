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

/// Each worker reads only its replicas' shares of each batch from the data file, whatever its
/// form (.npz, a pair of .npy files, CSV), and the validation split likewise: three workers
/// (shares of 3, 2 and 2 rows of a batch of 7, and a short last batch) end where one process
/// mirrored over three devices ends, which reads all of the data.
#[cfg(feature = "mpi")]
#[test]
fn workers_read_their_shards_of_every_data_form() {
    let Some(dir) = with_mpirun("multiworker-shards") else { return };
    let train = models_dir().join("train");
    let m = train.join("bin_bce_adagrad.h5");
    let arrays: std::collections::HashMap<String, kerasc::ir::Tensor> =
        kerasc::npy::read_npz(&train.join("binary.npz")).unwrap().into_iter().collect();
    let (x, y) = (&arrays["x"], &arrays["y"]);
    let n = x.shape()[0];
    kerasc::npy::write(&dir.join("x.npy"), x).unwrap();
    kerasc::npy::write(&dir.join("y.npy"), y).unwrap();
    let (xv, yv) = (x.to_f32_vec(), y.to_f32_vec());
    let mut csv = String::from("f0,f1,f2,f3,label\n");
    for i in 0..n {
        let r = &xv[i * 4..i * 4 + 4];
        csv += &format!("{},{},{},{},{}\n", r[0], r[1], r[2], r[3], yv[i]);
    }
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    let (npz, xs, ys, csv) = (train.join("binary.npz"), dir.join("x.npy"), dir.join("y.npy"), dir.join("d.csv"));
    let forms: [(&str, Vec<&Path>); 3] = [("npz", vec![&npz]), ("npy", vec![&xs, &ys]), ("csv", vec![&csv])];
    for (form, files) in forms {
        let args = |out: &str| -> Vec<String> {
            let mut a: Vec<String> = ["fit", m.to_str().unwrap()].map(String::from).to_vec();
            match files.as_slice() {
                [x, y] => a.extend(["--x", x.to_str().unwrap(), "--y", y.to_str().unwrap()].map(String::from)),
                [d] => a.extend(["--data".to_string(), d.to_str().unwrap().to_string()]),
                _ => unreachable!(),
            }
            if form == "csv" {
                a.extend(["--label-column".to_string(), "label".to_string()]);
            }
            let (o, h) = (dir.join(format!("{form}.{out}.h5")), dir.join(format!("{form}.{out}.json")));
            a.extend(
                ["--epochs", "2", "--batch-size", "7", "--validation-split", "0.25", "--verbose", "2", "--output"]
                    .map(String::from),
            );
            a.extend([o.to_str().unwrap().to_string(), "--history".into(), h.to_str().unwrap().to_string()]);
            a
        };
        let mut w = args("workers");
        w.extend(["--strategy".into(), "multi-worker".into()]);
        let (ok, err) = mpirun(&[w.clone(), w.clone(), w], std::time::Duration::from_secs(300)).expect("mpirun hung");
        assert!(ok, "{form}: {err}");
        // Rank 0 held its shares alone: of the training rows, 3 of each batch of 7 (and its
        // share of the short last one).
        let train_rows = n - n / 4;
        let held = (0..train_rows)
            .step_by(7)
            .map(|s| kerasc::runtime::strategy::shares((s + 7).min(train_rows) - s, 3)[0].len())
            .sum::<usize>();
        assert!(err.contains(&format!("worker 0 holds {held} of the {train_rows} training samples")), "{form}: {err}");
        let mut mirrored = args("mirrored");
        mirrored.extend(["--strategy", "mirrored", "--logical-devices", "cpu=3", "--threads", "3"].map(String::from));
        let refs: Vec<&str> = mirrored.iter().map(String::as_str).collect();
        let o = kerasc(&refs);
        assert!(o.status.success(), "{form}: {}", String::from_utf8_lossy(&o.stderr));
        let p = |out: &str| dir.join(format!("{form}.{out}.h5"));
        assert_eq!(weights(&p("workers")), weights(&p("mirrored")), "{form}: weights");
        let hist = |out: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join(format!("{form}.{out}.json"))).unwrap()).unwrap()
        };
        let (a, b) = (hist("workers"), hist("mirrored"));
        assert_eq!(a["loss"], b["loss"], "{form}: loss");
        // Validation sums are added per worker first: equal to f64 rounding.
        for key in b.as_object().unwrap().keys().filter(|k| k.starts_with("val_")) {
            let (va, vb) = (a[key].as_array().unwrap(), b[key].as_array().unwrap());
            assert_eq!(va.len(), vb.len(), "{form}: {key}");
            for (p, q) in va.iter().zip(vb) {
                let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{form}: {key} {p} against {q}");
            }
        }
        assert!(b.as_object().unwrap().contains_key("val_loss"), "{form}: no validation");
    }
}

/// `TF_CONFIG` names a cluster of GPU workers: two processes on this machine (no GPU) meet at
/// the chief's address, and both stop with the reason NCCL cannot run here, writing nothing.
/// (Without MPI too: the rendezvous needs no system library.)
#[test]
fn tf_config_workers_meet_at_the_chief_and_say_why_nccl_cannot_run() {
    let dir = tmpdir("multiworker-tf-config");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (m, data) = (models_dir().join("mlp.h5"), models_dir().join("mlp.finetune.npz"));
    let spawn = |index: usize| {
        let spec = format!(
            r#"{{"cluster": {{"worker": ["127.0.0.1:{port}", "127.0.0.1:{}"]}}, "task": {{"type": "worker", "index": {index}}}}}"#,
            port + 1
        );
        let out = dir.join(format!("never{index}.h5"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kerasc"))
            .args(["fit", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--strategy", "multi-worker"])
            .args(["--output", out.to_str().unwrap()])
            .env("TF_CONFIG", spec)
            .env("KERASC_RENDEZVOUS_TIMEOUT", "60")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, out)
    };
    let (w1, w0) = (spawn(1), spawn(0));
    for (child, out) in [w0, w1] {
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        // Each worker names itself and why NCCL cannot run (no GPU or no NCCL library here),
        // and where CPU workers go.
        assert!(err.contains("worker 0:") && err.contains("mpirun"), "{err}");
        assert!(err.contains("GPU") || err.contains("NCCL"), "{err}");
        assert!(!out.exists());
    }
    // A TF_CONFIG that is not one.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kerasc"))
        .args(["fit", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--strategy", "multi-worker"])
        .args(["--output", dir.join("never.h5").to_str().unwrap()])
        .env("TF_CONFIG", r#"{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}"#)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("TF_CONFIG") && err.contains("'ps' task"), "{err}");
}

/// A model whose gradients fill several buckets (MobileNetV2, 409k weights: four): each worker
/// sends them bucket by bucket while its backward pass goes on, and the result is still that of
/// one process mirrored over two devices, bit for bit.
#[cfg(feature = "mpi")]
#[test]
fn gradients_sent_during_the_backward_pass_sum_to_the_mirrored_numbers() {
    let Some(dir) = with_mpirun("multiworker-overlap") else { return };
    // 12 seeded random 96×96 images of 10 classes.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let x: Vec<f32> = (0..12 * 96 * 96 * 3).map(|_| next() * 2.0 - 1.0).collect();
    let y: Vec<i32> = (0..12).map(|_| (next() * 10.0) as i32 % 10).collect();
    let (xs, ys) = (dir.join("x.npy"), dir.join("y.npy"));
    kerasc::npy::write(&xs, &kerasc::ir::Tensor::from_f32(&[12, 96, 96, 3], x).unwrap()).unwrap();
    kerasc::npy::write(&ys, &kerasc::ir::Tensor::new(vec![12], kerasc::ir::TensorData::I32(y)).unwrap()).unwrap();
    let m = models_dir().join("mobilenetv2.h5");
    let args = |out: &str| -> Vec<String> {
        let (o, h) = (dir.join(format!("{out}.h5")), dir.join(format!("{out}.json")));
        [
            "fit",
            m.to_str().unwrap(),
            "--x",
            xs.to_str().unwrap(),
            "--y",
            ys.to_str().unwrap(),
            "--loss",
            "sparse_categorical_crossentropy",
            "--optimizer",
            "sgd",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--verbose",
            "2",
            "--output",
            o.to_str().unwrap(),
            "--history",
            h.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut w = args("workers");
    w.extend(["--strategy".into(), "multi-worker".into()]);
    let (ok, err) = mpirun(&[w.clone(), w], std::time::Duration::from_secs(300)).expect("mpirun hung");
    assert!(ok, "{err}");
    assert!(err.contains("during the backward pass"), "{err}");
    let mut mirrored = args("mirrored");
    mirrored.extend(["--strategy", "mirrored", "--logical-devices", "cpu=2", "--threads", "2"].map(String::from));
    let refs: Vec<&str> = mirrored.iter().map(String::as_str).collect();
    let o = kerasc(&refs);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(weights(&dir.join("workers.h5")), weights(&dir.join("mirrored.h5")), "weights");
    assert_eq!(train_losses(&dir.join("workers.json")), train_losses(&dir.join("mirrored.json")));
}
