//! The gradient of a matrix product: two more matrix products.

use super::builder::{Builder, Grads};
use crate::{Node, Op, ValueId};

impl Builder<'_> {
    pub(super) fn matmul(&mut self, nd: &Node, dy: ValueId, ta: bool, tb: bool) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let (ta, tb) = (ta, tb);
        let da = if ta {
            self.add(Op::MatMul { transpose_a: tb, transpose_b: true }, &[x(1), dy])?
        } else {
            self.add(Op::MatMul { transpose_a: false, transpose_b: !tb }, &[dy, x(1)])?
        };
        let db = if tb {
            self.add(Op::MatMul { transpose_a: true, transpose_b: ta }, &[dy, x(0)])?
        } else {
            self.add(Op::MatMul { transpose_a: !ta, transpose_b: false }, &[x(0), dy])?
        };
        let (ta_ty, tb_ty) = (self.ty(x(0)), self.ty(x(1)));
        Ok(vec![Some(self.unbroadcast(da, &ta_ty)?), Some(self.unbroadcast(db, &tb_ty)?)])
    }
}
