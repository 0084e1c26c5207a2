//! The emitter's shared context: [`Ctx`] (the node being emitted, its shapes, the precision)
//! with the helpers every kernel builder uses: parameter lists, grid-stride loops, coordinates,
//! broadcast reads, point-wise kernels.

use super::{ArgSlot, KernelSource, Launch, PRELUDE};
use crate::CodegenError;
use ir::{DType, Graph, Node, Op};
use std::fmt::Write;

const BLOCK: u32 = 256;

/// The arithmetic of matrix products and convolutions: float32 on the CUDA cores, or the
/// tensor cores with tf32, bf16 or fp16 operands (float32 accumulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
    Bf16,
    Fp16,
}

impl Precision {
    /// Parses `fp32`, `tf32`, `bf16`, `fp16`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Precision::Fp32,
            "tf32" => Precision::Tf32,
            "bf16" | "bfloat16" => Precision::Bf16,
            "fp16" | "float16" | "half" => Precision::Fp16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// The C type of a dtype's elements (half types as their raw bits).
pub fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F16 | DType::BF16 => "unsigned short",
        DType::I32 => "int",
        DType::I64 => "long long",
        DType::Bool | DType::U8 => "unsigned char",
    }
}

/// A 1-D launch of `BLOCK`-thread blocks covering `n` indices (grid-stride beyond 2^20 blocks).
pub(super) fn launch_1d(n: usize) -> Launch {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    Launch { grid: [blocks, 1, 1], block: [BLOCK, 1, 1], shared_bytes: 0 }
}

/// Elements of a shape.
pub(super) fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Row-major strides of a shape.
pub(super) fn strides(s: &[usize]) -> Vec<usize> {
    let mut st = vec![1; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    st
}

/// What every kernel builder reads: the graph, the node, its index in the plan (naming the
/// kernel), the concrete shape of every value and the precision of products.
pub(super) struct Ctx<'a> {
    pub(super) g: &'a Graph,
    pub(super) node: &'a Node,
    pub(super) index: usize,
    pub(super) precision: Precision,
    pub(super) shapes: &'a [Vec<usize>],
}

impl Ctx<'_> {
    pub(super) fn ishape(&self, i: usize) -> &[usize] {
        &self.shapes[self.node.inputs[i].0]
    }

    pub(super) fn oshape(&self, i: usize) -> &[usize] {
        &self.shapes[self.node.outputs[i].0]
    }

    pub(super) fn ity(&self, i: usize) -> DType {
        self.g.value(self.node.inputs[i]).ty.dtype
    }

    pub(super) fn oty(&self, i: usize) -> DType {
        self.g.value(self.node.outputs[i]).ty.dtype
    }

    pub(super) fn name(&self) -> String {
        let op: String = self.node.op.name().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("kc{}_{}", self.index, op.to_lowercase())
    }

    pub(super) fn unsupported(&self, why: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported { op: self.node.op.name(), node: self.node.name.clone(), why: why.into() }
    }

    /// `const T* in0, ..., T* out0, ...`; `restrict` unless an output may alias an input.
    pub(super) fn params(&self, restrict: bool) -> String {
        let r = if restrict { " __restrict__" } else { "" };
        let mut p: Vec<String> =
            (0..self.node.inputs.len()).map(|i| format!("const {}*{r} in{i}", ctype(self.ity(i)))).collect();
        p.extend((0..self.node.outputs.len()).map(|i| format!("{}*{r} out{i}", ctype(self.oty(i)))));
        p.join(", ")
    }

    pub(super) fn args(&self) -> Vec<ArgSlot> {
        let mut a: Vec<ArgSlot> = self.node.inputs.iter().map(|&v| ArgSlot { value: v, output: false }).collect();
        a.extend(self.node.outputs.iter().map(|&v| ArgSlot { value: v, output: true }));
        a
    }

    pub(super) fn kernel(&self, body: String, launch: Launch, restrict: bool, helpers: &str) -> KernelSource {
        let name = self.name();
        let source =
            format!("{PRELUDE}{helpers}extern \"C\" __global__ void {name}({}) {{\n{body}}}\n", self.params(restrict));
        KernelSource { name, source, launch, args: self.args() }
    }

    /// A grid-stride loop over `n` indices `i` (64-bit when needed) around `body`.
    pub(super) fn grid_loop(n: usize, body: &str) -> String {
        let ty = if n < (1 << 31) { "unsigned int" } else { "unsigned long long" };
        format!(
            "  typedef {ty} kc_idx;\n  for (kc_idx i = blockIdx.x * (kc_idx)blockDim.x + threadIdx.x; i < (kc_idx){n}ULL; i += (kc_idx)gridDim.x * blockDim.x) {{\n{body}  }}\n"
        )
    }

    /// Statements naming the coordinates `c0..` of flat index `var` in `shape`.
    pub(super) fn coords(shape: &[usize], var: &str) -> String {
        let mut s = format!("    kc_idx r_ = {var};\n");
        for ax in (0..shape.len()).rev() {
            let _ = writeln!(s, "    const kc_idx c{ax} = r_ % {}; r_ /= {};", shape[ax].max(1), shape[ax].max(1));
        }
        s.push_str("    (void)r_;\n");
        s
    }

    /// The output coordinate `axis` of flat index `i` as an expression.
    pub(super) fn coord(&self, axis: usize, shape: &[usize]) -> String {
        let inner: usize = shape[axis + 1..].iter().product();
        format!("((i / {}) % {})", inner.max(1), shape[axis].max(1))
    }

    /// Input `k` read at output index `i` under broadcasting.
    pub(super) fn read(&self, k: usize) -> String {
        let ins = self.ishape(k);
        let out = self.oshape(0);
        if ins == out {
            return format!("in{k}[i]");
        }
        if numel(ins) == 1 {
            return format!("in{k}[0]");
        }
        let st = strides(ins);
        let off = out.len() - ins.len();
        let terms: Vec<String> = (0..ins.len())
            .filter(|&a| ins[a] != 1)
            .map(|a| format!("{} * {}", self.coord(a + off, out), st[a]))
            .collect();
        format!("in{k}[{}]", if terms.is_empty() { "0".into() } else { terms.join(" + ") })
    }

    pub(super) fn pointwise_f32(&self, body: impl Fn(&Self) -> String) -> Result<KernelSource, CodegenError> {
        if self.node.inputs.iter().chain(&self.node.outputs).any(|v| self.g.value(*v).ty.dtype != DType::F32) {
            return Err(self.unsupported("only float32 operands"));
        }
        // Fused expressions may run in place over an input: no `__restrict__`.
        let restrict = !matches!(self.node.op, Op::Fused(_));
        self.pointwise(body, restrict)
    }

    pub(super) fn pointwise(
        &self,
        body: impl Fn(&Self) -> String,
        restrict: bool,
    ) -> Result<KernelSource, CodegenError> {
        let n = numel(self.oshape(0));
        Ok(self.kernel(Self::grid_loop(n, &body(self)), launch_1d(n), restrict, ""))
    }
}
