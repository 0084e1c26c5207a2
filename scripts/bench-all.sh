#!/usr/bin/env bash
# Times every dev model naive vs optimized with `kerasc bench --json` and prints a Markdown table.
# usage: [EXT=onnx] scripts/bench-all.sh [BATCHES (default "1 32")] [DEVICE (default: the best available)]
# EXT picks the files: keras (default, NAME.keras) or onnx (NAME.onnx, the tf2onnx exports).
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${1:-"1 32"}
DEVICE=${2:-}
BIN=${KERASC:-target/release/kerasc}
EXT=${EXT:-keras}
[ -x "$BIN" ] || cargo build --release --quiet
MODELS="mlp cnn_mnist resnet_block sepconv mobilenetv2 text_embed lstm gru conv1d activations pool_pad_up reshape_ln transformer long_names"
out=$(mktemp)
for m in $MODELS; do
  for b in $BATCHES; do
    "$BIN" bench "tests/models/$m.$EXT" --batch "$b" --runs 30 --warmup 5 --json ${DEVICE:+--device "$DEVICE"} 2>/dev/null >>"$out"
  done
done
python3 - "$out" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| model | batch | naive ms | optimized ms | speedup | kernels naive → opt | naive KB | arena KB | lower bound KB | arena/bound | optimizer s | max abs diff |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    m = r["memory"]
    print(f"| {r['model'].rsplit('.', 1)[0]} | {r['batch']} | {r['naive']['median_ms']:.3f} | {r['optimized']['median_ms']:.3f} | "
          f"{r['speedup']:.2f}× | {r['naive']['kernels']} → {r['optimized']['kernels']} | {m['naive_bytes']/1024:.1f} | "
          f"{m['arena_bytes']/1024:.1f} | {m['lower_bound_bytes']/1024:.1f} | {m['arena_bytes']/max(1,m['lower_bound_bytes']):.2f} | "
          f"{r['optimizer']['seconds']:.3f} | {r['max_abs_diff']:.1e} |")
for b in sorted({r["batch"] for r in rows}):
    cnn = [r["speedup"] for r in rows if r["batch"] == b and r["model"].split(".")[0] in ("cnn_mnist", "resnet_block", "sepconv", "mobilenetv2", "conv1d", "pool_pad_up")]
    allm = [r["speedup"] for r in rows if r["batch"] == b]
    g = lambda v: math.exp(sum(map(math.log, v)) / len(v))
    print(f"\nbatch {b}: geomean speedup {g(allm):.2f}× over all models, {g(cnn):.2f}× over the convolutional ones")
PY
rm -f "$out"
