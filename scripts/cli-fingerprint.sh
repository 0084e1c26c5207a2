#!/usr/bin/env bash
# Prints what the CLI says and writes for every model in tests/models (inspect, compile --emit,
# run optimized and naive, fit, devices, the --help texts), with times blanked and written files
# replaced by their sha256: diff the output of two builds to show a refactor changed nothing.
# usage: scripts/cli-fingerprint.sh [path/to/kerasc] > fingerprint.txt
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/kerasc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
blank_times() { sed -E 's/ +[0-9]+(\.[0-9]+)? (ms|s)\b/ <t> \2/g; s/\b[0-9]+(\.[0-9]+)?(ms|s)\b/<t>\2/g'; }
say() {
  echo "\$ kerasc $*" | sed "s#$tmp#<tmp>#g"
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
  echo "exit $?"
  blank_times <"$tmp/out" | sed "s#$tmp#<tmp>#g"
  echo "-- stderr"
  grep -v '^running on' "$tmp/err" | blank_times | sed "s#$tmp#<tmp>#g"
}
hash_of() { if [ -e "$1" ]; then sha256sum "$1" | cut -c1-16; else echo "(none)"; fi; }
models=$(ls tests/models/*.keras tests/models/*.h5 tests/models/*.onnx tests/models/onnx/*.onnx \
  tests/models/extra/*.keras tests/models/extra/*.h5 tests/models/train/*.h5 2>/dev/null | grep -v '\.finetuned\.h5$\|\.trained\.h5$')
for m in $models; do
  say inspect "$m"
  say inspect --json "$m"
  for e in ir optimized plan dot; do say compile "$m" --emit "$e"; done
  base=${m%.k2.h5}; base=${base%.h5}; base=${base%.keras}; base=${base%.onnx}
  inputs=()
  for i in "$base.input.npy" "$base".input{0,1,2,3}.npy; do [ -e "$i" ] && inputs+=(--input "$i"); done
  if [ ${#inputs[@]} -gt 0 ]; then
    for naive in "" --naive; do
      rm -f "$tmp/y.npy" "$tmp"/y*.npy
      outs=(--output "$tmp/y.npy")
      [ -e "$base.expected1.npy" ] && outs+=(--output "$tmp/y1.npy")
      [ -e "$base.expected2.npy" ] && outs+=(--output "$tmp/y2.npy")
      say run "$m" "${inputs[@]}" "${outs[@]}" $naive
      echo "output $(hash_of "$tmp/y.npy") $(hash_of "$tmp/y1.npy") $(hash_of "$tmp/y2.npy")"
    done
  fi
done
for m in mlp cnn_mnist; do
  for ext in h5 keras; do
    rm -f "$tmp/ft.$ext" "$tmp/h.json"
    say fit "tests/models/$m.$ext" --data "tests/models/$m.finetune.npz" --output "$tmp/ft.$ext" --epochs 2 \
      --batch-size 16 --optimizer sgd --learning-rate 0.01 --no-shuffle --no-dropout --verbose 2 --history "$tmp/h.json"
    echo "model $(hash_of "$tmp/ft.$ext") history $(hash_of "$tmp/h.json")"
  done
done
rm -f "$tmp/ft.h5"
say fit tests/models/mlp.h5 --data tests/models/mlp.finetune.npz --output "$tmp/ft.h5" --epochs 2 --optimizer adam \
  --metrics accuracy --validation-split 0.2 --seed 3 --verbose 2
echo "model $(hash_of "$tmp/ft.h5")"
say devices
for c in "" inspect run compile bench fit devices; do say $c --help; done
