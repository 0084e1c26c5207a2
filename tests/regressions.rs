//! Files that once crashed or hung kerasc, and attributes of the wrong type or range
//! (`tests/regressions/`, made by scripts/make-regressions.py or found by the fuzzers): each now
//! ends, within two seconds, in one clean error naming the layer, the attribute and the value.
//! `expected.json` lists the command and the words.

mod common;

use common::models_dir;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_regression_file_ends_in_a_clean_error() {
    let dir = models_dir().join("../regressions");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(cases.len() >= 10);
    let mut bad = Vec::new();
    for c in &cases {
        let file = dir.join(c["file"].as_str().unwrap());
        let mut args = vec![c["command"].as_str().unwrap().to_string(), file.display().to_string()];
        if let Some(i) = c["input"].as_str().filter(|_| args[0] == "run") {
            args.extend(["--input".to_string(), dir.join(i).display().to_string()]);
        }
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kerasc"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = t0.elapsed();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let what = format!("kerasc {}", args.join(" "));
        match status {
            None => bad.push(format!("{what}: hangs")),
            Some(s) if s.code() != Some(1) => bad.push(format!("{what}: exit {s}: {err}")),
            Some(_) => {
                let lines: Vec<&str> = err.lines().collect();
                if lines.len() != 1 || !lines[0].starts_with("error: ") {
                    bad.push(format!("{what}: not one error line: {err}"));
                }
                for w in c["expect"].as_array().unwrap() {
                    let w = w.as_str().unwrap();
                    if !err.contains(w) {
                        bad.push(format!("{what}: '{w}' not in: {err}"));
                    }
                }
                if took > Duration::from_secs(2) {
                    bad.push(format!("{what}: took {took:?}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
