#!/usr/bin/env bash
# Runs on the device machine (no Rust there). Build the bundle here first:
#   scripts/gpu-bundle.sh        # -> gpu-bundle/ (ignored), carried to the device
# then on the device: bash scripts/gpu-check.sh
# Today kerasc has no CUDA backend (issue 4): this records the machine's GPU, driver and NVRTC,
# checks that `kerasc devices` refuses no GPU silently, and runs every dev model on the CPU
# executor of that machine, printing a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
B=gpu-bundle
echo "== GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -3
echo "== libnvrtc"; find / -name 'libnvrtc.so.13*' 2>/dev/null | head -3
echo "== kerasc devices"; "$B/kerasc" devices
echo "== /GPU:0 request"; "$B/kerasc" run "$B/models/mlp.keras" -i "$B/models/mlp.input.npy" --device /GPU:0; echo "exit $?"
printf '\n%-14s %-8s %10s\n' model status ms
for m in $(ls "$B"/models/*.keras | xargs -n1 basename | sed 's/.keras$//'); do
  s=$(date +%s%N)
  if "$B/kerasc" run "$B/models/$m.keras" -i "$B/models/$m.input.npy" -o "/tmp/$m.out.npy" >/dev/null 2>&1; then st=ok; else st=FAIL; fi
  e=$(( ($(date +%s%N) - s) / 1000000 ))
  printf '%-14s %-8s %10s\n' "$m" "$st" "$e"
done
