//! Shapes of convolutions, transposed convolutions and pooling: windows over spatial axes.

use super::checks::{add, err, mul, positive};
use crate::{ConvAttrs, ConvTransposeAttrs, Dim, IrError, Op, PoolAttrs, Shape, TensorType};

type R = Result<Vec<TensorType>, IrError>;

pub(super) fn spatial_out(
    op: &Op,
    input: Dim,
    k: usize,
    s: usize,
    d: usize,
    pads: (usize, usize),
) -> Result<Dim, IrError> {
    if k == 0 || s == 0 || d == 0 {
        return err(op, format!("window {k}, stride {s} and dilation {d} must be at least 1"));
    }
    let k_eff = add(op, mul(op, k - 1, d)?, 1)?;
    match input {
        Dim::Batch => Ok(Dim::Batch),
        Dim::Fixed(n) => {
            let padded = add(op, add(op, n, pads.0)?, pads.1)?;
            if padded < k_eff {
                return err(op, format!("window {k_eff} larger than padded input {padded}"));
            }
            Ok(Dim::Fixed((padded - k_eff) / s + 1))
        }
    }
}

pub(super) fn conv(op: &Op, a: &ConvAttrs, x: &TensorType, w: &TensorType) -> R {
    let r = a.strides.len();
    if x.shape.rank() != r + 2 || w.shape.rank() != r + 2 || a.dilations.len() != r || a.pads.len() != r {
        return err(op, format!("input {} and kernel {} do not fit a {r}-D convolution", x.shape, w.shape));
    }
    let ws = w.shape.as_fixed().ok_or_else(|| IrError::shape(op.name(), "kernel shape must be known"))?;
    positive(op, "kernel sizes", &ws[..=r])?;
    let cin = x.shape.0[r + 1];
    if a.groups == 0 {
        return err(op, "groups must be positive");
    }
    if let Dim::Fixed(c) = cin {
        if c != ws[r] * a.groups {
            return err(op, format!("input has {c} channels, kernel expects {} x {} groups", ws[r], a.groups));
        }
    }
    if !ws[r + 1].is_multiple_of(a.groups) {
        return err(op, format!("{} filters not divisible by {} groups", ws[r + 1], a.groups));
    }
    let mut dims = vec![x.shape.0[0]];
    #[allow(clippy::needless_range_loop)] // `i` indexes five parallel per-axis lists
    for i in 0..r {
        dims.push(spatial_out(op, x.shape.0[i + 1], ws[i], a.strides[i], a.dilations[i], a.pads[i])?);
    }
    dims.push(Dim::Fixed(ws[r + 1]));
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}

pub(super) fn conv_transpose(op: &Op, a: &ConvTransposeAttrs, x: &TensorType, w: &TensorType) -> R {
    let r = a.strides.len();
    if x.shape.rank() != r + 2 || w.shape.rank() != r + 2 || a.dilations.len() != r {
        return err(op, format!("input {} and kernel {} do not fit a {r}-D transposed convolution", x.shape, w.shape));
    }
    let ws = w.shape.as_fixed().ok_or_else(|| IrError::shape(op.name(), "kernel shape must be known"))?;
    positive(op, "kernel sizes", &ws[..r])?;
    positive(op, "strides", &a.strides)?;
    positive(op, "dilations", &a.dilations)?;
    if let Dim::Fixed(c) = x.shape.0[r + 1] {
        if c != ws[r + 1] {
            return err(op, format!("input has {c} channels, kernel expects {}", ws[r + 1]));
        }
    }
    if let Some(p) = &a.output_padding {
        if p.len() != r {
            return err(op, "output_padding rank mismatch");
        }
        if p.iter().zip(&a.strides).any(|(p, s)| p >= s) {
            return err(op, format!("output_padding {p:?} must be smaller than the strides {:?}", a.strides));
        }
    }
    let mut dims = vec![x.shape.0[0]];
    #[allow(clippy::needless_range_loop)] // `i` indexes the input, kernel and attributes
    for i in 0..r {
        dims.push(match x.shape.0[i + 1] {
            Dim::Batch => Dim::Batch,
            Dim::Fixed(n) => {
                // The largest intermediate of the geometry, so that it cannot overflow.
                let k_eff = add(op, mul(op, ws[i] - 1, a.dilations[i])?, 1)?;
                let extent = add(op, mul(op, n.max(1), a.strides[i])?, k_eff)?;
                let pad = a.output_padding.as_ref().map_or(0, |p| p[i]);
                add(op, extent, pad)?;
                Dim::Fixed(a.geometry(i, n, ws[i]).0)
            }
        });
    }
    dims.push(Dim::Fixed(ws[r]));
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}

pub(super) fn pool(op: &Op, a: &PoolAttrs, x: &TensorType) -> R {
    let r = a.window.len();
    if x.shape.rank() != r + 2 || a.strides.len() != r || a.pads.len() != r {
        return err(op, format!("input {} does not fit a {r}-D pooling", x.shape));
    }
    positive(op, "pool sizes", &a.window)?;
    positive(op, "strides", &a.strides)?;
    for i in 0..r {
        if a.pads[i].0 >= a.window[i] || a.pads[i].1 >= a.window[i] {
            return err(op, "padding must be smaller than the window");
        }
    }
    let mut dims = vec![x.shape.0[0]];
    #[allow(clippy::needless_range_loop)] // `i` indexes five parallel per-axis lists
    for i in 0..r {
        dims.push(spatial_out(op, x.shape.0[i + 1], a.window[i], a.strides[i], 1, a.pads[i])?);
    }
    dims.push(x.shape.0[r + 1]);
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}
