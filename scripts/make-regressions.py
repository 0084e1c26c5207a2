"""Makes tests/regressions/: model files that once crashed or hung kerasc (found by the fuzzers
and by hand), each derived from a test model by one meaning-level edit, and expected.json with
the command each goes through and the words its clean error must contain. tests/regressions.rs
runs them. Files the fuzzers found are copied in by hand and listed in EXTRA below.
usage: python -m venv /tmp/venv && /tmp/venv/bin/pip install numpy onnx==1.17.0
       /tmp/venv/bin/python scripts/make-regressions.py
"""
import io
import json
import os
import zipfile

import numpy as np
import onnx
from onnx import helper

M = "tests/models"
OUT = "tests/regressions"
os.makedirs(OUT, exist_ok=True)
cases = []


def keras_edit(src, name, edit, expect, command="run", input_=None):
    """A .keras archive whose config.json is changed by `edit` (a function of the config)."""
    zin = zipfile.ZipFile(f"{M}/{src}.keras")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(zipfile.ZipInfo(item.filename, date_time=(2026, 1, 1, 0, 0, 0)), data)
    open(f"{OUT}/{name}.keras", "wb").write(buf.getvalue())
    cases.append({"file": f"{name}.keras", "command": command, "input": input_ or f"../models/{src}.input.npy", "expect": expect})


def layer(cfg, cls, k=0):
    return [l for l in cfg["config"]["layers"] if l["class_name"] == cls][k]["config"]


def h5_edit(src, name, old, new, expect, command="run"):
    """A .h5 model whose JSON config has `old` replaced by `new` (padded to the same length)."""
    data = open(f"{M}/{src}", "rb").read()
    assert data.count(old.encode()) >= 1, (src, old)
    assert len(new) <= len(old)
    data = data.replace(old.encode(), new.encode().ljust(len(old)), 1)
    open(f"{OUT}/{name}.h5", "wb").write(data)
    stem = src.split(".")[0]
    cases.append({"file": f"{name}.h5", "command": command, "input": f"../models/{stem}.input.npy", "expect": expect})


# The list: a zero stride, a negative ReLU cap, a padding of 2^63-1, a pool of 2^63.
keras_edit("cnn_mnist", "conv_stride_zero", lambda c: layer(c, "Conv2D").update(strides=[0, 1]), ["conv2d", "'strides'", "[0,1]"])
keras_edit("activations", "relu_negative_cap",
           lambda c: [l["config"].update(max_value=-99.0) for l in c["config"]["layers"] if l["class_name"] == "ReLU"][:1],
           ["ReLU", "max_value", "-99"])
keras_edit("pool_pad_up", "zero_padding_huge", lambda c: layer(c, "ZeroPadding2D").update(padding=[[2**63 - 1, 1], [1, 1]]),
           ["ZeroPadding2D", "'padding'"])
keras_edit("cnn_mnist", "pool_size_huge", lambda c: layer(c, "MaxPooling2D").update(pool_size=[2**63, 2]),
           ["MaxPooling2D", "'pool_size'"])
keras_edit("cnn_mnist", "pool_larger_than_input", lambda c: layer(c, "MaxPooling2D").update(pool_size=[99, 99]),
           ["max_pooling2d", "window", "larger than"])
keras_edit("mlp", "dense_units_huge", lambda c: layer(c, "Dense").update(units=2**40), ["dense", "'units'"], command="inspect")
keras_edit("pool_pad_up", "upsampling_size_zero", lambda c: layer(c, "UpSampling2D").update(size=[0, 2]),
           ["UpSampling2D", "'size'"])
h5_edit("cnn_mnist.k2.h5", "conv_dilation_zero_k2", '"dilation_rate": [1, 1]', '"dilation_rate":[0,1]',
        ["'dilation_rate'"])

# ONNX: an LSTM whose initial cell state is a constant of another batch size than the input's
# (produced by a different op than the exporter's: a Constant, not the computed state).
m = onnx.load(f"{M}/onnx/rnn_states.onnx")
g = m.graph
g.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 7, 3), "float32"), "c0_wrong"))
lstm = next(n for n in g.node if n.op_type == "LSTM")
lstm.input[6] = "c0_wrong"
onnx.save(m, f"{OUT}/onnx_lstm_state_batch.onnx")
cases.append({"file": "onnx_lstm_state_batch.onnx", "command": "run", "input": "../models/onnx/rnn_states.input0.npy",
              "expect": ["initial state", "(7, 3)"]})
# ONNX ConvTranspose with an output_shape shorter than its spatial axes.
m = onnx.load(f"{M}/onnx/convt_pads.onnx")
n = next(n for n in m.graph.node if n.op_type == "ConvTranspose")
del n.attribute[:]
n.attribute.append(helper.make_attribute("output_shape", [5]))
onnx.save(m, f"{OUT}/onnx_convt_output_shape.onnx")
cases.append({"file": "onnx_convt_output_shape.onnx", "command": "run", "input": "../models/onnx/convt_pads.input0.npy",
              "expect": ["ConvTranspose", "output_shape"]})

# Attributes of the wrong type or range: the error names the layer, the attribute and the value.
keras_edit("activations", "leaky_slope_string", lambda c: layer(c, "LeakyReLU").update(negative_slope="nan"),
           ["leaky_re_lu", "'negative_slope'", '"nan"'])
keras_edit("activations", "softmax_axis_out_of_range", lambda c: layer(c, "Softmax").update(axis=99),
           ["softmax", "'axis'", "99"])
keras_edit("mlp", "dense_units_fraction", lambda c: layer(c, "Dense").update(units=2.5), ["dense", "'units'", "2.5"],
           command="inspect")
keras_edit("transformer", "attention_long_sequence", lambda c: layer(c, "InputLayer").update(batch_shape=[None, 2**20, 16]),
           ["mha", "scores", "2^31 elements per sample"], command="inspect")
# ONNX: a NaN resize scale, a reshape whose -1 cannot be whole, a folded Gather index out of range.
def onnx_case(name, nodes, inits, expect):
    from onnx import TensorProto as T
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", T.FLOAT, None)],
                          [onnx.numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in inits])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f"{OUT}/{name}.onnx")
    cases.append({"file": f"{name}.onnx", "command": "inspect", "expect": expect})


shape4 = ("sh", [1, 1, 2, 2], "int64")
to4 = helper.make_node("Reshape", ["x", "sh"], ["x4"])
onnx_case("onnx_resize_nan_scale", [to4, helper.make_node("Resize", ["x4", "", "sc"], ["y"], mode="nearest")],
          [shape4, ("sc", [1, 1, float("nan"), 1], "float32")], ["Resize", "scale", "NaN"])
onnx_case("onnx_reshape_fraction", [helper.make_node("Reshape", ["x", "t"], ["y"])], [("t", [2**40, -1], "int64")],
          ["Reshape", "1099511627776, -1"])
onnx_case("onnx_gather_index", [helper.make_node("Gather", ["c", "i"], ["g"]), helper.make_node("Add", ["x", "g"], ["y"])],
          [("c", [1.0, 2.0, 3.0, 4.0], "float32"), ("i", [-99], "int64")], ["Gather", "index -99", "size 4"])

# Two nested Loops of 4000 iterations each: 16 million iterations to unroll (it hung).
def loop_body(inner=None):
    from onnx import TensorProto as T
    step = helper.make_node("Add", ["v_in", "one"], ["v_out"]) if inner is None else \
        helper.make_node("Loop", ["M", "", "v_in"], ["v_out"], body=inner)
    return helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]), step], "body",
                             [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
                              helper.make_tensor_value_info("v_in", T.FLOAT, [1, 4])],
                             [helper.make_tensor_value_info("cond_out", T.BOOL, []), helper.make_tensor_value_info("v_out", T.FLOAT, [1, 4])])


onnx_case("onnx_nested_loops", [helper.make_node("Loop", ["M", "", "x"], ["y"], body=loop_body(loop_body()))],
          [("M", 4000, "int64"), ("one", np.ones((1, 4)), "float32")], ["Loop", "unroll to more than"])

# Files the fuzzers found (scripts/fuzz.sh), copied in by hand from fuzz/artifacts/TARGET/.
EXTRA = [
    # A constant-folded Concat whose inputs the mutator made scalars (index out of bounds).
    {"file": "fuzz_onnx_concat_scalars.onnx", "command": "inspect", "expect": ["Concat", "cannot concatenate scalars"]},
    # An input whose batch axis was made a fixed 2^20: its zero initial LSTM state was a fill
    # constant of its full size, transposed and copied (10 GB, 30 s); large fills now tile at run time.
    {"file": "fuzz_onnx_fixed_batch_fill.onnx", "command": "inspect", "expect": ["LSTM", "cannot reshape"]},
    # An input of 2^31 - 1 steps into MultiHeadAttention: a (T, S) mask of 2^62 positions
    # (capacity overflow); inputs are now bounded like every value, and so are masks.
    {"file": "fuzz_keras_attention_huge_sequence.keras", "command": "inspect",
     "expect": ["input 'x'", "2147483647", "2^31 elements per sample"]},
    # Unsqueeze with an axis named twice: inserting a 1 at each sorted axis went past the end.
    {"file": "fuzz_onnx_unsqueeze_repeated_axes.onnx", "command": "inspect",
     "expect": ["Unsqueeze", "name axis 0 twice"]},
    # An LSTM whose input the mutator made a scalar: its steps axis was read before its rank.
    {"file": "fuzz_onnx_lstm_scalar_input.onnx", "command": "inspect",
     "expect": ["LSTM", "must be [steps, batch, features], not rank 0"]},
    # A constant-folded Slice of a scalar with default axes: axis 0 of rank 0.
    {"file": "fuzz_onnx_slice_scalar.onnx", "command": "inspect", "expect": ["Slice", "1 slice starts for rank 0"]},
]
for e in EXTRA:
    assert os.path.exists(f"{OUT}/{e['file']}"), e["file"]
cases += EXTRA

json.dump(cases, open(f"{OUT}/expected.json", "w"), indent=1)
print(len(cases), "cases")
