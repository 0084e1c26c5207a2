//! Resize (opsets 10-19) and Upsample (7-9) of a block of axes past the batch: channels-first
//! (a layout attribute) or channels-last. TensorFlow's half-pixel bilinear and integer nearest
//! upsampling keep their own kernels; every other case (coordinate transformations, rounding
//! modes, cubic, antialiasing, crops, `axes`, `keep_aspect_ratio_policy`) is ONNX's general
//! resize ([`ir::interp`]).

use crate::onnx::ctx::{attr_f, attr_i, attr_ints, attr_s, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::{Val, S};
use ir::interp::{CoordMode, InterpKind, Interpolation, NearestRound};
use ir::{Op, ResizeMode};

pub fn resize(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let s = ctx.shape_of(&x);
    let r = s.len();
    let fixed: Vec<Option<f64>> = s.iter().map(|d| if let S::N(n) = d { Some(*n) } else { None }).collect();
    let upsample = node.op_type.as_deref() == Some("Upsample");
    // Before opset 11 Resize (like Upsample) maps coordinates asymmetrically and rounds down.
    let old = upsample || ctx.opset < 11;
    let axes: Vec<usize> = match attr_ints(node, "axes") {
        Some(a) => a.iter().map(|&a| ctx.axis(a, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let (scales_at, sizes_at, roi_at) = match (upsample, ctx.opset) {
        (true, o) if o < 9 => (usize::MAX, usize::MAX, usize::MAX),
        (true, _) => (1, usize::MAX, usize::MAX),
        (false, o) if o < 11 => (1, usize::MAX, usize::MAX),
        _ => (2, 3, 1),
    };
    let mut out: Vec<Option<f64>> = fixed.clone();
    let mut scales = vec![1.0f64; r];
    if let Some(sz) = ctx.input(node, sizes_at).filter(|_| sizes_at != usize::MAX) {
        let v = ctx.ints(&sz, "resize sizes")?;
        if v.len() != axes.len() {
            return Err(format!("{} sizes for {} axes", v.len(), axes.len()));
        }
        if let Some(bad) = v.iter().find(|&&n| n < 1) {
            return Err(format!("resize sizes {v:?}: a size of {bad} (each must be at least 1)"));
        }
        let input = |a: usize| fixed[a].ok_or("resized axes must have fixed sizes");
        let policy = attr_s(node, "keep_aspect_ratio_policy", "stretch");
        let ratios: Vec<f64> =
            axes.iter().zip(&v).map(|(&a, &n)| Ok(n as f64 / input(a)?)).collect::<Result<_, String>>()?;
        let common = match policy.as_str() {
            "stretch" => None,
            "not_larger" => Some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
            "not_smaller" => Some(ratios.iter().copied().fold(0.0, f64::max)),
            p => return Err(format!("keep_aspect_ratio_policy '{p}' is not one of ONNX's")),
        };
        for (k, &a) in axes.iter().enumerate() {
            match common {
                None => {
                    scales[a] = ratios[k];
                    out[a] = Some(v[k] as f64);
                }
                Some(c) => {
                    scales[a] = c;
                    out[a] = Some((c * input(a)? + 0.5).floor());
                }
            }
        }
    } else {
        let v: Vec<f64> = if scales_at == usize::MAX {
            attr_floats(node, "scales").ok_or("Upsample without scales")?
        } else {
            let sc = ctx.input(node, scales_at).ok_or("Resize without scales or sizes")?;
            ctx.need(&sc, "resize scales")?.nums("resize scales")?
        };
        if v.len() != axes.len() {
            return Err(format!("{} scales for {} axes", v.len(), axes.len()));
        }
        if let Some(bad) = v.iter().find(|&&x| !(x.is_finite() && x > 0.0)) {
            return Err(format!("resize scales {v:?}: a scale of {bad} (each must be positive and finite)"));
        }
        for (k, &a) in axes.iter().enumerate() {
            scales[a] = v[k];
            out[a] = out[a].map(|n| (n * v[k]).floor());
        }
    }
    if out.iter().zip(&fixed).any(|(o, f)| *o == Some(0.0) && *f != Some(0.0)) {
        return Err("the resized size of an axis is 0".into());
    }
    // Which axes change: a block past the batch, channels-first (from axis 2) or -last.
    let changed: Vec<usize> = (0..r).filter(|&i| scales[i] != 1.0 || out[i] != fixed[i]).collect();
    let mode = attr_s(node, "mode", "nearest");
    let ct = if old { "asymmetric".to_string() } else { attr_s(node, "coordinate_transformation_mode", "half_pixel") };
    let crop = ct == "tf_crop_and_resize";
    let channels_first = changed.iter().all(|&i| i >= 2) && r >= 3;
    let channels_last = changed.iter().all(|&i| i >= 1 && i + 1 < r) && r >= 3;
    if !(channels_first || channels_last) {
        return Err("only the axes past the batch and the channels may be resized".into());
    }
    let block: Vec<usize> = if channels_first { (2..r).collect() } else { (1..r - 1).collect() };
    let sizes: Vec<usize> = block
        .iter()
        .map(|&i| out[i].map(|v| v as usize).ok_or("resized axes must have fixed sizes".to_string()))
        .collect::<Result<_, _>>()?;
    let nearest = NearestRound::parse(&if old {
        "floor".to_string()
    } else {
        attr_s(node, "nearest_mode", "round_prefer_floor")
    })
    .ok_or("an unknown nearest_mode")?;
    let kind = match mode.as_str() {
        "nearest" => InterpKind::Nearest(nearest),
        "linear" | "bilinear" => InterpKind::Linear,
        "cubic" | "bicubic" => InterpKind::Cubic { a: (attr_f(node, "cubic_coeff_a", -0.75)).to_bits() },
        other => return Err(format!("Resize mode '{other}' is not one of ONNX's")),
    };
    let coord =
        CoordMode::parse(&ct).ok_or_else(|| format!("coordinate_transformation_mode '{ct}' is not one of ONNX's"))?;
    let antialias = attr_i(node, "antialias", 0) != 0;
    let exclude_outside = attr_i(node, "exclude_outside", 0) != 0;
    // TensorFlow's own cases keep their kernels (shared with Keras's layers, and differentiable).
    let integer_up = changed.iter().all(|&i| scales[i].fract() == 0.0 && scales[i] >= 1.0);
    let by_ratio = changed.iter().all(|&i| match (fixed[i], out[i]) {
        (Some(n), Some(o)) => (o / n - scales[i]).abs() <= 1e-6 * scales[i],
        _ => false,
    });
    let plain = !antialias && !exclude_outside && !crop;
    let tf_mode = match kind {
        InterpKind::Linear
            if plain
                && by_ratio
                && (ct == "half_pixel"
                    || (ct == "pytorch_half_pixel" && changed.iter().all(|&i| out[i] != Some(1.0)))) =>
        {
            Some(ResizeMode::Bilinear)
        }
        InterpKind::Nearest(nm)
            if plain
                && integer_up
                && ((ct == "asymmetric" && nm == NearestRound::Floor)
                    || (ct == "half_pixel" && nm != NearestRound::Ceil)
                    || ct == "tf_half_pixel_for_nn") =>
        {
            Some(ResizeMode::Nearest)
        }
        _ => None,
    };
    let rmode = match tf_mode {
        Some(m) => m,
        None => {
            let roi: Option<Vec<f64>> = match ctx.input(node, roi_at).filter(|_| crop && roi_at != usize::MAX) {
                Some(v) => Some(ctx.need(&v, "the resize region of interest")?.nums("the region of interest")?),
                None => None,
            };
            let per_axis = |a: usize| -> Result<(u32, u32, u32), String> {
                let (r0, r1) = match &roi {
                    Some(v) => {
                        let k = axes.iter().position(|&b| b == a);
                        match k {
                            Some(k) if v.len() == 2 * axes.len() => (v[k], v[k + axes.len()]),
                            None => (0.0, 1.0),
                            _ => {
                                return Err(format!(
                                    "a region of interest of {} values for {} axes",
                                    v.len(),
                                    axes.len()
                                ))
                            }
                        }
                    }
                    None => (0.0, 1.0),
                };
                Ok(((scales[a] as f32).to_bits(), (r0 as f32).to_bits(), (r1 as f32).to_bits()))
            };
            ResizeMode::Onnx(Box::new(Interpolation {
                coord,
                kind,
                antialias,
                exclude_outside,
                extrapolation: attr_f(node, "extrapolation_value", 0.0).to_bits(),
                axes: block.iter().map(|&a| per_axis(a)).collect::<Result<_, _>>()?,
            }))
        }
    };
    let xi = ctx.ir(&x)?;
    let op = Op::Resize { sizes, mode: rmode };
    let op = if channels_first { Op::ChannelsFirst(Box::new(op)) } else { op };
    Ok(vec![Val::Ir(ctx.add(name, op, &[xi])?)])
}

/// A float-list attribute.
fn attr_floats(node: &NodeProto, name: &str) -> Option<Vec<f64>> {
    crate::onnx::ctx::attr(node, name).map(|a| a.floats.iter().map(|&f| f as f64).collect())
}
