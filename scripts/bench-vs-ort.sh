#!/usr/bin/env bash
# kerasc against ONNX Runtime on the CPU, side by side: every dev model with an ONNX export, one
# thread each and then all threads, batches 1 and 8, interleaved (for each model and batch, kerasc
# then ORT, so that both see the same machine state), printing ORT's time ÷ kerasc's (above 1:
# kerasc faster) per model and the geomean over the convolutional models and over all.
#
# usage: scripts/bench-vs-ort.sh [BATCHES (default "1,8")] [THREADS (default "1,all")] [RUNS (default 50)]
# kerasc: `kerasc bench --threads T --json`, the optimized plan's median. ORT: ../shared/bench/ort_anchor.py
# (all graph optimizations, intra_op_num_threads T) on tests/models/NAME.onnx, its median. The
# Python with onnxruntime is made in target/anchor-venv on first use (as scripts/bench-anchors.sh).
# DIR (default tests/models) holds the models; KERASC_EXT (default keras) is the file kerasc runs
# (onnx: both run the same file); CONV names the convolutional models of the first geomean.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${1:-1,8}
THREADS=${2:-1,all}
RUNS=${3:-50}
ANCHORS=${ANCHORS:-../shared/bench}
VENV=target/anchor-venv
DIR=${DIR:-tests/models}
KERASC_EXT=${KERASC_EXT:-keras}
CONV=${CONV:-"cnn_mnist resnet_block sepconv mobilenetv2 conv1d pool_pad_up"}
MODELS=${MODELS:-"$CONV mlp text_embed lstm gru activations reshape_ln transformer long_names"}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import onnxruntime' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime numpy
fi
cargo build --release --quiet
ALL=$(nproc)
work=$(mktemp -d)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $ALL cores; $(date -u +%F)" >&2
"$VENV/bin/python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__)' >&2
for t in ${THREADS//,/ }; do
  [ "$t" = all ] && t=$ALL
  for m in $MODELS; do
    [ -f "$DIR/$m.onnx" ] || continue
    for b in ${BATCHES//,/ }; do
      k=$(target/release/kerasc bench "$DIR/$m.$KERASC_EXT" --threads "$t" --batch "$b" --runs "$RUNS" --warmup 5 --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["optimized"]["median_ms"])')
      o=$("$VENV/bin/python" "$ANCHORS/ort_anchor.py" --batches "$b" --runs "$RUNS" --threads "$t" "$DIR/$m.onnx" |
        grep '^{' | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["median_ms"])')
      echo "$t $m $b $k $o" >>"$work/rows"
    done
  done
done
python3 - "$work/rows" "$CONV" <<'PY'
import math, sys
rows = [l.split() for l in open(sys.argv[1])]
conv = set(sys.argv[2].split())
geo = lambda v: math.exp(sum(map(math.log, v)) / len(v)) if v else float("nan")
for t in dict.fromkeys(r[0] for r in rows):
    print(f"\n{t} thread(s)\n")
    print("| model | batch | kerasc ms | ORT ms | ORT ÷ kerasc |")
    print("|---|---|---|---|---|")
    ratios = {}
    for _, m, b, k, o in (r for r in rows if r[0] == t):
        q = float(o) / float(k)
        ratios.setdefault(b, []).append((m, q))
        print(f"| {m} | {b} | {float(k):.3f} | {float(o):.3f} | {q:.2f} |")
    for b, v in ratios.items():
        c = [q for m, q in v if m in conv]
        print(f"\nbatch {b}: geomean {geo([q for _, q in v]):.2f} over {len(v)} models, "
              f"{geo(c):.2f} over the {len(c)} convolutional ones; lowest {min(q for _, q in v):.2f}")
PY
