//! The gradient of softmax cross-entropy: its gradient op.

use super::builder::{Builder, Grads};
use crate::{Node, Op, ValueId};

impl Builder<'_> {
    pub(super) fn softmax_cross_entropy(&mut self, nd: &Node, dy: ValueId, sparse: bool) -> Grads {
        let x = |i: usize| nd.inputs[i];
        Ok(vec![Some(self.add(Op::SoftmaxCrossEntropyGrad { sparse }, &[x(0), x(1), dy])?), None])
    }
}
