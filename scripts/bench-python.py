"""kerasc.Model.predict against `kerasc bench`'s optimized time, in one process, interleaved.

usage: target/py-test-venv/bin/python scripts/bench-python.py [RUNS (default 200)]
(scripts/python-tests.sh makes that venv with the wheel). For each model and batch: the
optimized plan's median from Model.bench (the dict of `kerasc bench --json`, the plan run on
tensors already built), then the median of Model.predict(x, batch_size=b) on a numpy batch of
the same shape (numpy in, numpy out, the interpreter released while it computes), three rounds
of each, the lowest median of each kept. Prints a Markdown table with predict's overhead."""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import kerasc

MODELS = Path(__file__).resolve().parents[1] / "tests" / "models"
CASES = [("mobilenetv2", 1), ("mobilenetv2", 8), ("resnet_block", 8), ("cnn_mnist", 32), ("sepconv", 8), ("transformer", 32), ("lstm", 32), ("mlp", 32)]
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
print("| model | batch | bench optimized ms | predict ms | overhead |")
print("|---|---|---|---|---|")
for name, b in CASES:
    m = kerasc.load(MODELS / f"{name}.keras")
    x0 = np.load(MODELS / f"{name}.input.npy")
    x = np.concatenate([x0] * (b // len(x0) + 1))[:b]
    bench, pred = [], []
    for _ in range(3):
        bench.append(m.bench(batch_size=b, runs=runs, warmup=5)["optimized"]["median_ms"])
        for _ in range(5):
            m.predict(x, batch_size=b)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            m.predict(x, batch_size=b)
            t.append((time.perf_counter() - t0) * 1e3)
        pred.append(statistics.median(t))
    k, p = min(bench), min(pred)
    print(f"| {name} | {b} | {k:.4f} | {p:.4f} | {100 * (p / k - 1):+.1f} % |")
