"""Makes tests/models/train/resume: models compiled by Keras 3 and saved before training
(`NAME.keras`, `NAME.h5`: the optimizer not yet built), after 3 epochs of Keras's own fit
(`NAME.k3.keras`, `NAME.k3.h5`: weights and the optimizer's whole state), and the weights after a
4th epoch (`NAME.k4.npz`, in `model.weights` order), batch 16, no shuffle, on
tests/models/train/regression.npz. tests/fit.rs checks that `kerasc fit` writes the optimizer
state Keras would have (3 epochs from NAME equal NAME.k3's variables) and continues from Keras's
(one epoch from NAME.k3 equals NAME.k4); scripts/keras-resume-check.sh checks Keras continuing
from kerasc's file.
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-resume-fixtures.py
"""
import numpy as np
import keras

OUT = "tests/models/train/resume"
d = np.load("tests/models/train/regression.npz")
x, y = d["x"], d["y"]
O = keras.optimizers
cases = {
    "adam_amsgrad": lambda: O.Adam(0.01, amsgrad=True),
    "rmsprop_centered": lambda: O.RMSprop(0.005, momentum=0.5, centered=True),
    "nadam": lambda: O.Nadam(0.01),
    "sgd_momentum_bn": lambda: O.SGD(0.05, momentum=0.9, nesterov=True),
}
for i, (name, make) in enumerate(cases.items()):
    keras.utils.set_random_seed(30 + i)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="hidden")(inp)
    if "bn" in name:
        h = keras.layers.BatchNormalization(name="bn")(h)
    out = keras.layers.Dense(2, name="out")(h)
    m = keras.Model(inp, out, name=name)
    m.compile(optimizer=make(), loss=keras.losses.MeanSquaredError())
    # Saving a legacy .h5 drops the optimizer from the model's later compile configs (Keras
    # 3.15), so each .h5 is written from the .keras loaded back.
    m.save(f"{OUT}/{name}.keras")
    keras.models.load_model(f"{OUT}/{name}.keras").save(f"{OUT}/{name}.h5")
    m.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    m.save(f"{OUT}/{name}.k3.keras")
    keras.models.load_model(f"{OUT}/{name}.k3.keras").save(f"{OUT}/{name}.k3.h5")
    m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.savez(f"{OUT}/{name}.k4.npz", **{f"w{k:02d}": w.numpy() for k, w in enumerate(m.weights)})
    # Keras itself resumes from both files as if it had trained on.
    # (Keras 3.15 on JAX fails to fit a model loaded from a legacy .h5 with its optimizer state:
    # "the optimizer was built with 0 variables".)
    for ext in ["keras", "h5"]:
        try:
            r = keras.models.load_model(f"{OUT}/{name}.k3.{ext}")
            r.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        except ValueError as e:
            print(name, ext, "Keras cannot resume:", str(e).splitlines()[0][:100])
            continue
        diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(r.weights, m.weights))
        print(name, ext, "Keras resumed vs Keras on: max diff", diff)
