"""kerasc fit against Keras 3 on JAX (model.fit, CPU, XLA), side by side, one model after the
other in one run: the same file, data, batch size, optimizer and loss (the file's own
training_config), shuffled, ms per epoch of the second epoch (after Keras's jit compile) on both
sides, and Keras's time ÷ kerasc's (above 1: kerasc faster).

usage: KERAS_BACKEND=jax PYTHON scripts/bench-fit.py [--repeat 8] [--batch 32] [--epochs 2] [MODEL...]
(scripts/bench-fit.sh makes the venv and builds kerasc). Models: the dev fine-tuning models
(cnn_mnist, mlp) and the training fixtures of tests/models/train, with their data repeated
--repeat times; `rescnn_bn` (a small residual CNN with BatchNormalization), `dwconv_bn` (a
MobileNet-style separable block), `lstm_seq` (an LSTM over 40 steps) and `wide_adam` (a wide MLP
whose Adam update over 1.3M weights costs as much as its matrix products), made here seeded,
stand for the models the tests never see.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERASC = os.environ.get("KERASC", os.path.join(ROOT, "target/release/kerasc"))
M = os.path.join(ROOT, "tests/models")
T = os.path.join(M, "train")
MODELS = {
    "cnn_mnist": (f"{M}/cnn_mnist.h5", f"{M}/cnn_mnist.finetune.npz"),
    "mlp": (f"{M}/mlp.h5", f"{M}/mlp.finetune.npz"),
    "reg_bn_sgd": (f"{T}/reg_bn_sgd.h5", f"{T}/regression.npz"),
    "reg_mse_adam": (f"{T}/reg_mse_adam.h5", f"{T}/regression.npz"),
    "bin_bce_adamw_sched": (f"{T}/bin_bce_adamw_sched.h5", f"{T}/binary.npz"),
    "seq_rnn_adam": (f"{T}/seq_rnn_adam.h5", f"{T}/sequence.npz"),
    "multi_io_adam": (f"{T}/multi_io_adam.h5", f"{T}/multi_io.npz"),
    "rescnn_bn": (None, None),
    "dwconv_bn": (None, None),
    "lstm_seq": (None, None),
    "wide_adam": (None, None),
}


def make_rescnn(work):
    """A small residual CNN with BatchNormalization (28x28x1, 10 classes), SGD, seeded."""
    keras.utils.set_random_seed(11)
    i = keras.Input((28, 28, 1), name="x")
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(i)
    h = keras.layers.BatchNormalization(name="stem_bn")(h)
    h = keras.layers.ReLU(name="stem_relu")(h)
    r = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(h)
    r = keras.layers.BatchNormalization(name="bn1")(r)
    r = keras.layers.ReLU(name="relu1")(r)
    r = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="c2")(r)
    r = keras.layers.BatchNormalization(name="bn2")(r)
    h = keras.layers.ReLU(name="out_relu")(keras.layers.Add(name="add")([h, r]))
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu", name="c3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    o = keras.layers.Dense(10, activation="softmax", name="out")(h)
    m = keras.Model(i, o, name="rescnn_bn")
    m.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    path = os.path.join(work, "rescnn_bn.h5")
    m.save(path)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((256, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 256).astype("int32")
    data = os.path.join(work, "rescnn_bn.npz")
    np.savez(data, x=x, y=y)
    return path, data


def make_dwconv(work):
    """A MobileNet-style block (separable: depthwise 3x3 + BN + ReLU6, 1x1 + BN), 32x32x3, Adam."""
    keras.utils.set_random_seed(12)
    L = keras.layers
    i = keras.Input((32, 32, 3), name="x")
    h = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(i)
    h = L.ReLU(6.0, name="stem_relu")(L.BatchNormalization(name="stem_bn")(h))
    h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = L.ReLU(6.0, name="dw_relu")(L.BatchNormalization(name="dw_bn")(h))
    h = L.Conv2D(32, 1, use_bias=False, name="pw")(h)
    h = L.BatchNormalization(name="pw_bn")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(10, activation="softmax", name="out")(h)
    m = keras.Model(i, o, name="dwconv_bn")
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return save_with_data(m, work, (256, 32, 32, 3), 10, 12)


def make_lstm(work):
    """An LSTM(32) over 40 steps of 8 features, then Dense, RMSprop."""
    keras.utils.set_random_seed(13)
    i = keras.Input((40, 8), name="x")
    h = keras.layers.LSTM(32, name="lstm")(i)
    o = keras.layers.Dense(4, activation="softmax", name="out")(h)
    m = keras.Model(i, o, name="lstm_seq")
    m.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy")
    return save_with_data(m, work, (256, 40, 8), 4, 13)


def make_wide(work):
    """A wide MLP (256 -> 1024 -> 1024 -> 10, 1.3M weights), Adam with clipnorm: a step where the
    optimizer update over all weights weighs as much as the matrix products."""
    keras.utils.set_random_seed(14)
    i = keras.Input((256,), name="x")
    h = keras.layers.Dense(1024, activation="relu", name="d1")(i)
    h = keras.layers.Dense(1024, activation="relu", name="d2")(h)
    o = keras.layers.Dense(10, activation="softmax", name="out")(h)
    m = keras.Model(i, o, name="wide_adam")
    m.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), loss="sparse_categorical_crossentropy")
    return save_with_data(m, work, (256, 256), 10, 14)


def save_with_data(m, work, x_shape, classes, seed):
    path = os.path.join(work, f"{m.name}.h5")
    m.save(path)
    rng = np.random.default_rng(seed)
    data = os.path.join(work, f"{m.name}.npz")
    np.savez(data, x=rng.standard_normal(x_shape).astype("float32"),
             y=rng.integers(0, classes, x_shape[0]).astype("int32"))
    return path, data


MAKERS = {
    "rescnn_bn": lambda w: make_rescnn(w),
    "dwconv_bn": lambda w: make_dwconv(w),
    "lstm_seq": lambda w: make_lstm(w),
    "wide_adam": lambda w: make_wide(w),
}


def arrays(npz):
    """(inputs, labels) of a training .npz: x_train/y_train, x/y, or x_*/y_* by name."""
    d = dict(np.load(npz))
    if "x_train" in d:
        return {"x": d["x_train"]}, {"y": d["y_train"]}
    if "x" in d:
        return {"x": d["x"]}, {"y": d["y"]}
    xs = {k[2:]: v for k, v in d.items() if k.startswith("x_")}
    ys = {k[2:]: v for k, v in d.items() if k.startswith("y_")}
    return xs, ys


def repeated(npz, repeat, work, name):
    """The training arrays repeated `repeat` times, as an .npz kerasc reads (no validation)."""
    xs, ys = arrays(npz)
    out = {}
    for pre, group in (("x", xs), ("y", ys)):
        for k, v in group.items():
            key = pre if k == pre else f"{pre}_{k}"
            out[key] = np.concatenate([v] * repeat)
    path = os.path.join(work, f"{name}.x{repeat}.npz")
    np.savez(path, **out)
    return path, xs, ys


def kerasc_epoch_ms(model, data, batch, epochs, threads):
    out = os.path.join(tempfile.mkdtemp(), "out" + os.path.splitext(model)[1])
    cmd = [KERASC, "fit", model, "--data", data, "--output", out, "--epochs", str(epochs),
           "--batch-size", str(batch), "--verbose", "2"]
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-400:])
    ms = [float(x) for x in re.findall(r" - ([\d.]+)ms - ", p.stderr)]
    return ms


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.ms.append((time.perf_counter() - self.t) * 1e3)


def keras_epoch_ms(model, xs, ys, repeat, batch, epochs):
    m = keras.saving.load_model(model, compile=False)
    import h5py

    with h5py.File(model) as f:
        cfg = json.loads(f.attrs["training_config"])
    loss = cfg["loss"]
    if isinstance(loss, dict) and "class_name" in loss:
        loss = keras.losses.deserialize(loss)
    elif isinstance(loss, dict):
        loss = {k: keras.losses.deserialize(v) if isinstance(v, dict) else v for k, v in loss.items()}
    # The file's optimizer and loss, compiled for XLA (Keras 3 on JAX jit-compiles by default;
    # a file saved with jit_compile=False would otherwise run eagerly).
    m.compile(optimizer=keras.optimizers.deserialize(cfg["optimizer_config"]), loss=loss, jit_compile=True)
    names_in = [t.name for t in m.inputs]
    x = [np.concatenate([xs[n] if n in xs else list(xs.values())[k]] * repeat) for k, n in enumerate(names_in)]
    out_names = m.output_names if hasattr(m, "output_names") else None
    yl = list(ys.values())
    if out_names and len(out_names) == len(ys):
        yl = [ys.get(n, yl[k]) for k, n in enumerate(out_names)]
    y = [np.concatenate([v] * repeat) for v in yl]
    cb = Timer()
    cb.ms = []
    m.fit(x if len(x) > 1 else x[0], y if len(y) > 1 else y[0], batch_size=batch, epochs=epochs, verbose=0,
          shuffle=True, callbacks=[cb])
    return cb.ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    work = tempfile.mkdtemp()
    rows = []
    for name in a.models or list(MODELS):
        model, npz = MODELS[name]
        if model is None:
            model, npz = MAKERS[name](work)
        data, xs, ys = repeated(npz, a.repeat, work, name)
        n = len(next(iter(xs.values()))) * a.repeat
        k = kerasc_epoch_ms(model, data, a.batch, a.epochs, a.threads)
        j = keras_epoch_ms(model, xs, ys, a.repeat, a.batch, a.epochs)
        rows.append((name, n, k[-1], j[-1]))
        print(json.dumps({"model": name, "samples": n, "kerasc_ms": k, "keras_jax_ms": j}), file=sys.stderr)
    print(f"\nbatch {a.batch}, data x{a.repeat}, epoch {a.epochs} (ms per epoch)\n")
    print("| model | samples | kerasc ms | Keras-JAX ms | Keras ÷ kerasc |")
    print("|---|---|---|---|---|")
    for name, n, k, j in rows:
        print(f"| {name} | {n} | {k:.1f} | {j:.1f} | {j / max(k, 0.05):.2f} |")


if __name__ == "__main__":
    main()
