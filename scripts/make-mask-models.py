"""Makes tests/models/extra/mask_*: one small model per rule of Keras 3's mask propagation, saved
by Keras 3 as .keras and .h5 with Keras's own output (model(x, training=False), the same run
`predict` makes). Keras's output is the reference, also where its rules surprise:
- mask_bert: the issue's BERT-like classifier (Embedding(mask_zero=True), two post-LN encoder
  blocks, masked mean, Dense). MultiHeadAttention clears the masks of its query/value/key
  tensors when it runs, so the residual Add sees one unmasked input and passes no mask on: the
  second block attends to the padding, while the pooling keeps the mask it recorded when the
  model was built.
- mask_merge: Add/Subtract/Average/Multiply/Maximum/Minimum/Concatenate of masked and unmasked
  sequences (Keras 3: no mask unless every input has one, then their logical or; Multiply,
  Maximum and Minimum change their values where a mask is off), read at run time by
  MultiHeadAttention.
- mask_layers: which layers pass a mask on (Dense, LayerNormalization, Dropout, Activation,
  TimeDistributed, BatchNormalization...) and which drop it (Conv1D, EinsumDense, Reshape...),
  read at run time by MultiHeadAttention and Attention.
- mask_order: a masked tensor read by MultiHeadAttention and by layers Keras runs after it on
  other branches (Keras's run order decides whether they still see the mask).
- mask_cross: two cross-attentions at the same depth share their value; Keras's run order
  within a depth is not the config's.
Layers whose JAX op returns its input object unchanged (an identity Permute or Reshape, a zero-width pad)
are left out: whether they keep a mask is the backend's accident, not a Keras rule.
With --keras2 the same models are built and saved by Keras 2 (tf_keras 2.21 on TensorFlow 2.21)
as tests/models/extra/mask2_*.k2.h5 with Keras 2's own output: its rules where they differ
(merges take the logical and of the masks present; MultiHeadAttention leaves its inputs' masks
alone, so run order does not matter). Keras 2 has no Identity, cannot mask GroupNormalization,
nor concatenate a masked and an unmasked sequence along time: those pieces are left out there.
usage: KERAS_BACKEND=jax target/fit-venv/bin/python scripts/make-mask-models.py
       target/tf-venv/bin/python scripts/make-mask-models.py --keras2
       (venvs: keras==3.15.* + jax; tensorflow-cpu==2.21.* + tf-keras)
"""
import os
import sys

import numpy as np

from fixture import save_fixture

K2 = "--keras2" in sys.argv
if K2:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras as keras
    from tf_keras import layers as L
else:
    import keras
    from keras import layers as L

OUT = "tests/models/extra"


def save(m, name, inputs):
    if K2:
        name = name.replace("mask_", "mask2_")
    y = m([np.asarray(a) for a in inputs] if len(inputs) > 1 else inputs[0], training=False)
    save_fixture(m, OUT, name, inputs, np.asarray(y), formats=("k2.h5",) if K2 else ("keras", "h5"))


def mha_probe(x, name):
    """Reads the mask x carries at run time: self-attention (query and key masks) then a plain
    mean over time (Keras records no mask for it: it follows a Reshape)."""
    a = L.MultiHeadAttention(2, 4, name=f"{name}_mha")(x, x)
    a = L.Reshape((-1,), name=f"{name}_flat")(a)
    return a


ids_a = np.array([[3, 5, 7, 0, 0, 0], [2, 9, 4, 4, 6, 11], [1, 0, 0, 0, 0, 0], [0, 0, 4, 2, 0, 1]], "int32")
ids_b = np.array([[4, 4, 0, 0, 5, 0], [1, 2, 3, 0, 0, 0], [6, 7, 8, 9, 1, 2], [3, 0, 1, 0, 2, 0]], "int32")

# --- the BERT-like classifier
keras.utils.set_random_seed(21)
ids_in = keras.Input((6,), dtype="int32", name="ids")
x = L.Embedding(20, 16, mask_zero=True, name="emb")(ids_in)
for b in range(2):
    a = L.MultiHeadAttention(2, 8, name=f"mha{b}")(x, x)
    x = L.LayerNormalization(name=f"ln{b}a")(L.Add(name=f"add{b}a")([x, a]))
    f = L.Dense(32, activation="relu", name=f"ff{b}a")(x)
    f = L.Dense(16, name=f"ff{b}b")(f)
    x = L.LayerNormalization(name=f"ln{b}b")(L.Add(name=f"add{b}b")([x, f]))
p = L.GlobalAveragePooling1D(name="gap")(x)
save(keras.Model(ids_in, L.Dense(3, name="head")(p), name="mask_bert"), "mask_bert", [ids_a])

# --- merge layers
keras.utils.set_random_seed(22)
ia = keras.Input((6,), dtype="int32", name="ids_a")
ib = keras.Input((6,), dtype="int32", name="ids_b")
ma = L.Embedding(20, 4, mask_zero=True, name="emb_a")(ia)
mb = L.Embedding(20, 4, mask_zero=True, name="emb_b")(ib)
un = L.Embedding(20, 4, name="emb_u")(ib)
outs = []
for cls in ["Add", "Subtract", "Average", "Multiply", "Maximum", "Minimum"]:
    lo = cls.lower()
    both = getattr(L, cls)(name=f"{lo}_both")([ma, mb])
    mixed = getattr(L, cls)(name=f"{lo}_mixed")([ma, un])
    outs += [mha_probe(both, f"{lo}_both"), mha_probe(mixed, f"{lo}_mixed"), L.Reshape((-1,), name=f"{lo}_v")(mixed)]
for axis, tag in [(-1, "feat"), (1, "time")]:
    both = L.Concatenate(axis=axis, name=f"cat_{tag}_both")([ma, mb])
    outs.append(mha_probe(both, f"cat_{tag}_both"))
    if tag == "feat" or not K2:
        mixed = L.Concatenate(axis=axis, name=f"cat_{tag}_mixed")([un, ma])
        outs.append(mha_probe(mixed, f"cat_{tag}_mixed"))
save(keras.Model([ia, ib], L.Concatenate(name="out")(outs), name="mask_merge"), "mask_merge", [ids_a, ids_b])

# --- layers that pass a mask on, and layers that drop it
keras.utils.set_random_seed(23)
ia = keras.Input((6,), dtype="int32", name="ids")
e = L.Embedding(20, 8, mask_zero=True, name="emb")(ia)
outs = []
chains = {
    "dense": [L.Dense(8, name="dense")],
    "act": [L.Activation("tanh", name="act"), L.ReLU(name="relu"), L.LeakyReLU(name="lrelu"), L.ELU(name="elu")],
    "norm": [L.LayerNormalization(name="ln"), L.BatchNormalization(name="bn"), L.UnitNormalization(name="un")]
    + ([] if K2 else [L.GroupNormalization(2, name="gn")]),
    "noise": [L.Dropout(0.5, name="drop"), L.GaussianNoise(0.1, name="gnoise"), L.SpatialDropout1D(0.2, name="sdrop"),
              L.ActivityRegularization(name="areg")] + ([] if K2 else [L.Identity(name="ident")]),
    "td": [L.TimeDistributed(L.Dense(8), name="td")],
    "prep": [L.Rescaling(0.5, 0.1, name="rescale")],
    "conv": [L.Conv1D(8, 3, padding="same", name="conv")],
    "einsum": [L.EinsumDense("btc,cd->btd", output_shape=(6, 8), name="einsum")],
    "reshape": [L.Reshape((3, 16), name="reshape")],
    "permute": [L.Permute((2, 1), name="permute"), L.Permute((2, 1), name="permute_back")],
    "zpad": [L.ZeroPadding1D((1, 0), name="zpad")],
}
for tag, chain in chains.items():
    h = e
    for layer in chain:
        h = layer(h)
    outs.append(mha_probe(h, tag))
# Luong attention reads the masks of both inputs; its output carries the query's.
att = L.Attention(name="att")([L.Dense(8, name="q")(e), e])
outs.append(mha_probe(att, "att"))
save(keras.Model(ia, L.Concatenate(name="out")(outs), name="mask_layers"), "mask_layers", [ids_a])

# --- run order: e feeds a MultiHeadAttention deep in the graph and, on a shorter branch made
# first, a Dense: Keras runs the deeper node first (by depth from the outputs), so the Dense
# reads e after the attention has cleared its mask; config order would run the Dense first.
keras.utils.set_random_seed(24)
ia = keras.Input((6,), dtype="int32", name="ids")
e = L.Embedding(20, 8, mask_zero=True, name="emb")(ia)
side = mha_probe(L.Dense(8, name="side")(e), "side")
a1 = L.MultiHeadAttention(2, 4, name="first")(e, e)
a1 = L.Dense(8, name="f2")(L.Dense(8, name="f1")(a1))
deep = mha_probe(a1, "deep")
save(keras.Model(ia, L.Concatenate(name="out")([side, deep]), name="mask_order"), "mask_order", [ids_a])

# Two cross-attentions at the same depth read e as their value: the one Keras runs first sees
# e's mask and clears it, the other attends to the padding (its queries keep their masks).
# Keras runs cross2 first, though the config lists cross1 first.
keras.utils.set_random_seed(25)
ia = keras.Input((6,), dtype="int32", name="ids")
e = L.Embedding(20, 8, mask_zero=True, name="emb")(ia)
c1 = L.MultiHeadAttention(2, 4, name="cross1")(L.Dense(8, name="q1")(e), e)
c2 = L.MultiHeadAttention(2, 4, name="cross2")(L.Dense(8, name="q2")(e), e)
cross = [L.Reshape((-1,), name=f"cross{i}_flat")(c) for i, c in enumerate([c1, c2])]
save(keras.Model(ia, L.Concatenate(name="out")(cross), name="mask_cross"), "mask_cross", [ids_a])

# MultiHeadAttention returning its scores takes Keras's Softmax layer, which zeroes a query that
# may attend to nothing (the fused kernel of the plain call attends to every key alike).
keras.utils.set_random_seed(26)
ia = keras.Input((6,), dtype="int32", name="ids")
e = L.Embedding(20, 8, mask_zero=True, name="emb")(ia)
q = L.Dense(8, name="q")(e)
att, scores = L.MultiHeadAttention(2, 4, name="mha")(q, L.Dense(8, name="kv")(e), return_attention_scores=True, use_causal_mask=True)
outs = [L.Reshape((-1,), name="att_flat")(att), L.Reshape((-1,), name="scores_flat")(scores)]
save(keras.Model(ia, L.Concatenate(name="out")(outs), name="mask_scores"), "mask_scores", [ids_a])
