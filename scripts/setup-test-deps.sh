#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine. Today: nothing beyond the Rust
# toolchain (HDF5 is read by pure-Rust code). Kept as the one place CI installs from.
set -euo pipefail
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
