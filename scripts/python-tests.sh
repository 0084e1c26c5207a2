#!/usr/bin/env bash
# The Python package's tests, as CI runs them: maturin (in target/maturin-venv) builds the abi3
# wheel from python/ into target/wheels, a fresh venv (target/py-test-venv, made anew each time)
# gets numpy, pytest and that wheel, and pytest runs python/tests against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/maturin-venv/bin/maturin ]; then
  python3 -m venv target/maturin-venv
  target/maturin-venv/bin/pip install --quiet --disable-pip-version-check "maturin==1.16.*"
fi
rm -rf target/wheels target/py-test-venv
target/maturin-venv/bin/maturin build --release --quiet -m python/Cargo.toml --out target/wheels
python3 -m venv target/py-test-venv
target/py-test-venv/bin/pip install --quiet --disable-pip-version-check numpy pytest
target/py-test-venv/bin/pip install --quiet --disable-pip-version-check target/wheels/kerasc-*.whl
target/py-test-venv/bin/python -m pytest python/tests -q -p no:cacheprovider "$@"
