#!/usr/bin/env bash
# Registers, shared memory and spills of every kernel generated for the dev models (batch 64),
# from `ptxas -v` for sm_90 (ptxas comes from the nvidia-cuda-nvcc 13.0 wheel, installed into
# target/nvcc on first use). Prints one line per kernel kind: the worst registers and spills.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-deps.sh >/dev/null
if [ ! -x target/nvcc/nvidia/cu13/bin/ptxas ]; then
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target target/nvcc "nvidia-cuda-nvcc==13.0.*"
fi
PTXAS=target/nvcc/nvidia/cu13/bin/ptxas
cargo build --release --quiet
work=$(mktemp -d)
for m in tests/models/*.keras; do
  name=$(basename "$m" .keras)
  target/release/kerasc compile "$m" --target cuda --batch 64 --out "$work/$name" 2>/dev/null || continue
done
printf "%-16s %8s %10s %14s %12s  %s\n" "kernel kind" "kernels" "max regs" "spill stores" "smem bytes" "most registers in"
for p in "$work"/*/*.ptx; do
  kind=$(basename "$p" .ptx | sed 's/^kc[0-9]*_//')
  info=$("$PTXAS" -v -arch=sm_90 "$p" -o /dev/null 2>&1 | tr '\n' ' ')
  regs=$(echo "$info" | grep -o 'Used [0-9]* registers' | grep -o '[0-9]*' | head -1 || true)
  spill=$(echo "$info" | grep -o '[0-9]* bytes spill stores' | grep -o '^[0-9]*' | head -1 || true)
  smem=$(echo "$info" | grep -o '[0-9]* bytes smem' | grep -o '^[0-9]*' | head -1 || true)
  echo "$kind ${regs:-0} ${spill:-0} ${smem:-0} $(dirname "$p" | xargs basename)/$(basename "$p")"
done | sort | awk '{ if (!($1 in r) || $2 > r[$1]) { r[$1] = $2; w[$1] = $5 } if ($3 > s[$1]) s[$1] = $3; if ($4 > m[$1]) m[$1] = $4; n[$1]++ }
  END { for (k in r) printf "%-16s %8d %10d %14d %12d  %s\n", k, n[k], r[k], s[k], m[k], w[k] }' | sort
rm -rf "$work"
