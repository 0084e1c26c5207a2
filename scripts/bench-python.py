"""kerasc.Model.predict against `kerasc bench`'s optimized time, in one process, finely interleaved.

usage: target/py-test-venv/bin/python scripts/bench-python.py [BLOCKS (default 15)] [RUNS (default 40)]
(scripts/python-tests.sh makes that venv with the wheel). For each model and batch, BLOCKS times
in turn: Model.bench(batch_size=b, runs=RUNS) (the dict of `kerasc bench --json`: the optimized
plan's median over RUNS back-to-back runs on tensors already built), then RUNS calls of
Model.predict(x, batch_size=b) on a numpy batch of the same shape (numpy in, numpy out, the
interpreter released while it computes) and their median. This machine's speed drifts by tens
of per cent over seconds, so each block's pair is compared, and the table gives the median of
the per-block ratios beside the two plain medians."""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import kerasc

MODELS = Path(__file__).resolve().parents[1] / "tests" / "models"
CASES = [("mobilenetv2", 1), ("mobilenetv2", 8), ("resnet_block", 8), ("cnn_mnist", 32), ("sepconv", 8), ("transformer", 32), ("lstm", 32), ("gru", 32), ("mlp", 32)]
blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 15
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
print("| model | batch | bench optimized ms | predict ms | overhead (median of per-block ratios) |")
print("|---|---|---|---|---|")
for name, b in CASES:
    path = MODELS / f"{name}.keras"
    if not path.exists():
        continue
    m = kerasc.load(path)
    x0 = np.load(MODELS / f"{name}.input.npy")
    x = np.concatenate([x0] * (b // len(x0) + 1))[:b]
    for _ in range(5):
        m.predict(x, batch_size=b)
    bench, pred, ratio = [], [], []
    for _ in range(blocks):
        k = m.bench(batch_size=b, runs=runs, warmup=3)["optimized"]["median_ms"]
        for _ in range(3):
            m.predict(x, batch_size=b)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            m.predict(x, batch_size=b)
            t.append((time.perf_counter() - t0) * 1e3)
        p = statistics.median(t)
        bench.append(k)
        pred.append(p)
        ratio.append(p / k)
    k, p, r = statistics.median(bench), statistics.median(pred), statistics.median(ratio)
    print(f"| {name} | {b} | {k:.4f} | {p:.4f} | {100 * (r - 1):+.1f} % |", flush=True)
