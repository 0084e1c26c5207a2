//! Reducing `keras.ops`: mean, sum, max, min, prod, var, std, norm; softmax.

use super::args::{axis_of, main_input};
use crate::keras::layers::ctx::{cfg_bool, Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, Op, ReduceKind, UnaryOp, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn reduce(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let r = ctx.rank(x);
    let axes = axis_of(ctx, lc, lc.config.get("axis"), r)?.unwrap_or_else(|| (0..r).collect());
    let keepdims = cfg_bool(lc.config, "keepdims", false);
    if lc.config.get("initial").is_some_and(|v| !v.is_null()) {
        return Err(ctx.err(lc, "max/min with an 'initial' value is not supported"));
    }
    let red = |ctx: &mut Ctx, part: &str, kind: ReduceKind, v: ValueId, keep: bool| {
        ctx.node(lc, part, Op::Reduce { kind, axes: axes.clone(), keepdims: keep }, &[v])
    };
    let y = match lc.class {
        "Mean" => red(ctx, "", ReduceKind::Mean, x, keepdims)?,
        "Sum" => red(ctx, "", ReduceKind::Sum, x, keepdims)?,
        "Max" | "Amax" => red(ctx, "", ReduceKind::Max, x, keepdims)?,
        "Min" | "Amin" => red(ctx, "", ReduceKind::Min, x, keepdims)?,
        "Prod" => red(ctx, "", ReduceKind::Prod, x, keepdims)?,
        "Norm" => {
            let ord = lc.config.get("ord").unwrap_or(&Value::Null);
            match ord {
                Value::Null => {}
                Value::String(s) if s == "fro" && axes.len() == 2 => {}
                Value::Number(n) if n.as_f64() == Some(2.0) && axes.len() == 1 => {}
                Value::Number(n) if n.as_f64() == Some(1.0) && axes.len() == 1 => {
                    let a = ctx.unary(lc, "abs", UnaryOp::Abs, x)?;
                    return Ok(vec![red(ctx, "", ReduceKind::Sum, a, keepdims)?]);
                }
                other => return Err(ctx.err(lc, format!("norm with ord={other} is not supported"))),
            }
            let sq = ctx.unary(lc, "square", UnaryOp::Square, x)?;
            let s = red(ctx, "sum", ReduceKind::Sum, sq, keepdims)?;
            ctx.unary(lc, "", UnaryOp::Sqrt, s)?
        }
        // Var / Std: the mean squared deviation (population variance, as numpy's default).
        _ => {
            let m = red(ctx, "mean", ReduceKind::Mean, x, true)?;
            let d = ctx.binary(lc, "dev", BinaryOp::Sub, x, m)?;
            let sq = ctx.unary(lc, "dev2", UnaryOp::Square, d)?;
            let part = if lc.class == "Var" { "" } else { "var" };
            let v = red(ctx, part, ReduceKind::Mean, sq, keepdims)?;
            if lc.class == "Var" {
                v
            } else {
                ctx.unary(lc, "", UnaryOp::Sqrt, v)?
            }
        }
    };
    Ok(vec![y])
}

pub(super) fn softmax(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let x = main_input(ctx, lc)?;
    let r = ctx.rank(x);
    let axes = axis_of(ctx, lc, lc.config.get("axis"), r)?.unwrap_or_else(|| (0..r).collect());
    if lc.class == "LogSoftmax" {
        if axes.len() != 1 {
            return Err(ctx.err(lc, "log_softmax over several axes is not supported"));
        }
        return Ok(vec![ctx.node(lc, "", Op::LogSoftmax { axis: axes[0] }, &[x])?]);
    }
    Ok(vec![ctx.node(lc, "", Op::Softmax { axes }, &[x])?])
}
