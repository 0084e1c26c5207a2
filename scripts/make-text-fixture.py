"""Makes tests/models/extra/text_*: string inputs read by TextVectorization and StringLookup
(which kerasc runs on the host), saved by Keras 3 with Keras's own output. Keras 3's text
layers need TensorFlow, so this runs on the TensorFlow backend.
- text_adapted (.keras only: a legacy .h5 does not keep an adapted vocabulary): an adapted
  TextVectorization (lowercase, strip punctuation, whitespace split, 8 tokens; TensorFlow
  lowercases ASCII letters only, so "Éclair" stays out of the vocabulary) into Embedding, a mean
  and Dense;
- text_vocab (.keras and .h5): a TextVectorization with its vocabulary in the config
  (lowercase only, 5 tokens) and a StringLookup over three categorical strings per row.
usage: KERAS_BACKEND=tensorflow target/tf-venv/bin/python scripts/make-text-fixture.py
"""
import numpy as np
import keras
from keras import layers as L

OUT = "tests/models/extra"
keras.utils.set_random_seed(41)
texts = np.array([["The cat sat, on the MAT!"], ["dogs & CATS... and a Dog"], [""],
                  ["one two three four five six seven eight nine ten the cat"], ["Éclair café ÉCLAIR"]])
tv = L.TextVectorization(output_sequence_length=8, name="tv")
tv.adapt(["the cat sat on the mat", "the dog ate a cat", "a cat and a dog", "éclair café"])
i = keras.Input((1,), dtype="string", name="text")
e = L.Embedding(tv.vocabulary_size(), 4, name="emb")(tv(i))
m = keras.Model(i, L.Dense(3, name="head")(L.GlobalAveragePooling1D(name="gap")(e)), name="text_adapted")
y = np.asarray(m(texts))
m.save(f"{OUT}/text_adapted.keras")
np.save(f"{OUT}/text_adapted.input0.npy", texts)
np.save(f"{OUT}/text_adapted.expected.npy", y)
print("text_adapted", y.shape, np.asarray(tv(texts)).tolist())

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
y = np.asarray(m([xt, xc]))
m.save(f"{OUT}/text_vocab.keras")
m.save(f"{OUT}/text_vocab.h5")
np.save(f"{OUT}/text_vocab.input0.npy", xt)
np.save(f"{OUT}/text_vocab.input1.npy", xc)
np.save(f"{OUT}/text_vocab.expected.npy", y)
print("text_vocab", y.shape, np.asarray(tv2(xt)).tolist(), np.asarray(sl(xc)).tolist())
