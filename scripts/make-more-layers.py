"""Makes tests/models/extra/more_layers_*: keras.layers classes beyond the dev set, each in a
small model saved by Keras 3 as .keras and .h5 with Keras's own output:
- more_layers_norm: RMSNormalization, SpectralNormalization around Dense and Conv2D (inference
  reads the stored kernel), AdaptiveAveragePooling2D/AdaptiveMaxPooling2D to sizes that do not
  divide the input, AdaptiveAveragePooling1D, AdaptiveMaxPooling3D;
- more_layers_rnn: the generic RNN layer over LSTMCell, GRUCell and SimpleRNNCell;
- more_layers_tokens: CategoryEncoding (one_hot, multi_hot, count), Discretization (int and
  one_hot) and ReversibleEmbedding (lookup, and the reverse projection to logits);
- more_layers_convlstm: ConvLSTM1D and ConvLSTM2D (sequences, last output and states, strides,
  'same' padding, going backwards).
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-more-layers.py [NAME...]
"""
import sys
import numpy as np
import keras
from keras import layers as L

from fixture import save_fixture

OUT = "tests/models/extra"
rng = np.random.default_rng(51)


def save(m, name, inputs):
    y = m(inputs if len(inputs) > 1 else inputs[0], training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    flat = np.concatenate([np.asarray(v, dtype="float32").reshape(len(inputs[0]), -1) for v in ys], axis=1)
    save_fixture(m, OUT, name, inputs, flat)


def want(name):
    return not sys.argv[1:] or name in sys.argv[1:]


def flat(x, name):
    return L.Flatten(name=name)(x)


if want("more_layers_norm"):
    keras.utils.set_random_seed(31)
    img = keras.Input((7, 9, 3), name="img")
    seq = keras.Input((10, 4), name="seq")
    vol = keras.Input((5, 6, 7, 2), name="vol")
    outs = []
    r = L.RMSNormalization(name="rms")(img)
    r2 = L.RMSNormalization(axis=[-2, -1], epsilon=1e-3, name="rms_2axes")(seq)
    sd = L.SpectralNormalization(L.Dense(5), name="sn_dense")(seq)
    sc = L.SpectralNormalization(L.Conv2D(4, 3, padding="same"), power_iterations=2, name="sn_conv")(r)
    outs += [flat(r, "f_rms"), flat(r2, "f_rms2"), flat(sd, "f_sn_dense"), flat(sc, "f_sn_conv")]
    outs += [flat(L.AdaptiveAveragePooling2D((3, 4), name="aap2")(sc), "f_aap2"),
             flat(L.AdaptiveMaxPooling2D((4, 2), name="amp2")(img), "f_amp2"),
             flat(L.AdaptiveAveragePooling1D(3, name="aap1")(seq), "f_aap1"),
             flat(L.AdaptiveMaxPooling3D((2, 4, 3), name="amp3")(vol), "f_amp3")]
    m = keras.Model([img, seq, vol], L.Concatenate(name="out")(outs), name="more_layers_norm")
    # Trained-looking spectral state: kernels scaled away from norm 1 (inference uses them as stored).
    for lname in ["sn_dense", "sn_conv"]:
        inner = m.get_layer(lname).layer
        inner.kernel.assign(np.asarray(inner.kernel) * 3.0)
    m.get_layer("rms").scale.assign(rng.uniform(0.5, 1.5, (3,)).astype("float32"))
    xi = rng.standard_normal((2, 7, 9, 3)).astype("float32")
    xs = rng.standard_normal((2, 10, 4)).astype("float32")
    xv = rng.standard_normal((2, 5, 6, 7, 2)).astype("float32")
    save(m, "more_layers_norm", [xi, xs, xv])

if want("more_layers_rnn"):
    keras.utils.set_random_seed(32)
    seq = keras.Input((6, 3), name="seq")
    a = L.RNN(L.LSTMCell(4), return_sequences=True, name="rnn_lstm")(seq)
    b = L.RNN(L.GRUCell(3), go_backwards=True, name="rnn_gru")(a)
    c = L.RNN(L.SimpleRNNCell(2, activation="relu"), name="rnn_simple")(seq)
    m = keras.Model(seq, L.Concatenate(name="out")([L.Flatten(name="fa")(a), b, c]), name="more_layers_rnn")
    save(m, "more_layers_rnn", [rng.standard_normal((2, 6, 3)).astype("float32")])

if want("more_layers_tokens"):
    keras.utils.set_random_seed(33)
    ids = keras.Input((5,), dtype="int32", name="ids")
    one = keras.Input((1,), dtype="int32", name="one")
    val = keras.Input((4,), name="val")
    outs = [L.CategoryEncoding(7, output_mode="multi_hot", name="multi")(ids),
            L.CategoryEncoding(7, output_mode="count", name="count")(ids),
            L.CategoryEncoding(7, output_mode="one_hot", name="onehot")(one),
            keras.ops.cast(L.Discretization(bin_boundaries=[-1.0, 0.0, 0.5], name="disc")(val), "float32"),
            L.Flatten(name="f_disc1h")(L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="one_hot", name="disc1h")(val))]
    re = keras.layers.ReversibleEmbedding(7, 3, name="rev")
    e = re(ids)
    logits = re(e, reverse=True)
    outs += [L.Flatten(name="f_e")(e), L.Flatten(name="f_logits")(logits)]
    m = keras.Model([ids, one, val], L.Concatenate(name="out")(outs), name="more_layers_tokens")
    xid = rng.integers(0, 7, (3, 5)).astype("int32")
    xone = rng.integers(0, 7, (3, 1)).astype("int32")
    xval = np.array([[-2.0, -1.0, 0.25, 0.5], [0.0, 1.0, 3.0, -0.5], [0.49, -0.99, 2.0, 1.0]], "float32")
    save(m, "more_layers_tokens", [xid, xone, xval])

if want("more_layers_convlstm"):
    keras.utils.set_random_seed(34)
    v1 = keras.Input((4, 9, 3), name="seq1d")
    v2 = keras.Input((3, 6, 5, 2), name="seq2d")
    a = L.ConvLSTM1D(4, 3, padding="same", return_sequences=True, name="cl1d")(v1)
    b, bh, bc = L.ConvLSTM1D(3, 2, strides=2, return_state=True, go_backwards=True, name="cl1d_back")(v1)
    c = L.ConvLSTM2D(3, (3, 2), padding="same", return_sequences=True, recurrent_activation="hard_sigmoid", name="cl2d")(v2)
    e = L.ConvLSTM2D(2, 3, dilation_rate=1, name="cl2d_valid")(v2)
    outs = [flat(x, f"f{k}") for k, x in enumerate([a, b, bh, bc, c, e])]
    m = keras.Model([v1, v2], L.Concatenate(name="out")(outs), name="more_layers_convlstm")
    save(m, "more_layers_convlstm", [rng.standard_normal((2, 4, 9, 3)).astype("float32"),
                                     rng.standard_normal((2, 3, 6, 5, 2)).astype("float32")])

if want("more_layers_attention"):
    # AdditiveAttention (Bahdanau scores, with and without the learned scale) under implicit
    # masks and the causal mask; GroupQueryAttention (key/value heads shared by query heads)
    # with and without bias, masked, causal.
    keras.utils.set_random_seed(35)
    ids = keras.Input((6,), dtype="int32", name="ids")
    e = L.Embedding(20, 8, mask_zero=True, name="emb")(ids)
    q = L.Dense(8, name="q")(e)
    a1 = L.AdditiveAttention(name="add_att")([q, e])
    a2 = L.AdditiveAttention(use_scale=False, name="add_att_plain")([q, e], use_causal_mask=True)
    g1 = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2, name="gqa")(q, e)
    g2 = L.GroupQueryAttention(head_dim=2, num_query_heads=6, num_key_value_heads=3, use_bias=False,
                               name="gqa_nobias")(q, e, use_causal_mask=True)
    outs = [flat(x, f"f{k}") for k, x in enumerate([a1, a2, g1, g2])]
    m = keras.Model(ids, L.Concatenate(name="out")(outs), name="more_layers_attention")
    for lname in ["add_att"]:
        m.get_layer(lname).scale.assign(rng.uniform(0.5, 1.5, (8,)).astype("float32"))
    x = np.array([[3, 5, 7, 0, 0, 0], [2, 9, 4, 4, 6, 11], [1, 0, 0, 0, 0, 0]], "int32")
    save(m, "more_layers_attention", [x])
