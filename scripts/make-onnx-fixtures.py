"""Makes tests/models/onnx: small ONNX models (native channels-first layouts, opsets 11-21, the
ops tf2onnx does not emit for the dev set) with an input and ONNX Runtime's output, so that
tests/onnx.rs can check kerasc's ONNX frontend without Python at test time.
usage: python scripts/make-onnx-fixtures.py   (needs onnx and onnxruntime)
"""
import os
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh

OUT = "tests/models/onnx"
rng = np.random.default_rng(11)


def w(name, *shape, scale=0.5):
    return nh.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def i64(name, vals):
    return nh.from_array(np.array(vals, dtype=np.int64), name)


def f32(name, vals):
    return nh.from_array(np.array(vals, dtype=np.float32), name)


def save(name, nodes, inputs, outputs, inits, opset=17, feeds=None, external=False):
    g = h.make_graph(nodes, name, inputs, outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], producer_name="kerasc-fixtures")
    m.ir_version = 8
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        if "shape" not in str(e):  # outputs are declared without shapes on purpose
            raise
    path = f"{OUT}/{name}.onnx"
    if external:
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{name}.weights", size_threshold=64)
    else:
        onnx.save(m, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    for k, (iname, x) in enumerate(feeds.items()):
        np.save(f"{OUT}/{name}.input{k}.npy", x)
    for k, y in enumerate(outs):
        np.save(f"{OUT}/{name}.expected{k}.npy", y.astype(np.float32))
    print(name, [o.shape for o in outs])


def inp(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


x4 = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)

# 1. A channels-first CNN: Conv (pads, stride 2, groups) + BatchNormalization + Relu, pooling with
#    padding, global pooling, Flatten, Gemm (transB) and Softmax.
save("nchw_cnn", [
    h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1]),
    h.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
    h.make_node("Relu", ["bn"], ["r1"]),
    h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    h.make_node("Conv", ["p1", "w2"], ["c2"], group=2, strides=[2, 2], dilations=[1, 1], auto_pad="SAME_UPPER",
                kernel_shape=[3, 3]),
    h.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
    h.make_node("GlobalAveragePool", ["p2"], ["gp"]),
    h.make_node("Flatten", ["gp"], ["fl"]),
    h.make_node("Gemm", ["fl", "wd", "bd"], ["logits"], transB=1),
    h.make_node("Softmax", ["logits"], ["y"]),
], [inp("x", T.FLOAT, ["N", 4, 9, 9])], [inp("y", T.FLOAT, ["N", 5])],
    [w("w1", 8, 4, 3, 3), w("b1", 8), f32("g", rng.uniform(0.5, 1.5, 8)), w("be", 8), w("mu", 8),
     f32("var", rng.uniform(0.5, 2, 8)), w("w2", 6, 4, 3, 3), w("wd", 5, 6), w("bd", 5)],
    feeds={"x": x4})

# 2. Normalizations, padding, resizing, split/slice/concat and activations.
save("norms_resize", [
    h.make_node("InstanceNormalization", ["x", "s4", "b4"], ["in"], epsilon=1e-5),
    h.make_node("Pad", ["in", "pads", "pv"], ["pd"], mode="constant"),
    h.make_node("Resize", ["pd", "", "sc"], ["up"], mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor"),
    h.make_node("Resize", ["in", "", "sc"], ["lin"], mode="linear", coordinate_transformation_mode="half_pixel"),
    h.make_node("Split", ["lin", "split"], ["s0", "s1"], axis=1),
    h.make_node("LeakyRelu", ["s0"], ["a0"], alpha=0.2),
    h.make_node("HardSigmoid", ["s1"], ["a1"], alpha=0.3, beta=0.4),
    h.make_node("Concat", ["a1", "a0"], ["cat"], axis=1),
    h.make_node("Slice", ["cat", "st", "en", "ax", "stp"], ["sl"]),
    h.make_node("Transpose", ["sl"], ["tr"], perm=[0, 2, 3, 1]),
    h.make_node("LayerNormalization", ["tr", "lg", "lb"], ["ln"], axis=-1, epsilon=1e-5),
    h.make_node("HardSwish", ["ln"], ["y1"]),
    h.make_node("Clip", ["up", "lo", "hi"], ["y0"]),
], [inp("x", T.FLOAT, ["N", 4, 9, 9])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [w("s4", 4), w("b4", 4), i64("pads", [0, 0, 1, 2, 0, 0, 2, 1]), f32("pv", 0.25),
     f32("sc", [1, 1, 2, 2]), i64("split", [1, 3]), i64("st", [0, 1, -1]), i64("en", [4, 18, -19]),
     i64("ax", [1, 2, 3]), i64("stp", [1, 2, -2]), w("lg", 4), w("lb", 4), f32("lo", -0.5), f32("hi", 0.7)],
    feeds={"x": x4})

# 3. Comparisons, logic, Where, variadic and reduction ops (opset 18: axes as inputs).
x2 = rng.standard_normal((3, 5, 6)).astype(np.float32)
save("logic_reduce", [
    h.make_node("Greater", ["x", "half"], ["gt"]),
    h.make_node("Neg", ["x"], ["nx"]),
    h.make_node("Where", ["gt", "x", "nx"], ["wh"]),
    h.make_node("Equal", ["gt", "gt"], ["eq"]),
    h.make_node("Not", ["gt"], ["ng"]),
    h.make_node("And", ["eq", "ng"], ["an"]),
    h.make_node("Cast", ["an"], ["anf"], to=T.FLOAT),
    h.make_node("Max", ["wh", "anf", "x"], ["mx"]),
    h.make_node("Mean", ["mx", "x"], ["mn"]),
    h.make_node("Sum", ["mn", "anf", "wh"], ["sm"]),
    h.make_node("ReduceMax", ["sm", "ax1"], ["r0"], keepdims=1),
    h.make_node("ReduceSum", ["sm", "ax2"], ["r1"], keepdims=0),
    h.make_node("ReduceL2", ["sm", "ax2"], ["r2"], keepdims=0),
    h.make_node("Abs", ["r2"], ["ab"]),
    h.make_node("Pow", ["ab", "two"], ["pw"]),
    h.make_node("Sqrt", ["pw"], ["y2"]),
    h.make_node("Sub", ["sm", "r0"], ["y0"]),
    h.make_node("Add", ["r1", "y2"], ["y1"]),
], [inp("x", T.FLOAT, ["N", 5, 6])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [f32("half", 0.3), i64("ax1", [1]), i64("ax2", [-1]), f32("two", 2.0)], opset=18, feeds={"x": x2})

# 4. Recurrent ops: a bidirectional LSTM with biases, a reverse GRU (linear_before_reset=0), an RNN.
xs = rng.standard_normal((2, 7, 5)).astype(np.float32)  # (N, T, F)
H = 6
save("rnns", [
    h.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
    h.make_node("LSTM", ["xt", "lw", "lr", "lb"], ["ly", "lh"], hidden_size=H, direction="bidirectional"),
    h.make_node("GRU", ["xt", "gw", "gr", "gb"], ["gy", "gh"], hidden_size=H, direction="reverse",
                linear_before_reset=0),
    h.make_node("GRU", ["xt", "g2w", "g2r", "g2b"], ["g2y"], hidden_size=H, linear_before_reset=1),
    h.make_node("RNN", ["xt", "rw", "rr", "rb"], ["ry", "rh"], hidden_size=H),
    h.make_node("Transpose", ["ly"], ["y0"], perm=[2, 0, 1, 3]),
    h.make_node("Concat", ["lh", "gh", "rh"], ["y1"], axis=0),
    h.make_node("Add", ["gy", "ry"], ["s"]),
    h.make_node("Add", ["s", "g2y"], ["y2"]),
], [inp("x", T.FLOAT, ["N", 7, 5])], [inp(n, T.FLOAT, None) for n in ["y0", "y1", "y2"]],
    [w("lw", 2, 4 * H, 5), w("lr", 2, 4 * H, H), w("lb", 2, 8 * H), w("gw", 1, 3 * H, 5), w("gr", 1, 3 * H, H),
     w("gb", 1, 6 * H), w("g2w", 1, 3 * H, 5), w("g2r", 1, 3 * H, H), w("g2b", 1, 6 * H),
     w("rw", 1, H, 5), w("rr", 1, H, H), w("rb", 1, 2 * H)], feeds={"x": xs})

# 5. Control flow: a Loop with a known trip count (loop-carried state and a scan output) and an If
#    with a constant condition.
body = h.make_graph([
    h.make_node("Cast", ["i"], ["fi"], to=T.FLOAT),
    h.make_node("Mul", ["v", "k"], ["vk"]),
    h.make_node("Add", ["vk", "fi"], ["v2"]),
    h.make_node("Tanh", ["v2"], ["v_out"]),
    h.make_node("Identity", ["c"], ["c_out"]),
    h.make_node("ReduceMean", ["v_out"], ["scan"], axes=[1], keepdims=0),
], "body", [inp("i", T.INT64, []), inp("c", T.BOOL, []), inp("v", T.FLOAT, ["N", 4])],
    [inp("c_out", T.BOOL, []), inp("v_out", T.FLOAT, ["N", 4]), inp("scan", T.FLOAT, ["N"])], [f32("k", 1.5)])
then_g = h.make_graph([h.make_node("Neg", ["z"], ["t_out"])], "then", [], [inp("t_out", T.FLOAT, None)])
else_g = h.make_graph([h.make_node("Abs", ["z"], ["e_out"])], "else", [], [inp("e_out", T.FLOAT, None)])
xl = rng.standard_normal((2, 4)).astype(np.float32)
save("loop_if", [
    h.make_node("Loop", ["trip", "cond", "x"], ["vf", "scans"], body=body),
    h.make_node("Transpose", ["scans"], ["y1"], perm=[1, 0]),
    h.make_node("Identity", ["vf"], ["z"]),
    h.make_node("If", ["flag"], ["y0"], then_branch=then_g, else_branch=else_g),
], [inp("x", T.FLOAT, ["N", 4])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [i64("trip", 3), nh.from_array(np.array(True), "cond"), nh.from_array(np.array(False), "flag")],
    opset=13, feeds={"x": xl})

# 6. Opset 11: attribute forms (Squeeze/Unsqueeze/ReduceSum axes, Split sizes), Softmax over
#    the flattened trailing axes, Clip bounds as inputs; MatMul with a 1-D operand, Gemm with
#    alpha/beta and a shape computation (Shape → Gather → Concat → Reshape).
x3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
save("opset11", [
    h.make_node("Softmax", ["x"], ["sm"], axis=1),
    h.make_node("Unsqueeze", ["sm"], ["us"], axes=[1]),
    h.make_node("Squeeze", ["us"], ["sq"], axes=[1]),
    h.make_node("ReduceSum", ["sq"], ["rs"], axes=[2], keepdims=1),
    h.make_node("Split", ["x"], ["a", "b"], axis=2, split=[1, 3]),
    h.make_node("Clip", ["b", "lo", "hi"], ["cb"]),
    h.make_node("MatMul", ["cb", "v3"], ["mv"]),
    h.make_node("Shape", ["x"], ["shp"]),
    h.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
    h.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
    h.make_node("Concat", ["n1", "m1"], ["tgt"], axis=0),
    h.make_node("Reshape", ["mv", "tgt"], ["flat"]),
    h.make_node("Gemm", ["flat", "gw", "gc"], ["y1"], alpha=0.5, beta=2.0),
    h.make_node("Add", ["rs", "a"], ["y0"]),
], [inp("x", T.FLOAT, ["N", 3, 4])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [f32("lo", -0.3), f32("hi", 0.4), w("v3", 3), i64("zero", 0), i64("m1", [-1]), w("gw", 3, 5), w("gc", 5)],
    opset=11, feeds={"x": x3})

# 7. A transposed convolution, a 1-D convolution and weights in an external data file.
x1 = rng.standard_normal((2, 3, 10)).astype(np.float32)
save("convt_external", [
    h.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[2, 1], dilations=[2], strides=[1]),
    h.make_node("Unsqueeze", ["c", "ax"], ["c4"]),
    h.make_node("ConvTranspose", ["c4", "tw", "tb"], ["y"], strides=[2, 1], kernel_shape=[3, 1]),
], [inp("x", T.FLOAT, ["N", 3, 10])], [inp("y", T.FLOAT, None)],
    [w("cw", 8, 3, 3), w("cb", 8), i64("ax", [3]), w("tw", 8, 4, 3, 1), w("tb", 4)], feeds={"x": x1},
    external=True)

# 8. Transposed convolutions with PyTorch-style padding (pads 1, output_padding 1, stride 2),
#    SAME_UPPER, and an explicit output_shape.
xt = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
save("convt_pads", [
    h.make_node("ConvTranspose", ["x", "w1", "b1"], ["a"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    h.make_node("ConvTranspose", ["a", "w2"], ["b"], strides=[2, 1], auto_pad="SAME_UPPER"),
    h.make_node("ConvTranspose", ["x", "w3"], ["y1"], strides=[3, 2], output_shape=[16, 13], dilations=[1, 2]),
    h.make_node("Relu", ["b"], ["y0"]),
], [inp("x", T.FLOAT, ["N", 3, 5, 6])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [w("w1", 3, 4, 3, 3), w("b1", 4), w("w2", 4, 2, 3, 3), w("w3", 3, 2, 3, 3)], feeds={"x": xt})

# 9. A PyTorch-style text encoder with a symbolic sequence length besides the batch: token and
#    position embeddings (Shape → Gather → Range), a padding mask (Equal → Where), single-head
#    attention (MatMul, Div by sqrt(d), Softmax), LayerNormalization, GELU by Erf, mean pooling
#    and a Gemm head; int64 token ids.
D, V, P = 8, 11, 16
ids = np.array([[3, 5, 7, 1, 0, 0, 0], [2, 9, 4, 4, 6, 8, 0]], dtype=np.int64)
save("dynamic_seq", [
    h.make_node("Gather", ["emb", "ids"], ["tok"], axis=0),
    h.make_node("Shape", ["ids"], ["shp"]),
    h.make_node("Gather", ["shp", "one"], ["seq"], axis=0),
    h.make_node("Range", ["zero", "seq", "one"], ["pos_ids"]),
    h.make_node("Gather", ["pos", "pos_ids"], ["pe"], axis=0),
    h.make_node("Add", ["tok", "pe"], ["x"]),
    h.make_node("LayerNormalization", ["x", "ln_g", "ln_b"], ["xn"], axis=-1, epsilon=1e-5),
    h.make_node("MatMul", ["xn", "wq"], ["q"]),
    h.make_node("MatMul", ["xn", "wk"], ["k"]),
    h.make_node("MatMul", ["xn", "wv"], ["v"]),
    h.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
    h.make_node("MatMul", ["q", "kt"], ["s0"]),
    h.make_node("Div", ["s0", "sqrt_d"], ["s1"]),
    h.make_node("Equal", ["ids", "zero"], ["pad"]),
    h.make_node("Unsqueeze", ["pad", "one_ax"], ["pad3"]),
    h.make_node("Where", ["pad3", "neg", "s1"], ["s2"]),
    h.make_node("Softmax", ["s2"], ["att"], axis=-1),
    h.make_node("MatMul", ["att", "v"], ["ctx"]),
    h.make_node("Mul", ["ctx", "half_sqrt2"], ["g0"]),
    h.make_node("Erf", ["g0"], ["g1"]),
    h.make_node("Add", ["g1", "onef"], ["g2"]),
    h.make_node("Mul", ["ctx", "g2"], ["g3"]),
    h.make_node("Mul", ["g3", "halff"], ["gelu"]),
    h.make_node("ReduceMean", ["gelu", "one_ax"], ["pooled"], keepdims=0),
    h.make_node("Gemm", ["pooled", "wo", "bo"], ["y"], transB=1),
], [inp("ids", T.INT64, ["batch", "seq"])], [inp("y", T.FLOAT, None)],
    [w("emb", V, D), w("pos", P, D), i64("one", 1), i64("zero", 0), i64("one_ax", [1]), w("ln_g", D), w("ln_b", D),
     w("wq", D, D), w("wk", D, D), w("wv", D, D), f32("sqrt_d", np.sqrt(D)), f32("neg", -1e9),
     f32("half_sqrt2", 0.70710677), f32("onef", 1.0), f32("halff", 0.5), w("wo", 3, D), w("bo", 3)],
    opset=18, feeds={"ids": ids})

# 10. Recurrent ops started from states computed at run time (initial_h / initial_c).
xs2 = rng.standard_normal((2, 5, 4)).astype(np.float32)
H2 = 3
save("rnn_states", [
    h.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
    h.make_node("ReduceMean", ["x", "ax1"], ["xm"], keepdims=0),
    h.make_node("MatMul", ["xm", "wh"], ["h0a"]),
    h.make_node("Tanh", ["h0a"], ["h0b"]),
    h.make_node("Unsqueeze", ["h0b", "ax0"], ["h0"]),
    h.make_node("MatMul", ["xm", "wc"], ["c0a"]),
    h.make_node("Unsqueeze", ["c0a", "ax0"], ["c0"]),
    h.make_node("LSTM", ["xt", "lw", "lr", "lb", "", "h0", "c0"], ["ly", "lh", "lc"], hidden_size=H2),
    h.make_node("GRU", ["xt", "gw", "gr", "", "", "h0"], ["gy"], hidden_size=H2, linear_before_reset=1),
    h.make_node("Add", ["ly", "gy"], ["y0"]),
    h.make_node("Concat", ["lh", "lc"], ["y1"], axis=0),
], [inp("x", T.FLOAT, ["N", 5, 4])], [inp("y0", T.FLOAT, None), inp("y1", T.FLOAT, None)],
    [i64("ax1", [1]), i64("ax0", [0]), w("wh", 4, H2), w("wc", 4, H2), w("lw", 1, 4 * H2, 4), w("lr", 1, 4 * H2, H2),
     w("lb", 1, 8 * H2), w("gw", 1, 3 * H2, 4), w("gr", 1, 3 * H2, H2)], opset=18, feeds={"x": xs2})

# 11. Group normalization (opset 18: scale and bias per group; opset 21: per channel) between
#     convolutions, swish written as x·sigmoid(x), and a U-Net skip: a concatenation of two
#     channels-first branches along the channels.
x11 = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
for opset, per in [(18, 2), (21, 8)]:
    save(f"groupnorm{opset}", [
        h.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("GroupNormalization", ["c", "gs", "gb"], ["g"], num_groups=2, epsilon=1e-4),
        h.make_node("Sigmoid", ["g"], ["gsig"]),
        h.make_node("Mul", ["g", "gsig"], ["sw"]),
        h.make_node("Conv", ["sw", "dw"], ["d"], kernel_shape=[1, 1]),
        h.make_node("Concat", ["d", "sw"], ["cat"], axis=1),
        h.make_node("InstanceNormalization", ["cat", "is", "ib"], ["y"], epsilon=1e-3),
    ], [inp("x", T.FLOAT, ["N", 3, 10, 10])], [inp("y", T.FLOAT, None)],
        [w("cw", 8, 3, 3, 3), w("cb", 8), w("gs", per), w("gb", per), w("dw", 4, 8, 1, 1), w("is", 12), w("ib", 12)],
        opset=opset, feeds={"x": x11})

# 12. Values that decide shapes given as graph inputs (the model compiles for them when it runs,
#     kerasc::specialize): Resize's scales, Slice's starts/ends/axes, Unsqueeze's axes, Pad's pads,
#     Clip's bounds, and a symbolic non-batch size (T).
x12 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
save("runtime_values", [
    h.make_node("Resize", ["x", "", "scales"], ["rs"], mode="nearest"),
    h.make_node("Slice", ["rs", "starts", "ends", "axes"], ["sl"]),
    h.make_node("Pad", ["sl", "pads"], ["pd"]),
    h.make_node("Clip", ["pd", "lo", "hi"], ["cl"]),
    h.make_node("Unsqueeze", ["cl", "uax"], ["y"]),
], [inp("x", T.FLOAT, ["N", 3, "H", "W"]), inp("scales", T.FLOAT, [4]), inp("starts", T.INT64, [2]),
    inp("ends", T.INT64, [2]), inp("axes", T.INT64, [2]), inp("pads", T.INT64, [8]), inp("lo", T.FLOAT, []),
    inp("hi", T.FLOAT, []), inp("uax", T.INT64, [1])], [inp("y", T.FLOAT, None)], [], opset=18,
    feeds={"x": x12, "scales": np.array([1, 1, 2, 2], np.float32), "starts": np.array([1, -6], np.int64),
           "ends": np.array([7, 100], np.int64), "axes": np.array([2, 3], np.int64),
           "pads": np.array([0, 0, 1, 0, 0, 1, 0, 2], np.int64), "lo": np.array(-0.5, np.float32),
           "hi": np.array(0.8, np.float32), "uax": np.array([-1], np.int64)})
