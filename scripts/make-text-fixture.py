"""Makes tests/models/extra/text_*: string inputs read by TextVectorization and StringLookup
(which kerasc runs on the host), saved by Keras 3 with Keras's own output. Keras 3's text
layers need TensorFlow, so this runs on the TensorFlow backend.
- text_adapted (.keras only: a legacy .h5 does not keep an adapted vocabulary): an adapted
  TextVectorization (lowercase, strip punctuation, whitespace split, 8 tokens; TensorFlow
  lowercases ASCII letters only, so "Éclair" stays out of the vocabulary) into Embedding, a mean
  and Dense;
- text_vocab (.keras and .h5): a TextVectorization with its vocabulary in the config
  (lowercase only, 5 tokens) and a StringLookup over three categorical strings per row;
- crossing (.keras and .h5): HashedCrossing of integer model inputs, as bins and one-hot;
- hashing (.keras and .h5): Hashing of strings and integers (a mask value, one-hot) and a
  HashedCrossing of a string with an integer feature;
- tests/models/train/text_fit (.keras, .data.npz, .trained.keras, .history.json): a text
  classifier Keras fine-tuned on string data, for kerasc fit through the host stage.
usage: KERAS_BACKEND=tensorflow target/tf-venv/bin/python scripts/make-text-fixture.py
"""
import numpy as np
import keras
from keras import layers as L

from fixture import save_fixture

OUT = "tests/models/extra"
keras.utils.set_random_seed(41)
texts = np.array([["The cat sat, on the MAT!"], ["dogs & CATS... and a Dog"], [""],
                  ["one two three four five six seven eight nine ten the cat"], ["Éclair café ÉCLAIR"]])
tv = L.TextVectorization(output_sequence_length=8, name="tv")
tv.adapt(["the cat sat on the mat", "the dog ate a cat", "a cat and a dog", "éclair café"])
i = keras.Input((1,), dtype="string", name="text")
e = L.Embedding(tv.vocabulary_size(), 4, name="emb")(tv(i))
m = keras.Model(i, L.Dense(3, name="head")(L.GlobalAveragePooling1D(name="gap")(e)), name="text_adapted")
save_fixture(m, OUT, "text_adapted", [texts], np.asarray(m(texts)), formats=("keras",))
print("ids", np.asarray(tv(texts)).tolist())

keras.utils.set_random_seed(42)
t_in = keras.Input((1,), dtype="string", name="text")
c_in = keras.Input((3,), dtype="string", name="colors")
tv2 = L.TextVectorization(vocabulary=["red", "green", "blue", "sky", "is"], standardize="lower",
                          output_sequence_length=5, name="tv")
sl = L.StringLookup(vocabulary=["red", "green", "blue"], name="lookup")
a = L.Flatten(name="fa")(L.Embedding(8, 2, name="emb_text")(tv2(t_in)))
b = L.Flatten(name="fb")(L.Embedding(5, 2, name="emb_colors")(sl(c_in)))
m = keras.Model([t_in, c_in], L.Concatenate(name="out")([a, b]), name="text_vocab")
xt = np.array([["The sky is BLUE"], ["red, green"], ["purple sky is is is is is"]])
xc = np.array([["red", "blue", "pink"], ["", "green", "Red"], ["blue", "blue", "green"]])
save_fixture(m, OUT, "text_vocab", [xt, xc], np.asarray(m([xt, xc])))
print("ids", np.asarray(tv2(xt)).tolist(), np.asarray(sl(xc)).tolist())

# HashedCrossing of two integer features (kerasc runs it on the host: TensorFlow's
# sparse.cross_hashed), as bins into an Embedding and as one-hot rows into a Dense.
keras.utils.set_random_seed(43)
a_in = keras.Input((1,), dtype="int64", name="age_bucket")
b_in = keras.Input((1,), dtype="int64", name="city")
c_in = keras.Input((1,), dtype="int64", name="device")
d_in = keras.Input((1,), dtype="int64", name="hour")
x = keras.Input((2,), name="dense")
bins = L.HashedCrossing(num_bins=50, name="cross")((a_in, b_in))
hot = L.HashedCrossing(num_bins=7, output_mode="one_hot", name="cross_hot")((c_in, d_in))
e = L.Flatten(name="fe")(L.Embedding(50, 3, name="emb")(bins))
h = L.Dense(4, name="dh")(hot)
m = keras.Model([a_in, b_in, c_in, d_in, x], L.Concatenate(name="out")([e, h, x]), name="crossing")
xa = np.array([[1], [5], [-3], [123456789]], "int64")
xb = np.array([[2], [7], [7], [0]], "int64")
xc = np.array([[0], [1], [2], [3]], "int64")
xd = np.array([[9], [9], [-9], [2**40]], "int64")
xx = np.arange(8, dtype="float32").reshape(4, 2)
ins = [xa, xb, xc, xd, xx]
save_fixture(m, OUT, "crossing", ins, np.asarray(m(ins)))

# Hashing (FarmHash fingerprints, an integer as its decimal string; a mask value; one-hot) and
# HashedCrossing of a string with an integer feature.
keras.utils.set_random_seed(44)
word = keras.Input((1,), dtype="string", name="word")
num = keras.Input((1,), dtype="int64", name="num")
tag = keras.Input((1,), dtype="string", name="tag")
cw = keras.Input((1,), dtype="string", name="cross_word")
cn = keras.Input((1,), dtype="int64", name="cross_num")
parts = [
    L.Flatten(name="f1")(L.Embedding(11, 2, name="e1")(L.Hashing(num_bins=11, name="hash_word")(word))),
    L.Flatten(name="f2")(L.Embedding(9, 2, name="e2")(L.Hashing(num_bins=9, mask_value=0, name="hash_num")(num))),
    L.Dense(3, name="d3")(L.Hashing(num_bins=5, output_mode="one_hot", name="hash_tag")(tag)),
    L.Flatten(name="f4")(L.Embedding(13, 2, name="e4")(L.HashedCrossing(num_bins=13, name="cross")((cw, cn)))),
]
m = keras.Model([word, num, tag, cw, cn], L.Concatenate(name="out")(parts), name="hashing")
ins = [np.array([["a"], ["hello"], [""], ["Éclair café"]]), np.array([[1], [-3], [0], [12345678901]], "int64"),
       np.array([["x"], ["yy"], ["a longer tag of more than sixty-four bytes, to take every FarmHash branch"], [""]]),
       np.array([["a"], ["b"], ["a"], ["zzz"]]), np.array([[1], [2], [2], [-5]], "int64")]
save_fixture(m, OUT, "hashing", ins, np.asarray(m(ins)))

# Fine-tuning through the host stage: a text classifier (TextVectorization with its vocabulary
# in the config, and a Hashing of a string tag) trained by Keras, before and after, with the
# data as strings (tests/fit.rs: kerasc fit ends at Keras's weights and history).
import json
TRAIN = "tests/models/train"
keras.utils.set_random_seed(45)
t_in = keras.Input((1,), dtype="string", name="text")
g_in = keras.Input((1,), dtype="string", name="tag")
tv3 = L.TextVectorization(vocabulary=["good", "bad", "movie", "plot", "great", "awful"], output_sequence_length=4, name="tv")
e = L.GlobalAveragePooling1D(name="gap")(L.Embedding(8, 4, name="emb")(tv3(t_in)))
g = L.Flatten(name="fg")(L.Embedding(5, 2, name="emb_tag")(L.Hashing(num_bins=5, name="hash_tag")(g_in)))
m = keras.Model([t_in, g_in], L.Dense(2, activation="softmax", name="out")(L.Concatenate(name="cat")([e, g])), name="text_fit")
m.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
texts = np.array([["good movie"], ["bad plot"], ["great great movie"], ["awful movie, bad"], ["good plot"],
                  ["Bad!"], ["GREAT"], ["awful awful"], ["a good one"], ["the plot was bad"]])
tags = np.array([["a"], ["b"], ["a"], ["c"], ["a"], ["b"], ["d"], ["c"], ["a"], ["b"]])
labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], "int32")
m.save(f"{TRAIN}/text_fit.keras")
np.savez(f"{TRAIN}/text_fit.data.npz", x_text=texts, x_tag=tags, y=labels)
import tensorflow as tf  # Keras's fit takes string data as TensorFlow tensors, not numpy's
h = m.fit({"text": tf.constant(texts), "tag": tf.constant(tags)}, labels, batch_size=4, epochs=2, shuffle=False,
          verbose=0)
m.save(f"{TRAIN}/text_fit.trained.keras")
with open(f"{TRAIN}/text_fit.history.json", "w") as f:
    json.dump({k: [float(v) for v in vs] for k, vs in h.history.items()}, f)
print("text_fit", {k: [round(float(v), 5) for v in vs] for k, vs in h.history.items()})
