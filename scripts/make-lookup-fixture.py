"""Makes tests/models/extra/lookup.*: IntegerLookup with its vocabulary in the config (one and
two OOV buckets, a mask token, one_hot/multi_hot/count outputs, the inverse lookup), saved by
Keras 3 as .keras and .h5 with Keras's own output. Keras 3's lookup layers need TensorFlow, so
this runs on the TensorFlow backend.
usage: KERAS_BACKEND=tensorflow target/tf-venv/bin/python scripts/make-lookup-fixture.py
       (venv: tensorflow-cpu==2.21.*, which brings Keras 3.15)
"""
import numpy as np
import keras
from keras import layers as L

from fixture import save_fixture

OUT = "tests/models/extra"
voc = [12, 7, 3, 5, 40]
ids = keras.Input((5,), dtype="int64", name="ids")
idx = keras.Input((5,), dtype="int64", name="idx")
outs = [
    L.IntegerLookup(vocabulary=voc, name="plain")(ids),
    L.IntegerLookup(vocabulary=voc, num_oov_indices=3, name="oov3")(ids),
    L.IntegerLookup(vocabulary=voc, mask_token=0, name="masked")(ids),
    L.IntegerLookup(vocabulary=voc, num_oov_indices=0, name="no_oov")(L.IntegerLookup(vocabulary=voc, invert=True, num_oov_indices=0, name="known")(idx)),
    L.IntegerLookup(vocabulary=voc, invert=True, name="inverse")(idx),
]
outs = [keras.ops.cast(o, "float32") for o in outs]
outs += [L.Flatten(name=f"f_{mode}")(L.IntegerLookup(vocabulary=voc, output_mode=mode, name=mode)(ids))
         for mode in ["one_hot", "multi_hot", "count"]]
m = keras.Model([ids, idx], L.Concatenate(name="out")(outs), name="lookup")
xi = np.array([[12, 5, 99, 7, 0], [0, 3, 12, -1, 40], [7, 7, -8, 1000, 5]], "int64")
xj = np.array([[1, 2, 0, 4, 3], [3, 3, 1, 0, 2], [0, 4, 3, 2, 1]], "int64")
save_fixture(m, OUT, "lookup", [xi, xj], np.asarray(m([xi, xj], training=False)))
