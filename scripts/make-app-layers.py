"""Makes tests/models/extra/app_layers.*: layers that ship inside Keras's own packages rather than
keras.layers — keras.applications.convnext's LayerScale (in a ConvNeXt block: depthwise
convolution, LayerNormalization, an inverted-bottleneck MLP, LayerScale, the residual) — and
keras.layers.Identity, saved by Keras 3 as .keras and .h5 with Keras's own output.
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-app-layers.py
"""
import numpy as np
import keras
from keras.src.applications.convnext import LayerScale

OUT = "tests/models/extra"
rng = np.random.default_rng(41)
keras.utils.set_random_seed(12)
x_in = keras.Input((8, 8, 16), name="x")
h = keras.layers.DepthwiseConv2D(7, padding="same", name="dw")(x_in)
h = keras.layers.LayerNormalization(epsilon=1e-6, name="ln")(h)
h = keras.layers.Dense(64, name="pw1")(h)
h = keras.layers.Activation("gelu", name="gelu")(h)
h = keras.layers.Dense(16, name="pw2")(h)
ls = LayerScale(1e-6, 16, name="layer_scale")
h = ls(h)
h = keras.layers.Identity(name="identity")(h)
out = keras.layers.Add(name="residual")([x_in, h])
m = keras.Model(x_in, out, name="app_layers")
# A trained-looking scale instead of the 1e-6 start, so the branch shows in the output.
ls.gamma.assign(rng.uniform(0.2, 1.5, size=(16,)).astype("float32"))
x = rng.standard_normal((2, 8, 8, 16)).astype("float32")
y = np.asarray(m(x, training=False))
m.save(f"{OUT}/app_layers.keras")
m.save(f"{OUT}/app_layers.h5")
np.save(f"{OUT}/app_layers.input0.npy", x)
np.save(f"{OUT}/app_layers.expected.npy", y)
print("app_layers", y.shape, float(np.abs(y - x).max()))

# Image preprocessing layers kept in a saved model: Resizing (bilinear down, nearest up) and
# CenterCrop (odd margins), then a convolution so the result is a model's.
keras.utils.set_random_seed(13)
img = keras.Input((10, 13, 3), name="img")
a = keras.layers.Resizing(7, 9, name="down")(img)
b = keras.layers.Resizing(14, 17, interpolation="nearest", name="up")(img)
c = keras.layers.CenterCrop(7, 9, name="crop")(b)
d = keras.layers.Concatenate(name="cat")([a, c])
e = keras.layers.Conv2D(4, 3, name="conv")(d)
m = keras.Model(img, e, name="image_prep")
xi = rng.uniform(0, 255, size=(2, 10, 13, 3)).astype("float32")
yi = np.asarray(m(xi, training=False))
m.save(f"{OUT}/image_prep.keras")
m.save(f"{OUT}/image_prep.h5")
np.save(f"{OUT}/image_prep.input0.npy", xi)
np.save(f"{OUT}/image_prep.expected.npy", yi)
print("image_prep", yi.shape)

# Image augmentations saved in a model: the identity at inference.
keras.utils.set_random_seed(14)
aug_in = keras.Input((6, 6, 2), name="img")
h = keras.layers.RandomFlip("horizontal", name="flip")(aug_in)
h = keras.layers.RandomRotation(0.1, name="rot")(h)
h = keras.layers.RandomZoom(0.2, name="zoom")(h)
h = keras.layers.RandomTranslation(0.1, 0.1, name="shift")(h)
h = keras.layers.RandomContrast(0.3, name="contrast")(h)
h = keras.layers.RandomBrightness(0.2, value_range=(0, 1), name="brightness")(h)
m = keras.Model(aug_in, keras.layers.Conv2D(3, 3, name="conv")(h), name="augment")
xa = rng.uniform(0, 1, size=(2, 6, 6, 2)).astype("float32")
ya = np.asarray(m(xa, training=False))
# (Keras 3.15 cannot write these layers to a legacy .h5: deepcopying their seed generator
# fails; the .keras archive only.)
m.save(f"{OUT}/augment.keras")
np.save(f"{OUT}/augment.input0.npy", xa)
np.save(f"{OUT}/augment.expected.npy", ya)
print("augment", ya.shape)
