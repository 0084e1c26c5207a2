//! Convolution, pooling, padding, cropping and upsampling layers (channels-last; channels-first
//! inputs are transposed in and out).

use super::ctx::{
    cfg_bool, cfg_count, cfg_ints, cfg_str, expect_weights, layer_activation, weight, Ctx, LayerCall, MAX_ATTR,
};
use crate::FrontendError;
use ir::{ConvAttrs, ConvTransposeAttrs, Op, PaddingMode, PoolAttrs, PoolKind, ReduceKind, ResizeMode, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn spatial_rank(class: &str) -> usize {
    if class.contains("1D") {
        1
    } else if class.contains("3D") {
        3
    } else {
        2
    }
}

fn channels_first(lc: &LayerCall) -> bool {
    cfg_str(lc.config, "data_format", "channels_last") == "channels_first"
}

/// Moves channels last (for channels_first layers); returns the new value.
fn to_last(ctx: &mut Ctx, lc: &LayerCall, x: ValueId) -> Result<ValueId, FrontendError> {
    if !channels_first(lc) {
        return Ok(x);
    }
    let r = ctx.rank(x);
    let mut perm = vec![0];
    perm.extend(2..r);
    perm.push(1);
    ctx.node(lc, "to_channels_last", Op::Transpose { perm }, &[x])
}

fn to_first(ctx: &mut Ctx, lc: &LayerCall, x: ValueId) -> Result<ValueId, FrontendError> {
    if !channels_first(lc) {
        return Ok(x);
    }
    let r = ctx.rank(x);
    let mut perm = vec![0, r - 1];
    perm.extend(1..r - 1);
    ctx.node(lc, "to_channels_first", Op::Transpose { perm }, &[x])
}

/// A per-axis size attribute, each entry at least 1.
pub(super) fn ints(
    ctx: &Ctx,
    lc: &LayerCall,
    key: &str,
    n: usize,
    default: usize,
) -> Result<Vec<usize>, FrontendError> {
    cfg_ints(lc.config, key, n, default, 1).map_err(|m| ctx.err(lc, m))
}

/// A count attribute of at least 1 (`filters`, `depth_multiplier`, `groups`).
fn count(ctx: &Ctx, lc: &LayerCall, key: &str, default: Option<usize>) -> Result<usize, FrontendError> {
    cfg_count(lc.config, key, default, 1).map_err(|m| ctx.err(lc, m))
}

/// TensorFlow's explicit pads for `padding` on each spatial axis of a channels-last input.
pub(super) fn pads(
    ctx: &Ctx,
    lc: &LayerCall,
    x: ValueId,
    padding: &str,
    k: &[usize],
    s: &[usize],
    d: &[usize],
) -> Result<Vec<(usize, usize)>, FrontendError> {
    let dims = ctx.dims(x);
    let mut out = Vec::new();
    for i in 0..k.len() {
        let ke = (k[i] - 1) * d[i] + 1;
        out.push(match padding {
            "valid" => (0, 0),
            "causal" => (ke - 1, 0),
            "same" => {
                let n = dims[i + 1].fixed().ok_or_else(|| ctx.err(lc, "'same' padding needs known spatial sizes"))?;
                let o = n.div_ceil(s[i]);
                let total = ((o.max(1) - 1) * s[i] + ke).saturating_sub(n);
                (total / 2, total - total / 2)
            }
            other => return Err(ctx.err(lc, format!("padding '{other}' is not supported"))),
        });
    }
    Ok(out)
}

fn bias_act(
    ctx: &mut Ctx,
    lc: &LayerCall,
    y: ValueId,
    bias_index: usize,
    filters: usize,
) -> Result<ValueId, FrontendError> {
    let mut y = y;
    if cfg_bool(lc.config, "use_bias", true) {
        let b = weight(ctx, lc, bias_index, "bias", Some(&[filters]))?;
        let bv = ctx.konst(lc, "bias", b);
        let axis = ctx.rank(y) - 1;
        y = ctx.node(lc, "bias", Op::BiasAdd { axis }, &[y, bv])?;
    }
    layer_activation(ctx, lc, y)
}

/// What every convolution layer reads first: its channels-last input and geometry.
struct ConvSetup {
    r: usize,
    x: ValueId,
    cin: usize,
    k: Vec<usize>,
    s: Vec<usize>,
    d: Vec<usize>,
}

/// Reads the input and geometry, and checks the weight count (`with_bias` when use_bias is set,
/// one fewer otherwise).
fn conv_setup(ctx: &mut Ctx, lc: &LayerCall, with_bias: usize) -> Result<ConvSetup, FrontendError> {
    let r = spatial_rank(lc.class);
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let cin = ctx.dims(x).last().and_then(|d| d.fixed()).ok_or_else(|| ctx.err(lc, "input channels must be known"))?;
    let k = ints(ctx, lc, "kernel_size", r, 1)?;
    let s = ints(ctx, lc, "strides", r, 1)?;
    let d = ints(ctx, lc, "dilation_rate", r, 1)?;
    let use_bias = cfg_bool(lc.config, "use_bias", true);
    expect_weights(ctx, lc, if use_bias { with_bias } else { with_bias - 1 })?;
    Ok(ConvSetup { r, x, cin, k, s, d })
}

fn filters(ctx: &Ctx, lc: &LayerCall) -> Result<usize, FrontendError> {
    count(ctx, lc, "filters", None)
}

fn depth_multiplier(ctx: &Ctx, lc: &LayerCall) -> Result<usize, FrontendError> {
    count(ctx, lc, "depth_multiplier", Some(1))
}

/// A convolution node over `cs.x` with the layer's padding.
fn conv_node(
    ctx: &mut Ctx,
    lc: &LayerCall,
    part: &str,
    cs: &ConvSetup,
    groups: usize,
    kernel: ValueId,
) -> Result<ValueId, FrontendError> {
    let pads = pads(ctx, lc, cs.x, cfg_str(lc.config, "padding", "valid"), &cs.k, &cs.s, &cs.d)?;
    let attrs = ConvAttrs { strides: cs.s.clone(), dilations: cs.d.clone(), pads, groups };
    ctx.node(lc, part, Op::Conv(attrs), &[cs.x, kernel])
}

/// A convolution kernel as stored by Keras 2 on Theano, which keeps it flipped along every
/// spatial axis: flipped back, as Keras 2's loader does for Conv1D/2D/3D and Conv2DTranspose
/// (`convert_kernel`). Any other file's kernel is returned as it is.
fn theano_flip(ctx: &Ctx, kernel: ir::Tensor) -> ir::Tensor {
    let shape = kernel.shape().to_vec();
    let (Some(data), true) = (kernel.as_f32(), ctx.theano_kernels && shape.len() >= 3) else { return kernel };
    let (spatial, block) = (&shape[..shape.len() - 2], shape[shape.len() - 2..].iter().product::<usize>());
    let mut out = vec![0f32; data.len()];
    for (p, src) in data.chunks_exact(block.max(1)).enumerate() {
        // The flipped position: each spatial index i becomes k − 1 − i.
        let (mut rest, mut q, mut stride) = (p, 0usize, 1usize);
        for &k in spatial.iter().rev() {
            q += (k - 1 - rest % k) * stride;
            rest /= k;
            stride *= k;
        }
        out[q * block..(q + 1) * block].copy_from_slice(src);
    }
    ir::Tensor::from_f32(&shape, out).unwrap_or(kernel)
}

/// The `depthwise_kernel` weight `(k..., cin, dm)` as a grouped-convolution kernel `(k..., 1, cin·dm)`.
fn depthwise_kernel(ctx: &mut Ctx, lc: &LayerCall, cs: &ConvSetup, dm: usize) -> Result<ValueId, FrontendError> {
    let shape_of = |tail: [usize; 2]| cs.k.iter().copied().chain(tail).collect::<Vec<_>>();
    let kernel = weight(ctx, lc, 0, "depthwise_kernel", Some(&shape_of([cs.cin, dm])))?;
    let kernel = kernel.reshape(&shape_of([1, cs.cin * dm])).map_err(|e| ctx.err(lc, e.to_string()))?;
    Ok(ctx.konst(lc, "depthwise_kernel", kernel))
}

pub(super) fn conv(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let cs = conv_setup(ctx, lc, 2)?;
    let filters = filters(ctx, lc)?;
    let groups = count(ctx, lc, "groups", Some(1))?;
    if cs.cin % groups != 0 {
        return Err(ctx.err(lc, format!("{} input channels not divisible into {groups} groups", cs.cin)));
    }
    let kshape: Vec<usize> = cs.k.iter().copied().chain([cs.cin / groups, filters]).collect();
    let kernel = theano_flip(ctx, weight(ctx, lc, 0, "kernel", Some(&kshape))?);
    let kv = ctx.konst(lc, "kernel", kernel);
    let y = conv_node(ctx, lc, "conv", &cs, groups, kv)?;
    let y = bias_act(ctx, lc, y, 1, filters)?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn depthwise(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let cs = conv_setup(ctx, lc, 2)?;
    let dm = depth_multiplier(ctx, lc)?;
    let kv = depthwise_kernel(ctx, lc, &cs, dm)?;
    let y = conv_node(ctx, lc, "depthwise", &cs, cs.cin, kv)?;
    let y = bias_act(ctx, lc, y, 1, cs.cin * dm)?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn separable(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let cs = conv_setup(ctx, lc, 3)?;
    let filters = filters(ctx, lc)?;
    let dm = depth_multiplier(ctx, lc)?;
    let dkv = depthwise_kernel(ctx, lc, &cs, dm)?;
    let pshape: Vec<usize> = std::iter::repeat_n(1, cs.r).chain([cs.cin * dm, filters]).collect();
    let pk = weight(ctx, lc, 1, "pointwise_kernel", Some(&pshape))?;
    let pkv = ctx.konst(lc, "pointwise_kernel", pk);
    let y = conv_node(ctx, lc, "depthwise", &cs, cs.cin, dkv)?;
    let r = cs.r;
    let one = ConvAttrs { strides: vec![1; r], dilations: vec![1; r], pads: vec![(0, 0); r], groups: 1 };
    let y = ctx.node(lc, "pointwise", Op::Conv(one), &[y, pkv])?;
    let y = bias_act(ctx, lc, y, 2, filters)?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn conv_transpose(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let cs = conv_setup(ctx, lc, 2)?;
    let filters = filters(ctx, lc)?;
    let padding = match cfg_str(lc.config, "padding", "valid") {
        "valid" => PaddingMode::Valid,
        "same" => PaddingMode::Same,
        other => return Err(ctx.err(lc, format!("padding '{other}' is not supported"))),
    };
    let output_padding = match lc.config.get("output_padding") {
        None | Some(Value::Null) => None,
        Some(_) => Some(cfg_ints(lc.config, "output_padding", cs.r, 0, 0).map_err(|m| ctx.err(lc, m))?),
    };
    let kshape: Vec<usize> = cs.k.iter().copied().chain([filters, cs.cin]).collect();
    let kernel = theano_flip(ctx, weight(ctx, lc, 0, "kernel", Some(&kshape))?);
    let kv = ctx.konst(lc, "kernel", kernel);
    let attrs = ConvTransposeAttrs { strides: cs.s, dilations: cs.d, padding, output_padding };
    let y = ctx.node(lc, "conv_transpose", Op::ConvTranspose(attrs), &[cs.x, kv])?;
    let y = bias_act(ctx, lc, y, 1, filters)?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn pool(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = spatial_rank(lc.class);
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let kind = if lc.class.starts_with("Max") { PoolKind::Max } else { PoolKind::Avg };
    let window = ints(ctx, lc, "pool_size", r, 2)?;
    let strides = match lc.config.get("strides") {
        None | Some(Value::Null) => window.clone(),
        Some(_) => ints(ctx, lc, "strides", r, 1)?,
    };
    let p = pads(ctx, lc, x, cfg_str(lc.config, "padding", "valid"), &window, &strides, &vec![1; r])?;
    let y = ctx.node(lc, "", Op::Pool(PoolAttrs { kind, window, strides, pads: p }), &[x])?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn global_pool(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let rank = ctx.rank(x);
    if rank < 3 {
        return Err(ctx.err(lc, "global pooling needs a (batch, spatial..., channels) input"));
    }
    let axes: Vec<usize> = if channels_first(lc) { (2..rank).collect() } else { (1..rank - 1).collect() };
    let kind = if lc.class.starts_with("GlobalMax") { ReduceKind::Max } else { ReduceKind::Mean };
    let keepdims = cfg_bool(lc.config, "keepdims", false);
    // GlobalAveragePooling1D of a masked sequence: the mean over the unmasked steps (Keras).
    // An explicit `mask` argument (Keras 3 records it) wins over the implicit one.
    let mask = lc.kw_inputs.iter().find(|(k, _)| k == "mask").map(|(_, v)| *v).or_else(|| ctx.mask(x));
    if let (Some(m), "GlobalAveragePooling1D" | "GlobalAvgPool1D", 3) = (mask, lc.class, rank) {
        let m = if ctx.g.value(m).ty.dtype == ir::DType::F32 {
            m
        } else {
            ctx.node(lc, "mask/float", Op::Cast { to: ir::DType::F32 }, &[m])?
        };
        let shape = if channels_first(lc) { vec![0, 1, -1] } else { vec![0, -1, 1] };
        let m = ctx.node(lc, "mask/expand", Op::Reshape { shape }, &[m])?;
        let xm = ctx.binary(lc, "masked", ir::BinaryOp::Mul, x, m)?;
        let sum = |ctx: &mut Ctx, v: ValueId, what: &str| {
            ctx.node(lc, what, Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims }, &[v])
        };
        let num = sum(ctx, xm, "masked_sum")?;
        let den = sum(ctx, m, "mask_count")?;
        return Ok(vec![ctx.binary(lc, "", ir::BinaryOp::Div, num, den)?]);
    }
    Ok(vec![ctx.node(lc, "", Op::Reduce { kind, axes, keepdims }, &[x])?])
}

/// `(before, after)` pairs from an int, a list of ints or a list of pairs, each at most 2^31.
fn pairs(ctx: &Ctx, lc: &LayerCall, key: &str, r: usize, default: usize) -> Result<Vec<(usize, usize)>, FrontendError> {
    let p = pairs_unchecked(ctx, lc, key, r, default)?;
    if p.iter().any(|&(a, b)| a as u64 > MAX_ATTR || b as u64 > MAX_ATTR) {
        let v = lc.config.get(key).cloned().unwrap_or_default();
        return Err(ctx.err(lc, format!("'{key}' must be integers from 0 to 2^31, got {v}")));
    }
    Ok(p)
}

fn pairs_unchecked(
    ctx: &Ctx,
    lc: &LayerCall,
    key: &str,
    r: usize,
    default: usize,
) -> Result<Vec<(usize, usize)>, FrontendError> {
    let bad = || {
        let v = lc.config.get(key).cloned().unwrap_or_default();
        ctx.err(lc, format!("'{key}' must be integers from 0 to 2^31, one or a (before, after) pair per axis, got {v}"))
    };
    match lc.config.get(key) {
        None | Some(Value::Null) => Ok(vec![(default, default); r]),
        Some(Value::Number(n)) => {
            let v = n.as_u64().ok_or_else(bad)? as usize;
            Ok(vec![(v, v); r])
        }
        Some(Value::Array(a)) => {
            if r == 1 && a.len() == 2 && a.iter().all(Value::is_number) {
                return Ok(vec![(a[0].as_u64().ok_or_else(bad)? as usize, a[1].as_u64().ok_or_else(bad)? as usize)]);
            }
            if a.len() != r {
                return Err(bad());
            }
            a.iter()
                .map(|e| match e {
                    Value::Number(n) => {
                        let v = n.as_u64().ok_or_else(bad)? as usize;
                        Ok((v, v))
                    }
                    Value::Array(p) if p.len() == 2 => {
                        Ok((p[0].as_u64().ok_or_else(bad)? as usize, p[1].as_u64().ok_or_else(bad)? as usize))
                    }
                    _ => Err(bad()),
                })
                .collect()
        }
        _ => Err(bad()),
    }
}

pub(super) fn cropping(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = spatial_rank(lc.class);
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let c = pairs(ctx, lc, "cropping", r, if r == 1 { 1 } else { 0 })?;
    let axes: Vec<usize> = (1..=r).collect();
    let starts = c.iter().map(|p| p.0 as i64).collect();
    let ends = c.iter().map(|p| if p.1 == 0 { i64::MAX } else { -(p.1 as i64) }).collect();
    let y = ctx.node(lc, "", Op::Slice { axes, starts, ends, steps: vec![1; r] }, &[x])?;
    if c.iter().enumerate().any(|(i, _)| ctx.dims(y)[i + 1] == ir::Dim::Fixed(0)) {
        return Err(ctx.err(lc, "cropping removes the whole input"));
    }
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn zero_padding(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = spatial_rank(lc.class);
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let p = pairs(ctx, lc, "padding", r, 1)?;
    let mut all = vec![(0, 0)];
    all.extend(p);
    all.push((0, 0));
    let y = ctx.node(lc, "", Op::Pad { pads: all, value: 0.0 }, &[x])?;
    Ok(vec![to_first(ctx, lc, y)?])
}

pub(super) fn upsampling(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = spatial_rank(lc.class);
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let size = if r == 1 { ints(ctx, lc, "size", 1, 2)? } else { ints(ctx, lc, "size", r, 2)? };
    let interp = cfg_str(lc.config, "interpolation", "nearest");
    let y = match interp {
        "nearest" => {
            let mut y = x;
            for (i, &f) in size.iter().enumerate() {
                if f != 1 {
                    y = ctx.node(lc, &format!("repeat{i}"), Op::RepeatInterleave { axis: i + 1, repeats: f }, &[y])?;
                }
            }
            y
        }
        "bilinear" => {
            let dims = ctx.dims(x);
            let mut sizes = Vec::new();
            for (i, &f) in size.iter().enumerate() {
                sizes
                    .push(dims[i + 1].fixed().ok_or_else(|| ctx.err(lc, "bilinear upsampling needs known sizes"))? * f);
            }
            ctx.node(lc, "", Op::Resize { sizes, mode: ResizeMode::Bilinear }, &[x])?
        }
        other => return Err(ctx.err(lc, format!("interpolation '{other}' is not supported (nearest, bilinear)"))),
    };
    Ok(vec![to_first(ctx, lc, y)?])
}

/// Resizing: each image to `height` × `width`, nearest or bilinear with half-pixel centres (as
/// `keras.ops.image.resize` without antialiasing).
pub(super) fn resizing(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = to_last(ctx, lc, lc.inputs[0])?;
    if ctx.rank(x) != 4 {
        return Err(ctx.err(lc, "Resizing takes (batch, height, width, channels) images"));
    }
    for key in ["crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias"] {
        if lc.config.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(ctx.err(lc, format!("{key}=True is not supported")));
        }
    }
    let sizes = vec![count(ctx, lc, "height", None)?, count(ctx, lc, "width", None)?];
    let mode = match cfg_str(lc.config, "interpolation", "bilinear") {
        "nearest" => ResizeMode::Nearest,
        "bilinear" => ResizeMode::Bilinear,
        other => return Err(ctx.err(lc, format!("interpolation '{other}' is not supported (nearest, bilinear)"))),
    };
    let y = ctx.node(lc, "", Op::Resize { sizes, mode }, &[x])?;
    Ok(vec![to_first(ctx, lc, y)?])
}

/// CenterCrop: the central `height` × `width` of each image (the start rounded down, as
/// Keras does); an image smaller than that, which Keras resizes, is refused.
pub(super) fn center_crop(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = to_last(ctx, lc, lc.inputs[0])?;
    let dims = ctx.dims(x);
    if dims.len() != 4 {
        return Err(ctx.err(lc, "CenterCrop takes (batch, height, width, channels) images"));
    }
    let want = [count(ctx, lc, "height", None)?, count(ctx, lc, "width", None)?];
    let mut starts = Vec::new();
    for (i, &w) in want.iter().enumerate() {
        let have = dims[i + 1].fixed().ok_or_else(|| ctx.err(lc, "CenterCrop needs images of known size"))?;
        if have < w {
            return Err(ctx.err(lc, format!("cropping {w} from {have} (Keras resizes then) is not supported")));
        }
        starts.push(((have - w) / 2) as i64);
    }
    let ends = starts.iter().zip(want).map(|(s, w)| s + w as i64).collect();
    let y = ctx.node(lc, "", Op::Slice { axes: vec![1, 2], starts, ends, steps: vec![1, 1] }, &[x])?;
    Ok(vec![to_first(ctx, lc, y)?])
}

/// AdaptiveAveragePooling1D/2D/3D and AdaptiveMaxPooling1D/2D/3D: each spatial axis of length
/// `l` pooled to `o` outputs, output `i` over `[⌊i·l/o⌋, ⌈(i+1)·l/o⌉)` (windows of two sizes
/// when `o` does not divide `l`, as Keras computes them), one axis after the other.
pub(super) fn adaptive_pool(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let r = spatial_rank(lc.class);
    let mut x = to_last(ctx, lc, lc.inputs[0])?;
    if ctx.rank(x) != r + 2 {
        return Err(ctx.err(lc, format!("expects a rank-{} input", r + 2)));
    }
    let kind = if lc.class.contains("Max") { ReduceKind::Max } else { ReduceKind::Mean };
    let out = ints(ctx, lc, "output_size", r, 1)?;
    if let Some(o) = out.iter().find(|&&o| o > 4096) {
        // One window a node: a hostile size would build the graph forever.
        return Err(ctx.err(lc, format!("an output size of {o} (at most 4096 per axis are pooled)")));
    }
    for (a, &o) in out.iter().enumerate() {
        let axis = 1 + a;
        let l = ctx.dims(x)[axis].fixed().ok_or_else(|| ctx.err(lc, "pooled axes must have known sizes"))?;
        if o == l {
            continue;
        }
        let mut parts = Vec::with_capacity(o);
        for i in 0..o {
            let (s, e) = (i * l / o, ((i + 1) * l).div_ceil(o));
            let slice = Op::Slice { axes: vec![axis], starts: vec![s as i64], ends: vec![e as i64], steps: vec![1] };
            let w = ctx.node(lc, &format!("axis{a}/window{i}"), slice, &[x])?;
            let red = Op::Reduce { kind, axes: vec![axis], keepdims: true };
            parts.push(ctx.node(lc, &format!("axis{a}/pool{i}"), red, &[w])?);
        }
        x = ctx.node(lc, &format!("axis{a}"), Op::Concat { axis }, &parts)?;
    }
    Ok(vec![to_first(ctx, lc, x)?])
}
