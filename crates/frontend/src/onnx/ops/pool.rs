//! Pooling: MaxPool / AveragePool through the pooling op (padding excluded, partial last
//! windows of ceil_mode as more padding), or, for dilated windows and averages that count the
//! padding, as strided slices of the padded input; global pooling as a reduction.

use super::nn::{pads_for, spatial, usizes};
use crate::onnx::ctx::{attr_i, Ctx, Lowered};
use crate::onnx::proto::NodeProto;
use crate::onnx::value::Val;
use ir::{Op, PoolAttrs, PoolKind, ReduceKind, Tensor, UnaryOp, ValueId};

/// MaxPool / AveragePool (padding excluded from averages, as kerasc's pooling computes).
pub fn pool(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let max = node.op_type.as_deref() == Some("MaxPool");
    if node.output.len() > 1 && node.output.get(1).is_some_and(|o| !o.is_empty()) {
        return Err("MaxPool's indices output is not supported".into());
    }
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    if r < 3 {
        return Err(format!("pooling needs rank >= 3, got {r}"));
    }
    let n = r - 2;
    let window = usizes(node, "kernel_shape", n, 0)?;
    if window.contains(&0) {
        return Err("no kernel_shape".into());
    }
    let strides = usizes(node, "strides", n, 1)?;
    let dilations = usizes(node, "dilations", n, 1)?;
    let input = spatial(ctx, &x)?;
    let pads = pads_for(node, &input, &window, &strides, &dilations)?;
    // Output sizes; ceil_mode rounds up, but a last window must start inside the input or its
    // leading padding. `extra`: the padding past the end a partial last window reads.
    let ceil = attr_i(node, "ceil_mode", 0) != 0;
    let mut out = Vec::with_capacity(n);
    let mut extra = Vec::with_capacity(n);
    for i in 0..n {
        let span = (window[i] - 1) * dilations[i] + 1;
        let padded = input[i] + pads[i].0 + pads[i].1;
        let room = padded.checked_sub(span).ok_or("the window is larger than the padded input")?;
        let mut o = room / strides[i] + 1;
        if ceil && room % strides[i] != 0 {
            o += 1;
            if (o - 1) * strides[i] >= input[i] + pads[i].0 {
                o -= 1;
            }
        }
        extra.push(((o - 1) * strides[i] + span).saturating_sub(padded));
        out.push(o);
    }
    // Averages that count padding (a partial last window's included) differ where there is any.
    let padded = pads.iter().any(|&(a, b)| a + b > 0) || extra.iter().any(|&e| e > 0);
    let include_pad = !max && attr_i(node, "count_include_pad", 0) != 0 && padded;
    let kind = if max { PoolKind::Max } else { PoolKind::Avg };
    let xi = ctx.ir(&x)?;
    if dilations.iter().all(|&d| d == 1) && !include_pad {
        // The pooling op excludes padding from maxima and averages, so a partial last window is
        // more padding at the end.
        let pads: Vec<(usize, usize)> = pads.iter().zip(&extra).map(|(&(a, b), &e)| (a, b + e)).collect();
        let op = Op::ChannelsFirst(Box::new(Op::Pool(PoolAttrs { kind, window, strides, pads })));
        return Ok(vec![Val::Ir(ctx.add(name, op, &[xi])?)]);
    }
    let g = SlicedPool { max, window, strides, dilations, pads, extra, out, input, include_pad };
    pool_by_slices(ctx, name, xi, &g)
}

/// A pooling the pooling op does not do (dilated windows, or averages counting the padding).
struct SlicedPool {
    max: bool,
    window: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
    extra: Vec<usize>,
    out: Vec<usize>,
    input: Vec<usize>,
    include_pad: bool,
}

/// Pooling as the maximum or mean of strided slices, one per window offset, of the input padded
/// (−∞ for maxima, 0 for sums); a mean divides by each output's count of cells inside the input
/// (or inside the padding too, with count_include_pad), a constant.
fn pool_by_slices(ctx: &mut Ctx, name: &str, xi: ValueId, p: &SlicedPool) -> Lowered {
    let n = p.window.len();
    let fill = if p.max { f32::NEG_INFINITY } else { 0.0 };
    let mut all_pads = vec![(0, 0); 2];
    all_pads.extend(p.pads.iter().zip(&p.extra).map(|(&(a, b), &e)| (a, b + e)));
    let padded = if all_pads.iter().any(|&(a, b)| a + b > 0) {
        ctx.tmp(name, Op::Pad { pads: all_pads, value: fill }, &[xi])?
    } else {
        xi
    };
    let offsets: usize = p.window.iter().product();
    if offsets > 4096 {
        return Err(format!("a pooling window of {offsets} cells with dilations"));
    }
    let mut acc: Option<ValueId> = None;
    for flat in 0..offsets {
        let mut rest = flat;
        let mut starts = vec![0i64; n];
        for i in (0..n).rev() {
            starts[i] = ((rest % p.window[i]) * p.dilations[i]) as i64;
            rest /= p.window[i];
        }
        let ends: Vec<i64> = (0..n).map(|i| starts[i] + ((p.out[i] - 1) * p.strides[i]) as i64 + 1).collect();
        let steps: Vec<i64> = p.strides.iter().map(|&s| s as i64).collect();
        let sl = Op::Slice { axes: (2..n + 2).collect(), starts, ends, steps };
        let piece = ctx.tmp(name, sl, &[padded])?;
        let b = if p.max { ir::BinaryOp::Max } else { ir::BinaryOp::Add };
        acc = Some(match acc {
            None => piece,
            Some(a) => ctx.tmp(name, Op::Binary(b), &[a, piece])?,
        });
    }
    let acc = acc.ok_or("an empty pooling window")?;
    if p.max {
        return Ok(vec![Val::Ir(ctx.add(name, Op::Unary(UnaryOp::Identity), &[acc])?)]);
    }
    // Per axis, how many of an output's cells count; the divisor is their outer product.
    let per_axis: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            (0..p.out[i])
                .map(|o| {
                    (0..p.window[i])
                        .filter(|&j| {
                            let q = (o * p.strides[i] + j * p.dilations[i]) as i64 - p.pads[i].0 as i64;
                            // Counting the padding counts a partial last window's too (ONNX's).
                            let (lo, hi) = if p.include_pad {
                                (-(p.pads[i].0 as i64), (p.input[i] + p.pads[i].1 + p.extra[i]) as i64)
                            } else {
                                (0, p.input[i] as i64)
                            };
                            q >= lo && q < hi
                        })
                        .count()
                        .max(1) as f32
                })
                .collect()
        })
        .collect();
    let total: usize = p.out.iter().product();
    let mut counts = vec![1f32; total];
    for (flat, c) in counts.iter_mut().enumerate() {
        let mut rest = flat;
        for i in (0..n).rev() {
            *c *= per_axis[i][rest % p.out[i]];
            rest /= p.out[i];
        }
    }
    let mut cshape = vec![1, 1];
    cshape.extend(&p.out);
    let divisor =
        ctx.g.add_constant(format!("{name}/counts"), Tensor::from_f32(&cshape, counts).map_err(|e| e.to_string())?);
    Ok(vec![Val::Ir(ctx.add(name, Op::Binary(ir::BinaryOp::Div), &[acc, divisor])?)])
}

/// GlobalAveragePool / GlobalMaxPool: a reduction over every axis after the channels.
pub fn global_pool(ctx: &mut Ctx, node: &NodeProto, name: &str) -> Lowered {
    let x = ctx.req(node, 0)?;
    let r = ctx.rank(&x);
    if r < 3 {
        return Err(format!("global pooling needs rank >= 3, got {r}"));
    }
    let kind = if node.op_type.as_deref() == Some("GlobalMaxPool") { ReduceKind::Max } else { ReduceKind::Mean };
    let xi = ctx.ir(&x)?;
    Ok(vec![Val::Ir(ctx.add(name, Op::Reduce { kind, axes: (2..r).collect(), keepdims: true }, &[xi])?)])
}
