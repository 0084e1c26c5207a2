//! Seeded mutants of the test models through `kerasc inspect` and `kerasc run`: every one must
//! end in success or one clean error (exit code 1, an `error:` line), never a panic, an abort,
//! a signal or a hang. Byte-level damage of every container, and meaning-level edits (the JSON
//! config of `.h5` and `.keras` files, the graph of `.onnx` files, `.npy` headers).
//!
//! `KERASC_MUTANT_SEED` picks other mutants (default 1), `KERASC_MUTANTS` how many (default
//! 600); `scripts/fuzz.sh` runs many seeds. A failing mutant is kept (its path is printed) to be
//! reproduced with the command shown; `KERASC_MUTANT_KEEP=1` keeps them all.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod mutate;

use common::{models_dir, DEV_MODELS};
use mutate::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A model file and the inputs `run` gets.
struct Case {
    model: PathBuf,
    inputs: Vec<PathBuf>,
}

fn cases() -> Vec<Case> {
    let dir = models_dir();
    let mut out = Vec::new();
    for m in DEV_MODELS {
        for ext in ["h5", "k2.h5", "keras", "onnx"] {
            out.push(Case { model: dir.join(format!("{m}.{ext}")), inputs: vec![dir.join(format!("{m}.input.npy"))] });
        }
    }
    for (sub, exts) in [("extra", &["keras", "h5", "k2.h5"][..]), ("onnx", &["onnx"][..])] {
        let d = dir.join(sub);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let f = p.file_name().unwrap().to_string_lossy().to_string();
            let Some(ext) = exts.iter().find(|e| f.ends_with(&format!(".{e}"))) else { continue };
            let stem = f.trim_end_matches(&format!(".{ext}")).to_string();
            if ext == &"h5" && stem.ends_with(".k2") {
                continue;
            }
            let inputs: Vec<PathBuf> =
                (0..4).map(|k| d.join(format!("{stem}.input{k}.npy"))).take_while(|p| p.exists()).collect();
            out.push(Case { model: p, inputs });
        }
    }
    out
}

/// What one command did.
enum Outcome {
    Success,
    Error,
    Bad(String),
}

/// Runs kerasc with a memory cap (so that an unchecked allocation aborts instead of swapping)
/// and a time limit.
fn run(args: &[String]) -> (Outcome, Duration) {
    let t0 = Instant::now();
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let script = format!("ulimit -v 8000000; exec '{}' {}", env!("CARGO_BIN_EXE_kerasc"), quoted.join(" "));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("RAYON_NUM_THREADS", "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let err = reader.join().unwrap_or_default();
    let took = t0.elapsed();
    let tail = || {
        let lines: Vec<&str> = err.lines().collect();
        match lines.iter().position(|l| l.contains("panicked at")) {
            Some(p) => lines[p..(p + 2).min(lines.len())].join(" "),
            None => lines.iter().rev().take(3).copied().collect::<Vec<_>>().join(" | "),
        }
    };
    let outcome = match status {
        None => Outcome::Bad(format!("hang (killed after {TIMEOUT:?})")),
        Some(s) if s.code().is_none() => Outcome::Bad(format!("killed by a signal ({s}): {}", tail())),
        Some(_) if err.contains("panicked") => Outcome::Bad(format!("panic: {}", tail())),
        Some(s) if s.code() == Some(0) => Outcome::Success,
        Some(s) if s.code() == Some(1) && err.lines().any(|l| l.starts_with("error: ")) => Outcome::Error,
        Some(s) => Outcome::Bad(format!("exit {s} without an error line: {}", tail())),
    };
    (outcome, took)
}

fn ext_of(p: &Path) -> String {
    let f = p.file_name().unwrap().to_string_lossy().to_string();
    if f.ends_with(".k2.h5") {
        "k2.h5".into()
    } else {
        p.extension().unwrap().to_string_lossy().to_string()
    }
}

/// Mutant `i` of the seed: a model (and maybe an input) damaged one way; `None` when the
/// mutation does not apply to the file.
fn mutant(seed: u64, i: usize, cases: &[Case], dir: &Path) -> Option<(String, PathBuf, Vec<PathBuf>)> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let case = &cases[rng.below(cases.len())];
    let ext = ext_of(&case.model);
    let data = std::fs::read(&case.model).unwrap();
    let (how, bytes) = match (rng.below(10), ext.as_str()) {
        (0..=5, "h5" | "k2.h5") => ("config", mutate::h5_config(&mut rng, &data)?),
        (0..=5, "keras") => ("config", mutate::keras_config(&mut rng, &data)?),
        (0..=5, "onnx") => ("graph", mutate::onnx(&mut rng, &data)?),
        (6, _) => ("input", data.clone()),
        _ => ("bytes", mutate::bytes(&mut rng, &data)),
    };
    let model = dir.join(format!("m{i}.{ext}"));
    std::fs::write(&model, bytes).unwrap();
    let mut inputs = case.inputs.clone();
    if how == "input" && !inputs.is_empty() {
        let k = rng.below(inputs.len());
        let p = dir.join(format!("m{i}.input{k}.npy"));
        std::fs::write(&p, mutate::npy(&mut rng, &std::fs::read(&inputs[k]).unwrap())).unwrap();
        inputs[k] = p;
    }
    Some((format!("{} ({how})", case.model.strip_prefix(models_dir()).unwrap_or(&case.model).display()), model, inputs))
}

#[test]
fn mutants_end_in_a_clean_error_or_success() {
    let seed: u64 = std::env::var("KERASC_MUTANT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let n: usize = std::env::var("KERASC_MUTANTS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let cases = cases();
    assert!(cases.len() > 60, "{} cases", cases.len());
    let dir = std::env::temp_dir().join(format!("kerasc-mutants-{seed}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keep_all = std::env::var_os("KERASC_MUTANT_KEEP").is_some();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4);
    let t0 = Instant::now();
    let results: Vec<(Vec<String>, usize, Duration, String, usize)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (cases, dir) = (&cases, &dir);
                sc.spawn(move || {
                    let (mut bad, mut runs, mut slowest) = (Vec::new(), 0usize, (Duration::ZERO, String::new()));
                    let mut succeeded = 0usize;
                    for i in (w..n).step_by(workers) {
                        let Some((what, model, inputs)) = mutant(seed, i, cases, dir) else { continue };
                        let out = dir.join(format!("m{i}.out.npy"));
                        let mut commands = vec![vec!["inspect".to_string(), model.display().to_string()]];
                        let mut r = vec!["run".to_string(), model.display().to_string()];
                        for p in &inputs {
                            r.extend(["--input".to_string(), p.display().to_string()]);
                        }
                        r.extend(["--output".to_string(), out.display().to_string()]);
                        commands.push(r);
                        let mut keep = keep_all;
                        for c in &commands {
                            let (o, took) = run(c);
                            runs += 1;
                            if took > slowest.0 {
                                slowest = (took, format!("{what}: kerasc {}", c.join(" ")));
                            }
                            match o {
                                Outcome::Bad(why) => {
                                    bad.push(format!("mutant {i} of {what}: {why}\n  kerasc {}", c.join(" ")));
                                    keep = true;
                                }
                                Outcome::Success => succeeded += 1,
                                Outcome::Error => {}
                            }
                        }
                        if !keep {
                            let _ = std::fs::remove_file(&model);
                            let _ = std::fs::remove_file(&out);
                            for p in inputs.iter().filter(|p| p.starts_with(dir)) {
                                let _ = std::fs::remove_file(p);
                            }
                        }
                    }
                    (bad, runs, slowest.0, slowest.1, succeeded)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let runs: usize = results.iter().map(|r| r.1).sum();
    let succeeded: usize = results.iter().map(|r| r.4).sum();
    let slowest = results.iter().max_by_key(|r| r.2).map(|r| format!("{:.2} s, {}", r.2.as_secs_f64(), r.3));
    let bad: Vec<String> = results.into_iter().flat_map(|r| r.0).collect();
    println!(
        "seed {seed}: {n} mutants, {runs} commands ({succeeded} succeeded, the rest clean errors) in {:.0} s; slowest {}",
        t0.elapsed().as_secs_f64(),
        slowest.unwrap_or_default()
    );
    assert!(
        bad.is_empty(),
        "{} of {runs} commands went wrong (mutants kept in {}):\n{}",
        bad.len(),
        dir.display(),
        bad.join("\n")
    );
    if !keep_all {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
