#!/usr/bin/env bash
# ONNX's own test data for tests/onnx_node.rs: the backend node tests (one small model per op
# and attribute case, with inputs and expected outputs) and the light model-zoo files, taken from
# the onnx wheel, pinned (1.16.2: the last release that ships the node tests' data in its
# wheel), into target/onnx-tests/{node,light}. Only the wheel's data is used: nothing is
# installed and onnx is never imported.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNX_VERSION=1.16.2
out=target/onnx-tests
if [ -e "$out/.version" ] && [ "$(cat "$out/.version")" = "$ONNX_VERSION" ]; then
  echo "ONNX test data: $(ls "$out/node" | wc -l) node tests in $out (onnx $ONNX_VERSION)"
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
