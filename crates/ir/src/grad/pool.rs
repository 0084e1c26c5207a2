//! The gradient of pooling: the pooling-gradient op.

use super::builder::{Builder, Grads};
use crate::{Node, Op, PoolAttrs, ValueId};

impl Builder<'_> {
    pub(super) fn pool(&mut self, nd: &Node, dy: ValueId, a: &PoolAttrs) -> Grads {
        let x = |i: usize| nd.inputs[i];
        Ok(vec![Some(self.add(Op::PoolGrad(a.clone()), &[x(0), dy])?)])
    }
}
