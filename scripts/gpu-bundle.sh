#!/usr/bin/env bash
# Builds the folder scripts/gpu-check.sh runs from on the device machine (which has no Rust):
# the stripped kerasc binary, the stripped GPU test binaries (dev models; every op family, also
# emulated where g++ is), and the dev models with their
# inputs and Keras outputs. Carry gpu-bundle/ (ignored by git) to the device.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
rm -rf gpu-bundle && mkdir -p gpu-bundle/models
cp target/release/kerasc gpu-bundle/ && strip gpu-bundle/kerasc
test_bin=$(cargo test --release --test gpu --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | grep '/gpu-' | head -1 | cut -d'"' -f4)
cp "$test_bin" gpu-bundle/gpu-tests && strip gpu-bundle/gpu-tests
op_bin=$(cargo test --release -p codegen --test emulated --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | grep '/emulated-' | head -1 | cut -d'"' -f4)
cp "$op_bin" gpu-bundle/gpu-op-tests && strip gpu-bundle/gpu-op-tests
for f in tests/models/*.keras; do
  m=$(basename "$f" .keras)
  [ -f "tests/models/$m.input.npy" ] && cp "$f" "tests/models/$m.input.npy" "tests/models/$m.expected.npy" gpu-bundle/models/
  [ -f "tests/models/$m.onnx" ] && cp "tests/models/$m.onnx" gpu-bundle/models/
  # The fine-tuning references, for training on the GPU.
  [ -f "tests/models/$m.finetune.npz" ] && cp "tests/models/$m.h5" "tests/models/$m.finetune.npz" "tests/models/$m.finetuned.h5" gpu-bundle/models/
done
du -sh gpu-bundle
