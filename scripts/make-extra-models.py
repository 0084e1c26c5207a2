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

# Keras's implicit masks: Embedding(mask_zero=True) carries a padding mask through Dense and
# LayerNormalization into MultiHeadAttention (query and key masks) and GlobalAveragePooling1D
# (mean over the unmasked steps); Masking does the same for float sequences.
keras.utils.set_random_seed(11)
ids_in = keras.Input((6,), name="ids", dtype="int32")
e = keras.layers.Embedding(12, 8, mask_zero=True, name="emb")(ids_in)
e = keras.layers.Dense(8, activation="relu", name="proj")(e)
e = keras.layers.LayerNormalization(name="ln")(e)
att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(e, e)
s = keras.layers.Add(name="res")([e, att])
p = keras.layers.GlobalAveragePooling1D(name="gap")(s)
m3 = keras.Model(ids_in, keras.layers.Dense(3, name="head")(p), name="masked_text")
ids = np.array([[3, 5, 7, 0, 0, 0], [2, 9, 4, 4, 6, 11], [1, 0, 0, 0, 0, 0]], dtype="int32")
y3 = np.asarray(m3(ids, training=False))
m3.save(f"{OUT}/masked_text.keras")
m3.save(f"{OUT}/masked_text.h5")
np.save(f"{OUT}/masked_text.input0.npy", ids)
np.save(f"{OUT}/masked_text.expected.npy", y3)
print("masked_text", y3.shape)

keras.utils.set_random_seed(12)
seq_in = keras.Input((5, 3), name="seq")
mk = keras.layers.Masking(mask_value=-1.0, name="masking")(seq_in)
d = keras.layers.Dense(4, activation="tanh", name="d")(mk)
p2 = keras.layers.GlobalAveragePooling1D(name="gap")(d)
m4 = keras.Model(seq_in, p2, name="masking_seq")
xs4 = rng.standard_normal((2, 5, 3)).astype("float32")
xs4[0, 3:, :] = -1.0
xs4[1, 1, :] = -1.0
y4 = np.asarray(m4(xs4, training=False))
m4.save(f"{OUT}/masking_seq.keras")
m4.save(f"{OUT}/masking_seq.h5")
np.save(f"{OUT}/masking_seq.input0.npy", xs4)
np.save(f"{OUT}/masking_seq.expected.npy", y4)
print("masking_seq", y4.shape)

# Masked sequences into recurrent layers: an LSTM returning sequences (masked steps repeat the
# previous output), a GRU on its masked output, a Bidirectional LSTM (zeros at masked steps),
# a SimpleRNN going backwards, all from Embedding(mask_zero=True) with padding at either end.
keras.utils.set_random_seed(13)
i5 = keras.Input((7,), dtype="int32", name="ids")
e5 = keras.layers.Embedding(10, 4, mask_zero=True, name="emb")(i5)
l5 = keras.layers.LSTM(5, return_sequences=True, name="lstm")(e5)
g5 = keras.layers.GRU(3, name="gru")(l5)
b5 = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True), name="bi")(e5)
p5 = keras.layers.GlobalAveragePooling1D(name="gap")(b5)
s5 = keras.layers.SimpleRNN(3, go_backwards=True, name="srnn")(e5)
m5 = keras.Model(i5, keras.layers.Concatenate(name="cat")([g5, p5, s5]), name="masked_rnn")
ids5 = np.array([[3, 5, 7, 0, 0, 0, 0], [0, 0, 2, 9, 4, 4, 6], [1, 2, 0, 3, 4, 0, 5]], dtype="int32")
y5 = np.asarray(m5(ids5, training=False))
m5.save(f"{OUT}/masked_rnn.keras")
m5.save(f"{OUT}/masked_rnn.h5")
np.save(f"{OUT}/masked_rnn.input0.npy", ids5)
np.save(f"{OUT}/masked_rnn.expected.npy", y5)
print("masked_rnn", y5.shape)

# Luong Attention with implicit query and value masks (and a causal mask), then a masked mean.
keras.utils.set_random_seed(14)
i6 = keras.Input((6,), dtype="int32", name="ids")
e6 = keras.layers.Embedding(9, 4, mask_zero=True, name="emb")(i6)
a6 = keras.layers.Attention(use_scale=True, name="att")([e6, e6], use_causal_mask=True)
m6 = keras.Model(i6, keras.layers.GlobalAveragePooling1D(name="gap")(a6), name="masked_attention")
ids6 = np.array([[3, 5, 7, 0, 0, 0], [0, 2, 8, 4, 4, 6]], dtype="int32")
y6 = np.asarray(m6(ids6, training=False))
m6.save(f"{OUT}/masked_attention.keras")
m6.save(f"{OUT}/masked_attention.h5")
np.save(f"{OUT}/masked_attention.input0.npy", ids6)
np.save(f"{OUT}/masked_attention.expected.npy", y6)
print("masked_attention", y6.shape)
