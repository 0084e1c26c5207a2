//! Gradients of convolutions (the input and filter gradients as backward ops) and of
//! transposed convolutions (a convolution and a filter gradient).

use super::builder::{fixed_dims, unsupported, Builder, Grads};
use crate::{ConvAttrs, ConvTransposeAttrs, Node, Op, Shape, ValueId};

impl Builder<'_> {
    pub(super) fn conv(&mut self, nd: &Node, dy: ValueId, a: &ConvAttrs) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let xs = self.ty(x(0)).shape;
        let input_dims = fixed_dims(&Shape(xs.dims()[1..].to_vec()), "a convolution's input")?;
        let kernel_dims = fixed_dims(&self.ty(x(1)).shape, "a convolution's kernel")?;
        // Only the gradients that lead somewhere (a first layer's input needs none).
        let dx = match self.needs(x(0)) {
            true => Some(self.add(Op::ConvInputGrad { conv: a.clone(), input_dims }, &[dy, x(1)])?),
            false => None,
        };
        let dw = match self.needs(x(1)) {
            true => Some(self.add(Op::ConvFilterGrad { conv: a.clone(), kernel_dims }, &[x(0), dy])?),
            false => None,
        };
        Ok(vec![dx, dw])
    }

    pub(super) fn conv_transpose(&mut self, nd: &Node, dy: ValueId, a: &ConvTransposeAttrs) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let _y = nd.outputs[0];
        let op = &nd.op;
        // y = Aᵀx for the convolution A with the same strides, dilations and leading
        // padding: dx = A·dy, and dw is that convolution's filter gradient with dy as
        // its input and x as its output gradient (the kernel layouts coincide).
        let xs = self.ty(x(0)).shape;
        let r = a.strides.len();
        let spatial = fixed_dims(&Shape(xs.dims()[1..=r].to_vec()), "a transposed convolution's input")?;
        let ks = fixed_dims(&self.ty(x(1)).shape, "a transposed convolution's kernel")?;
        let mut pads = Vec::with_capacity(r);
        for i in 0..r {
            let (out, before) = a.geometry(i, spatial[i], ks[i]);
            let k_eff = (ks[i] - 1) * a.dilations[i] + 1;
            let after = ((spatial[i] - 1) * a.strides[i] + k_eff).saturating_sub(out + before);
            pads.push((before, after));
        }
        let conv = crate::ConvAttrs { strides: a.strides.clone(), dilations: a.dilations.clone(), pads, groups: 1 };
        let dx = self.add(Op::Conv(conv.clone()), &[dy, x(1)])?;
        if self.ty(dx).shape != xs {
            return Err(unsupported(op, " for this output padding"));
        }
        let dw = self.add(Op::ConvFilterGrad { conv, kernel_dims: ks }, &[dy, x(0)])?;
        Ok(vec![Some(dx), Some(dw)])
    }
}
