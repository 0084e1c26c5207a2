//! Gradients of data movement: each the adjoint movement (slices of concatenations, pads of
//! slices, sums over repeats and tiles, transposed interpolation matrices for resizing).

use super::builder::{fixed_dims, unsupported, Builder, Grads};
use crate::{Node, Op, ReduceKind, Shape, Tensor, ValueId};

impl Builder<'_> {
    pub(super) fn broadcast_to(&mut self, nd: &Node, dy: ValueId) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let t = self.ty(x(0));
        Ok(vec![Some(self.unbroadcast(dy, &t)?), None])
    }

    pub(super) fn gather(&mut self, nd: &Node, dy: ValueId, axis: usize) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let data_dims = fixed_dims(&self.ty(x(0)).shape, "an embedding table")?;
        Ok(vec![Some(self.add(Op::GatherGrad { axis, data_dims }, &[x(1), dy])?), None])
    }

    pub(super) fn slice(
        &mut self,
        nd: &Node,
        dy: ValueId,
        axes: &[usize],
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> Grads {
        if !steps.iter().all(|&s| s == 1 || s == -1) {
            return Err(unsupported(&nd.op, " with a step other than 1 or -1"));
        }
        let x = |i: usize| nd.inputs[i];
        let op = &nd.op;
        // A unit-step slice's gradient is dy padded back with zeros; a reversing one
        // (step −1) first reverses dy along that axis.
        let xs = self.ty(x(0)).shape;
        let mut pads = vec![(0usize, 0usize); xs.rank()];
        let mut g = dy;
        for (k, &a) in axes.iter().enumerate() {
            let n = xs.dims()[a].fixed().ok_or_else(|| unsupported(op, " along a symbolic axis"))?;
            let (b, e) = crate::slice_bounds(n, starts[k], ends[k], steps[k]);
            // The covered range [lo, hi).
            let (lo, hi) = if steps[k] == 1 {
                (b.max(0) as usize, e.max(b) as usize)
            } else {
                ((e + 1).max(0) as usize, (b + 1).max(e + 1) as usize)
            };
            pads[a] = (lo, n.saturating_sub(hi));
            if steps[k] == -1 && hi > lo {
                let rev = Op::Slice { axes: vec![a], starts: vec![-1], ends: vec![i64::MIN / 2], steps: vec![-1] };
                g = self.add(rev, &[g])?;
            }
        }
        Ok(vec![Some(self.add(Op::Pad { pads, value: 0.0 }, &[g])?)])
    }

    pub(super) fn reshape(&mut self, nd: &Node, dy: ValueId) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let to = self.ty(x(0)).shape;
        Ok(vec![Some(self.reshape_to(dy, &to)?)])
    }

    pub(super) fn transpose(&mut self, _nd: &Node, dy: ValueId, perm: &[usize]) -> Grads {
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(vec![Some(self.add(Op::Transpose { perm: inv }, &[dy])?)])
    }

    pub(super) fn concat(&mut self, nd: &Node, dy: ValueId, axis: usize) -> Grads {
        let op = &nd.op;
        let mut start = 0i64;
        let mut out = Vec::new();
        for &v in &nd.inputs {
            let len =
                self.ty(v).shape.dims()[axis].fixed().ok_or_else(|| unsupported(op, " along a symbolic axis"))? as i64;
            let s = Op::Slice { axes: vec![axis], starts: vec![start], ends: vec![start + len], steps: vec![1] };
            out.push(Some(self.add(s, &[dy])?));
            start += len;
        }
        Ok(out)
    }

    pub(super) fn pad(&mut self, nd: &Node, dy: ValueId, pads: &[(usize, usize)]) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let op = &nd.op;
        let xs = self.ty(x(0)).shape;
        let mut axes = Vec::new();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for (a, &(b, _)) in pads.iter().enumerate() {
            if pads[a] == (0, 0) {
                continue;
            }
            let n = xs.dims()[a].fixed().ok_or_else(|| unsupported(op, " along a symbolic axis"))?;
            axes.push(a);
            starts.push(b as i64);
            ends.push((b + n) as i64);
        }
        let steps = vec![1; axes.len()];
        Ok(vec![Some(self.add(Op::Slice { axes, starts, ends, steps }, &[dy])?)])
    }

    pub(super) fn tile(&mut self, nd: &Node, dy: ValueId, repeats: &[usize]) -> Grads {
        let x = |i: usize| nd.inputs[i];
        // dy viewed as (r0, d0, r1, d1, ...), summed over the repeats.
        let xs = self.ty(x(0)).shape;
        let mut target = Vec::new();
        let mut sum_axes = Vec::new();
        for (i, d) in xs.dims().iter().enumerate() {
            if repeats[i] != 1 {
                sum_axes.push(target.len());
                target.push(repeats[i] as i64);
            }
            target.push(d.fixed().map_or(-1, |n| n as i64));
        }
        let v = self.add(Op::Reshape { shape: target }, &[dy])?;
        let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: sum_axes, keepdims: false }, &[v])?;
        Ok(vec![Some(self.reshape_to(s, &xs)?)])
    }

    pub(super) fn repeat_interleave(&mut self, nd: &Node, dy: ValueId, axis: usize, repeats: usize) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let xs = self.ty(x(0)).shape;
        let mut target: Vec<i64> = xs.dims().iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
        target.insert(axis + 1, repeats as i64);
        let v = self.add(Op::Reshape { shape: target }, &[dy])?;
        let s = self.add(Op::Reduce { kind: ReduceKind::Sum, axes: vec![axis + 1], keepdims: false }, &[v])?;
        Ok(vec![Some(self.reshape_to(s, &xs)?)])
    }

    pub(super) fn resize_nearest(&mut self, nd: &Node, dy: ValueId, sizes: &[usize]) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let op = &nd.op;
        // Integer upscaling: each input cell feeds a block of outputs.
        let xs = self.ty(x(0)).shape;
        let spatial = fixed_dims(&Shape(xs.dims()[1..=sizes.len()].to_vec()), "a resize's input")?;
        let mut target: Vec<i64> = vec![xs.dims()[0].fixed().map_or(-1, |n| n as i64)];
        let mut sum_axes = Vec::new();
        for (i, (&o, &n)) in sizes.iter().zip(&spatial).enumerate() {
            if n == 0 || o % n != 0 {
                return Err(unsupported(op, " for non-integer scale factors"));
            }
            target.push(n as i64);
            target.push((o / n) as i64);
            sum_axes.push(2 * i + 2);
        }
        let c = xs.dims().last().and_then(|d| d.fixed()).ok_or_else(|| unsupported(op, " with symbolic channels"))?;
        target.push(c as i64);
        let v = self.add(Op::Reshape { shape: target }, &[dy])?;
        Ok(vec![Some(self.add(Op::Reduce { kind: ReduceKind::Sum, axes: sum_axes, keepdims: false }, &[v])?)])
    }

    pub(super) fn resize_bilinear(&mut self, nd: &Node, dy: ValueId, sizes: &[usize]) -> Grads {
        let x = |i: usize| nd.inputs[i];
        let _y = nd.outputs[0];
        // Bilinear resizing is linear and separable: along each spatial axis
        // y = R·x with R (out × in) holding the two interpolation weights of each output
        // (half-pixel centres, as the kernels compute them); dx applies Rᵀ per axis.
        let xs = self.ty(x(0)).shape;
        let r = xs.rank();
        let spatial = fixed_dims(&Shape(xs.dims()[1..=sizes.len()].to_vec()), "a resize's input")?;
        let mut g = dy;
        for (k, (&size, &inn)) in sizes.iter().zip(&spatial).enumerate().rev() {
            if size == inn {
                continue;
            }
            let ax = k + 1;
            let scale = inn as f32 / size as f32;
            let mut m = vec![0f32; size * inn];
            for i in 0..size {
                let f = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                let lo = (f.floor() as usize).min(inn - 1);
                let hi = (lo + 1).min(inn - 1);
                let t = f - lo as f32;
                m[i * inn + lo] += 1.0 - t;
                m[i * inn + hi] += t;
            }
            let mt = Tensor::from_f32(&[size, inn], m)?;
            let mv = self.g.add_constant(format!("grad/resize_{}_{k}", self.n), mt);
            // Move the axis last, contract with R, move it back.
            let perm: Vec<usize> = (0..r).filter(|&a| a != ax).chain(std::iter::once(ax)).collect();
            let mut inv = vec![0; r];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            let t = self.add(Op::Transpose { perm }, &[g])?;
            let c = self.add(Op::MatMul { transpose_a: false, transpose_b: false }, &[t, mv])?;
            g = self.add(Op::Transpose { perm: inv }, &[c])?;
        }
        Ok(vec![Some(g)])
    }
}
