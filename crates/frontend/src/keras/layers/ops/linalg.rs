//! Products: matmul/dot and einsum (one or two operands, lowered to transposes, reshapes and
//! one batched matmul).

use super::args::{arg, args, operand, reshape_to};
use crate::keras::layers::ctx::{Ctx, LayerCall};
use crate::FrontendError;
use ir::{BinaryOp, Dim, Op, ReduceKind, ValueId};
use serde_json::Value;

type R = Result<Vec<ValueId>, FrontendError>;

pub(super) fn matmul(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let x = operand(ctx, lc, arg(ctx, lc, &a, 0)?, 0)?;
    let y = operand(ctx, lc, arg(ctx, lc, &a, 1)?, 1)?;
    let (rx, ry) = (ctx.rank(x), ctx.rank(y));
    if rx == 0 || ry == 0 {
        return Ok(vec![ctx.binary(lc, "", BinaryOp::Mul, x, y)?]);
    }
    if lc.class == "Dot" && ry > 2 {
        return Err(ctx.err(lc, "dot with a second operand of rank > 2 is not supported; use matmul or einsum"));
    }
    if rx.max(ry) > 12 {
        return Err(ctx.err(lc, "matmul of rank > 12 is not supported"));
    }
    let batch = |r: usize| -> String { (0..r.saturating_sub(2)).map(|i| (b'a' + i as u8) as char).collect() };
    // numpy matmul with a vector operand, as an einsum (the vector's axis is dropped).
    let eq = match (rx, ry) {
        (1, 1) => "k,k->".to_string(),
        (1, _) => format!("k,{b}kn->{b}n", b = batch(ry)),
        (_, 1) => format!("{b}mk,k->{b}m", b = batch(rx)),
        _ => return Ok(vec![ctx.node(lc, "", Op::MatMul { transpose_a: false, transpose_b: false }, &[x, y])?]),
    };
    Ok(vec![einsum(ctx, lc, &eq, &[x, y])?])
}

pub(super) fn einsum_layer(ctx: &mut Ctx, lc: &LayerCall) -> R {
    let a = args(ctx, lc)?;
    let eq = lc
        .config
        .get("subscripts")
        .and_then(Value::as_str)
        .ok_or_else(|| ctx.err(lc, "einsum without 'subscripts'"))?
        .to_string();
    let mut vs = Vec::new();
    for (i, x) in a.iter().enumerate() {
        vs.push(operand(ctx, lc, x, i)?);
    }
    Ok(vec![einsum(ctx, lc, &eq, &vs)?])
}

/// Lowers a one- or two-operand einsum to transposes, reshapes, sums and one batched matmul.
pub(crate) fn einsum(ctx: &mut Ctx, lc: &LayerCall, eq: &str, xs: &[ValueId]) -> Result<ValueId, FrontendError> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (eq.clone(), None),
    };
    let mut terms: Vec<String> = lhs.split(',').map(str::to_string).collect();
    if terms.len() != xs.len() || terms.is_empty() || terms.len() > 2 {
        return Err(ctx.err(lc, format!("einsum '{eq}' with {} operand(s) is not supported", xs.len())));
    }
    // Ellipses become fresh letters (aligned from the right, as broadcasting does).
    let fresh: Vec<char> = ('A'..='Z').filter(|c| !eq.contains(*c)).collect();
    let mut ell_len = 0;
    for (t, &x) in terms.iter_mut().zip(xs) {
        if let Some(pos) = t.find("...") {
            let n = ctx.rank(x) + 3 - t.chars().count();
            ell_len = ell_len.max(n);
            let fill: String = fresh[fresh.len().saturating_sub(n)..].iter().collect();
            t.replace_range(pos..pos + 3, &fill);
        }
    }
    let ell: String = fresh[fresh.len().saturating_sub(ell_len)..].iter().collect();
    let out: Vec<char> = match out {
        Some(o) => o.replace("...", &ell).chars().collect(),
        None => {
            // Implicit output: the ellipsis, then letters seen once, sorted.
            let all: String = terms.concat();
            let mut once: Vec<char> =
                all.chars().filter(|c| c.is_ascii_lowercase() && all.matches(*c).count() == 1).collect();
            once.sort_unstable();
            ell.chars().chain(once).collect()
        }
    };
    let terms: Vec<Vec<char>> = terms.iter().map(|t| t.chars().collect()).collect();
    for (t, &x) in terms.iter().zip(xs) {
        if t.len() != ctx.rank(x) {
            return Err(ctx.err(
                lc,
                format!("einsum '{eq}': '{}' does not match an operand of rank {}", String::from_iter(t), ctx.rank(x)),
            ));
        }
        if t.iter().any(|c| t.iter().filter(|d| *d == c).count() > 1) {
            return Err(ctx.err(lc, format!("einsum '{eq}': repeated indices (diagonals) are not supported")));
        }
    }
    if out.iter().any(|c| !terms.iter().any(|t| t.contains(c))) {
        return Err(ctx.err(lc, format!("einsum '{eq}': an output index appears in no operand")));
    }
    // Sum away letters found only in one operand and not in the output.
    let mut vals: Vec<ValueId> = xs.to_vec();
    let mut terms = terms;
    for k in 0..terms.len() {
        let others: Vec<char> =
            terms.iter().enumerate().filter(|(j, _)| *j != k).flat_map(|(_, t)| t.clone()).collect();
        let axes: Vec<usize> =
            (0..terms[k].len()).filter(|&i| !out.contains(&terms[k][i]) && !others.contains(&terms[k][i])).collect();
        if !axes.is_empty() {
            vals[k] = ctx.node(
                lc,
                &format!("sum{k}"),
                Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keepdims: false },
                &[vals[k]],
            )?;
            terms[k] = terms[k].iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, c)| *c).collect();
        }
    }
    let size_of = |ctx: &Ctx, c: char| -> Dim {
        for (t, &v) in terms.iter().zip(&vals) {
            if let Some(i) = t.iter().position(|d| *d == c) {
                let d = ctx.dims(v)[i];
                if d != Dim::Fixed(1) {
                    return d;
                }
            }
        }
        Dim::Fixed(1)
    };
    let permute =
        |ctx: &mut Ctx, part: &str, v: ValueId, from: &[char], to: &[char]| -> Result<ValueId, FrontendError> {
            let perm: Vec<usize> = to.iter().map(|c| from.iter().position(|d| d == c).unwrap_or(0)).collect();
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Ok(v);
            }
            ctx.node(lc, part, Op::Transpose { perm }, &[v])
        };
    if terms.len() == 1 {
        return permute(ctx, "", vals[0], &terms[0], &out);
    }
    let (ta, tb) = (&terms[0], &terms[1]);
    let batch: Vec<char> = out.iter().copied().filter(|c| ta.contains(c) && tb.contains(c)).collect();
    let contract: Vec<char> = ta.iter().copied().filter(|c| tb.contains(c) && !out.contains(c)).collect();
    let free_a: Vec<char> = ta.iter().copied().filter(|c| !tb.contains(c)).collect();
    let free_b: Vec<char> = tb.iter().copied().filter(|c| !ta.contains(c)).collect();
    let prod = |ctx: &Ctx, cs: &[char]| -> Option<usize> { cs.iter().map(|&c| size_of(ctx, c).fixed()).product() };
    let merged = |ctx: &Ctx, cs: &[char]| -> Dim {
        match prod(ctx, cs) {
            Some(n) => Dim::Fixed(n),
            None => Dim::Batch,
        }
    };
    // A: (batch, free_a, contract) → (batch, M, K); B: (batch, contract, free_b) → (batch, K, N).
    let order_a: Vec<char> = batch.iter().chain(&free_a).chain(&contract).copied().collect();
    let order_b: Vec<char> = batch.iter().chain(&contract).chain(&free_b).copied().collect();
    let a = permute(ctx, "lhs/transpose", vals[0], ta, &order_a)?;
    let b = permute(ctx, "rhs/transpose", vals[1], tb, &order_b)?;
    let bdims = |ctx: &Ctx, v: ValueId| -> Vec<Dim> { ctx.dims(v)[..batch.len()].to_vec() };
    let mut da = bdims(ctx, a);
    da.extend([merged(ctx, &free_a), merged(ctx, &contract)]);
    let mut db = bdims(ctx, b);
    db.extend([merged(ctx, &contract), merged(ctx, &free_b)]);
    let a = reshape_to(ctx, lc, "lhs/reshape", a, &da)?;
    let b = reshape_to(ctx, lc, "rhs/reshape", b, &db)?;
    let m = ctx.node(lc, "matmul", Op::MatMul { transpose_a: false, transpose_b: false }, &[a, b])?;
    let mut dm = ctx.dims(m)[..batch.len()].to_vec();
    dm.extend(free_a.iter().chain(&free_b).map(|&c| size_of(ctx, c)));
    let y = reshape_to(ctx, lc, "reshape", m, &dm)?;
    let order: Vec<char> = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
    permute(ctx, "", y, &order, &out)
}
