#!/usr/bin/env bash
# kerasc bench (naive and optimized) and the anchors in ../shared/bench (ONNX Runtime on the CPU,
# Keras 3 under jax.jit/XLA) on every dev model, one after the other, as one Markdown table.
# usage: scripts/bench-anchors.sh [BATCHES (default "1,32")] [ANCHORS_DIR (default ../shared/bench)]
# The anchors need a Python with onnxruntime, numpy, jax, h5py and Keras 3: the script makes a venv
# in target/anchor-venv (PyPI and the Keras wheel in ANCHORS_DIR/wheels) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${1:-1,32}
ANCHORS=${2:-../shared/bench}
VENV=target/anchor-venv
MODELS="mlp cnn_mnist resnet_block sepconv mobilenetv2 text_embed lstm gru conv1d activations pool_pad_up reshape_ln transformer long_names"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime numpy jax h5py optree "$ANCHORS"/wheels/keras-*.whl "$ANCHORS"/wheels/namex-*.whl
fi
cargo build --release --quiet
work=$(mktemp -d)
for m in $MODELS; do
  for b in ${BATCHES//,/ }; do
    target/release/kerasc bench "tests/models/$m.keras" --batch "$b" --runs 30 --warmup 5 --json 2>/dev/null >>"$work/kerasc.jsonl"
  done
done
"$VENV/bin/python" "$ANCHORS/ort_anchor.py" --batches "$BATCHES" --runs 30 --threads 2 \
  $(for m in $MODELS; do echo "tests/models/$m.onnx"; done) | grep '^{' >"$work/ort.jsonl" || true
KERAS_BACKEND=jax "$VENV/bin/python" "$ANCHORS/keras_anchor.py" --batches "$BATCHES" --runs 30 \
  $(for m in $MODELS; do echo "tests/models/$m.keras"; done) 2>/dev/null | grep '^{' >"$work/keras.jsonl" || true
python3 - "$work" <<'PY'
import json, math, os, sys
w = sys.argv[1]
load = lambda f: [json.loads(l) for l in open(os.path.join(w, f)) if l.strip()]
key = lambda r: (r["model"].split(".")[0], r["batch"])
ort = {key(r): r for r in load("ort.jsonl") if "median_ms" in r}
ker = {key(r): r for r in load("keras.jsonl") if "xla_ms" in r}
print("| model | batch | kerasc naive ms | kerasc optimized ms | speedup | ORT CPU ms | Keras XLA CPU ms | ORT ÷ kerasc | XLA ÷ kerasc |")
print("|---|---|---|---|---|---|---|---|---|")
ratios = {"ort": [], "xla": []}
for r in load("kerasc.jsonl"):
    k = key(r); o = r["optimized"]["median_ms"]
    a = ort.get(k, {}).get("median_ms"); x = ker.get(k, {}).get("xla_ms")
    fa = f"{a:.3f}" if a else "—"; fx = f"{x:.3f}" if x else "—"
    ra = f"{a / o:.2f}" if a else "—"; rx = f"{x / o:.2f}" if x else "—"
    if a: ratios["ort"].append(a / o)
    if x: ratios["xla"].append(x / o)
    print(f"| {k[0]} | {k[1]} | {r['naive']['median_ms']:.3f} | {o:.3f} | {r['speedup']:.2f}× | {fa} | {fx} | {ra} | {rx} |")
g = lambda v: math.exp(sum(map(math.log, v)) / len(v)) if v else float("nan")
print(f"\nGeomean anchor time ÷ kerasc optimized time (above 1: kerasc is faster): ONNX Runtime {g(ratios['ort']):.2f}, Keras XLA {g(ratios['xla']):.2f}")
PY
rm -rf "$work"
