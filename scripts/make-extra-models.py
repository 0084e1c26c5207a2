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

# keras.ops calls recorded as layers of a functional model (arithmetic with Python numbers and
# constant tensors, reductions, indexing, shape ops, einsum, where/take/split/stack, nn ops) and
# EinsumDense layers; every piece is flattened into one output.
keras.utils.set_random_seed(15)
from keras import ops
x7 = keras.Input((6, 8), name="x")
ids7 = keras.Input((3,), dtype="int32", name="ids")
h = (x7 / 4.0 + 1.0) * 0.5
h = 1.0 - h
pieces = []
ed = keras.layers.EinsumDense("abc,cd->abd", output_shape=(6, 5), bias_axes="d", activation="relu", name="ed1")(h)
ed2 = keras.layers.EinsumDense("abc,cde->abde", output_shape=(6, 2, 3), bias_axes="de", name="ed2")(x7)
ed3 = keras.layers.EinsumDense("abc,cd->ad", output_shape=(4,), bias_axes=None, name="ed3")(x7)
pieces += [ed, ed2, ed3]
scores = ops.einsum("bij,bkj->bik", ed, ed) / ops.sqrt(5.0)
causal = ops.convert_to_tensor(np.tril(np.ones((6, 6), dtype="float32")))
scores = ops.where(causal > 0, scores, -np.inf)
att = ops.softmax(scores, axis=-1)
pieces += [att, ops.matmul(att, ed), ops.log_softmax(ed, axis=1)]
pieces += [h[:, -1], h[..., :3], h[:, None, ::2, 1], h[:, ::-1, 2:5:2], ops.squeeze(h[:, :1], 1)]
pieces += [ops.mean(h, axis=1, keepdims=True), ops.sum(h, axis=[1, 2]), ops.max(x7, axis=-1), ops.min(x7, axis=1),
           ops.var(x7, axis=-1), ops.std(x7, axis=1), ops.prod(h[:, :2, :3], axis=1)]
pieces += [ops.take(x7, ids7, axis=1), ops.stack([ed3, ed3 * 2.0], axis=1), ops.split(x7, 2, axis=-1)[1],
           ops.split(x7, [1, 4], axis=1)[2], ops.transpose(x7, (0, 2, 1)), ops.swapaxes(ed2, 2, 3),
           ops.moveaxis(ed2, 1, 3), ops.tile(ed3[:, None], (1, 2, 1)), ops.repeat(ed3, 2, axis=1),
           ops.flip(x7, axis=1), ops.expand_dims(ed3, -1), ops.reshape(x7, (-1, 4, 12))]
pieces += [ops.clip(x7, -0.5, 0.7), ops.maximum(x7, 0.1), ops.minimum(x7, ed3[:, :1, None]), x7 ** 2,
           ops.abs(x7) ** 0.5, -x7, x7 // 0.5, x7 % 0.75, ops.log1p(ops.abs(x7)), ops.expm1(x7),
           ops.exp(-ops.square(x7)), ops.log(ops.abs(x7) + 1e-3), ops.rsqrt(ops.abs(x7) + 1.0), ops.erf(x7),
           ops.sign(x7), ops.floor(x7 * 3.0), ops.ceil(x7 * 3.0), ops.sin(x7), ops.cos(x7), ops.tanh(x7),
           ops.reciprocal(ops.abs(x7) + 1.0)]
pieces += [ops.relu(x7), ops.relu6(x7 * 8.0), ops.sigmoid(x7), ops.silu(x7), ops.gelu(x7), ops.gelu(x7, approximate=False),
           ops.leaky_relu(x7, 0.1), ops.elu(x7), ops.selu(x7), ops.softplus(x7), ops.softsign(x7),
           ops.hard_sigmoid(x7), ops.hard_silu(x7), ops.log_sigmoid(x7)]
pieces += [ops.cast(ops.cast(x7 * 3.0, "int32"), "float32"), ops.zeros_like(x7) + ops.ones_like(x7),
           ops.cast(ops.logical_and(x7 > 0, x7 < 0.5), "float32"), ops.cast(ops.not_equal(x7, x7[:, :1]), "float32"),
           ops.cast(ops.any(x7 > 1.0, axis=-1), "float32"), ops.dot(x7, ops.ones((8, 2)) * 0.5),
           ops.concatenate([x7, ed], axis=-1), ops.where(x7 > 0, x7, 0.5 * x7)]
flat = [keras.layers.Flatten(name=f"flat{k}")(p) if len(p.shape) > 2 else
        (p if len(p.shape) == 2 else keras.layers.Reshape((1,), name=f"col{k}")(p)) for k, p in enumerate(pieces)]
m7 = keras.Model([x7, ids7], ops.concatenate(flat, axis=-1), name="ops_model")
xs7 = [rng.standard_normal((2, 6, 8)).astype("float32"), np.array([[0, 5, 2], [3, 3, 1]], dtype="int32")]
y7 = np.asarray(m7(xs7, training=False))
m7.save(f"{OUT}/ops_model.keras")
m7.save(f"{OUT}/ops_model.h5")
for k, x in enumerate(xs7):
    np.save(f"{OUT}/ops_model.input{k}.npy", x)
np.save(f"{OUT}/ops_model.expected.npy", y7)
print("ops_model", y7.shape)
