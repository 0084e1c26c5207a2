"""Makes tests/models/extra/tf_ops.k2.h5: a tf-keras (Keras 2) functional model that calls
TensorFlow functions on symbolic tensors (TFOpLambda and SlicingOpLambda entries), with Keras's
own output, so tests can check kerasc against it without Python at test time.
usage: python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0
       /tmp/tfenv/bin/python scripts/make-keras2-op-models.py
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras

OUT = "tests/models/extra"
rng = np.random.default_rng(41)
tf.random.set_seed(41)
x = keras.Input((6, 8), name="x")
ids = keras.Input((3,), dtype="int32", name="ids")
h = (x / 4.0 + 1.0) * 0.5
h = 1.0 - h
h = 2.0 * h - x
d = keras.layers.Dense(5, name="dense")(h)
pieces = [d, tf.nn.relu(d), tf.math.sigmoid(d), tf.math.tanh(d), tf.math.exp(-tf.math.abs(d)),
          tf.math.log(tf.math.abs(d) + 1e-3), tf.math.sqrt(tf.math.square(d) + 1.0), tf.math.rsqrt(tf.abs(d) + 1.0),
          tf.nn.gelu(d), tf.nn.gelu(d, approximate=True), tf.nn.leaky_relu(d, alpha=0.1), tf.nn.silu(d), tf.nn.elu(d),
          tf.nn.selu(d), tf.math.softplus(d), tf.nn.relu6(d * 4.0), tf.math.erf(d), -d, tf.math.floor(d * 3.0),
          tf.math.maximum(d, 0.1), tf.math.minimum(d, d * 2.0), tf.math.pow(tf.abs(d), 1.5), d ** 2, d // 0.5, d % 0.75,
          d + d, d * d, d - tf.reduce_mean(d, axis=-1, keepdims=True)]
pieces += [tf.reduce_mean(x, axis=1), tf.reduce_sum(x, axis=[1, 2]), tf.reduce_max(x, axis=-1),
           tf.reduce_min(x, axis=1, keepdims=True), tf.math.reduce_std(x, axis=-1), tf.math.reduce_variance(x, axis=1),
           tf.math.reduce_prod(x[:, :2, :3], axis=1)]
pieces += [tf.nn.softmax(d), tf.nn.softmax(d, axis=1), tf.nn.log_softmax(d), tf.reshape(x, (-1, 4, 12)),
           tf.expand_dims(d, 1), tf.squeeze(x[:, :1], axis=1), tf.transpose(x, perm=[0, 2, 1]),
           tf.concat([x, h], axis=-1), tf.stack([d, d * 2.0], axis=1), tf.tile(d[:, :1], (1, 3, 1)),
           tf.cast(tf.cast(x * 3.0, "int32"), "float32"), tf.clip_by_value(x, -0.5, 0.7),
           tf.where(x > 0, x, 0.5 * x), tf.matmul(x, tf.ones((8, 2))), tf.gather(x, ids, axis=1),
           tf.split(x, 2, axis=-1)[1], tf.split(x, [1, 5], axis=1)[0]]
pieces += [x[:, -1], x[..., :3], x[:, None, ::2, 1], x[:, ::-1, 2:5:2], x[:, 1:4]]
flat = [keras.layers.Flatten(name=f"flat{k}")(p) if len(p.shape) > 2 else
        (p if len(p.shape) == 2 else keras.layers.Reshape((1,), name=f"col{k}")(p)) for k, p in enumerate(pieces)]
m = keras.Model([x, ids], keras.layers.Concatenate(name="out")(flat), name="tf_ops")
xs = [rng.standard_normal((2, 6, 8)).astype("float32"), np.array([[0, 5, 2], [3, 3, 1]], dtype="int32")]
y = m.predict(xs, verbose=0)
m.save(f"{OUT}/tf_ops.k2.h5")
for k, v in enumerate(xs):
    np.save(f"{OUT}/tf_ops.input{k}.npy", v)
np.save(f"{OUT}/tf_ops.expected.npy", y)
print("tf_ops", y.shape)
