//! Backpropagation through time: a recurrent layer recomputed unrolled into primitive ops
//! (matmuls, slices, activations), whose gradients are those ops' gradients.

use super::accum::Accum;
use super::builder::{unsupported, Builder};
use crate::{BinaryOp, IrError, Op, Tensor, UnaryOp, ValueId};

impl Builder<'_> {
    /// Backpropagation through time: the layer is recomputed unrolled into primitive ops
    /// (matmuls, slices, activations) and its gradients are those ops' gradients, by the rules
    /// above.
    pub(super) fn rnn_through_time(
        &mut self,
        nd: &crate::Node,
        a: &crate::RnnAttrs,
        dys: &[Option<ValueId>],
    ) -> Result<Vec<Option<ValueId>>, IrError> {
        let start = self.g.nodes().len();
        let outs = self.unroll(a, &nd.inputs)?;
        let end = self.g.nodes().len();
        // The unrolled outputs get the layer's output gradients; then backwards through them.
        let mut acc = Accum::default();
        for (o, dy) in outs.iter().zip(dys) {
            let (Some(o), Some(dy)) = (o, dy) else { continue };
            acc.add(self, *o, *dy)?;
        }
        for ni in (start..end).rev() {
            let node = self.g.nodes()[ni].clone();
            let ndys = node.outputs.iter().map(|&o| acc.get(self, o)).collect::<Result<Vec<_>, _>>()?;
            if ndys.iter().all(Option::is_none) {
                continue;
            }
            if let [Some(dy)] = ndys.as_slice() {
                if acc.slice(self, &node, *dy) {
                    continue;
                }
            }
            let dxs = self.rule(ni, &ndys)?;
            for (&v, dx) in node.inputs.iter().zip(dxs) {
                let Some(dx) = dx else { continue };
                acc.add(self, v, dx)?;
            }
        }
        nd.inputs.iter().map(|&v| acc.get(self, v)).collect()
    }

    /// The recurrent layer `a` on `inputs` as primitive ops appended to the graph: its outputs
    /// (the sequence or the last output, the last state, and an LSTM's last cell state).
    pub(super) fn unroll(&mut self, a: &crate::RnnAttrs, inputs: &[ValueId]) -> Result<[Option<ValueId>; 3], IrError> {
        use crate::RnnKind;
        let op = Op::Rnn(a.clone());
        let (x, w, rk) = (inputs[0], inputs[1], inputs[2]);
        let bias = inputs.get(3).copied().filter(|_| a.has_bias(inputs.len()));
        let xs = self.ty(x).shape;
        let t = xs.dims()[1].fixed().ok_or_else(|| unsupported(&op, " over a symbolic number of steps"))?;
        let u = a.units;
        let gates = match a.kind {
            RnnKind::Simple => 1,
            RnnKind::Lstm => 4,
            RnnKind::Gru { .. } => 3,
        };
        let gu = gates * u;
        let bin = |b: &mut Self, o: BinaryOp, p: ValueId, q: ValueId| b.add(Op::Binary(o), &[p, q]);
        let un = |b: &mut Self, o: UnaryOp, p: ValueId| b.add(Op::Unary(o), &[p]);
        let cols = |b: &mut Self, v: ValueId, from: usize, to: usize| {
            b.add(Op::Slice { axes: vec![1], starts: vec![from as i64], ends: vec![to as i64], steps: vec![1] }, &[v])
        };
        // Input projection for every step, with the input bias.
        let mut xp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[x, w])?;
        let (in_bias, rec_bias) = match (a.kind, bias) {
            (RnnKind::Gru { reset_after: true }, Some(b)) => {
                let ib = self.add(Op::Slice { axes: vec![0], starts: vec![0], ends: vec![1], steps: vec![1] }, &[b])?;
                let rb = self.add(Op::Slice { axes: vec![0], starts: vec![1], ends: vec![2], steps: vec![1] }, &[b])?;
                let ib = self.add(Op::Reshape { shape: vec![gu as i64] }, &[ib])?;
                let rb = self.add(Op::Reshape { shape: vec![gu as i64] }, &[rb])?;
                (Some(ib), Some(rb))
            }
            (_, b) => (b, None),
        };
        if let Some(b) = in_bias {
            xp = bin(self, BinaryOp::Add, xp, b)?;
        }
        // Zero initial state of the batch's size: zeros (1, U) broadcast with a (N, 1) slice.
        let like =
            self.add(Op::Slice { axes: vec![1, 2], starts: vec![0, 0], ends: vec![1, 1], steps: vec![1, 1] }, &[x])?;
        let like = self.add(Op::Reshape { shape: vec![-1, 1] }, &[like])?;
        let zeros = self.g.add_constant(format!("grad/rnn_zeros_{}", self.n), Tensor::zeros(&[1, u]));
        let mut h = self.add(Op::BroadcastTo, &[zeros, like])?;
        let mut c = h;
        let zero_state = h;
        if a.initial_state {
            let k = a.state_index(inputs.len());
            h = inputs[k];
            if a.kind == RnnKind::Lstm {
                c = inputs[k + 1];
            }
        }
        // With a mask: the output of the last kept step (zeros before the first).
        let mask = a.masked.then(|| inputs[inputs.len() - 1]);
        let mut prev_out = zero_state;
        let mut seq = Vec::with_capacity(t);
        for step in 0..t {
            let ti = if a.go_backwards { t - 1 - step } else { step };
            let (h_old, c_old) = (h, c);
            let xt = self.add(
                Op::Slice { axes: vec![1], starts: vec![ti as i64], ends: vec![ti as i64 + 1], steps: vec![1] },
                &[xp],
            )?;
            let xt = self.add(Op::Reshape { shape: vec![-1, gu as i64] }, &[xt])?;
            let gate = |b: &mut Self, v: ValueId, k: usize| cols(b, v, k * u, (k + 1) * u);
            match a.kind {
                RnnKind::Gru { reset_after: false } => {
                    let rzr = cols(self, rk, 0, 2 * u)?;
                    let hp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[h, rzr])?;
                    let (xz, xr, xh) = (gate(self, xt, 0)?, gate(self, xt, 1)?, gate(self, xt, 2)?);
                    let (hz, hr) = (gate(self, hp, 0)?, gate(self, hp, 1)?);
                    let z = bin(self, BinaryOp::Add, xz, hz)?;
                    let z = un(self, a.recurrent_activation, z)?;
                    let r = bin(self, BinaryOp::Add, xr, hr)?;
                    let r = un(self, a.recurrent_activation, r)?;
                    let rh = bin(self, BinaryOp::Mul, r, h)?;
                    let rc = cols(self, rk, 2 * u, 3 * u)?;
                    let cand = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[rh, rc])?;
                    let hh = bin(self, BinaryOp::Add, xh, cand)?;
                    let hh = un(self, a.activation, hh)?;
                    let zh = bin(self, BinaryOp::Mul, z, h)?;
                    let nz = un(self, UnaryOp::Affine { scale: -1.0, offset: 1.0 }, z)?;
                    let nzh = bin(self, BinaryOp::Mul, nz, hh)?;
                    h = bin(self, BinaryOp::Add, zh, nzh)?;
                }
                _ => {
                    let mut hp = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[h, rk])?;
                    if let Some(rb) = rec_bias {
                        hp = bin(self, BinaryOp::Add, hp, rb)?;
                    }
                    match a.kind {
                        RnnKind::Simple => {
                            let s = bin(self, BinaryOp::Add, xt, hp)?;
                            h = un(self, a.activation, s)?;
                        }
                        RnnKind::Lstm => {
                            let s = bin(self, BinaryOp::Add, xt, hp)?;
                            let i = gate(self, s, 0)?;
                            let i = un(self, a.recurrent_activation, i)?;
                            let f = gate(self, s, 1)?;
                            let f = un(self, a.recurrent_activation, f)?;
                            let g = gate(self, s, 2)?;
                            let g = un(self, a.activation, g)?;
                            let o = gate(self, s, 3)?;
                            let o = un(self, a.recurrent_activation, o)?;
                            let fc = bin(self, BinaryOp::Mul, f, c)?;
                            let ig = bin(self, BinaryOp::Mul, i, g)?;
                            c = bin(self, BinaryOp::Add, fc, ig)?;
                            let ac = un(self, a.activation, c)?;
                            h = bin(self, BinaryOp::Mul, o, ac)?;
                        }
                        _ => {
                            let (xz, xr, xh) = (gate(self, xt, 0)?, gate(self, xt, 1)?, gate(self, xt, 2)?);
                            let (hz, hr, hn) = (gate(self, hp, 0)?, gate(self, hp, 1)?, gate(self, hp, 2)?);
                            let z = bin(self, BinaryOp::Add, xz, hz)?;
                            let z = un(self, a.recurrent_activation, z)?;
                            let r = bin(self, BinaryOp::Add, xr, hr)?;
                            let r = un(self, a.recurrent_activation, r)?;
                            let rn = bin(self, BinaryOp::Mul, r, hn)?;
                            let hh = bin(self, BinaryOp::Add, xh, rn)?;
                            let hh = un(self, a.activation, hh)?;
                            let zh = bin(self, BinaryOp::Mul, z, h)?;
                            let nz = un(self, UnaryOp::Affine { scale: -1.0, offset: 1.0 }, z)?;
                            let nzh = bin(self, BinaryOp::Mul, nz, hh)?;
                            h = bin(self, BinaryOp::Add, zh, nzh)?;
                        }
                    }
                }
            }
            let mut out_t = h;
            if let Some(m) = mask {
                // keep ∈ {0, 1} per sample: h = h_old + keep·(h_new − h_old), likewise c; the
                // output is h_new where kept, else the previous output (or zeros).
                let k = self.add(
                    Op::Slice { axes: vec![1], starts: vec![ti as i64], ends: vec![ti as i64 + 1], steps: vec![1] },
                    &[m],
                )?;
                let k = self.add(Op::Reshape { shape: vec![-1, 1] }, &[k])?;
                let blend = |b: &mut Self, new: ValueId, old: ValueId| -> Result<ValueId, IrError> {
                    let d = b.add(Op::Binary(BinaryOp::Sub), &[new, old])?;
                    let kd = b.add(Op::Binary(BinaryOp::Mul), &[k, d])?;
                    b.add(Op::Binary(BinaryOp::Add), &[old, kd])
                };
                let h_new = h;
                out_t = if a.zero_output_for_mask {
                    self.add(Op::Binary(BinaryOp::Mul), &[k, h_new])?
                } else {
                    blend(self, h_new, prev_out)?
                };
                h = blend(self, h_new, h_old)?;
                if a.kind == RnnKind::Lstm {
                    c = blend(self, c, c_old)?;
                }
                prev_out = out_t;
            }
            if a.return_sequences {
                seq.push(self.add(Op::Reshape { shape: vec![-1, 1, u as i64] }, &[out_t])?);
            }
        }
        let y = if a.return_sequences {
            if seq.len() == 1 {
                seq[0]
            } else {
                self.add(Op::Concat { axis: 1 }, &seq)?
            }
        } else if a.masked {
            prev_out
        } else {
            h
        };
        Ok([Some(y), Some(h), (a.kind == RnnKind::Lstm).then_some(c)])
    }
}
