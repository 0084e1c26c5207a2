//! The shape of a recurrent layer: kernels, biases, initial states and the mask checked
//! against the input and the units.

use super::checks::{err, mul, unary_params};
use crate::{Dim, IrError, Op, RnnAttrs, RnnKind, Shape, TensorType};

type R = Result<Vec<TensorType>, IrError>;

pub(super) fn rnn(op: &Op, a: &RnnAttrs, tys: &[TensorType]) -> R {
    let x = &tys[0];
    if x.shape.rank() != 3 {
        return err(op, format!("expects (batch, time, features), got {}", x.shape));
    }
    let gates = match a.kind {
        RnnKind::Simple => 1,
        RnnKind::Lstm => 4,
        RnnKind::Gru { .. } => 3,
    };
    let u = a.units;
    if u == 0 {
        return err(op, "units must be at least 1");
    }
    unary_params(op, &a.activation)?;
    unary_params(op, &a.recurrent_activation)?;
    let k = tys[1].shape.as_fixed().unwrap_or_default();
    let rk = tys[2].shape.as_fixed().unwrap_or_default();
    let gu = mul(op, gates, u)?;
    if k.len() != 2 || k[1] != gu {
        return err(op, format!("kernel {} should be (features, {gu})", tys[1].shape));
    }
    if let Dim::Fixed(f) = x.shape.0[2] {
        if f != k[0] {
            return err(op, format!("input has {f} features, kernel expects {}", k[0]));
        }
    }
    if rk != [u, gu] {
        return err(op, format!("recurrent kernel {} should be ({u}, {gu})", tys[2].shape));
    }
    let st = if a.initial_state { a.n_states() } else { 0 };
    // Two batch sizes that are both known must agree.
    let same_batch = |d: Dim| !matches!((d, x.shape.0[0]), (Dim::Fixed(p), Dim::Fixed(q)) if p != q);
    if a.masked {
        let m = &tys[tys.len() - 1];
        if m.shape.rank() != 2 || m.shape.0[1] != x.shape.0[1] || !same_batch(m.shape.0[0]) {
            return err(op, format!("the mask {} should be ({}, {})", m.shape, x.shape.0[0], x.shape.0[1]));
        }
    }
    let si = a.state_index(tys.len());
    for s in &tys[si..si + st] {
        let ok = s.shape.rank() == 2 && s.shape.0[1] == Dim::Fixed(u) && same_batch(s.shape.0[0]);
        if !ok {
            return err(op, format!("an initial state {} should be ({}, {u})", s.shape, x.shape.0[0]));
        }
    }
    if let Some(b) = tys.get(3).filter(|_| a.has_bias(tys.len())) {
        let bs = b.shape.as_fixed().unwrap_or_default();
        let ok = match a.kind {
            RnnKind::Gru { reset_after: true } => bs == [2, gu],
            _ => bs == [gu],
        };
        if !ok {
            return err(op, format!("bias shape {} does not fit {} units", b.shape, u));
        }
    }
    let n = x.shape.0[0];
    let y =
        if a.return_sequences { Shape(vec![n, x.shape.0[1], Dim::Fixed(u)]) } else { Shape(vec![n, Dim::Fixed(u)]) };
    let mut out = vec![TensorType::new(x.dtype, y), TensorType::new(x.dtype, Shape(vec![n, Dim::Fixed(u)]))];
    if a.kind == RnnKind::Lstm {
        out.push(TensorType::new(x.dtype, Shape(vec![n, Dim::Fixed(u)])));
    }
    Ok(out)
}
