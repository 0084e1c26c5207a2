"""Writes ONNX models of the kinds the dev set lacks (a VGG, a U-Net, an EfficientNet-style
MBConv stack with squeeze-excitation and swish, a Conv3D net, group/instance/layer
normalization), seeded, for scripts/bench-unseen.sh: kerasc and ONNX Runtime time the same
file, so the comparison needs no exporter. None of these were used to tune the kernels.
usage: target/anchor-venv/bin/python scripts/make-unseen-onnx.py OUTDIR   (needs `onnx`, numpy)
"""
import sys, os
import numpy as np
import onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh

rng = np.random.default_rng(20261130)
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)


class G:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def w(self, shape, scale=None):
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        a = (rng.standard_normal(shape) * (scale or (1.0 / np.sqrt(fan)))).astype(np.float32)
        n = self.name("w")
        self.inits.append(nh.from_array(a, n))
        return n

    def op(self, t, ins, **kw):
        o = self.name(t.lower())
        self.nodes.append(h.make_node(t, ins, [o], **kw))
        return o

    def conv(self, x, cin, cout, k, s=1, group=1, act="relu", nd=2):
        p = k // 2
        y = self.op("Conv", [x, self.w([cout, cin // group] + [k] * nd), self.w([cout], 0.1)],
                    kernel_shape=[k] * nd, strides=[s] * nd, pads=[p] * (2 * nd), group=group)
        if act == "relu":
            y = self.op("Relu", [y])
        elif act == "swish":
            y = self.op("Mul", [y, self.op("Sigmoid", [y])])
        return y

    def save(self, name, x_shape, y, inp="x", opset=18, out_shape=None):
        g = h.make_graph(self.nodes, name, [h.make_tensor_value_info(inp, T.FLOAT, x_shape)],
                         [h.make_tensor_value_info(y, T.FLOAT, None)], self.inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
        m.ir_version = 8
        # The output's shape as ONNX infers it (the checker wants one).
        inferred = onnx.shape_inference.infer_shapes(m)
        if out_shape is None:
            m.graph.output[0].CopyFrom(inferred.graph.output[0])
        else:
            m.graph.output[0].CopyFrom(h.make_tensor_value_info(y, T.FLOAT, out_shape))
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, f"{OUT}/{name}.onnx")


# VGG: 3x3 stacks and max-pooling, 64x64 input, then a dense head.
g = G(); x = "x"; c = 3
for cout, reps in [(16, 2), (32, 2), (64, 3), (64, 3)]:
    for _ in range(reps):
        x = g.conv(x, c, cout, 3); c = cout
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
x = g.op("Flatten", [x])
x = g.op("Gemm", [x, g.w([64 * 4 * 4, 10]), g.w([10], 0.1)])
g.save("vgg", ["N", 3, 64, 64], x)

# U-Net: two down levels, a bottleneck, transposed-conv up-sampling and skip concatenations.
g = G(); x = "x"
e1 = g.conv(g.conv(x, 3, 16, 3), 16, 16, 3)
e2 = g.conv(g.conv(g.op("MaxPool", [e1], kernel_shape=[2, 2], strides=[2, 2]), 16, 32, 3), 32, 32, 3)
b = g.conv(g.conv(g.op("MaxPool", [e2], kernel_shape=[2, 2], strides=[2, 2]), 32, 64, 3), 64, 64, 3)
u2 = g.op("ConvTranspose", [b, g.w([64, 32, 2, 2]), g.w([32], 0.1)], kernel_shape=[2, 2], strides=[2, 2])
d2 = g.conv(g.conv(g.op("Concat", [u2, e2], axis=1), 64, 32, 3), 32, 32, 3)
u1 = g.op("ConvTranspose", [d2, g.w([32, 16, 2, 2]), g.w([16], 0.1)], kernel_shape=[2, 2], strides=[2, 2])
d1 = g.conv(g.conv(g.op("Concat", [u1, e1], axis=1), 32, 16, 3), 16, 16, 3)
y = g.conv(d1, 16, 1, 1, act=None)
g.save("unet", ["N", 3, 64, 64], g.op("Sigmoid", [y]))

# EfficientNet-style: a stride-2 stem, MBConv blocks (1x1 expand, depthwise, squeeze-excitation,
# 1x1 project, residual where shapes match), swish everywhere, global pooling and a head.
g = G(); x = g.conv("x", 3, 16, 3, s=2, act="swish"); c = 16
for cout, k, s, e in [(16, 3, 1, 1), (24, 3, 2, 6), (24, 3, 1, 6), (40, 5, 2, 6), (40, 5, 1, 6), (80, 3, 2, 6)]:
    inp = x; ce = c * e
    if e != 1:
        x = g.conv(x, c, ce, 1, act="swish")
    x = g.conv(x, ce, ce, k, s=s, group=ce, act="swish")
    se = g.op("GlobalAveragePool", [x])
    se = g.conv(se, ce, max(1, c // 4), 1, act="swish")
    se = g.op("Sigmoid", [g.conv(se, max(1, c // 4), ce, 1, act=None)])
    x = g.op("Mul", [x, se])
    x = g.conv(x, ce, cout, 1, act=None)
    if s == 1 and cout == c:
        x = g.op("Add", [x, inp])
    c = cout
x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
g.save("efficientnet", ["N", 3, 96, 96], g.op("Gemm", [x, g.w([c, 10]), g.w([10], 0.1)]))

# Conv3D: a small video/volume net, 3x3x3 convolutions, 3-D pooling.
g = G(); x = g.conv("x", 1, 8, 3, nd=3)
x = g.op("MaxPool", [x], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
x = g.conv(x, 8, 16, 3, nd=3)
x = g.op("MaxPool", [x], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
x = g.conv(x, 16, 32, 3, nd=3)
x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
g.save("conv3d", ["N", 1, 16, 32, 32], g.op("Gemm", [x, g.w([32, 5]), g.w([5], 0.1)]))

# Normalization layers after convolutions: group norm, instance norm, layer norm over channels.
g = G(); x = g.conv("x", 3, 32, 3, act=None)
x = g.op("GroupNormalization", [x, g.w([32], 1.0), g.w([32], 0.1)], num_groups=8, epsilon=1e-5)
x = g.conv(g.op("Relu", [x]), 32, 32, 3, act=None)
x = g.op("InstanceNormalization", [x, g.w([32], 1.0), g.w([32], 0.1)], epsilon=1e-5)
x = g.op("Transpose", [g.op("Relu", [x])], perm=[0, 2, 3, 1])
x = g.op("LayerNormalization", [x, g.w([32], 1.0), g.w([32], 0.1)], axis=-1, epsilon=1e-5)
x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
g.save("norms", ["N", 3, 48, 48], g.op("Gemm", [x, g.w([32, 4]), g.w([4], 0.1)]), opset=21, out_shape=["N", 4])
print("wrote", sorted(os.listdir(OUT)))
