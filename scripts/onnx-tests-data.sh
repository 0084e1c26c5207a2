#!/usr/bin/env bash
# ONNX's own test data: the backend node tests (tests/onnx_node.rs: one small model per op and
# attribute case, with inputs and expected outputs) and the light model-zoo files, taken from the
# onnx wheel, pinned (1.16.2: the last release that ships the node tests' data in its wheel),
# into target/onnx-tests/{node,light}; then the light models with seeded random weights and ONNX
# Runtime's outputs (tests/onnx_light.rs; ~1.4 GB, made by scripts/make-light-models.py in a venv
# of onnx and onnxruntime, target/onnx-venv) into target/onnx-tests/light-random.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNX_VERSION=1.16.2
out=target/onnx-tests
light() {
  if [ ! -e "$out/light-random/.done" ]; then
    if [ ! -x target/onnx-venv/bin/python ]; then
      python3 -m venv target/onnx-venv
      target/onnx-venv/bin/pip install --quiet --disable-pip-version-check numpy "onnx==1.23.*" "onnxruntime==1.23.*"
    fi
    target/onnx-venv/bin/python scripts/make-light-models.py "$out/light" "$out/light-random" >/dev/null
    touch "$out/light-random/.done"
  fi
  echo "ONNX light models: $(ls "$out"/light-random/*.onnx | wc -l) with random weights in $out/light-random"
}
if [ -e "$out/.version" ] && [ "$(cat "$out/.version")" = "$ONNX_VERSION" ]; then
  echo "ONNX test data: $(ls "$out/node" | wc -l) node tests in $out (onnx $ONNX_VERSION)"
  light
  exit 0
fi
rm -rf "$out" target/onnx-wheel
mkdir -p target/onnx-wheel "$out"
# Any CPython wheel of that release holds the same data; pick one pip can fetch here.
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
  "onnx==$ONNX_VERSION" -d target/onnx-wheel 2>/dev/null \
  || python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
       --python-version 3.11 --platform manylinux2014_x86_64 "onnx==$ONNX_VERSION" -d target/onnx-wheel
wheel=$(ls target/onnx-wheel/onnx-"$ONNX_VERSION"-*.whl | head -1)
python3 - "$wheel" "$out" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
prefix = "onnx/backend/test/data/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix + "node/") or name.startswith(prefix + "light/"):
            rel = name[len(prefix):]
            if name.endswith("/"):
                continue
            dest = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as dst:
                dst.write(src.read())
PY
echo "$ONNX_VERSION" > "$out/.version"
rm -rf target/onnx-wheel
echo "ONNX test data: $(ls "$out/node" | wc -l) node tests in $out (onnx $ONNX_VERSION)"
light
