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
}


def model(kind, bn=False):
    keras.utils.set_random_seed(3)
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
    m.save(f"{OUT}/{name}.h5")
    split = 0.25 if "_bn_" in name else 0.0
    h = m.fit(x, data[kind], batch_size=16, epochs=3, shuffle=False, verbose=0, validation_split=split)
    m.save(f"{OUT}/{name}.trained.h5")
    with open(f"{OUT}/{name}.history.json", "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
    print(name, {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})
