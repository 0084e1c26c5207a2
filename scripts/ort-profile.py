#!/usr/bin/env python3
"""ONNX Runtime's own per-node times on a model, to set beside `kerasc bench --profile`.

usage: target/anchor-venv/bin/python scripts/ort-profile.py MODEL.onnx [BATCH (8)] [THREADS (1)] [RUNS (30)]

Runs the model RUNS times on a seeded random batch with all graph optimizations and ORT's
profiler on, then prints the mean time per run of every node ORT actually ran (its fused nodes,
e.g. `conv28_nchwc`, `QuickGelu` for x·sigmoid(x)), most expensive first, with its output shape.
The profiler's JSON file is removed afterwards.
"""
import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort

path = sys.argv[1]
batch, threads, runs = (int(a) for a in (sys.argv[2:] + ["8", "1", "30"][len(sys.argv) - 2:])[:3])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.enable_profiling = True
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal([batch] + list(i.shape[1:])).astype(np.float32)
for _ in range(runs):
    s.run(None, {i.name: x})
prof = s.end_profiling()
events = [e for e in json.load(open(prof)) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
os.remove(prof)
total, count, info = collections.defaultdict(float), collections.Counter(), {}
for e in events:
    n = e["name"][: -len("_kernel_time")]
    total[n] += e["dur"]
    count[n] += 1
    info[n] = (e["args"].get("op_name", "?"), e["args"].get("output_type_shape"))
per_run = {n: total[n] / count[n] / 1000 for n in total}
print(f"{os.path.basename(path)} batch {batch}, {threads} thread(s): {sum(per_run.values()):.3f} ms per run in nodes")
for n, ms in sorted(per_run.items(), key=lambda kv: -kv[1]):
    print(f"{ms:8.3f} ms  {info[n][0]:14s} {n[:40]:40s} {info[n][1]}")
