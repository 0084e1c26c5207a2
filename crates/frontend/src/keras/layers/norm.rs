//! Normalization layers.

use super::ctx::{cfg_axes, cfg_bool, cfg_count, cfg_f32, weight, Ctx, LayerCall};
use crate::FrontendError;
use ir::{Op, Tensor, ValueId};

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn batch_norm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let r = ctx.rank(x);
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    if axes.len() != 1 {
        return Err(ctx.err(lc, "normalizing over several axes is not supported"));
    }
    let axis = axes[0];
    let c = ctx.dims(x)[axis].fixed().ok_or_else(|| ctx.err(lc, "the normalized axis must have a known size"))?;
    let scale = cfg_bool(lc.config, "scale", true);
    let center = cfg_bool(lc.config, "center", true);
    let n = 2 + scale as usize + center as usize;
    if lc.weights.len() != n {
        return Err(ctx.werr(
            lc,
            format!(
                "expected {n} weight tensors (scale={scale}, center={center}), the file holds {}",
                lc.weights.len()
            ),
        ));
    }
    let mut i = 0;
    let gamma = if scale {
        i += 1;
        weight(ctx, lc, 0, "gamma", Some(&[c]))?
    } else {
        Tensor::full(&[c], 1.0)
    };
    let beta = if center {
        i += 1;
        weight(ctx, lc, i - 1, "beta", Some(&[c]))?
    } else {
        Tensor::zeros(&[c])
    };
    let mean = weight(ctx, lc, i, "moving_mean", Some(&[c]))?;
    let var = weight(ctx, lc, i + 1, "moving_variance", Some(&[c]))?;
    let ins = [
        x,
        ctx.konst(lc, "gamma", gamma),
        ctx.konst(lc, "beta", beta),
        ctx.konst(lc, "moving_mean", mean),
        ctx.konst(lc, "moving_variance", var),
    ];
    let eps = cfg_f32(lc.config, "epsilon", 1e-3).map_err(|e| ctx.err(lc, e))?;
    Ok(vec![ctx.node(lc, "", Op::BatchNorm { axis, epsilon: eps }, &ins)?])
}

pub(super) fn layer_norm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let dims = ctx.dims(x);
    let r = dims.len();
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let rms = cfg_bool(lc.config, "rms_scaling", false);
    let mut pshape = vec![1usize; r];
    let mut wshape = Vec::new();
    for &a in &axes {
        let d = dims[a].fixed().ok_or_else(|| ctx.err(lc, "normalized axes must have known sizes"))?;
        pshape[a] = d;
        wshape.push(d);
    }
    let scale = cfg_bool(lc.config, "scale", true);
    // With rms_scaling Keras creates no beta.
    let center = cfg_bool(lc.config, "center", true) && !rms;
    let n = scale as usize + center as usize;
    if lc.weights.len() != n {
        return Err(ctx.werr(lc, format!("expected {n} weight tensors, the file holds {}", lc.weights.len())));
    }
    let numel: usize = wshape.iter().product();
    let get = |ctx: &Ctx, i: usize, what: &str| -> Result<Tensor, FrontendError> {
        // Keras 3 saves gamma with the normalized shape; older files may store it flat.
        let t = weight(ctx, lc, i, what, None)?;
        if t.len() != numel {
            return Err(ctx.werr(lc, format!("{what} has shape {:?}, expected {:?}", t.shape(), wshape)));
        }
        t.reshape(&pshape).map_err(|e| ctx.err(lc, e.to_string()))
    };
    let gamma = if scale { get(ctx, 0, "gamma")? } else { Tensor::full(&pshape, 1.0) };
    let eps = cfg_f32(lc.config, "epsilon", 1e-3).map_err(|e| ctx.err(lc, e))?;
    if rms {
        // Keras 3: x · rsqrt(var(x) + ε) · γ — scaled by the variance, not re-centred.
        use ir::{BinaryOp, ReduceKind, UnaryOp};
        let red = |axes: &Vec<usize>| Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true };
        let mean = ctx.node(lc, "mean", red(&axes), &[x])?;
        let xc = ctx.binary(lc, "centered", BinaryOp::Sub, x, mean)?;
        let sq = ctx.unary(lc, "squared", UnaryOp::Square, xc)?;
        let var = ctx.node(lc, "variance", red(&axes), &[sq])?;
        let e = ctx.konst(lc, "epsilon", Tensor::scalar(eps));
        let ve = ctx.binary(lc, "var_eps", BinaryOp::Add, var, e)?;
        let rs = ctx.unary(lc, "rsqrt", UnaryOp::Rsqrt, ve)?;
        let xs = ctx.binary(lc, "scaled", BinaryOp::Mul, x, rs)?;
        let gk = ctx.konst(lc, "gamma", gamma);
        return Ok(vec![ctx.binary(lc, "", BinaryOp::Mul, xs, gk)?]);
    }
    let beta = if center { get(ctx, scale as usize, "beta")? } else { Tensor::zeros(&pshape) };
    let ins = [x, ctx.konst(lc, "gamma", gamma), ctx.konst(lc, "beta", beta)];
    Ok(vec![ctx.node(lc, "", Op::LayerNorm { axes, epsilon: eps }, &ins)?])
}

pub(super) fn group_norm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let r = ctx.rank(x);
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let axis = axes[0];
    let c = ctx.dims(x)[axis].fixed().ok_or_else(|| ctx.err(lc, "the channel axis must have a known size"))?;
    let groups = match lc.config.get("groups") {
        Some(g) if g.as_i64() == Some(-1) => c,
        _ => cfg_count(lc.config, "groups", Some(32), 1).map_err(|m| ctx.err(lc, m))?,
    };
    let scale = cfg_bool(lc.config, "scale", true);
    let center = cfg_bool(lc.config, "center", true);
    let n = scale as usize + center as usize;
    if lc.weights.len() != n {
        return Err(ctx.werr(lc, format!("expected {n} weight tensors, the file holds {}", lc.weights.len())));
    }
    let gamma = if scale { weight(ctx, lc, 0, "gamma", Some(&[c]))? } else { Tensor::full(&[c], 1.0) };
    let beta = if center { weight(ctx, lc, scale as usize, "beta", Some(&[c]))? } else { Tensor::zeros(&[c]) };
    let ins = [x, ctx.konst(lc, "gamma", gamma), ctx.konst(lc, "beta", beta)];
    let eps = cfg_f32(lc.config, "epsilon", 1e-3).map_err(|e| ctx.err(lc, e))?;
    Ok(vec![ctx.node(lc, "", Op::GroupNorm { groups, axis, epsilon: eps }, &ins)?])
}

pub(super) fn unit_norm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let axes = cfg_axes(lc.config, "axis", -1, ctx.rank(x)).map_err(|e| ctx.err(lc, e))?;
    Ok(vec![ctx.node(lc, "", Op::L2Normalize { axes, epsilon: 1e-12 }, &[x])?])
}

/// RMSNormalization: `x · rsqrt(mean(x², axes) + ε) · scale`.
pub(super) fn rms_norm(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = lc.inputs[0];
    let dims = ctx.dims(x);
    let r = dims.len();
    let axes = cfg_axes(lc.config, "axis", -1, r).map_err(|e| ctx.err(lc, e))?;
    let mut pshape = vec![1usize; r];
    for &a in &axes {
        pshape[a] = dims[a].fixed().ok_or_else(|| ctx.err(lc, "normalized axes must have known sizes"))?;
    }
    if lc.weights.len() != 1 {
        return Err(ctx.werr(lc, format!("expected 1 weight tensor (scale), the file holds {}", lc.weights.len())));
    }
    let scale = weight(ctx, lc, 0, "scale", None)?;
    if scale.len() != pshape.iter().product::<usize>() {
        return Err(ctx.werr(lc, format!("scale has shape {:?} for normalized sizes {pshape:?}", scale.shape())));
    }
    let scale = scale.reshape(&pshape).map_err(|e| ctx.err(lc, e.to_string()))?;
    let eps = cfg_f32(lc.config, "epsilon", 1e-6).map_err(|e| ctx.err(lc, e))?;
    let sq = ctx.unary(lc, "square", ir::UnaryOp::Square, x)?;
    let ms = ctx.node(lc, "mean_square", Op::Reduce { kind: ir::ReduceKind::Mean, axes, keepdims: true }, &[sq])?;
    let ms = ctx.unary(lc, "plus_epsilon", ir::UnaryOp::Affine { scale: 1.0, offset: eps }, ms)?;
    let inv = ctx.unary(lc, "rsqrt", ir::UnaryOp::Rsqrt, ms)?;
    let y = ctx.binary(lc, "normalized", ir::BinaryOp::Mul, x, inv)?;
    let s = ctx.konst(lc, "scale", scale);
    Ok(vec![ctx.binary(lc, "", ir::BinaryOp::Mul, y, s)?])
}
