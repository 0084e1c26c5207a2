#!/usr/bin/env bash
# Loads files written by `kerasc fit` with real Keras 3 (JAX backend) and prints each one's
# weights' largest difference from a reference model and its optimizer iteration count.
# usage: scripts/keras-load-check.sh REFERENCE.h5 WRITTEN.h5|WRITTEN.keras ...
# Uses the venv of scripts/bench-anchors.sh (target/anchor-venv), made on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/anchor-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy jax h5py optree ../shared/bench/wheels/keras-*.whl ../shared/bench/wheels/namex-*.whl
fi
KERAS_BACKEND=jax "$VENV/bin/python" - "$@" <<'PY' 2>&1 | grep -v -i warning
import sys, numpy as np, keras
ref = keras.saving.load_model(sys.argv[1])
for p in sys.argv[2:]:
    m = keras.saving.load_model(p)
    d = max(float(np.abs(a - b).max()) for a, b in zip(m.get_weights(), ref.get_weights()))
    it = getattr(getattr(m, "optimizer", None), "iterations", None)
    print(f"{p}: loaded by Keras {keras.__version__}; max |w - reference w| = {d:.3g}; optimizer iterations = {None if it is None else int(it.numpy())}")
PY
