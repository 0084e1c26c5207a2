#!/usr/bin/env bash
# Runs on the device machine (no Rust there). Build the bundle here first:
#   scripts/gpu-bundle.sh        # -> gpu-bundle/ (ignored), carried to the device
# then on the device: bash scripts/gpu-check.sh
# It records the GPU, driver and NVRTC, runs the GPU tests (every dev model on /GPU:0 against
# Keras and the CPU, optimized and naive), then benches naive vs optimized on /GPU:0 at batch 1
# and 64, the tensor-core precisions, and fine-tuning ms per epoch on the GPU beside the CPU;
# two logical GPUs of GPU 0 mirrored; one multi-worker NCCL worker; short tables last. Fits in
# about 9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
B=gpu-bundle
export XDG_CACHE_HOME=/tmp/kerasc-cache
echo "== GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -3
echo "== libnvrtc"; find / -name 'libnvrtc.so.13*' 2>/dev/null | head -3
echo "== kerasc devices"; "$B/kerasc" devices
# The GPU tests must run here: KERASC_REQUIRE_GPU turns "no GPU" into a failure.
export KERASC_REQUIRE_GPU=1
echo "== GPU op tests (CPU vs GPU per op family)"; KERASC_MODELS="$B/models" timeout 240 "$B/gpu-op-tests" --test-threads 1 2>&1 | grep -E "GPU|test result|panicked|FAILED" | tail -20
echo "== GPU model tests"; KERASC_MODELS="$B/models" timeout 240 "$B/gpu-tests" --nocapture --test-threads 1 2>&1 | tail -25
field() { grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
printf '\n%-20s %-8s %12s %12s %12s %12s\n' model gpu_run naive_b1 opt_b1 naive_b64 opt_b64
for f in $(ls "$B"/models/*.keras "$B"/models/*.onnx | xargs -n1 basename); do
  m=${f%.*}
  if timeout 60 "$B/kerasc" run "$B/models/$f" -i "$B/models/$m.input.npy" -o "/tmp/$m.out.npy" --device /GPU:0 >/dev/null 2>&1; then st=ok; else st=FAIL; fi
  b1=$(timeout 60 "$B/kerasc" bench "$B/models/$f" --device /GPU:0 --batch 1 --runs 20 --json 2>/dev/null)
  b64=$(timeout 60 "$B/kerasc" bench "$B/models/$f" --device /GPU:0 --batch 64 --runs 20 --json 2>/dev/null)
  printf '%-20s %-8s %12.3f %12.3f %12.3f %12.3f\n' "$f" "$st" \
    "$(echo "$b1" | grep -o '"naive":{[^}]*' | field median_ms)" "$(echo "$b1" | grep -o '"optimized":{[^}]*' | field median_ms)" \
    "$(echo "$b64" | grep -o '"naive":{[^}]*' | field median_ms)" "$(echo "$b64" | grep -o '"optimized":{[^}]*' | field median_ms)"
done
# Tensor cores: the optimized plan in each precision against the fp32 naive plan (batch 64).
printf '\n%-20s %-6s %12s %14s\n' model prec opt_b64_ms rel_l2_vs_fp32
for f in mobilenetv2.keras resnet_block.keras transformer.keras; do
  for p in fp32 tf32 bf16 fp16; do
    j=$(timeout 60 "$B/kerasc" bench "$B/models/$f" --device /GPU:0 --batch 64 --runs 20 --precision "$p" --json 2>/dev/null)
    printf '%-20s %-6s %12.3f %14s\n' "$f" "$p" "$(echo "$j" | grep -o '"optimized":{[^}]*' | field median_ms)" "$(echo "$j" | field rel_l2_diff)"
  done
done
# Fine-tuning: ms per epoch (the last of 3, after the kernels are compiled and cached) on the GPU
# (step and optimizer update on the device, weights never copied back per step) and on the CPU.
printf '\n%-12s %14s %14s\n' fit gpu_ms_epoch cpu_ms_epoch
for m in mlp cnn_mnist; do
  g=$(timeout 120 "$B/kerasc" fit "$B/models/$m.h5" --data "$B/models/$m.finetune.npz" --output "/tmp/$m.gpu.h5" --epochs 3 --batch-size 32 --optimizer adam --verbose 2 --device /GPU:0 2>&1 | grep -o ' - [0-9.]*ms - ' | tail -1 | tr -dc '0-9.')
  c=$(timeout 120 "$B/kerasc" fit "$B/models/$m.h5" --data "$B/models/$m.finetune.npz" --output "/tmp/$m.cpu.h5" --epochs 3 --batch-size 32 --optimizer adam --verbose 2 --device /CPU:0 2>&1 | grep -o ' - [0-9.]*ms - ' | tail -1 | tr -dc '0-9.')
  printf '%-12s %14s %14s\n' "$m" "${g:-FAIL}" "${c:-FAIL}"
done
# Two logical GPUs of GPU 0 (tests/gpu.rs checks outputs and a mirrored fit against the CPU):
# the optimized plan on one of them against both, mirrored.
printf '\n%-20s %8s %14s %14s %8s\n' mirrored batch one_gpu_ms two_gpu_ms scaling
for f in cnn_mnist.keras resnet_block.keras mobilenetv2.keras; do
  j=$(timeout 90 "$B/kerasc" --logical-devices gpu:0=2x40GiB bench "$B/models/$f" --batch 256 --runs 20 --strategy mirrored --devices /GPU:0,/GPU:1 --json 2>/dev/null)
  printf '%-20s %8s %14s %14s %8s\n' "$f" 256 "$(echo "$j" | grep -o '"optimized":{[^}]*' | field median_ms)" \
    "$(echo "$j" | grep -o '"mirrored":{"devices[^}]*' | field median_ms)" "$(echo "$j" | field scaling)"
done

# Multi-worker over NCCL (issue 18): one worker named by TF_CONFIG on /GPU:0 (the rendezvous,
# the NCCL id, a one-rank communicator and its all-reduce each step), beside the same fit on one
# GPU without workers. NCCL refuses two ranks on one GPU, so one rank is all this machine holds.
nccl=$(find / -name 'libnccl.so.2*' 2>/dev/null | head -1)
[ -n "$nccl" ] && export LD_LIBRARY_PATH="$(dirname "$nccl"):${LD_LIBRARY_PATH:-}"
printf '\n%-22s %-8s %s\n' multi-worker result "final loss / error (libnccl: ${nccl:-none found})"
for how in one-gpu nccl-worker; do
  args=(fit "$B/models/mlp.h5" --data "$B/models/mlp.finetune.npz" --output "/tmp/mw.$how.h5" --epochs 2 --batch-size 32 --verbose 2)
  if [ "$how" = nccl-worker ]; then
    out=$(TF_CONFIG='{"cluster":{"worker":["127.0.0.1:29411"]},"task":{"type":"worker","index":0}}' KERASC_COLLECTIVE_TIMEOUT=60 timeout 120 "$B/kerasc" "${args[@]}" --strategy multi-worker 2>&1)
  else
    out=$(timeout 120 "$B/kerasc" "${args[@]}" --device /GPU:0 2>&1)
  fi
  if [ $? -eq 0 ]; then st=ok; else st=FAIL; fi
  printf '%-22s %-8s %s\n' "$how" "$st" "$( (echo "$out" | grep -o 'final loss [0-9.]*' || echo "$out" | tail -1) | head -1)"
done
