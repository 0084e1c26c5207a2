//! Element-wise kernels: unary functions, binary ops with broadcasting (integer arithmetic as
//! Keras computes it), bias adds, casts, the optimizer's fused expressions, and the
//! derivatives of unary and binary ops.

use super::context::{ctype, Ctx};
use super::{expr, KernelSource};
use crate::CodegenError;
use ir::{BinaryOp, DType, FusedExpr, UnaryOp};

impl Ctx<'_> {
    /// `f(x)` element-wise.
    pub(super) fn unary(&self, u: UnaryOp) -> Result<KernelSource, CodegenError> {
        self.pointwise_f32(|c| format!("    out0[i] = {};\n", expr::unary(u, &c.read(0))))
    }

    /// `x + bias` along `axis`.
    pub(super) fn bias_add(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        self.pointwise_f32(|c| format!("    out0[i] = in0[i] + in1[{}];\n", c.coord(axis, c.oshape(0))))
    }

    /// The optimizer's fused expression, in one pass.
    pub(super) fn fused(&self, e: &FusedExpr) -> Result<KernelSource, CodegenError> {
        let (stmts, res) = expr::fused(e, |k| self.read(k));
        self.pointwise_f32(|_| format!("{stmts}    out0[i] = {res};\n"))
    }

    /// A C conversion (bool as `!= 0`).
    pub(super) fn cast(&self, to: DType) -> Result<KernelSource, CodegenError> {
        self.pointwise(
            |_| {
                let v = if to == DType::Bool { "(in0[i] != 0)".to_string() } else { "in0[i]".to_string() };
                format!("    out0[i] = ({})({v});\n", ctype(to))
            },
            true,
        )
    }

    /// `dy · f'(x)`.
    pub(super) fn unary_grad(&self, u: UnaryOp) -> Result<KernelSource, CodegenError> {
        self.pointwise_f32(|c| {
            format!(
                "    const float xv = {};\n    out0[i] = {} * {};\n",
                c.read(0),
                c.read(1),
                expr::unary_derivative(u, "xv")
            )
        })
    }

    /// `dy ·` the partial derivative of `b` with respect to operand `wrt`.
    pub(super) fn binary_grad(&self, b: BinaryOp, wrt: usize) -> Result<KernelSource, CodegenError> {
        self.pointwise_f32(|c| {
            format!(
                "    const float xv = {}, yv = {};\n    out0[i] = {} * {};\n",
                c.read(0),
                c.read(1),
                c.read(2),
                expr::binary_partial(b, wrt, "xv", "yv")
            )
        })
    }

    pub(super) fn binary(&self, b: BinaryOp) -> Result<KernelSource, CodegenError> {
        let d = self.oty(0);
        if d == DType::F32 {
            return self.pointwise_f32(|c| format!("    out0[i] = {};\n", expr::binary(b, &c.read(0), &c.read(1))));
        }
        if !matches!(d, DType::I32 | DType::I64) || b == BinaryOp::Pow {
            return Err(self.unsupported(format!("{} on {d}", b.name())));
        }
        let e = match b {
            BinaryOp::Add => "x + y",
            BinaryOp::Sub => "x - y",
            BinaryOp::Mul => "x * y",
            BinaryOp::Div => "(y == 0 ? 0 : ((x % y < 0) ? (y > 0 ? x / y - 1 : x / y + 1) : x / y))",
            BinaryOp::Max => "(x > y ? x : y)",
            _ => "(x < y ? x : y)",
        };
        let t = ctype(d);
        self.pointwise(|c| format!("    const {t} x = {}, y = {};\n    out0[i] = {e};\n", c.read(0), c.read(1)), true)
    }
}
