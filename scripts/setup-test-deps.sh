#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, inside the repo (nothing system-wide):
# NVRTC 13.0 from the nvidia-cuda-nvrtc wheel into target/nvrtc, so the tests can compile every
# generated CUDA kernel to PTX for sm_90 without a GPU. HDF5 and zip are read by pure-Rust code.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
if [ ! -e target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13 ]; then
  mkdir -p target/nvrtc
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target target/nvrtc "nvidia-cuda-nvrtc==13.0.*"
fi
echo "NVRTC: $(ls target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13)"
