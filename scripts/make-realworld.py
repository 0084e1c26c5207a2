"""The real-world check set: keras.applications architectures with random weights
(weights=None, batch-norm moving statistics perturbed so they matter) at small input sizes, and
two transformers built from plain Keras layers, saved by Keras 3 as .keras and .h5 with an input
and Keras's output. Too large for git (tens of MB): regenerate into target/realworld with
  KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-realworld.py [NAME...]
and check with scripts/realworld-check.sh.
"""
import os
import sys
import numpy as np
import keras
from keras import layers as L

OUT = "target/realworld"
os.makedirs(OUT, exist_ok=True)
A = keras.applications
rng = np.random.default_rng(5)


def perturb(m):
    for layer in m._flatten_layers():
        if isinstance(layer, L.BatchNormalization):
            mm, mv = layer.moving_mean, layer.moving_variance
            mm.assign(rng.normal(0, 0.1, mm.shape).astype("float32"))
            mv.assign(rng.uniform(0.5, 1.5, mv.shape).astype("float32"))


def vit():
    keras.utils.set_random_seed(3)
    x_in = keras.Input((32, 32, 3), name="image")
    p = L.Conv2D(32, 8, strides=8, name="patches")(x_in)
    p = L.Reshape((16, 32), name="tokens")(p)
    pos = L.Embedding(16, 32, name="pos")(keras.ops.arange(16))
    h = p + pos
    for b in range(2):
        a = L.LayerNormalization(epsilon=1e-6, name=f"ln{b}a")(h)
        a = L.MultiHeadAttention(4, 8, name=f"mha{b}")(a, a)
        h = L.Add(name=f"res{b}a")([h, a])
        f = L.LayerNormalization(epsilon=1e-6, name=f"ln{b}b")(h)
        f = L.Dense(64, activation="gelu", name=f"mlp{b}a")(f)
        f = L.Dense(32, name=f"mlp{b}b")(f)
        h = L.Add(name=f"res{b}b")([h, f])
    h = L.GlobalAveragePooling1D(name="gap")(L.LayerNormalization(name="ln_out")(h))
    return keras.Model(x_in, L.Dense(10, name="head")(h), name="vit_tiny")


def bert():
    keras.utils.set_random_seed(4)
    ids = keras.Input((12,), dtype="int32", name="ids")
    x = L.Embedding(100, 32, mask_zero=True, name="emb")(ids)
    for b in range(2):
        a = L.MultiHeadAttention(4, 8, name=f"mha{b}")(x, x)
        x = L.LayerNormalization(name=f"ln{b}a")(L.Add(name=f"add{b}a")([x, a]))
        f = L.Dense(64, activation="relu", name=f"ff{b}a")(x)
        f = L.Dense(32, name=f"ff{b}b")(L.Dropout(0.1, name=f"drop{b}")(f))
        x = L.LayerNormalization(name=f"ln{b}b")(L.Add(name=f"add{b}b")([x, f]))
    p = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(ids, L.Dense(3, name="head")(p), name="bert_tiny")


cases = {
    "resnet50v2": lambda: A.ResNet50V2(weights=None, input_shape=(32, 32, 3), classes=10),
    "densenet121": lambda: A.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=10),
    "inceptionv3": lambda: A.InceptionV3(weights=None, input_shape=(75, 75, 3), classes=10),
    "xception": lambda: A.Xception(weights=None, input_shape=(71, 71, 3), classes=10),
    "mobilenetv3small": lambda: A.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=10),
    "mobilenetv3large": lambda: A.MobileNetV3Large(weights=None, input_shape=(32, 32, 3), classes=10),
    "efficientnetv2b0": lambda: A.EfficientNetV2B0(weights=None, input_shape=(32, 32, 3), classes=10),
    "convnexttiny": lambda: A.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10),
    "nasnetmobile": lambda: A.NASNetMobile(weights=None, input_shape=(32, 32, 3), classes=10),
    "vgg16": lambda: A.VGG16(weights=None, input_shape=(32, 32, 3), classes=10),
    "efficientnetb0": lambda: A.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10),
    "resnet50": lambda: A.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
    "vit_tiny": vit,
    "bert_tiny": bert,
}
for name, make in cases.items():
    if sys.argv[1:] and name not in sys.argv[1:]:
        continue
    keras.utils.set_random_seed(1)
    m = make()
    perturb(m)
    shape = m.inputs[0].shape
    if name == "bert_tiny":
        x = rng.integers(1, 100, size=(2, 12)).astype("int32")
        x[0, 7:] = 0
        x[1, 3:] = 0
    else:
        x = rng.uniform(0, 255, size=(2,) + tuple(shape[1:])).astype("float32")
    y = np.asarray(m.predict(x, verbose=0))
    m.save(f"{OUT}/{name}.keras")
    try:
        m.save(f"{OUT}/{name}.h5")
    except Exception as e:  # noqa: BLE001
        print(name, "Keras cannot write .h5:", str(e).splitlines()[0][:120])
    np.save(f"{OUT}/{name}.input0.npy", x)
    np.save(f"{OUT}/{name}.expected.npy", y)
    print(name, y.shape, m.count_params())
