//! Summing the gradient contributions a value receives. A value read by many unit-step slices
//! along one axis (a recurrent layer's per-step input projections, its gates) would otherwise
//! sum one zero-padded full-size copy per slice, quadratic in the number of steps; here the
//! slices' gradients are kept apart until the value's gradient is read, then joined by one
//! concatenation (and one pad where they do not reach the ends).

use super::builder::Builder;
use crate::{BinaryOp, IrError, Node, Op, ValueId};
use std::collections::HashMap;

/// One unit-step slice's gradient: `dy` covers `[lo, hi)` of `n` along `axis`.
#[derive(Clone, Copy)]
struct Piece {
    axis: usize,
    lo: usize,
    hi: usize,
    n: usize,
    dy: ValueId,
}

/// The gradients accumulated so far, per value.
#[derive(Default)]
pub(super) struct Accum {
    grads: HashMap<ValueId, ValueId>,
    pieces: HashMap<ValueId, Vec<Piece>>,
}

impl Accum {
    /// Adds `dx` to `v`'s gradient.
    pub(super) fn add(&mut self, b: &mut Builder, v: ValueId, dx: ValueId) -> Result<(), IrError> {
        let acc = match self.grads.get(&v) {
            Some(&prev) => b.add(Op::Binary(BinaryOp::Add), &[prev, dx])?,
            None => dx,
        };
        self.grads.insert(v, acc);
        Ok(())
    }

    /// Takes the gradient `dy` of `node`'s output if `node` is a unit-step slice along one
    /// fixed axis (kept apart for [`Accum::get`]); false for any other node.
    pub(super) fn slice(&mut self, b: &Builder, node: &Node, dy: ValueId) -> bool {
        let Op::Slice { axes, starts, ends, steps } = &node.op else { return false };
        let ([axis], [start], [end], [1]) = (axes.as_slice(), starts.as_slice(), ends.as_slice(), steps.as_slice())
        else {
            return false;
        };
        let x = node.inputs[0];
        let Some(n) = b.ty(x).shape.dims().get(*axis).and_then(|d| d.fixed()) else { return false };
        let (lo, hi) = crate::slice_bounds(n, *start, *end, 1);
        let (lo, hi) = (lo.max(0) as usize, hi.max(lo) as usize);
        if hi > n || lo >= hi {
            return false;
        }
        self.pieces.entry(x).or_default().push(Piece { axis: *axis, lo, hi, n, dy });
        true
    }

    /// `v`'s whole gradient (its kept slices joined in), if it has one.
    pub(super) fn get(&mut self, b: &mut Builder, v: ValueId) -> Result<Option<ValueId>, IrError> {
        if let Some(pieces) = self.pieces.remove(&v) {
            let joined = join(b, pieces)?;
            self.add(b, v, joined)?;
        }
        Ok(self.grads.get(&v).copied())
    }
}

/// The gradient of a value from its slices' gradients: the same range's summed, then distinct
/// ranges along one axis that tile a span joined by a concatenation and padded to the whole
/// axis; otherwise each padded on its own and summed.
fn join(b: &mut Builder, pieces: Vec<Piece>) -> Result<ValueId, IrError> {
    let mut ranges: Vec<Piece> = Vec::new();
    for p in pieces {
        match ranges.iter_mut().find(|r| (r.axis, r.lo, r.hi) == (p.axis, p.lo, p.hi)) {
            Some(r) => r.dy = b.add(Op::Binary(BinaryOp::Add), &[r.dy, p.dy])?,
            None => ranges.push(p),
        }
    }
    ranges.sort_by_key(|r| (r.axis, r.lo));
    let rank = b.ty(ranges[0].dy).shape.rank();
    let pad = |b: &mut Builder, dy: ValueId, axis: usize, lo: usize, hi: usize, n: usize| {
        if lo == 0 && hi == n {
            return Ok(dy);
        }
        let mut pads = vec![(0, 0); rank];
        pads[axis] = (lo, n - hi);
        b.add(Op::Pad { pads, value: 0.0 }, &[dy])
    };
    let tiled = ranges.windows(2).all(|w| w[0].axis == w[1].axis && w[0].hi == w[1].lo);
    if tiled {
        let (first, last) = (ranges[0], ranges[ranges.len() - 1]);
        let dys: Vec<ValueId> = ranges.iter().map(|r| r.dy).collect();
        let cat = if dys.len() == 1 { dys[0] } else { b.add(Op::Concat { axis: first.axis }, &dys)? };
        return pad(b, cat, first.axis, first.lo, last.hi, first.n);
    }
    let mut acc: Option<ValueId> = None;
    for r in ranges {
        let g = pad(b, r.dy, r.axis, r.lo, r.hi, r.n)?;
        acc = Some(match acc {
            Some(prev) => b.add(Op::Binary(BinaryOp::Add), &[prev, g])?,
            None => g,
        });
    }
    acc.ok_or_else(|| IrError::Graph("a slice gradient without pieces".into()))
}
