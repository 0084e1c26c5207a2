"""Makes tests/models/train/reg_bn_sgd.mirrored.*: the batch-normalization fixture
(reg_bn_sgd.h5, regression.npz) fine-tuned by Keras 3 on TensorFlow under
tf.distribute.MirroredStrategy over two logical CPU devices: batch 14 (48 training samples:
three global batches of 14, 7 per replica, and a last one of 6, 3 per replica), 3 epochs, no
shuffle, validation_split 0.25. (A global batch that does not split evenly, 15 = 8 + 7, stops
Keras 3.15 on TensorFlow 2.21 with "Inputs to operation AddN ... must have the same size".) tests/devices.rs checks `kerasc fit --strategy mirrored` against it.
usage: KERAS_BACKEND=tensorflow target/tf-venv/bin/python scripts/make-mirrored-fixture.py
(target/tf-venv: python3 -m venv target/tf-venv && target/tf-venv/bin/pip install tensorflow-cpu "keras==3.15.*" h5py)
"""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras  # noqa: E402

OUT = "tests/models/train"
d = np.load(f"{OUT}/regression.npz")
strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
with strategy.scope():
    # Compiled as scripts/make-train-fixtures.py compiled it (the file's compile config does not
    # load on the TensorFlow backend).
    m = keras.models.load_model(f"{OUT}/reg_bn_sgd.h5", compile=False)
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", metrics=["mae"])
h = m.fit(d["x"], d["y"], batch_size=14, epochs=3, shuffle=False, verbose=0, validation_split=0.25)
m.save(f"{OUT}/reg_bn_sgd.mirrored.trained.h5")
with open(f"{OUT}/reg_bn_sgd.mirrored.history.json", "w") as f:
    json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
print("replicas", strategy.num_replicas_in_sync, {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})
