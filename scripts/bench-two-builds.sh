#!/usr/bin/env bash
# Two builds of kerasc on the dev models, interleaved: `kerasc bench` of each binary in turn,
# three rounds, the best optimized median of each (60 runs), and the ratio after/before.
# usage: scripts/bench-two-builds.sh OLD_KERASC NEW_KERASC [EXT (onnx)] [BATCHES ("1 8")]
# (an old build: git worktree add /tmp/old REV && CARGO_TARGET_DIR=/tmp/oldtarget cargo build
# --release --bin kerasc, in /tmp/old).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 EXT=${3:-onnx} BATCHES=${4:-"1 8"}
median() { python3 -c "import json,sys; print(json.load(sys.stdin)['optimized']['median_ms'])"; }
printf "| model | batch | before ms | after ms | after/before |\n|---|---|---|---|---|\n"
for m in mlp cnn_mnist resnet_block sepconv mobilenetv2 text_embed lstm gru conv1d activations pool_pad_up reshape_ln transformer long_names; do
  for b in $BATCHES; do
    o=1e9 n=1e9
    for _ in 1 2 3; do
      x=$("$OLD" bench "tests/models/$m.$EXT" --batch "$b" --runs 60 --warmup 5 --json 2>/dev/null | median)
      y=$("$NEW" bench "tests/models/$m.$EXT" --batch "$b" --runs 60 --warmup 5 --json 2>/dev/null | median)
      o=$(python3 -c "print(min($o, $x))") n=$(python3 -c "print(min($n, $y))")
    done
    python3 -c "print(f'| $m | $b | {$o:.4f} | {$n:.4f} | {$n / $o:.2f} |')"
  done
done
