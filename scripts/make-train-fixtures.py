"""Makes tests/models/train: small models compiled with each loss/optimizer family, trained by
Keras 3 itself (batch 16, 3 epochs, no shuffle), saved before and after with the history, so
tests/fit.rs can check `kerasc fit` against Keras without Python at test time.
usage: KERAS_BACKEND=jax target/anchor-venv/bin/python scripts/make-train-fixtures.py [NAME...]
"""
import json
import sys
import numpy as np
import keras

OUT = "tests/models/train"
rng = np.random.default_rng(7)
x = rng.standard_normal((64, 4)).astype("float32")
data = {
    "regression": np.stack([np.sin(x[:, 0]) + 0.3 * x[:, 1], x[:, 2] * x[:, 3] - 0.5], 1).astype("float32"),
    "binary": (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")[:, None],
}
for kind, y in data.items():
    np.savez(f"{OUT}/{kind}.npz", x=x, y=y)
# Sequences (64, 5 steps, 4 features) for the recurrent model: class = sign pattern of a sum.
xs = rng.standard_normal((64, 5, 4)).astype("float32")
ys = (xs[:, :, 0].sum(1) > 0).astype("int32") + (xs[:, -1, 1] > 0.5).astype("int32")
if not sys.argv[1:] or "seq_rnn_adam" in sys.argv[1:]:
    np.savez(f"{OUT}/sequence.npz", x=xs, y=ys)
O = keras.optimizers
cases = {
    "reg_mse_adam": ("regression", "mse", lambda: O.Adam(0.01)),
    "reg_mae_rmsprop": ("regression", "mae", lambda: O.RMSprop(0.005, momentum=0.5, centered=True)),
    # Keras does not serialize Huber's delta, so the default is what a saved file can carry.
    "reg_huber_nadam": ("regression", keras.losses.Huber(), lambda: O.Nadam(0.01)),
    "bin_bce_adagrad": ("binary", "binary_crossentropy", lambda: O.Adagrad(0.05)),
    "bin_bce_adamw_sched": ("binary", "binary_crossentropy",
                            lambda: O.AdamW(keras.optimizers.schedules.ExponentialDecay(0.02, 5, 0.5))),
    # Batch normalization in training mode: batch statistics, moving statistics updated with
    # momentum 0.9; validation in inference mode.
    "reg_bn_sgd": ("regression", "mse", lambda: O.SGD(0.05, momentum=0.9)),
    # Recurrent layers trained through time: GRU (reset_after) returning sequences, then LSTM.
    "seq_rnn_adam": ("sequence", "sparse_categorical_crossentropy", lambda: O.Adam(0.01)),
}


def model(kind, bn=False):
    keras.utils.set_random_seed(3)
    if kind == "sequence":
        i = keras.Input((5, 4), name="x")
        h = keras.layers.GRU(6, return_sequences=True, name="gru")(i)
        h = keras.layers.LSTM(5, name="lstm")(h)
        o = keras.layers.Dense(3, activation="softmax", name="out")(h)
        return keras.Model(i, o, name=kind)
    i = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="hidden")(i)
    if bn:
        h = keras.layers.BatchNormalization(momentum=0.9, name="bn")(h)
    o = keras.layers.Dense(2 if kind == "regression" else 1,
                           activation=None if kind == "regression" else "sigmoid", name="out")(h)
    return keras.Model(i, o, name=kind)


for name, (kind, loss, opt) in cases.items():
    if sys.argv[1:] and name not in sys.argv[1:]:
        continue
    m = model(kind, bn="_bn_" in name)
    m.compile(optimizer=opt(), loss=loss, metrics=["mae"] if kind == "regression" else ["accuracy"])
    xk = xs if kind == "sequence" else x
    yk = ys if kind == "sequence" else data[kind]
    m.save(f"{OUT}/{name}.h5")
    split = 0.25 if "_bn_" in name else 0.0
    h = m.fit(xk, yk, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_split=split)
    m.save(f"{OUT}/{name}.trained.h5")
    with open(f"{OUT}/{name}.history.json", "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
    print(name, {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})

def multi_io_model():
    """Two inputs, two outputs (a class and a regression)."""
    keras.utils.set_random_seed(5)
    ia = keras.Input((4,), name="left")
    ib = keras.Input((3,), name="right")
    h = keras.layers.Concatenate(name="cat")([keras.layers.Dense(6, activation="relu", name="da")(ia),
                                             keras.layers.Dense(6, activation="tanh", name="db")(ib)])
    return keras.Model([ia, ib], [keras.layers.Dense(3, activation="softmax", name="cls")(h),
                                  keras.layers.Dense(2, name="reg")(h)], name="multi_io")


# Two inputs and two outputs, a loss and metrics per output (by name): Keras's total loss is
# the sum, its history has <output>_loss and <output>_<metric>.
if not sys.argv[1:] or "multi_io_adam" in sys.argv[1:]:
    mrng = np.random.default_rng(21)
    a = mrng.standard_normal((48, 4)).astype("float32")
    b = mrng.standard_normal((48, 3)).astype("float32")
    cls = ((a[:, 0] + b[:, 1]) > 0).astype("int32") + (a[:, 2] > 0.8).astype("int32")
    reg = np.stack([a[:, 1] * b[:, 0], a[:, 3] - b[:, 2]], 1).astype("float32")
    np.savez(f"{OUT}/multi_io.npz", x_left=a, x_right=b, y_cls=cls, y_reg=reg)
    m = multi_io_model()
    m.compile(optimizer=O.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              metrics={"cls": ["accuracy"], "reg": ["mae"]})
    m.save(f"{OUT}/multi_io_adam.h5")
    h = m.fit({"left": a, "right": b}, {"cls": cls, "reg": reg}, batch_size=16, epochs=3, shuffle=False, verbose=0)
    m.save(f"{OUT}/multi_io_adam.trained.h5")
    with open(f"{OUT}/multi_io_adam.history.json", "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
    print("multi_io_adam", {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})

# The same two-output model with loss_weights: Keras's total loss is the weighted sum (the
# per-output losses in the history unweighted).
if not sys.argv[1:] or "multi_io_weighted" in sys.argv[1:]:
    d = np.load(f"{OUT}/multi_io.npz")
    m = multi_io_model()
    m.compile(optimizer=O.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              loss_weights={"cls": 1.0, "reg": 0.25}, metrics={"cls": ["accuracy"], "reg": ["mae"]})
    m.save(f"{OUT}/multi_io_weighted.h5")
    h = m.fit({"left": d["x_left"], "right": d["x_right"]}, {"cls": d["y_cls"], "reg": d["y_reg"]},
              batch_size=16, epochs=3, shuffle=False, verbose=0)
    m.save(f"{OUT}/multi_io_weighted.trained.h5")
    with open(f"{OUT}/multi_io_weighted.history.json", "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
    print("multi_io_weighted", {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})

# Noise layers kerasc makes active in training: AlphaDropout, and Dropout with a noise_shape
# (one draw per sample and feature, shared over time). Compiled, not trained (Keras's random
# streams are its own): tests/fit.rs checks that fit trains with them, seeded.
if not sys.argv[1:] or "noise_layers" in sys.argv[1:]:
    keras.utils.set_random_seed(6)
    i = keras.Input((5, 4), name="x")
    h = keras.layers.Dense(8, activation="selu", name="d1")(i)
    h = keras.layers.AlphaDropout(0.2, name="alpha")(h)
    h = keras.layers.Dropout(0.3, noise_shape=(None, 1, 8), name="drop")(h)
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    m = keras.Model(i, keras.layers.Dense(3, activation="softmax", name="out")(h), name="noise_layers")
    m.compile(optimizer=O.SGD(0.05), loss="sparse_categorical_crossentropy")
    m.save(f"{OUT}/noise_layers.h5")
    print("noise_layers")
