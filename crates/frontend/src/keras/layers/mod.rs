//! The registry from Keras `class_name` to a lowering function, the wrapper that dispatches
//! through it (TimeDistributed), and the lowering of one layer call with Keras's mask
//! propagation. The lowerings live in files by layer family; what they share is in `ctx`.

mod attention;
mod conv;
mod conv_lstm;
mod core;
mod ctx;
mod masks;
mod norm;
mod ops;
mod preprocessing;
mod recurrent;

pub(crate) use ctx::Ctx;

use super::config::{is_ops_module, Call, LayerSpec};
use super::weights::PathLink;
use crate::FrontendError;
use ctx::{LayerCall, LowerFn};
use ir::{Op, Tensor, ValueId};
use serde_json::Value;

/// The table of supported layer classes.
pub(crate) fn registry(class: &str) -> Option<LowerFn> {
    Some(match class {
        "Dense" => core::dense,
        "EinsumDense" => core::einsum_dense,
        "Activation" => core::activation_layer,
        "ReLU" | "LeakyReLU" | "ELU" | "ThresholdedReLU" | "Softmax" => core::activation_class,
        "PReLU" => core::prelu,
        "Dropout" | "SpatialDropout1D" | "SpatialDropout2D" | "SpatialDropout3D" | "GaussianNoise"
        | "GaussianDropout" | "AlphaDropout" => core::noise,
        // Image augmentations: the identity at inference (fine-tuning through them is refused).
        c if AUGMENTATIONS.contains(&c) => core::noise,
        "ActivityRegularization" | "Identity" => core::identity,
        // keras.applications.convnext's LayerScale: Keras's own, though not in keras.layers.
        "LayerScale" => core::layer_scale,
        "Masking" => core::masking,
        "Flatten" => core::flatten,
        "Reshape" => core::reshape,
        "Permute" => core::permute,
        "RepeatVector" => core::repeat_vector,
        "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" => core::merge,
        "Concatenate" => core::concatenate,
        "Dot" => core::dot,
        "Embedding" => core::embedding,
        "Rescaling" => core::rescaling,
        "Normalization" => core::normalization,
        "Conv1D" | "Conv2D" | "Conv3D" | "Convolution1D" | "Convolution2D" | "Convolution3D" => conv::conv,
        "Conv1DTranspose"
        | "Convolution1DTranspose"
        | "Conv2DTranspose"
        | "Conv3DTranspose"
        | "Convolution2DTranspose"
        | "Convolution3DTranspose" => conv::conv_transpose,
        "DepthwiseConv1D" | "DepthwiseConv2D" => conv::depthwise,
        "SeparableConv1D" | "SeparableConv2D" | "SeparableConvolution1D" | "SeparableConvolution2D" => conv::separable,
        "MaxPooling1D" | "MaxPooling2D" | "MaxPooling3D" | "AveragePooling1D" | "AveragePooling2D"
        | "AveragePooling3D" | "MaxPool1D" | "MaxPool2D" | "MaxPool3D" | "AvgPool1D" | "AvgPool2D" | "AvgPool3D" => {
            conv::pool
        }
        "GlobalMaxPooling1D"
        | "GlobalMaxPooling2D"
        | "GlobalMaxPooling3D"
        | "GlobalAveragePooling1D"
        | "GlobalAveragePooling2D"
        | "GlobalAveragePooling3D"
        | "GlobalMaxPool1D"
        | "GlobalMaxPool2D"
        | "GlobalMaxPool3D"
        | "GlobalAvgPool1D"
        | "GlobalAvgPool2D"
        | "GlobalAvgPool3D" => conv::global_pool,
        "Cropping1D" | "Cropping2D" | "Cropping3D" => conv::cropping,
        "ZeroPadding1D" | "ZeroPadding2D" | "ZeroPadding3D" => conv::zero_padding,
        "UpSampling1D" | "UpSampling2D" | "UpSampling3D" => conv::upsampling,
        "Resizing" => conv::resizing,
        "CenterCrop" => conv::center_crop,
        "BatchNormalization" => norm::batch_norm,
        "LayerNormalization" => norm::layer_norm,
        "GroupNormalization" => norm::group_norm,
        "UnitNormalization" => norm::unit_norm,
        "SimpleRNN" | "LSTM" | "GRU" => recurrent::rnn,
        "Bidirectional" => recurrent::bidirectional,
        "TimeDistributed" => time_distributed,
        "MultiHeadAttention" => attention::multi_head_attention,
        "RNN" => recurrent::generic_rnn,
        "ConvLSTM1D" | "ConvLSTM2D" | "ConvLSTM3D" => conv_lstm::conv_lstm,
        "SpectralNormalization" => spectral_normalization,
        "RMSNormalization" => norm::rms_norm,
        "AdaptiveAveragePooling1D"
        | "AdaptiveAveragePooling2D"
        | "AdaptiveAveragePooling3D"
        | "AdaptiveMaxPooling1D"
        | "AdaptiveMaxPooling2D"
        | "AdaptiveMaxPooling3D" => conv::adaptive_pool,
        "CategoryEncoding" => preprocessing::category_encoding,
        "Discretization" => preprocessing::discretization,
        "ReversibleEmbedding" => preprocessing::reversible_embedding,
        "IntegerLookup" => preprocessing::integer_lookup,
        "TextVectorization" | "StringLookup" | "HashedCrossing" | "Hashing" => preprocessing::text_on_host,
        "Attention" | "AdditiveAttention" => attention::attention,
        "GroupQueryAttention" | "GroupedQueryAttention" => attention::group_query_attention,
        _ => return None,
    })
}

/// Keras 3's image augmentation layers, each the identity at inference (checked against Keras by
/// scripts/make-app-layers.py and scripts/make-augment-fixture.py).
pub const AUGMENTATIONS: &[&str] = &[
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
    "AugMix",
    "CutMix",
    "MixUp",
    "RandAugment",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomElasticTransform",
    "RandomErasing",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterization",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "Solarization",
];

/// The lowering of a layer entry: Keras 3 records `keras.ops` calls made on symbolic tensors
/// (`x + 1`, `ops.mean`, `x[:, 0]`) as entries of an ops module, whose class names overlap the
/// layers' (`Add`, `Reshape`, `Softmax`).
pub(crate) fn lowering(class: &str, module: Option<&str>) -> Option<LowerFn> {
    if is_ops_module(module) {
        ops::registry(class)
    } else {
        registry(class)
    }
}

/// The classes this registry lowers, for the config parser.
pub(crate) const KNOWN_CLASSES: super::config::KnownClasses =
    super::config::KnownClasses { is_op: is_op_class, is_layer: is_layer_class };

/// Whether `keras.ops` has a supported op of this class name.
pub(crate) fn is_op_class(class: &str) -> bool {
    ops::registry(class).is_some()
}

/// Whether a layer of this class name is supported.
pub fn is_layer_class(class: &str) -> bool {
    registry(class).is_some()
}

/// Records every reason a layer (and any layer it wraps) cannot be loaded.
pub(crate) fn check_layer(class: &str, name: &str, config: &Value, module: Option<&str>, out: &mut Vec<String>) {
    if class == "InputLayer" {
        return;
    }
    if class == "TFOpLambda" || class == "SlicingOpLambda" {
        let f = config.get("function").and_then(Value::as_str).unwrap_or("?");
        out.push(format!("{class} '{name}' calls tf.{f}, which is not supported"));
        return;
    }
    if class == "Lambda" {
        out.push(format!("{class} '{name}' holds Python code that cannot be loaded outside Python"));
        return;
    }
    if lowering(class, module).is_none() {
        if is_ops_module(module) {
            out.push(format!("keras.ops.{} '{name}' is not supported", super::config::snake_case(class)));
            return;
        }
        let custom_module =
            module.is_some_and(|m| m.contains('>') || !(m.starts_with("keras") || m.starts_with("tf_keras")));
        if class.contains('>') || custom_module {
            out.push(format!("{class} '{name}' is a custom class (Python code that cannot be loaded)"));
        } else {
            out.push(format!("{class} '{name}' is not supported"));
        }
        return;
    }
    for key in ["layer", "backward_layer"] {
        if let Some(inner) = config.get(key).filter(|v| v.is_object()) {
            let ic = inner.get("class_name").and_then(Value::as_str).unwrap_or("?");
            let icfg = inner.get("config").cloned().unwrap_or(Value::Null);
            let iname = icfg.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
            if ic == "Sequential" || ic == "Functional" {
                out.push(format!("{class} '{name}' wraps a model, which is not supported"));
            } else {
                check_layer(ic, &iname, &icfg, inner.get("module").and_then(Value::as_str), out);
            }
        }
    }
}

/// Lowers one call of a (non-model) layer.
pub(crate) fn lower_layer(
    ctx: &mut Ctx,
    l: &LayerSpec,
    path: &[PathLink],
    call: Option<&Call>,
    inputs: Vec<ValueId>,
    kw_inputs: Vec<(String, ValueId)>,
) -> Result<Vec<ValueId>, FrontendError> {
    let is_op = is_ops_module(l.module.as_deref());
    let f = lowering(&l.class, l.module.as_deref()).ok_or_else(|| FrontendError::Unsupported {
        file: ctx.origin.clone(),
        layers: vec![format!("{} '{}' is not supported", l.class, l.name)],
    })?;
    let key = path.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("/");
    let (weights, weight_paths): (Vec<Tensor>, Vec<String>) =
        ctx.layer_weights(path, &key, &l.class, &l.config)?.into_iter().unzip();
    let lc = LayerCall {
        class: &l.class,
        name: &l.name,
        config: &l.config,
        call,
        inputs,
        kw_inputs,
        weights,
        weight_paths,
        key,
    };
    if lc.inputs.is_empty() {
        return Err(ctx.err(&lc, "called without inputs"));
    }
    let in_masks: Vec<Option<ValueId>> = lc.inputs.iter().map(|&v| ctx.mask(v)).collect();
    if !is_op {
        masks::check_masked_call(ctx, &lc, &in_masks)?;
    }
    ctx.call_masks = in_masks.clone();
    let outs = f(ctx, &lc);
    ctx.call_masks.clear();
    let outs = outs?;
    masks::propagate(ctx, &lc, is_op, &in_masks, &outs)?;
    Ok(outs)
}

/// SpectralNormalization at inference: the wrapped layer with its kernel as stored (Keras
/// normalizes and stores it while training; the power iteration's vector is not used).
fn spectral_normalization(ctx: &mut Ctx, lc: &LayerCall) -> Result<Vec<ValueId>, FrontendError> {
    let inner = lc.config.get("layer").ok_or_else(|| ctx.err(lc, "no wrapped layer"))?;
    let class = inner.get("class_name").and_then(Value::as_str).unwrap_or("").to_string();
    let cfg = inner.get("config").cloned().unwrap_or(Value::Null);
    let f =
        registry(&class).ok_or_else(|| ctx.err(lc, format!("SpectralNormalization over {class} is not supported")))?;
    // The wrapped layer's own weights: a .keras archive keeps them under `layer/` (beside the
    // wrapper's copy of the kernel and its vector u), a legacy .h5 lists vector_u last.
    let (weights, weight_paths): (Vec<Tensor>, Vec<String>) = lc
        .weights
        .iter()
        .zip(&lc.weight_paths)
        .filter(|(_, p)| if p.contains("/vars/") { p.contains("/layer/vars/") } else { !p.ends_with("vector_u") })
        .map(|(t, p)| (t.clone(), p.clone()))
        .unzip();
    let ilc = LayerCall {
        class: &class,
        name: lc.name,
        config: &cfg,
        call: lc.call,
        inputs: lc.inputs.clone(),
        kw_inputs: Vec::new(),
        weights,
        weight_paths,
        key: format!("{}/layer", lc.key),
    };
    f(ctx, &ilc)
}

/// TimeDistributed: the wrapped layer (any class of the table) over the batch and time axes
/// merged.
fn time_distributed(ctx: &mut Ctx, lc: &LayerCall) -> Result<Vec<ValueId>, FrontendError> {
    let x = lc.inputs[0];
    let inner = lc.config.get("layer").ok_or_else(|| ctx.err(lc, "no wrapped layer"))?;
    let class = inner.get("class_name").and_then(Value::as_str).unwrap_or("").to_string();
    let cfg = inner.get("config").cloned().unwrap_or(Value::Null);
    let f = registry(&class).ok_or_else(|| ctx.err(lc, format!("TimeDistributed over {class} is not supported")))?;
    let dims = ctx.dims(x);
    if dims.len() < 3 {
        return Err(ctx.err(lc, "TimeDistributed needs a (batch, time, ...) input"));
    }
    let t = dims[1].fixed().ok_or_else(|| ctx.err(lc, "the time axis must have a known size"))? as i64;
    let mut merged = vec![-1i64];
    for d in &dims[2..] {
        merged.push(d.fixed().ok_or_else(|| ctx.err(lc, "inner axes must have known sizes"))? as i64);
    }
    let xm = ctx.node(lc, "merge_time", Op::Reshape { shape: merged }, &[x])?;
    let ilc = LayerCall {
        class: &class,
        name: lc.name,
        config: &cfg,
        call: None,
        inputs: vec![xm],
        kw_inputs: Vec::new(),
        weights: lc.weights.clone(),
        weight_paths: lc.weight_paths.clone(),
        key: format!("{}/inner", lc.key),
    };
    let ys = f(ctx, &ilc)?;
    let mut outs = Vec::new();
    for y in ys {
        let yd = ctx.dims(y);
        let mut shape = vec![-1i64, t];
        for d in &yd[1..] {
            shape.push(d.fixed().ok_or_else(|| ctx.err(lc, "inner output sizes must be known"))? as i64);
        }
        outs.push(ctx.node(lc, "split_time", Op::Reshape { shape }, &[y])?);
    }
    Ok(outs)
}
