#!/usr/bin/env bash
# Long fuzzing runs with cargo fuzz (libFuzzer): each target for SECONDS, its corpus seeded from
# the test models, then a summary line per target (executions, coverage, findings). The fuzzer
# runs in libFuzzer's fork mode and goes on past a finding: crashes, out-of-memory and timeouts
# land in fuzz/artifacts/TARGET/ (crash-*, oom-*, timeout-*); reproduce one with
# `cargo +nightly fuzz run TARGET FILE -s none -O`, or `kerasc inspect FILE`.
# Then runs the seeded mutation test over more seeds (MUTANT_SEEDS, default 10..19; '' for none).
#
# usage: scripts/fuzz.sh [SECONDS per target, default 600] [TARGETS, default "h5 keras onnx npy load_run"]
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`, ~3 min) and nightly Rust.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
TARGETS=${2:-"h5 keras onnx npy load_run"}
MUTANT_SEEDS=${MUTANT_SEEDS-$(seq 10 19)}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked"; exit 1; }

# The seeds: every test model under 400 KB of the target's format (and the .npy inputs).
seed() {
  local t=$1 dir=fuzz/corpus/$1
  mkdir -p "$dir"
  local pat
  case $t in
    h5) pat='*.h5' ;;
    keras) pat='*.keras' ;;
    onnx) pat='*.onnx' ;;
    npy) pat='*.np[yz]' ;;
    load_run) pat='*.h5 *.keras *.onnx' ;;
  esac
  set -f
  for p in $pat; do
    find tests/models -name "$p" -size -400k -exec cp -n {} "$dir/" \;
  done
  set +f
}

(cd fuzz && cargo +nightly fuzz build -s none -O >/dev/null 2>&1) || { echo "cargo fuzz build failed"; exit 1; }
summary=()
for t in $TARGETS; do
  seed "$t"
  log=fuzz/$t.log
  before=$(ls fuzz/artifacts/"$t" 2>/dev/null | wc -l)
  (cd fuzz && cargo +nightly fuzz run "$t" -s none -O -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 \
    -max_len=400000 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 corpus/"$t") >"$log" 2>&1
  # Fork mode's progress lines: "#RUNS: cov: C ft: F corp: N exec/s: E oom/timeout/crash: O/T/C time: S ...".
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
  runs=$(echo "$last" | grep -o '^#[0-9]*' | tr -d '#')
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
  otc=$(echo "$last" | grep -o 'oom/timeout/crash: [0-9/]*' | cut -d' ' -f2)
  found=$(( $(ls fuzz/artifacts/"$t" 2>/dev/null | wc -l) - before ))
  summary+=("$(printf '%-9s %5s s  %10s executions  cov %6s  ft %7s  oom/timeout/crash %s  new artifacts %s' "$t" "$SECS" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${otc:-?}" "$found")")
done
for s in $MUTANT_SEEDS; do
  KERASC_MUTANT_SEED=$s cargo test --release --test mutants -- --nocapture 2>&1 | grep -E '^seed|went wrong|^mutant' | head -20
done
printf '%s\n' "${summary[@]}"
