#!/usr/bin/env bash
# kerasc then Keras: `kerasc fit` trains each model of tests/models/train/resume for 3 epochs
# from the untrained .keras, then Keras 3 (JAX) loads kerasc's file and fits a 4th epoch; prints
# the largest weight difference from Keras's own 4 epochs (NAME.k4.npz). Keras 3.15 cannot
# resume training from a legacy .h5 at all (its own files included), so only .keras is checked
# here; tests/fit_resume.rs checks that kerasc's .h5 holds the optimizer state Keras writes.
# Uses the venv of scripts/make-resume-fixtures.py (Keras 3 + JAX, made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/fit-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "keras==3.15.*" jax h5py numpy; }
cargo build --release --quiet
out=$(mktemp -d)
R=tests/models/train/resume
for name in adam_amsgrad rmsprop_centered nadam sgd_momentum_bn; do
  target/release/kerasc fit "$R/$name.keras" --data tests/models/train/regression.npz --output "$out/$name.keras" \
    --epochs 3 --batch-size 16 --no-shuffle --verbose 0 2>/dev/null
done
KERAS_BACKEND=jax "$VENV/bin/python" - "$out" <<'PY' 2>&1 | grep -v -i warn
import sys, numpy as np, keras
out, R = sys.argv[1], "tests/models/train/resume"
d = np.load("tests/models/train/regression.npz")
for name in ["adam_amsgrad", "rmsprop_centered", "nadam", "sgd_momentum_bn"]:
    k4 = np.load(f"{R}/{name}.k4.npz")
    m = keras.models.load_model(f"{out}/{name}.keras")
    it = int(m.optimizer.iterations.numpy())
    m.fit(d["x"], d["y"], batch_size=16, epochs=1, shuffle=False, verbose=0)
    diff = max(float(np.abs(k4[k] - w.numpy()).max()) for k, w in zip(sorted(k4.files), m.weights))
    print(f"{name:18s} kerasc 3 epochs (Keras loads iteration {it}) + Keras 1 vs Keras 4: max weight diff {diff:.1e}")
PY
rm -rf "$out"
