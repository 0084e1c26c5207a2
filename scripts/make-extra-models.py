"""Makes tests/models/extra: Keras models for cases the dev set lacks, written by Keras 3 itself
with its own outputs, so tests can check kerasc against Keras without Python at test time.
usage: KERAS_BACKEND=jax target/anchor-venv/bin/python scripts/make-extra-models.py
"""
import numpy as np
import keras

OUT = "tests/models/extra"
rng = np.random.default_rng(31)

# An encoder-decoder: the encoder LSTM's final states start the decoder LSTM (initial_state),
# a GRU starts from a Dense projection, and a Bidirectional LSTM takes four initial states.
keras.utils.set_random_seed(9)
enc_in = keras.Input((6, 5), name="encoder_in")
dec_in = keras.Input((4, 3), name="decoder_in")
_, h, c = keras.layers.LSTM(7, return_state=True, name="encoder")(enc_in)
dec = keras.layers.LSTM(7, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
g0 = keras.layers.Dense(5, activation="tanh", name="g0")(h)
gru = keras.layers.GRU(5, return_sequences=True, name="gru")(dec, initial_state=[g0])
bi = keras.layers.Bidirectional(keras.layers.LSTM(7, return_sequences=False), name="bi")(
    dec_in, initial_state=[h, c, c, h])
out = keras.layers.Concatenate(name="cat")([keras.layers.Flatten(name="flat")(gru), bi])
m = keras.Model([enc_in, dec_in], keras.layers.Dense(3, name="head")(out), name="seq2seq")
xs = [rng.standard_normal((2, 6, 5)).astype("float32"), rng.standard_normal((2, 4, 3)).astype("float32")]
y = np.asarray(m(xs, training=False))
m.save(f"{OUT}/seq2seq.keras")
m.save(f"{OUT}/seq2seq.h5")
for k, x in enumerate(xs):
    np.save(f"{OUT}/seq2seq.input{k}.npy", x)
np.save(f"{OUT}/seq2seq.expected.npy", y)
print("seq2seq", y.shape)

# MultiHeadAttention with an attention_mask input (padding-style, some rows fully masked) and
# the causal mask on top.
keras.utils.set_random_seed(10)
x_in = keras.Input((5, 8), name="x")
m_in = keras.Input((5, 5), name="mask", dtype="int32")
a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x_in, x_in, attention_mask=m_in,
                                                                         use_causal_mask=True)
b = keras.layers.MultiHeadAttention(num_heads=1, key_dim=3, name="mha2")(a, x_in, attention_mask=m_in)
m2 = keras.Model([x_in, m_in], keras.layers.Add(name="add")([a, b]), name="mha_mask")
xm = rng.standard_normal((2, 5, 8)).astype("float32")
mask = (rng.uniform(size=(2, 5, 5)) > 0.3).astype("int32")
mask[1, 2, :] = 0  # a query that attends to nothing
y2 = np.asarray(m2([xm, mask], training=False))
m2.save(f"{OUT}/mha_mask.keras")
m2.save(f"{OUT}/mha_mask.h5")
np.save(f"{OUT}/mha_mask.input0.npy", xm)
np.save(f"{OUT}/mha_mask.input1.npy", mask)
np.save(f"{OUT}/mha_mask.expected.npy", y2)
print("mha_mask", y2.shape)
