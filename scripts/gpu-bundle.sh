#!/usr/bin/env bash
# Builds the folder scripts/gpu-check.sh runs from on the device machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
rm -rf gpu-bundle && mkdir -p gpu-bundle/models
cp target/release/kerasc gpu-bundle/ && strip gpu-bundle/kerasc
for f in tests/models/*.keras; do m=$(basename "$f" .keras); [ -f "tests/models/$m.input.npy" ] && cp "$f" "tests/models/$m.input.npy" gpu-bundle/models/; done
du -sh gpu-bundle
