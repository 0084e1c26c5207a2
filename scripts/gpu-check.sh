#!/usr/bin/env bash
# Runs on the device machine (no Rust there). Build the bundle here first:
#   scripts/gpu-bundle.sh        # -> gpu-bundle/ (ignored), carried to the device
# then on the device: bash scripts/gpu-check.sh
# Today kerasc has no CUDA backend (issue 4): this records the machine's GPU, driver and NVRTC,
# checks that `kerasc devices` refuses no GPU silently, runs every dev model on the CPU
# executor of that machine, and benches naive vs optimized there at batch 1 and 64, printing a
# short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
B=gpu-bundle
echo "== GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -3
echo "== libnvrtc"; find / -name 'libnvrtc.so.13*' 2>/dev/null | head -3
echo "== kerasc devices"; "$B/kerasc" devices
echo "== /GPU:0 request"; "$B/kerasc" run "$B/models/mlp.keras" -i "$B/models/mlp.input.npy" --device /GPU:0; echo "exit $?"
field() { grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
printf '\n%-14s %-8s %10s %12s %12s %12s %12s\n' model status run_ms "naive_b1" "opt_b1" "naive_b64" "opt_b64"
for m in $(ls "$B"/models/*.keras | xargs -n1 basename | sed 's/.keras$//'); do
  s=$(date +%s%N)
  if "$B/kerasc" run "$B/models/$m.keras" -i "$B/models/$m.input.npy" -o "/tmp/$m.out.npy" >/dev/null 2>&1; then st=ok; else st=FAIL; fi
  e=$(( ($(date +%s%N) - s) / 1000000 ))
  b1=$(timeout 120 "$B/kerasc" bench "$B/models/$m.keras" --batch 1 --runs 20 --json 2>/dev/null)
  b64=$(timeout 120 "$B/kerasc" bench "$B/models/$m.keras" --batch 64 --runs 10 --json 2>/dev/null)
  printf '%-14s %-8s %10s %12.3f %12.3f %12.3f %12.3f\n' "$m" "$st" "$e" \
    "$(echo "$b1" | grep -o '"naive":{[^}]*' | field median_ms)" "$(echo "$b1" | grep -o '"optimized":{[^}]*' | field median_ms)" \
    "$(echo "$b64" | grep -o '"naive":{[^}]*' | field median_ms)" "$(echo "$b64" | grep -o '"optimized":{[^}]*' | field median_ms)"
done
