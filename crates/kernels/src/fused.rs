//! Kernels for the optimizer's fused ops: an element-wise expression evaluated in one pass over
//! the output, block by block, with no intermediate tensors; and the epilogue of a fused Conv or
//! MatMul applied to each output row while it is still in cache.

use crate::scalar::{in_place_unary, map_binary, map_unary};
use crate::util::{broadcast_strides, f32s, PAR_THRESHOLD};
use crate::KernelError;
use ir::{Epilogue, ExprNode, FusedExpr, Op, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// Elements evaluated together in registers of scratch.
const BLOCK: usize = 256;
/// Elements per parallel task.
const TASK: usize = 1 << 14;

/// One operand of a fused expression: its data, or `None` for the output buffer itself (the
/// op runs in place over that input), and its shape.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: Option<&'a [f32]>,
    pub shape: &'a [usize],
}

/// How an operand's elements line up with the output's.
enum Access {
    /// Same shape: element `i` is element `i`.
    Full,
    /// The output buffer itself.
    InPlace,
    /// One value everywhere.
    Splat(f32),
    /// Varies along the last axis only: element `i % n`.
    Row(usize),
    /// Varies along the first and the last axis only (a per-sample, per-channel scale such as
    /// squeeze-excitation's): element `(i / period) · n + i % n`.
    RowPerSample {
        n: usize,
        period: usize,
    },
    /// Anything else: per-axis broadcast strides (up to 8 axes on the stack).
    Strided([usize; 8]),
    StridedLong(Vec<usize>),
}

fn access(op: &Operand, out_shape: &[usize]) -> Access {
    let Some(d) = op.data else { return Access::InPlace };
    let n: usize = op.shape.iter().product();
    if op.shape == out_shape {
        return Access::Full;
    }
    if n == 1 {
        return Access::Splat(d.first().copied().unwrap_or(0.0));
    }
    let last = out_shape.last().copied().unwrap_or(1);
    if op.shape.last() == Some(&last) && n == last {
        return Access::Row(last);
    }
    let r = out_shape.len();
    let ones_between = op.shape.len() == r && r >= 3 && op.shape[1..r - 1].iter().all(|&d| d == 1);
    if ones_between && op.shape[0] == out_shape[0] && op.shape[r - 1] == last {
        return Access::RowPerSample { n: last, period: out_shape[1..].iter().product() };
    }
    if r > 8 || op.shape.len() > r {
        return Access::StridedLong(broadcast_strides(op.shape, out_shape));
    }
    // Row-major strides of the operand, zero along broadcast axes, aligned to the output's.
    let mut a = [0usize; 8];
    let mut step = 1;
    for (i, &d) in op.shape.iter().enumerate().rev() {
        a[r - op.shape.len() + i] = if d == 1 { 0 } else { step };
        step *= d;
    }
    Access::Strided(a)
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Evaluates `expr` into `out` (shape `out_shape`), `BLOCK` elements at a time.
pub fn eval(expr: &FusedExpr, operands: &[Operand], out: &mut [f32], out_shape: &[usize]) {
    let mut stack: [Access; 16] = std::array::from_fn(|_| Access::Full);
    let heap: Vec<Access>;
    let acc: &[Access] = if operands.len() <= stack.len() {
        for (a, o) in stack.iter_mut().zip(operands) {
            *a = access(o, out_shape);
        }
        &stack[..operands.len()]
    } else {
        heap = operands.iter().map(|o| access(o, out_shape)).collect();
        &heap
    };
    let task = |base: usize, chunk: &mut [f32]| {
        SCRATCH.with(|s| {
            let mut regs = s.borrow_mut();
            let need = expr.nodes.len() * BLOCK;
            if regs.len() < need {
                regs.resize(need, 0.0);
            }
            let mut start = 0;
            while start < chunk.len() {
                let len = BLOCK.min(chunk.len() - start);
                eval_block(expr, operands, acc, out_shape, base + start, &mut chunk[start..start + len], &mut regs);
                start += len;
            }
        })
    };
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(TASK).enumerate().for_each(|(i, c)| task(i * TASK, c));
    } else {
        task(0, out);
    }
}

fn eval_block(
    expr: &FusedExpr,
    operands: &[Operand],
    acc: &[Access],
    out_shape: &[usize],
    base: usize,
    dst: &mut [f32],
    regs: &mut [f32],
) {
    let len = dst.len();
    for (k, node) in expr.nodes.iter().enumerate() {
        let (done, rest) = regs.split_at_mut(k * BLOCK);
        let r = &mut rest[..len];
        let reg = |i: usize| &done[i * BLOCK..i * BLOCK + len];
        match *node {
            ExprNode::Input(i) => {
                let (Some(op), Some(a)) = (operands.get(i), acc.get(i)) else { continue };
                match a {
                    Access::Full => r.copy_from_slice(&op.data.unwrap_or(&[])[base..base + len]),
                    Access::InPlace => r.copy_from_slice(dst),
                    Access::Splat(v) => r.fill(*v),
                    Access::Row(n) => copy_rows(op.data.unwrap_or(&[]), *n, usize::MAX, base, r),
                    Access::RowPerSample { n, period } => copy_rows(op.data.unwrap_or(&[]), *n, *period, base, r),
                    Access::Strided(_) | Access::StridedLong(_) => {
                        let st: &[usize] = match a {
                            Access::Strided(s) => s,
                            Access::StridedLong(s) => s,
                            _ => &[],
                        };
                        strided_gather(op.data.unwrap_or(&[]), st, out_shape, base, r);
                    }
                }
            }
            ExprNode::Const(c) => r.fill(c),
            ExprNode::Unary(u, a) => map_unary(u, reg(a), r),
            ExprNode::Binary(b, x, y) => map_binary(b, reg(x), reg(y), r),
        }
    }
    if let Some(last) = expr.nodes.len().checked_sub(1) {
        dst.copy_from_slice(&regs[last * BLOCK..last * BLOCK + len]);
    }
}

/// `r[j] = d[(i / period) · n + i % n]` for `i = base + j`, `period` a multiple of `n`: runs of
/// up to `n` values copied whole.
fn copy_rows(d: &[f32], n: usize, period: usize, base: usize, r: &mut [f32]) {
    let n = n.max(1);
    let mut i = base;
    let mut j = 0;
    while j < r.len() {
        let k = i % n;
        let run = (n - k).min(r.len() - j);
        let from = (i / period) * n + k;
        r[j..j + run].copy_from_slice(&d[from..from + run]);
        i += run;
        j += run;
    }
}

/// `r[j] = d[offset of output element base + j]`: the output coordinates are found once, then
/// stepped like an odometer, so each element costs an add instead of a division per axis.
fn strided_gather(d: &[f32], st: &[usize], out_shape: &[usize], base: usize, r: &mut [f32]) {
    let rank = out_shape.len();
    if rank == 0 {
        r.fill(d.first().copied().unwrap_or(0.0));
        return;
    }
    let mut coord = [0usize; 8];
    let mut long = Vec::new();
    let coord: &mut [usize] = if rank <= 8 {
        &mut coord[..rank]
    } else {
        long.resize(rank, 0);
        &mut long
    };
    let mut rem = base;
    let mut off = 0;
    for ax in (0..rank).rev() {
        let n = out_shape[ax].max(1);
        coord[ax] = rem % n;
        off += coord[ax] * st[ax];
        rem /= n;
    }
    let last = rank - 1;
    let (n_last, s_last) = (out_shape[last].max(1), st[last]);
    for x in r.iter_mut() {
        *x = d.get(off).copied().unwrap_or(0.0);
        coord[last] += 1;
        off += s_last;
        if coord[last] < n_last {
            continue;
        }
        // Carry into the slower axes.
        off -= s_last * n_last;
        coord[last] = 0;
        let mut ax = last;
        while ax > 0 {
            ax -= 1;
            coord[ax] += 1;
            off += st[ax];
            if coord[ax] < out_shape[ax].max(1) {
                break;
            }
            off -= st[ax] * out_shape[ax].max(1);
            coord[ax] = 0;
        }
    }
}

/// An epilogue with its operands: a bias per output channel and a residual of the output's shape.
#[derive(Clone, Copy)]
pub struct EpilogueArgs<'a> {
    pub epilogue: &'a Epilogue,
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

impl<'a> EpilogueArgs<'a> {
    /// The bias and residual operands of an epilogue from a node's inputs after the two
    /// operands, in input order.
    pub fn from_tensors(op: &Op, epilogue: &'a Epilogue, extra: &[&'a Tensor]) -> Result<Self, KernelError> {
        let mut rest = extra.iter();
        let mut next = |on: bool| -> Result<Option<&'a [f32]>, KernelError> {
            if !on {
                return Ok(None);
            }
            let t = rest.next().ok_or_else(|| KernelError::new(op, "missing epilogue operand"))?;
            Ok(Some(f32s(op, t)?))
        };
        let bias = next(epilogue.bias)?;
        let residual = next(epilogue.residual)?;
        Ok(EpilogueArgs { epilogue, bias, residual })
    }

    /// The bias and residual operands of an epilogue from a node's operand views (operands 2
    /// and on; `None` is a view that cannot be read).
    pub fn from_views(op: &Op, epilogue: &'a Epilogue, views: &[Option<&'a [f32]>]) -> Result<Self, KernelError> {
        let mut k = 2;
        let mut next = |on: bool| -> Result<Option<&'a [f32]>, KernelError> {
            if !on {
                return Ok(None);
            }
            k += 1;
            views
                .get(k - 1)
                .copied()
                .flatten()
                .map(Some)
                .ok_or_else(|| KernelError::new(op, "epilogue operand is not readable here"))
        };
        let bias = next(epilogue.bias)?;
        let residual = next(epilogue.residual)?;
        Ok(EpilogueArgs { epilogue, bias, residual })
    }

    /// Applies the epilogue to `dst`, the output elements starting at flat index `base`, where
    /// the last axis has `channels` elements.
    pub fn apply(&self, dst: &mut [f32], base: usize, channels: usize) {
        // Each stage over the whole span (they are elementwise, in order per element); only
        // the bias depends on the channel. The span is a kernel's block, still in cache.
        let e = self.epilogue;
        if let Some(b) = self.bias {
            if channels > 0 && base.is_multiple_of(channels) && dst.len().is_multiple_of(channels) {
                for row in dst.chunks_exact_mut(channels) {
                    row.iter_mut().zip(b).for_each(|(v, &x)| *v += x);
                }
            } else {
                let mut c = base % channels.max(1);
                for v in dst.iter_mut() {
                    *v += b[c];
                    c += 1;
                    if c == channels {
                        c = 0;
                    }
                }
            }
        }
        if let Some(a) = e.activation {
            in_place_unary(a, dst);
        }
        if let Some(r) = self.residual {
            let n = dst.len();
            dst.iter_mut().zip(&r[base..base + n]).for_each(|(v, &x)| *v += x);
        }
        if let Some(a) = e.post_activation {
            in_place_unary(a, dst);
        }
    }

    /// The epilogue as a micro-kernel applies it in registers before its stores, when its
    /// activations are ones a vector does in an instruction or two (none, ReLU, a clip).
    pub(crate) fn in_registers(&self) -> Option<InRegisters<'a>> {
        Some(InRegisters {
            bias: self.bias,
            act: Act::of(self.epilogue.activation)?,
            residual: self.residual,
            post: Act::of(self.epilogue.post_activation)?,
        })
    }

    /// Applies the epilogue to a whole output, in parallel row blocks.
    pub fn apply_all(&self, out: &mut [f32], channels: usize) {
        let rows_per_task = (TASK / channels.max(1)).max(1);
        let task = rows_per_task * channels.max(1);
        if out.len() >= PAR_THRESHOLD {
            out.par_chunks_mut(task).enumerate().for_each(|(i, c)| self.apply(c, i * task, channels));
        } else {
            self.apply(out, 0, channels);
        }
    }
}

/// An activation a micro-kernel applies in registers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    Identity,
    Relu,
    Clip(f32, f32),
    /// Sigmoid or SiLU, in their vector form.
    Vector(crate::simd::VectorFn),
}

impl Act {
    fn of(u: Option<ir::UnaryOp>) -> Option<Act> {
        match u.map(crate::scalar::simplified) {
            None | Some(ir::UnaryOp::Identity) => Some(Act::Identity),
            Some(ir::UnaryOp::Relu) => Some(Act::Relu),
            Some(ir::UnaryOp::Clip { lo, hi }) if lo <= hi => Some(Act::Clip(lo, hi)),
            Some(u) => crate::scalar::vector_fn(u).map(Act::Vector),
        }
    }

    /// The activation of a vector, as [`in_place_unary`] does per value.
    #[inline(always)]
    pub(crate) fn vector<S: crate::simd::Simd>(self, v: S::V) -> S::V {
        match self {
            Act::Identity => v,
            Act::Relu => S::relu(v),
            Act::Clip(lo, hi) => S::clamp(v, lo, hi),
            Act::Vector(f) => f.apply::<S>(v),
        }
    }
}

/// An epilogue in registers: `post(act(v + bias[ch]) + residual)`, in that order (as
/// [`EpilogueArgs::apply`]); `residual` is the kernel's output row of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InRegisters<'a> {
    pub bias: Option<&'a [f32]>,
    pub act: Act,
    pub residual: Option<&'a [f32]>,
    pub post: Act,
}

impl<'a> InRegisters<'a> {
    /// The same epilogue with the residual cut to output row `r` of `row_len` values.
    pub(crate) fn row(self, r: usize, row_len: usize) -> InRegisters<'a> {
        InRegisters { residual: self.residual.map(|v| &v[r * row_len..(r + 1) * row_len]), ..self }
    }

    /// `n ≤ L` lanes of output channels `ch..` at `at` in the row.
    #[inline(always)]
    pub(crate) fn vector<S: crate::simd::Simd>(&self, mut v: S::V, ch: usize, n: usize, at: usize) -> S::V {
        if let Some(b) = self.bias {
            v = S::add(v, S::load_part(&b[ch..], n));
        }
        v = self.act.vector::<S>(v);
        if let Some(r) = self.residual {
            v = S::add(v, S::load_part(&r[at..], n));
        }
        self.post.vector::<S>(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{BinaryOp, UnaryOp};

    #[test]
    fn expression_with_broadcasts_and_in_place() {
        // relu(x * s + b) with s a scalar, b a row vector, x (2, 3).
        let expr = FusedExpr {
            nodes: vec![
                ExprNode::Input(0),
                ExprNode::Input(1),
                ExprNode::Binary(BinaryOp::Mul, 0, 1),
                ExprNode::Input(2),
                ExprNode::Binary(BinaryOp::Add, 2, 3),
                ExprNode::Unary(UnaryOp::Relu, 4),
            ],
        };
        let x = [1.0f32, -2.0, 3.0, -4.0, 5.0, -6.0];
        let s = [2.0f32];
        let b = [0.5f32, 1.0, -10.0];
        let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| (v * 2.0 + b[i % 3]).max(0.0)).collect();
        let mut out = vec![0.0; 6];
        let ops = [
            Operand { data: Some(&x), shape: &[2, 3] },
            Operand { data: Some(&s), shape: &[] },
            Operand { data: Some(&b), shape: &[3] },
        ];
        eval(&expr, &ops, &mut out, &[2, 3]);
        assert_eq!(out, want);
        let mut buf = x.to_vec();
        let ops = [ops[0], ops[1], ops[2]];
        let ops = [Operand { data: None, shape: &[2, 3] }, ops[1], ops[2]];
        eval(&expr, &ops, &mut buf, &[2, 3]);
        assert_eq!(buf, want);
    }

    #[test]
    fn a_per_sample_per_channel_operand_broadcasts_over_the_pixels() {
        // x (2, 3, 2, 4) * s (2, 1, 1, 4), across block and row boundaries.
        let x: Vec<f32> = (0..48).map(|i| i as f32).collect();
        let sc: Vec<f32> = (0..8).map(|i| 1.0 + i as f32 * 0.5).collect();
        let expr =
            FusedExpr { nodes: vec![ExprNode::Input(0), ExprNode::Input(1), ExprNode::Binary(BinaryOp::Mul, 0, 1)] };
        let mut out = vec![0.0; 48];
        let ops = [Operand { data: Some(&x), shape: &[2, 3, 2, 4] }, Operand { data: Some(&sc), shape: &[2, 1, 1, 4] }];
        eval(&expr, &ops, &mut out, &[2, 3, 2, 4]);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, x[i] * sc[(i / 24) * 4 + i % 4], "element {i}");
        }
    }

    #[test]
    fn strided_broadcast_over_a_middle_axis() {
        let expr =
            FusedExpr { nodes: vec![ExprNode::Input(0), ExprNode::Input(1), ExprNode::Binary(BinaryOp::Sub, 0, 1)] };
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let m = [100.0f32, 200.0];
        let mut out = vec![0.0; 12];
        let ops = [Operand { data: Some(&x), shape: &[2, 2, 3] }, Operand { data: Some(&m), shape: &[2, 1] }];
        eval(&expr, &ops, &mut out, &[2, 2, 3]);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, i as f32 - m[(i / 3) % 2]);
        }
    }
}
