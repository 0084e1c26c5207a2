#!/usr/bin/env bash
# Fine-tunes the dev mlp with every optimizer both with `kerasc fit` and with real Keras 3 (JAX
# backend, same data, batch 32, 2 epochs, no shuffle, lr 0.01) and prints the largest weight
# difference per optimizer. Uses the venv of scripts/bench-anchors.sh (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/anchor-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q numpy jax h5py optree ../shared/bench/wheels/keras-*.whl ../shared/bench/wheels/namex-*.whl; }
cargo build --release --quiet
out=$(mktemp -d)
while read -r name flags; do
  target/release/kerasc fit tests/models/mlp.h5 --data tests/models/mlp.finetune.npz --output "$out/$name.h5" \
    --epochs 2 --batch-size 32 --no-shuffle --learning-rate 0.01 --verbose 0 $flags 2>/dev/null
done <<'LIST'
adam --optimizer adam
adamw --optimizer adamw
rmsprop --optimizer rmsprop
rmsprop_momentum --optimizer rmsprop --momentum 0.5
adagrad --optimizer adagrad
nadam --optimizer nadam
sgd_nesterov --optimizer sgd --momentum 0.9 --nesterov
adam_clipnorm --optimizer adam --clipnorm 0.1
sgd_global_clipnorm --optimizer sgd --global-clipnorm 0.05
LIST
KERAS_BACKEND=jax "$VENV/bin/python" - "$out" <<'PY' 2>&1 | grep -v -i warn
import sys, numpy as np, keras
out = sys.argv[1]
d = np.load("tests/models/mlp.finetune.npz")
O = keras.optimizers
cases = {
    "adam": lambda: O.Adam(0.01), "adamw": lambda: O.AdamW(0.01), "rmsprop": lambda: O.RMSprop(0.01),
    "rmsprop_momentum": lambda: O.RMSprop(0.01, momentum=0.5), "adagrad": lambda: O.Adagrad(0.01),
    "nadam": lambda: O.Nadam(0.01), "sgd_nesterov": lambda: O.SGD(0.01, momentum=0.9, nesterov=True),
    "adam_clipnorm": lambda: O.Adam(0.01, clipnorm=0.1), "sgd_global_clipnorm": lambda: O.SGD(0.01, global_clipnorm=0.05),
}
for name, make in cases.items():
    m = keras.saving.load_model("tests/models/mlp.h5", compile=False)
    m.compile(optimizer=make(), loss="sparse_categorical_crossentropy")
    m.fit(d["x_train"], d["y_train"], batch_size=32, epochs=2, shuffle=False, verbose=0)
    ours = keras.saving.load_model(f"{out}/{name}.h5", compile=False)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours.get_weights(), m.get_weights()))
    print(f"{name:28s} max |kerasc - Keras| = {diff:.2e}")
PY
rm -rf "$out"
