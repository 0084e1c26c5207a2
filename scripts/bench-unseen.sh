#!/usr/bin/env bash
# kerasc against ONNX Runtime on models of kinds the dev set lacks and the kernels were not tuned
# on (a VGG, a U-Net, an EfficientNet-style MBConv stack, a Conv3D net, group/instance/layer
# normalization; scripts/make-unseen-onnx.py, seeded, written to target/unseen): both run the same
# .onnx file. First each model's output is checked against ONNX Runtime's on one random batch of
# 2 (largest difference relative to the largest output), then scripts/bench-vs-ort.sh times them.
# usage: scripts/bench-unseen.sh [BATCHES (default "1,8")] [THREADS (default "1,all")] [RUNS (default 30)]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/anchor-venv
OUT=target/unseen
MODELS="vgg unet efficientnet conv3d norms"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import onnxruntime, onnx' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime onnx numpy
fi
cargo build --release --quiet
"$VENV/bin/python" scripts/make-unseen-onnx.py "$OUT" >/dev/null
for m in $MODELS; do
  "$VENV/bin/python" - "$OUT/$m.onnx" "$OUT/$m" <<'PY'
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(1).standard_normal([2] + [d for d in i.shape[1:]]).astype(np.float32)
np.save(sys.argv[2] + ".input.npy", x)
np.save(sys.argv[2] + ".ort.npy", s.run(None, {i.name: x})[0])
PY
  target/release/kerasc run "$OUT/$m.onnx" -i "$OUT/$m.input.npy" -o "$OUT/$m.kerasc.npy" >/dev/null
  "$VENV/bin/python" - "$OUT/$m" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1] + ".kerasc.npy"), np.load(sys.argv[1] + ".ort.npy")
rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
print(f"{sys.argv[1].split('/')[-1]}: output {a.shape}, max |kerasc - ORT| / max |ORT| = {rel:.2e}", "ok" if rel < 1e-4 else "MISMATCH")
PY
done
DIR=$OUT KERASC_EXT=onnx CONV="$MODELS" MODELS="$MODELS" scripts/bench-vs-ort.sh "${1:-1,8}" "${2:-1,all}" "${3:-30}"
