"""ONNX's light model-zoo files (the onnx wheel's backend/test/data/light: AlexNet, DenseNet-121,
Inception v1 and v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; opset 9, written by
other frameworks' converters) with seeded random weights in place of their ConstantOfShape
fills, a seeded random input, and ONNX Runtime's output: target/onnx-tests/light-random/,
which tests/onnx_light.rs runs through kerasc.

usage: python scripts/make-light-models.py [SRC (target/onnx-tests/light)] [OUT]
(needs onnx, onnxruntime and numpy; scripts/onnx-tests-data.sh fetches SRC)
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper as nh

SRC = sys.argv[1] if len(sys.argv) > 1 else "target/onnx-tests/light"
OUT = sys.argv[2] if len(sys.argv) > 2 else "target/onnx-tests/light-random"
os.makedirs(OUT, exist_ok=True)


def weight(rng, shape, op, slot):
    """A value of the kind its consumer expects: fan-in scaled weights, small biases, batch-norm
    statistics and scales near 1 (so that the activations stay in range through 50+ layers)."""
    shape = tuple(int(d) for d in shape)
    if op == "BatchNormalization":
        if slot in (1, 4):  # scale, variance
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)
    if op in ("Conv", "Gemm", "MatMul") and slot == 1 and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if op == "Conv" else shape[0] if op == "MatMul" else shape[-1]
        return rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), shape)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0, 0.1, shape)


for name in sorted(f[:-5] for f in os.listdir(SRC) if f.endswith(".onnx")):
    rng = np.random.default_rng(sum(map(ord, name)))
    m = onnx.load(os.path.join(SRC, f"{name}.onnx"))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consumers = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            consumers.setdefault(i, (n.op_type, k))
    produced = {o for n in g.node for o in n.output}
    # ConstantOfShape fills of a known shape become random initializers.
    keep = []
    new_inits = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = nh.to_array(inits[n.input[0]])
            op, slot = consumers.get(n.output[0], ("", 0))
            new_inits.append(nh.from_array(weight(rng, shape, op, slot).astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    have = {t.name for t in g.initializer}
    # Inputs that nothing feeds but weights (listed as inputs by old converters) get values too.
    data = [i for i in g.input if i.name not in have and i.name not in produced]
    feeds = {}
    for i in data:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
        op, slot = consumers.get(i.name, ("", 0))
        if i is data[0]:
            feeds[i.name] = rng.normal(0, 1, dims).astype(np.float32)
        else:
            g.initializer.append(nh.from_array(weight(rng, dims, op, slot).astype(np.float32), i.name))
    inputs = [i for i in g.input if i.name in feeds]
    del g.input[:]
    g.input.extend(inputs)
    # Drop initializers nothing reads (the ConstantOfShape shapes).
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    # A softmax saturates on random weights (one class at 1.0): its logits are an output too.
    for n in g.node:
        if n.op_type == "Softmax" and n.output[0] in {o.name for o in g.output}:
            g.output.append(onnx.helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None))
    path = os.path.join(OUT, f"{name}.onnx")
    onnx.save(m, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    for k, x in enumerate(feeds.values()):
        np.save(os.path.join(OUT, f"{name}.input{k}.npy"), x)
    for k, y in enumerate(outs):
        np.save(os.path.join(OUT, f"{name}.expected{k}.npy"), y.astype(np.float32))
    print(name, "opset", m.opset_import[0].version, {k: v.shape for k, v in feeds.items()}, [o.shape for o in outs],
          f"{os.path.getsize(path) / 1e6:.1f} MB")
