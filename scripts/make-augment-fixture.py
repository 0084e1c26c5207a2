"""Makes tests/models/extra/augment_more.*: the rest of Keras 3's image augmentation layers in
one model (3-channel images, values outside each layer's value range): the identity at
inference, as checked here against Keras's own output. (AutoContrast is deterministic, not an
augmentation, and RandomCrop changes the shape its config declares: both stay refused;
Equalization returns its input tensor itself when called symbolically, which makes a cycle of a
functional model, so Keras cannot build one with it.)
Keras 3.15 cannot write these layers to a legacy .h5, so the fixture is .keras only.
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-augment-fixture.py
"""
import numpy as np
import keras
from keras import layers as L

from fixture import save_fixture

OUT = "tests/models/extra"
rng = np.random.default_rng(43)
keras.utils.set_random_seed(15)
x_in = keras.Input((8, 8, 3), name="img")
chain = [
    L.AugMix(name="augmix"), L.CutMix(name="cutmix"), L.MixUp(name="mixup"),
    L.RandAugment(name="randaugment"), L.RandomColorDegeneration(0.5, name="degenerate"),
    L.RandomColorJitter(name="jitter"), L.RandomElasticTransform(name="elastic"), L.RandomErasing(name="erase"),
    L.RandomGaussianBlur(name="blur"), L.RandomGrayscale(name="gray"), L.RandomHue(0.5, name="hue"),
    L.RandomInvert(name="invert"), L.RandomPerspective(name="perspective"), L.RandomPosterization(4, name="posterize"),
    L.RandomSaturation(0.5, name="saturation"), L.RandomSharpness(0.5, name="sharpness"),
    L.RandomShear(0.3, name="shear"), L.Solarization(name="solarize"),
]
h = x_in
for layer in chain:
    h = layer(h)
m = keras.Model(x_in, L.Conv2D(4, 3, name="conv")(h), name="augment_more")
x = rng.uniform(-50, 300, size=(2, 8, 8, 3)).astype("float32")
y = np.asarray(m(x, training=False))
assert np.allclose(y, np.asarray(m.get_layer("conv")(x)), atol=1e-5), "an augmentation is not the identity"
save_fixture(m, OUT, "augment_more", [x], y, formats=("keras",))
