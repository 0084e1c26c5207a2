"""ONNX Runtime on ONNX's backend node tests, judged as tests/onnx_node.rs judges kerasc (the
first data set; rtol 1e-3 + atol 1e-5 for floats, exact otherwise): its pass count over the tests
kerasc calls in scope (target/onnx-tests/in_scope.txt, written by that test) and over all.

usage: target/anchor-venv/bin/python scripts/onnx-node-ort.py   (needs onnx and onnxruntime)
"""
import glob
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper as nh

BASE = "target/onnx-tests"
scope = set(open(f"{BASE}/in_scope.txt").read().split())
ort.set_default_logger_severity(4)


def read(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return nh.to_array(t)


def passes(d):
    try:
        sess = ort.InferenceSession(f"{d}/model.onnx", providers=["CPUExecutionProvider"])
        ins = sorted(glob.glob(f"{d}/test_data_set_0/input_*.pb"), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        outs = sorted(glob.glob(f"{d}/test_data_set_0/output_*.pb"), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        names = [i.name for i in sess.get_inputs()]
        feeds = {n: read(p) for n, p in zip(names, ins)}
        got = sess.run(None, feeds)
        for g, p in zip(got, outs):
            w = read(p)
            if np.shape(g) != np.shape(w):
                return False
            if w.dtype.kind == "f":
                if not np.allclose(g, w, rtol=1e-3, atol=1e-5, equal_nan=True):
                    return False
            elif not np.array_equal(g, w):
                return False
        return True
    except Exception:
        return False


results = {os.path.basename(d): passes(d) for d in sorted(glob.glob(f"{BASE}/node/test_*"))}
in_scope = [n for n in results if n in scope]
print(f"ONNX Runtime {ort.__version__}: in scope {sum(results[n] for n in in_scope)} of {len(in_scope)}; "
      f"all node tests {sum(results.values())} of {len(results)}")
