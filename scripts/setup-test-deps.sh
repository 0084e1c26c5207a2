#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: NVRTC 13.0 from the nvidia-cuda-nvrtc
# wheel into target/nvrtc (inside the repo), so the tests can compile every generated CUDA kernel
# to PTX for sm_90 without a GPU; and g++, which builds the CPU emulator of the generated CUDA
# (Debian's package, only when missing). HDF5 and zip are read by pure-Rust code.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
if [ ! -e target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13 ]; then
  mkdir -p target/nvrtc
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target target/nvrtc "nvidia-cuda-nvrtc==13.0.*"
fi
echo "NVRTC: $(ls target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13)"
if ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends g++; else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends g++; fi
fi
echo "emulator compiler: $(g++ --version | head -1)"
# Open MPI and libclang (the `mpi` crate's bindings) for the multi-worker test (`--features mpi`).
have_mpi() {
  command -v mpirun >/dev/null \
    && [ -n "$(ls /usr/include/x86_64-linux-gnu/mpi/mpi.h /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h 2>/dev/null)" ] \
    && [ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* 2>/dev/null)" ]
}
if ! have_mpi; then
  pkgs="libopenmpi-dev openmpi-bin libclang-dev"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs; fi
fi
echo "MPI: $(mpirun --version 2>&1 | head -1)"
# The real-world check set's CI share (tests/realworld.rs): keras.applications architectures and
# two transformers saved by Keras 3 (JAX) with their outputs, generated into target/realworld
# (too large for git) by a venv of Keras 3.15 + JAX.
REALWORLD_CI="convnexttiny mobilenetv3small efficientnetv2b0 nasnetmobile densenet121 vit_tiny bert_tiny"
if [ ! -x target/fit-venv/bin/python ]; then
  python3 -m venv target/fit-venv
  target/fit-venv/bin/pip install --quiet --disable-pip-version-check "keras==3.15.*" jax h5py numpy
fi
missing=""
for n in $REALWORLD_CI; do [ -e "target/realworld/$n.expected.npy" ] || missing="$missing $n"; done
if [ -n "$missing" ]; then
  KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-realworld.py $missing 2>&1 | grep -v -i "warn" || true
fi
echo "real-world check set: $(ls target/realworld/*.expected.npy 2>/dev/null | wc -l) models in target/realworld"
# ONNX's backend node tests and light model-zoo files (tests/onnx_node.rs), from the onnx wheel.
bash scripts/onnx-tests-data.sh
