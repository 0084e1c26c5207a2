//! Gradients of the element-wise ops: unary functions, binary ops (summed back over broadcast
//! axes), bias adds, casts.

use super::builder::{unsupported, Builder, Grads};
use crate::{BinaryOp, Node, Op, ReduceKind, UnaryOp, ValueId};

impl Builder<'_> {
    pub(super) fn unary(&mut self, nd: &Node, dy: ValueId, u: UnaryOp) -> Grads {
        let x = nd.inputs[0];
        // Derivatives that are ordinary ops (the optimizer fuses them with their neighbours),
        // each the same value `UnaryGrad` gives: `d·1`, `d·(−1)`, `d·scale`; the rest through
        // `UnaryGrad`, the square's too (as a product fused into batch normalization's backward
        // chains it was no faster than its own in-arena pass, within this machine's noise).
        let dx = match u {
            UnaryOp::Identity => dy,
            UnaryOp::Neg => self.add(Op::Unary(UnaryOp::Neg), &[dy])?,
            UnaryOp::Affine { scale, .. } => self.add(Op::Unary(UnaryOp::Affine { scale, offset: 0.0 }), &[dy])?,
            // From the output y: tanh' = 1 − y², σ' = y·(1 − y) (no function recomputed).
            UnaryOp::Tanh | UnaryOp::Sigmoid => {
                let y = nd.outputs[0];
                let one_minus = UnaryOp::Affine { scale: -1.0, offset: 1.0 };
                let d = match u {
                    UnaryOp::Tanh => {
                        let y2 = self.add(Op::Unary(UnaryOp::Square), &[y])?;
                        self.add(Op::Unary(one_minus), &[y2])?
                    }
                    _ => {
                        let q = self.add(Op::Unary(one_minus), &[y])?;
                        self.add(Op::Binary(BinaryOp::Mul), &[y, q])?
                    }
                };
                self.add(Op::Binary(BinaryOp::Mul), &[dy, d])?
            }
            _ => self.add(Op::UnaryGrad(u), &[x, dy])?,
        };
        Ok(vec![Some(dx)])
    }

    pub(super) fn binary(&mut self, nd: &Node, dy: ValueId, bop: BinaryOp) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let _op = &nd.op;
        let mut out = Vec::new();
        for wrt in 0..2 {
            if !self.needs(x(wrt)) {
                out.push(None);
                continue;
            }
            // `dy` has the broadcast output's shape, so each of these does too. Sums and
            // differences pass it on and products multiply it by the other operand, as ordinary
            // ops the optimizer fuses with their neighbours; the rest through `BinaryGrad`.
            let gfull = match (bop, wrt) {
                (BinaryOp::Add, _) | (BinaryOp::Sub, 0) => dy,
                (BinaryOp::Sub, _) => self.add(Op::Unary(UnaryOp::Neg), &[dy])?,
                (BinaryOp::Mul, _) => self.add(Op::Binary(BinaryOp::Mul), &[dy, x(1 - wrt)])?,
                _ => self.add(Op::BinaryGrad { op: bop, wrt }, &[x(0), x(1), dy])?,
            };
            let t = self.ty(x(wrt));
            out.push(Some(self.unbroadcast(gfull, &t)?));
        }
        Ok(out)
    }

    pub(super) fn bias_add(&mut self, _nd: &Node, dy: ValueId, axis: usize) -> Grads {
        let r = self.ty(dy).shape.rank();
        let axes: Vec<usize> = (0..r).filter(|&a| a != axis).collect();
        let db = if axes.is_empty() {
            dy
        } else {
            self.add(Op::Reduce { kind: ReduceKind::Sum, axes, keepdims: false }, &[dy])?
        };
        Ok(vec![Some(dy), Some(db)])
    }

    pub(super) fn cast(&mut self, nd: &Node, dy: ValueId) -> Grads {
        if !self.ty(nd.inputs[0]).dtype.is_float() {
            return Err(unsupported(&nd.op, " from an integer type"));
        }
        let x = |i: usize| nd.inputs[i];
        let to = self.ty(x(0)).dtype;
        Ok(vec![Some(self.add(Op::Cast { to }, &[dy])?)])
    }
}
