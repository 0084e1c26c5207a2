#!/usr/bin/env bash
# kerasc fit against Keras 3 on JAX (model.fit on the CPU, jit-compiled by XLA), side by side, one
# model after the other in one run: ms per epoch of the second epoch (after Keras's compile) and
# Keras's time ÷ kerasc's (above 1: kerasc faster). See scripts/bench-fit.py for what is run.
#
# usage: scripts/bench-fit.sh [--repeat 8] [--batch 32] [--epochs 2] [--threads N] [MODEL...]
# The Python with Keras 3.15 and JAX (CPU) is made in target/fit-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/fit-venv
export KERAS_BACKEND=jax
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import keras, jax, h5py' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "keras==3.15.*" "jax[cpu]" numpy h5py
fi
cargo build --release --quiet
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%F)" >&2
"$VENV/bin/python" -c 'import keras, jax; print("keras", keras.__version__, "jax", jax.__version__)' >&2
"$VENV/bin/python" scripts/bench-fit.py "$@" 2> >(grep -v -i warning >&2)
