#!/usr/bin/env bash
# Runs every model of the real-world check set (target/realworld, made by
# scripts/make-realworld.py; generated on first use) through `kerasc run`, optimized and naive,
# and prints one line per model and format: the largest difference from Keras's output and
# whether it is within atol 1e-4 + rtol 1e-3. Exits non-zero if any is not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/fit-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "keras==3.15.*" jax h5py numpy; }
[ -n "$(ls target/realworld/*.expected.npy 2>/dev/null)" ] || KERAS_BACKEND=jax "$VENV/bin/python" scripts/make-realworld.py
cargo build --release --quiet
tmp=$(mktemp -d)
fail=0
for want in target/realworld/*.expected.npy; do
  name=$(basename "$want" .expected.npy)
  for ext in keras h5; do
    m=target/realworld/$name.$ext
    [ -e "$m" ] || continue
    for mode in optimized naive; do
      flag=""; [ $mode = naive ] && flag=--naive
      if ! err=$(target/release/kerasc run "$m" --input "target/realworld/$name.input0.npy" --output "$tmp/out.npy" $flag 2>&1 >/dev/null); then
        printf '%-18s %-6s %-9s FAIL  %s\n' "$name" "$ext" "$mode" "$(echo "$err" | grep -v '^running on' | head -1)"
        fail=1; continue
      fi
      line=$("$VENV/bin/python" - "$tmp/out.npy" "$want" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]).astype("float64"), np.load(sys.argv[2]).astype("float64")
ok = a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-4 + 1e-3 * np.abs(b)))
d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
print(("ok   " if ok else "DIFF ") + f"max |kerasc - keras| {d:.2e} (|keras| up to {np.abs(b).max():.2e})")
PY
)
      printf '%-18s %-6s %-9s %s\n' "$name" "$ext" "$mode" "$line"
      case $line in ok*) ;; *) fail=1 ;; esac
    done
  done
done
rm -rf "$tmp"
exit $fail
