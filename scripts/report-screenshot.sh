#!/usr/bin/env bash
# Renders a `kerasc bench --report` page headless with Chromium and saves a screenshot, to check
# the report by eye. usage: scripts/report-screenshot.sh MODEL OUT.png [BATCH]
# Needs Chromium (Debian: apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; PNG=$2; BATCH=${3:-1}
[ -x target/release/kerasc ] || cargo build --release --quiet
html=$(mktemp --suffix=.html)
target/release/kerasc bench "$MODEL" --batch "$BATCH" --runs 5 --report "$html" >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1600 \
  --screenshot="$(realpath -m "$PNG")" "file://$html" 2>/dev/null
rm -f "$html"
echo "wrote $PNG"
