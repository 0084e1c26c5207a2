//! Keras models written by Keras itself for cases the dev set lacks (`tests/models/extra`, made
//! by scripts/make-extra-models.py with Keras's outputs): each format through `kerasc run`,
//! optimized and naive, against Keras.

mod common;

use common::{kerasc, models_dir, tmpdir};
use kerasc::{ir::Tolerance, npy};

/// An encoder-decoder: LSTM states passed as `initial_state` to a decoder LSTM, a GRU started
/// from a Dense projection, a Bidirectional LSTM with four initial states.
#[test]
fn recurrent_layers_with_initial_states_match_keras() {
    matches_keras("seq2seq");
}

/// MultiHeadAttention with an `attention_mask` input (one query attending to nothing) and the
/// causal mask combined with it.
#[test]
fn attention_masks_match_keras() {
    matches_keras("mha_mask");
}

fn matches_keras(name: &str) {
    matches_keras_in(name, &["keras", "h5"]);
}

fn matches_keras_in(name: &str, exts: &[&str]) {
    let dir = models_dir().join("extra");
    let tmp = tmpdir(&format!("extra-{name}"));
    let want = npy::read(&dir.join(format!("{name}.expected.npy"))).unwrap();
    for &ext in exts {
        for naive in [false, true] {
            let out = tmp.join(format!("{ext}-{naive}.npy"));
            let m = dir.join(format!("{name}.{ext}"));
            let inputs: Vec<String> = (0..8)
                .map(|k| dir.join(format!("{name}.input{k}.npy")))
                .filter(|p| p.exists())
                .map(|p| p.to_str().unwrap().to_string())
                .collect();
            let mut args = vec!["run", m.to_str().unwrap(), "--output", out.to_str().unwrap()];
            for i in &inputs {
                args.extend(["--input", i.as_str()]);
            }
            if naive {
                args.push("--naive");
            }
            let r = kerasc(&args);
            assert!(r.status.success(), "{ext}: {}", String::from_utf8_lossy(&r.stderr));
            let got = npy::read(&out).unwrap();
            assert_eq!(got.shape(), want.shape());
            let c = Tolerance::MODEL.compare(&got.to_f64_vec(), &want.to_f64_vec());
            assert!(c.passed(), "{ext} (naive={naive}): {c}");
        }
    }
}

/// Keras's implicit masks: Embedding(mask_zero=True) through Dense and LayerNormalization into
/// MultiHeadAttention (query and key masks) and GlobalAveragePooling1D (with the mask argument
/// Keras records, computed by NotEqual/LogicalOr op layers); Masking into a masked mean.
#[test]
fn implicit_masks_match_keras() {
    matches_keras("masked_text");
    matches_keras("masking_seq");
    // Luong Attention: value mask on the scores, query mask on the outputs, causal mask.
    matches_keras("masked_attention");
}

/// Keras 3's mask propagation, rule by rule (scripts/make-mask-models.py): the BERT-like
/// classifier (MultiHeadAttention clears its inputs' masks, so the second block attends to the
/// padding); merges of masked and unmasked sequences (Keras 3: a mask only when every input has
/// one; Multiply, Maximum, Minimum change their values under masks; Concatenate along features
/// and time); which layers pass a mask on and which drop it; masks that depend on Keras's run
/// order (by depth, then `map_graph`'s order within a depth, not the config's); and the Softmax
/// layer's zeroing when MultiHeadAttention returns its scores.
#[test]
fn keras3_mask_propagation_matches_keras() {
    for name in ["mask_bert", "mask_merge", "mask_layers", "mask_order", "mask_cross", "mask_scores"] {
        matches_keras(name);
    }
}

/// String inputs read by TextVectorization (an adapted vocabulary from the archive's assets, and
/// one in the config) and StringLookup, and HashedCrossing of integer inputs, run on the host
/// before the graph
/// (scripts/make-text-fixture.py, on Keras's TensorFlow backend): numpy string arrays in.
#[test]
fn text_layers_on_string_inputs_match_keras() {
    matches_keras_in("text_adapted", &["keras"]);
    matches_keras("text_vocab");
    // HashedCrossing of integer model inputs (TensorFlow's sparse.cross_hashed), bins and one-hot.
    matches_keras("crossing");
    // Hashing of strings and integers (FarmHash fingerprints; a mask value; one-hot), and a
    // crossing of a string with an integer feature.
    matches_keras("hashing");
}

/// Keras 2's mask propagation (the same models built and saved by tf_keras 2.21,
/// scripts/make-mask-models.py --keras2): merges take the logical and of the masks present,
/// MultiHeadAttention leaves its inputs' masks alone, Rescaling and EinsumDense drop masks,
/// Concatenate along time puts the masks side by side.
#[test]
fn keras2_mask_propagation_matches_keras2() {
    for name in ["mask2_bert", "mask2_merge", "mask2_layers", "mask2_order", "mask2_cross", "mask2_scores"] {
        matches_keras_in(name, &["k2.h5"]);
    }
}

/// keras.layers classes beyond the dev set (scripts/make-more-layers.py): RMSNormalization,
/// SpectralNormalization at inference, adaptive average/max pooling to sizes that do not divide
/// the input (1D, 2D, 3D); the generic RNN layer over LSTMCell, GRUCell and SimpleRNNCell;
/// CategoryEncoding, Discretization and ReversibleEmbedding (lookup and reverse projection);
/// ConvLSTM1D/2D (sequences, states, strides, padding, going backwards); IntegerLookup with its
/// vocabulary in the config (OOV buckets, a mask token, encoded outputs, the inverse;
/// scripts/make-lookup-fixture.py, on Keras's TensorFlow backend, which these layers need);
/// AdditiveAttention and GroupQueryAttention under implicit and causal masks.
#[test]
fn more_keras_layers_match_keras() {
    for name in [
        "more_layers_norm",
        "more_layers_rnn",
        "more_layers_tokens",
        "more_layers_convlstm",
        "lookup",
        "more_layers_attention",
    ] {
        matches_keras(name);
    }
}

/// Masked sequences into recurrent layers (Embedding(mask_zero=True), padding at either end and
/// in the middle): an LSTM returning sequences, a GRU on its output, a Bidirectional LSTM into a
/// masked mean, a SimpleRNN going backwards.
#[test]
fn masked_recurrent_layers_match_keras() {
    matches_keras("masked_rnn");
}

/// The attention-mask model once drove the e-graph to 1.8 million nodes (nested bias-adds over
/// a class equal to its own `x + 0`): the optimizer must stay small and fast on it.
#[test]
fn the_optimizer_stays_bounded_on_the_attention_mask_model() {
    let m = kerasc::load(&models_dir().join("extra/mha_mask.keras")).unwrap();
    let o = kerasc::optimizer::optimize(&m.graph, &Default::default()).unwrap();
    assert!(o.report.egraph.nodes < 10_000 && o.report.seconds < 1.0, "{:?}", o.report.egraph);
}

/// `keras.ops` calls recorded as layers (arithmetic with numbers and constant tensors, `where`
/// with -inf, reductions, indexing, split/stack/take, shape ops, einsum, nn functions, casts) and
/// EinsumDense layers, in a model Keras wrote (.keras, and .h5, which drops the ops' module).
#[test]
fn keras_ops_layers_and_einsum_dense_match_keras() {
    matches_keras("ops_model");
}

/// Keras 2's TensorFlow calls on symbolic tensors (`TFOpLambda`, `SlicingOpLambda`: operators with
/// numbers, tf.math/tf.nn functions, reductions, reshapes, concat/stack/split/tile/gather, casts,
/// where, matmul with a constant, slicing with steps, negative indices and new axes), in a model
/// tf-keras wrote.
#[test]
fn keras2_tensorflow_op_layers_match_keras() {
    matches_keras_in("tf_ops", &["k2.h5"]);
}

/// Layers Keras ships outside keras.layers: keras.applications.convnext's LayerScale in a
/// ConvNeXt block, and keras.layers.Identity (scripts/make-app-layers.py).
#[test]
fn keras_application_layers_match_keras() {
    matches_keras("app_layers");
}

/// Keras 2 files written on Theano keep convolution kernels flipped (the file's `backend` says
/// `theano`): read flipped back, they give the unflipped file's output exactly
/// (scripts/make-theano-fixtures.py); fine-tuning one is refused, nothing written.
#[test]
fn theano_backend_kernels_are_flipped_back() {
    let dir = models_dir().join("extra");
    let tmp = tmpdir("theano");
    for name in ["cnn_mnist", "conv1d"] {
        let x = dir.join(format!("{name}.theano.input0.npy"));
        let mut outs = Vec::new();
        for (tag, m) in
            [("theano", dir.join(format!("{name}.theano.h5"))), ("tf", models_dir().join(format!("{name}.k2.h5")))]
        {
            let out = tmp.join(format!("{name}.{tag}.npy"));
            let r = kerasc(&["run", m.to_str().unwrap(), "-i", x.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            assert!(r.status.success(), "{name} {tag}: {}", String::from_utf8_lossy(&r.stderr));
            outs.push(npy::read(&out).unwrap());
        }
        assert_eq!(outs[0], outs[1], "{name}");
        let want = npy::read(&models_dir().join(format!("{name}.expected.npy"))).unwrap();
        let c = Tolerance::MODEL.compare(&outs[0].to_f64_vec(), &want.to_f64_vec());
        assert!(c.passed(), "{name}: {c}");
    }
    let out = tmp.join("fit.h5");
    let r = kerasc(&[
        "fit",
        dir.join("cnn_mnist.theano.h5").to_str().unwrap(),
        "--data",
        models_dir().join("cnn_mnist.finetune.npz").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("Theano"), "{err}");
    assert!(!out.exists());
}

/// Image preprocessing layers saved in a model: Resizing (bilinear down, nearest up) and
/// CenterCrop with odd margins (scripts/make-app-layers.py).
#[test]
fn resizing_and_center_crop_match_keras() {
    matches_keras("image_prep");
}

/// Image augmentations saved in a model (RandomFlip, RandomRotation, RandomZoom,
/// RandomTranslation, RandomContrast, RandomBrightness; and in augment_more the other 18 of Keras
/// 3's, AugMix to Solarization): the identity at inference, as in Keras; fine-tuning through them
/// is refused by name, nothing written.
#[test]
fn augmentation_layers_are_the_identity_at_inference() {
    matches_keras_in("augment", &["keras"]);
    matches_keras_in("augment_more", &["keras"]);
    let dir = models_dir().join("extra");
    let tmp = tmpdir("augment-fit");
    let (x, out) = (dir.join("augment.input0.npy"), tmp.join("out.keras"));
    let y = tmp.join("y.npy");
    npy::write(&y, &npy::read(&dir.join("augment.expected.npy")).unwrap()).unwrap();
    let r = kerasc(&[
        "fit",
        dir.join("augment.keras").to_str().unwrap(),
        "--x",
        x.to_str().unwrap(),
        "--y",
        y.to_str().unwrap(),
        "--loss",
        "mse",
        "--optimizer",
        "sgd",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("flip (RandomFlip)") && err.contains("image augmentations"), "{err}");
    assert!(!out.exists());
}
