//! The emitter: one function per op family, each writing specialised CUDA C.

use super::{expr, ArgSlot, KernelSource, Launch, StepKernels, PRELUDE};
use crate::CodegenError;
use ir::{
    BinaryOp, ConvAttrs, ConvTransposeAttrs, DType, Epilogue, Graph, MemoryPlan, Node, NodeId, Op, Placement,
    PoolAttrs, PoolKind, ReduceKind, ResizeMode, RnnAttrs, RnnKind,
};
use std::fmt::Write;

const BLOCK: u32 = 256;
const GEMM_TEMPLATE: &str = include_str!("templates/gemm.cu");
const GEMM_TC_TEMPLATE: &str = include_str!("templates/gemm_tc.cu");

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

/// The kernels of every step of a plan, in execution order (float32).
pub fn emit_plan(g: &Graph, plan: &MemoryPlan) -> Result<Vec<StepKernels>, CodegenError> {
    emit_plan_with(g, plan, Precision::Fp32)
}

/// [`emit_plan`] with matrix products and convolutions in `precision`.
pub fn emit_plan_with(g: &Graph, plan: &MemoryPlan, precision: Precision) -> Result<Vec<StepKernels>, CodegenError> {
    let mut steps = Vec::with_capacity(plan.order.len());
    for (i, &nid) in plan.order.iter().enumerate() {
        let node = g.nodes().get(nid.0).ok_or_else(|| CodegenError::Plan(format!("node {} missing", nid.0)))?;
        // A reshape whose output shares its input's buffer needs no kernel.
        let aliased = matches!(node.op, Op::Reshape { .. })
            && match (plan.placements.get(node.inputs[0].0), plan.placements.get(node.outputs[0].0)) {
                (Some(Placement::Arena { offset: a, .. }), Some(Placement::Arena { offset: b, .. })) => a == b,
                _ => false,
            };
        let kernels = if aliased { Vec::new() } else { emit_node_with(g, nid, i, &plan.shapes, precision)? };
        steps.push(StepKernels { node: nid, kernels });
    }
    Ok(steps)
}

/// The kernels of one node, given the concrete shape of every value; `index` numbers the kernel
/// names.
pub fn emit_node(
    g: &Graph,
    nid: NodeId,
    index: usize,
    shapes: &[Vec<usize>],
) -> Result<Vec<KernelSource>, CodegenError> {
    emit_node_with(g, nid, index, shapes, Precision::Fp32)
}

/// [`emit_node`] with matrix products and convolutions in `precision`.
pub fn emit_node_with(
    g: &Graph,
    nid: NodeId,
    index: usize,
    shapes: &[Vec<usize>],
    precision: Precision,
) -> Result<Vec<KernelSource>, CodegenError> {
    let node = g.nodes().get(nid.0).ok_or_else(|| CodegenError::Plan(format!("node {} missing", nid.0)))?;
    for v in node.inputs.iter().chain(&node.outputs) {
        if shapes.get(v.0).is_none_or(|s| s.len() != g.value(*v).ty.shape.rank()) {
            return Err(CodegenError::Plan(format!("no concrete shape for a value of '{}'", node.name)));
        }
    }
    let c = Ctx { g, node, index, shapes, precision };
    let k = match &node.op {
        Op::Unary(u) => c.pointwise_f32(|c| format!("    out0[i] = {};\n", expr::unary(*u, &c.read(0))))?,
        Op::Binary(b) => c.binary(*b)?,
        Op::BiasAdd { axis } => {
            c.pointwise_f32(|c| format!("    out0[i] = in0[i] + in1[{}];\n", c.coord(*axis, c.oshape(0))))?
        }
        Op::Fused(e) => {
            let (stmts, res) = expr::fused(e, |k| c.read(k));
            c.pointwise_f32(|_| format!("{stmts}    out0[i] = {res};\n"))?
        }
        Op::BatchNorm { axis, epsilon } => c.pointwise_f32(|c| {
            let ch = c.coord(*axis, c.oshape(0));
            format!(
                "    const float s = in1[{ch}] / sqrtf(in4[{ch}] + {eps});\n    out0[i] = in0[i] * s + (in2[{ch}] - in3[{ch}] * s);\n",
                eps = expr::lit(*epsilon)
            )
        })?,
        Op::Cast { to } => c.pointwise(
            |c| {
                let from = c.ity(0);
                let v = if *to == DType::Bool { "(in0[i] != 0)".to_string() } else { "in0[i]".to_string() };
                let _ = from;
                format!("    out0[i] = ({})({v});\n", ctype(*to))
            },
            true,
        )?,
        Op::Reshape { .. } => c.pointwise(|_| "    out0[i] = in0[i];\n".to_string(), true)?,
        Op::Transpose { perm } => c.remap(|c, ax| Some(format!("c{}", perm.iter().position(|&p| p == ax).unwrap_or(ax))).map(|s| (s, c.ishape(0)[ax])))?,
        Op::Pad { pads, value } => c.pad(pads, *value)?,
        Op::Slice { axes, starts, ends, steps } => c.slice(axes, starts, ends, steps)?,
        Op::RepeatInterleave { axis, repeats } => c.remap(|c, ax| {
            let d = c.ishape(0)[ax];
            Some(if ax == *axis { (format!("(c{ax} / {})", (*repeats).max(1)), d) } else { (format!("c{ax}"), d) })
        })?,
        Op::Tile { .. } => c.remap(|c, ax| {
            let d = c.ishape(0)[ax];
            Some((format!("(c{ax} % {})", d.max(1)), d))
        })?,
        Op::Concat { axis } => c.concat(*axis)?,
        Op::Resize { sizes, mode } => c.resize(sizes, *mode)?,
        Op::Gather { axis } => c.gather(*axis)?,
        Op::MatMul { transpose_a, transpose_b } => c.matmul(*transpose_a, *transpose_b, &Epilogue::default())?,
        Op::FusedMatMul { transpose_a, transpose_b, epilogue } => c.matmul(*transpose_a, *transpose_b, epilogue)?,
        Op::Conv(a) => c.conv(a, &Epilogue::default())?,
        Op::FusedConv { conv, epilogue } => c.conv(conv, epilogue)?,
        Op::ConvTranspose(a) => c.conv_transpose(a)?,
        Op::Pool(a) => c.pool(a)?,
        Op::Reduce { kind, axes, .. } => c.reduce(*kind, axes)?,
        Op::Softmax { axes } => c.softmax(axes, false)?,
        Op::LogSoftmax { axis } => c.softmax(&[*axis], true)?,
        Op::LayerNorm { axes, epsilon } => c.layer_norm(axes, *epsilon)?,
        Op::GroupNorm { groups, axis, epsilon } => c.group_norm(*groups, *axis, *epsilon)?,
        Op::L2Normalize { axes, epsilon } => c.l2_normalize(axes, *epsilon)?,
        Op::Rnn(a) => c.rnn(a)?,
        Op::BroadcastTo => {
            // numpy broadcasting: input axes align with the output's from the right.
            let off = c.oshape(0).len().saturating_sub(c.ishape(0).len());
            c.remap(|c, ax| {
                let d = c.ishape(0)[ax];
                Some((if d == 1 { "0".to_string() } else { format!("c{}", ax + off) }, d))
            })?
        }
        Op::UnaryGrad(u) => c.pointwise_f32(|c| {
            format!("    const float xv = {};\n    out0[i] = {} * {};\n", c.read(0), c.read(1), expr::unary_derivative(*u, "xv"))
        })?,
        Op::BinaryGrad { op: b, wrt } => c.pointwise_f32(|c| {
            format!(
                "    const float xv = {}, yv = {};\n    out0[i] = {} * {};\n",
                c.read(0),
                c.read(1),
                c.read(2),
                expr::binary_partial(*b, *wrt, "xv", "yv")
            )
        })?,
        Op::MeanGrad { axes } => {
            let count: usize = axes.iter().map(|&a| c.oshape(0).get(a).copied().unwrap_or(1)).product();
            let inv = expr::lit(1.0 / count.max(1) as f32);
            c.pointwise_f32(|c| format!("    out0[i] = {} * {inv};\n", c.read(0)))?
        }
        Op::GatherGrad { axis, .. } => c.gather_grad(*axis)?,
        Op::ConvInputGrad { conv, .. } => c.conv_input_grad(conv)?,
        Op::ConvFilterGrad { conv, .. } => c.conv_filter_grad(conv)?,
        Op::PoolGrad(a) => c.pool_grad(a)?,
        Op::SoftmaxCrossEntropy { sparse } => c.cross_entropy(*sparse, false)?,
        Op::SoftmaxCrossEntropyGrad { sparse } => c.cross_entropy(*sparse, true)?,
        Op::ChannelsFirst(_) => {
            return Err(c.unsupported("channels-first ops are lowered first (optimizer::layout::lower_channels_first)"))
        }
    };
    Ok(vec![k])
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

fn launch_1d(n: usize) -> Launch {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    Launch { grid: [blocks, 1, 1], block: [BLOCK, 1, 1], shared_bytes: 0 }
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn strides(s: &[usize]) -> Vec<usize> {
    let mut st = vec![1; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    st
}

struct Ctx<'a> {
    g: &'a Graph,
    node: &'a Node,
    index: usize,
    precision: Precision,
    shapes: &'a [Vec<usize>],
}

impl Ctx<'_> {
    fn ishape(&self, i: usize) -> &[usize] {
        &self.shapes[self.node.inputs[i].0]
    }

    fn oshape(&self, i: usize) -> &[usize] {
        &self.shapes[self.node.outputs[i].0]
    }

    fn ity(&self, i: usize) -> DType {
        self.g.value(self.node.inputs[i]).ty.dtype
    }

    fn oty(&self, i: usize) -> DType {
        self.g.value(self.node.outputs[i]).ty.dtype
    }

    fn name(&self) -> String {
        let op: String = self.node.op.name().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("kc{}_{}", self.index, op.to_lowercase())
    }

    fn unsupported(&self, why: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported { op: self.node.op.name(), node: self.node.name.clone(), why: why.into() }
    }

    /// `const T* in0, ..., T* out0, ...`; `restrict` unless an output may alias an input.
    fn params(&self, restrict: bool) -> String {
        let r = if restrict { " __restrict__" } else { "" };
        let mut p: Vec<String> =
            (0..self.node.inputs.len()).map(|i| format!("const {}*{r} in{i}", ctype(self.ity(i)))).collect();
        p.extend((0..self.node.outputs.len()).map(|i| format!("{}*{r} out{i}", ctype(self.oty(i)))));
        p.join(", ")
    }

    fn args(&self) -> Vec<ArgSlot> {
        let mut a: Vec<ArgSlot> = self.node.inputs.iter().map(|&v| ArgSlot { value: v, output: false }).collect();
        a.extend(self.node.outputs.iter().map(|&v| ArgSlot { value: v, output: true }));
        a
    }

    fn kernel(&self, body: String, launch: Launch, restrict: bool, helpers: &str) -> KernelSource {
        let name = self.name();
        let source =
            format!("{PRELUDE}{helpers}extern \"C\" __global__ void {name}({}) {{\n{body}}}\n", self.params(restrict));
        KernelSource { name, source, launch, args: self.args() }
    }

    /// A grid-stride loop over `n` indices `i` (64-bit when needed) around `body`.
    fn grid_loop(n: usize, body: &str) -> String {
        let ty = if n < (1 << 31) { "unsigned int" } else { "unsigned long long" };
        format!(
            "  typedef {ty} kc_idx;\n  for (kc_idx i = blockIdx.x * (kc_idx)blockDim.x + threadIdx.x; i < (kc_idx){n}ULL; i += (kc_idx)gridDim.x * blockDim.x) {{\n{body}  }}\n"
        )
    }

    /// Statements naming the coordinates `c0..` of flat index `var` in `shape`.
    fn coords(shape: &[usize], var: &str) -> String {
        let mut s = format!("    kc_idx r_ = {var};\n");
        for ax in (0..shape.len()).rev() {
            let _ = writeln!(s, "    const kc_idx c{ax} = r_ % {}; r_ /= {};", shape[ax].max(1), shape[ax].max(1));
        }
        s.push_str("    (void)r_;\n");
        s
    }

    /// The output coordinate `axis` of flat index `i` as an expression.
    fn coord(&self, axis: usize, shape: &[usize]) -> String {
        let inner: usize = shape[axis + 1..].iter().product();
        format!("((i / {}) % {})", inner.max(1), shape[axis].max(1))
    }

    /// Input `k` read at output index `i` under broadcasting.
    fn read(&self, k: usize) -> String {
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

    fn pointwise_f32(&self, body: impl Fn(&Self) -> String) -> Result<KernelSource, CodegenError> {
        if self.node.inputs.iter().chain(&self.node.outputs).any(|v| self.g.value(*v).ty.dtype != DType::F32) {
            return Err(self.unsupported("only float32 operands"));
        }
        // Fused expressions may run in place over an input: no `__restrict__`.
        let restrict = !matches!(self.node.op, Op::Fused(_));
        self.pointwise(body, restrict)
    }

    fn pointwise(&self, body: impl Fn(&Self) -> String, restrict: bool) -> Result<KernelSource, CodegenError> {
        let n = numel(self.oshape(0));
        Ok(self.kernel(Self::grid_loop(n, &body(self)), launch_1d(n), restrict, ""))
    }

    fn binary(&self, b: BinaryOp) -> Result<KernelSource, CodegenError> {
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

    /// Output element `i` copied from the input position whose coordinate along each axis is
    /// `src(ax)` (an expression over `c*`, and the input's extent on that axis).
    fn remap(&self, src: impl Fn(&Self, usize) -> Option<(String, usize)>) -> Result<KernelSource, CodegenError> {
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut terms = Vec::new();
        for (ax, stride) in st.iter().enumerate() {
            let (e, _) = src(self, ax).ok_or_else(|| self.unsupported("axis mapping"))?;
            terms.push(format!("({e}) * {stride}"));
        }
        let idx = if terms.is_empty() { "0".to_string() } else { terms.join(" + ") };
        let body = format!("{}    out0[i] = in0[{idx}];\n", Self::coords(&out, "i"));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    fn pad(&self, pads: &[(usize, usize)], value: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 padding"));
        }
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut cond = Vec::new();
        let mut terms = Vec::new();
        for ax in 0..ins.len() {
            let b = pads.get(ax).map(|p| p.0).unwrap_or(0);
            cond.push(format!("c{ax} >= {b} && c{ax} < {}", b + ins[ax]));
            terms.push(format!("(c{ax} - {b}) * {}", st[ax]));
        }
        let body = format!(
            "{}    out0[i] = ({}) ? in0[{}] : {};\n",
            Self::coords(&out, "i"),
            if cond.is_empty() { "true".into() } else { cond.join(" && ") },
            if terms.is_empty() { "0".into() } else { terms.join(" + ") },
            expr::lit(value)
        );
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    fn slice(&self, axes: &[usize], starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<KernelSource, CodegenError> {
        let ins = self.ishape(0).to_vec();
        self.remap(|_, ax| {
            let d = ins[ax];
            Some(match axes.iter().position(|&a| a == ax) {
                None => (format!("c{ax}"), d),
                Some(k) => {
                    let (s, _) = ir::slice_bounds(d, starts[k], ends[k], steps[k]);
                    (format!("({s}LL + (long long)c{ax} * {}LL)", steps[k]), d)
                }
            })
        })
    }

    fn concat(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        let out = self.oshape(0).to_vec();
        let mut body = Self::coords(&out, "i");
        let mut start = 0usize;
        for k in 0..self.node.inputs.len() {
            let ins = self.ishape(k).to_vec();
            let st = strides(&ins);
            let terms: Vec<String> =
                (0..ins.len())
                    .map(|ax| {
                        if ax == axis {
                            format!("(c{ax} - {start}) * {}", st[ax])
                        } else {
                            format!("c{ax} * {}", st[ax])
                        }
                    })
                    .collect();
            let end = start + ins[axis];
            let _ = writeln!(
                body,
                "    {}if (c{axis} < {end}) out0[i] = in{k}[{}];",
                if k == 0 { "" } else { "else " },
                terms.join(" + ")
            );
            start = end;
        }
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    fn resize(&self, sizes: &[usize], mode: ResizeMode) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 resizing"));
        }
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut body = Self::coords(&out, "i");
        let r = out.len();
        // Per resized axis: the low and high source index and the weight of the high one.
        let mut lerp_axes = Vec::new();
        for (k, &size) in sizes.iter().enumerate() {
            let ax = k + 1;
            let inn = ins[ax];
            if inn == size {
                let _ = writeln!(body, "    const kc_idx lo{ax} = c{ax}, hi{ax} = c{ax}; const float t{ax} = 0.f;");
                continue;
            }
            let scale = expr::lit(inn as f32 / size as f32);
            match mode {
                ResizeMode::Nearest => {
                    let _ = writeln!(
                        body,
                        "    kc_idx lo{ax} = (kc_idx)floorf(((float)c{ax} + 0.5f) * {scale}); if (lo{ax} > {m}) lo{ax} = {m}; const kc_idx hi{ax} = lo{ax}; const float t{ax} = 0.f;",
                        m = inn - 1
                    );
                }
                ResizeMode::Bilinear => {
                    let _ = writeln!(
                        body,
                        "    const float f{ax} = fmaxf(((float)c{ax} + 0.5f) * {scale} - 0.5f, 0.f);\n    kc_idx lo{ax} = (kc_idx)floorf(f{ax}); if (lo{ax} > {m}) lo{ax} = {m};\n    const kc_idx hi{ax} = lo{ax} + 1 > {m} ? {m} : lo{ax} + 1; const float t{ax} = f{ax} - (float)lo{ax};",
                        m = inn - 1
                    );
                    lerp_axes.push(ax);
                }
            }
        }
        let resized: Vec<usize> = (1..=sizes.len()).collect();
        let at = |pick: &dyn Fn(usize) -> &'static str| -> String {
            (0..r)
                .map(|ax| {
                    let c = if resized.contains(&ax) { format!("{}{ax}", pick(ax)) } else { format!("c{ax}") };
                    format!("{c} * {}", st[ax])
                })
                .collect::<Vec<_>>()
                .join(" + ")
        };
        // Sum over the 2^k corners of the interpolated axes, in the CPU's axis order.
        let k = lerp_axes.len();
        let mut terms = Vec::new();
        for mask in 0..(1usize << k) {
            let hi_axes: Vec<usize> = (0..k).filter(|b| mask >> b & 1 == 1).map(|b| lerp_axes[b]).collect();
            let w: Vec<String> = lerp_axes
                .iter()
                .map(|ax| if hi_axes.contains(ax) { format!("t{ax}") } else { format!("(1.f - t{ax})") })
                .collect();
            let idx = at(&|ax| if hi_axes.contains(&ax) { "hi" } else { "lo" });
            terms.push(if w.is_empty() { format!("in0[{idx}]") } else { format!("{} * in0[{idx}]", w.join(" * ")) });
        }
        let _ = writeln!(body, "    out0[i] = {};", terms.join(" + "));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    fn gather(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        let data = self.ishape(0).to_vec();
        let idx = self.ishape(1).to_vec();
        let out = self.oshape(0).to_vec();
        let d = data[axis];
        let ist = strides(&idx);
        let dst = strides(&data);
        let mut body = Self::coords(&out, "i");
        // Output axes: data's leading axes, the index axes, then data's trailing axes.
        let iterms: Vec<String> = (0..idx.len()).map(|k| format!("c{} * {}", axis + k, ist[k])).collect();
        let _ = writeln!(
            body,
            "    long long j = (long long)in1[{}];\n    j = j < 0 ? 0 : (j >= {d} ? {} : j);",
            if iterms.is_empty() { "0".into() } else { iterms.join(" + ") },
            d.saturating_sub(1)
        );
        let mut dterms = Vec::new();
        for (a, stride) in dst.iter().enumerate() {
            dterms.push(match a.cmp(&axis) {
                std::cmp::Ordering::Less => format!("c{a} * {stride}"),
                std::cmp::Ordering::Equal => format!("j * {stride}"),
                std::cmp::Ordering::Greater => format!("c{} * {stride}", a - 1 + idx.len()),
            });
        }
        let _ = writeln!(body, "    out0[i] = in0[{}];", dterms.join(" + "));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    /// The epilogue applied to `v` for output element `n` (channel) at flat index `o`.
    fn epilogue(e: &Epilogue, bias: &str, residual: &str, chan: &str, o: &str) -> String {
        let mut s = String::new();
        if e.bias {
            let _ = writeln!(s, "        v += {bias}[{chan}];");
        }
        if let Some(a) = e.activation {
            let _ = writeln!(s, "        v = {};", expr::unary(a, "v"));
        }
        if e.residual {
            let _ = writeln!(s, "        v += {residual}[{o}];");
        }
        if let Some(a) = e.post_activation {
            let _ = writeln!(s, "        v = {};", expr::unary(a, "v"));
        }
        s
    }

    fn epilogue_names(e: &Epilogue) -> (String, String) {
        let bias = "in2".to_string();
        let residual = if e.bias { "in3" } else { "in2" }.to_string();
        (bias, residual)
    }

    fn gemm(
        &self,
        (m, n, k, batches): (usize, usize, usize, usize),
        offsets: String,
        helpers: String,
        store: String,
        args: (&str, &str),
    ) -> Result<KernelSource, CodegenError> {
        let gy = m.div_ceil(64);
        let gx = n.div_ceil(64);
        if gy > 65_535 || batches > 65_535 || gx > (1 << 31) - 1 {
            return Err(self.unsupported(format!("GEMM grid too large ({m}x{n}, {batches} batches)")));
        }
        let template = if self.precision == Precision::Fp32 { GEMM_TEMPLATE } else { GEMM_TC_TEMPLATE };
        let body = template
            .replace("KC_MMA", &Self::mma_steps(self.precision))
            .replace("KC_NAME", &self.name())
            .replace("KC_PARAMS", &self.params(true))
            .replace("KC_OFFSETS", &offsets)
            .replace("KC_STORE", &store)
            .replace("KC_ARGS_A", args.0)
            .replace("KC_ARGS_B", args.1)
            .replace("KC_M", &format!("{m}LL"))
            .replace("KC_N", &format!("{n}LL"))
            .replace("KC_K", &format!("{k}LL"));
        let source = format!("{PRELUDE}{helpers}{body}");
        let launch = Launch {
            grid: [gx.max(1) as u32, gy.max(1) as u32, batches.max(1) as u32],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        Ok(KernelSource { name: self.name(), source, launch, args: self.args() })
    }

    /// One 16-deep slice of the tile on the tensor cores: the warp's A fragment, then one mma
    /// per 8-column accumulator (fragment layouts of PTX's m16n8k8 .tf32 and m16n8k16
    /// .f16/.bf16: lane = 4·g + q holds rows g and g+8, columns q and q+4, or pairs 2q, 2q+1
    /// and 2q+8, 2q+9).
    fn mma_steps(p: Precision) -> String {
        let (pack, mma) = match p {
            Precision::Bf16 => ("kc_pack_bf16", "kc_mma_bf16"),
            _ => ("kc_pack_f16", "kc_mma_f16"),
        };
        if p == Precision::Tf32 {
            "#pragma unroll
    for (int ks = 0; ks < 16; ks += 8) {
      const unsigned a[4] = {kc_tf32(As[ks + tq][wm + g]), kc_tf32(As[ks + tq][wm + g + 8]),
                             kc_tf32(As[ks + tq + 4][wm + g]), kc_tf32(As[ks + tq + 4][wm + g + 8])};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nn = wn + j * 8 + g;
        const unsigned b[2] = {kc_tf32(Bs[ks + tq][nn]), kc_tf32(Bs[ks + tq + 4][nn])};
        kc_mma_tf32(acc[j], a, b);
      }
    }"
            .to_string()
        } else {
            format!(
                "{{
      const unsigned a[4] = {{{pack}(As[2 * tq][wm + g], As[2 * tq + 1][wm + g]),
                             {pack}(As[2 * tq][wm + g + 8], As[2 * tq + 1][wm + g + 8]),
                             {pack}(As[2 * tq + 8][wm + g], As[2 * tq + 9][wm + g]),
                             {pack}(As[2 * tq + 8][wm + g + 8], As[2 * tq + 9][wm + g + 8])}};
#pragma unroll
      for (int j = 0; j < 4; ++j) {{
        const int nn = wn + j * 8 + g;
        const unsigned b[2] = {{{pack}(Bs[2 * tq][nn], Bs[2 * tq + 1][nn]), {pack}(Bs[2 * tq + 8][nn], Bs[2 * tq + 9][nn])}};
        {mma}(acc[j], a, b);
      }}
    }}"
            )
        }
    }

    fn matmul(&self, ta: bool, tb: bool, e: &Epilogue) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 || self.ity(1) != DType::F32 {
            return Err(self.unsupported("only float32 matmul"));
        }
        let (a, b, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (ar, br, r) = (a.len(), b.len(), out.len());
        let (m, n) = (out[r - 2], out[r - 1]);
        let k = if ta { a[ar - 2] } else { a[ar - 1] };
        let batch = &out[..r - 2];
        let batches: usize = batch.iter().product();
        let mut offsets = String::from("  long long a_off = 0, b_off = 0;\n  { long long rz = z;\n");
        for ax in (0..batch.len()).rev() {
            let _ = writeln!(
                offsets,
                "    const long long bz{ax} = rz % {}; rz /= {};",
                batch[ax].max(1),
                batch[ax].max(1)
            );
            // Batch axes align from the right; size-1 axes broadcast.
            let lead = batch.len();
            for (name, sh, rank) in [("a_off", &a, ar), ("b_off", &b, br)] {
                let nb = rank - 2;
                if ax + nb >= lead {
                    let axo = ax + nb - lead;
                    if sh[axo] != 1 {
                        let stride: usize = sh[axo + 1..nb].iter().product::<usize>() * sh[nb] * sh[nb + 1];
                        let _ = writeln!(offsets, "    {name} += bz{ax} * {stride}LL;");
                    }
                }
            }
        }
        offsets.push_str("    (void)rz;\n  }\n");
        let _ = writeln!(offsets, "  const long long c_off = z * {}LL;", m * n);
        let a_idx = if ta { format!("k * {m}LL + m") } else { format!("m * {k}LL + k") };
        let b_idx = if tb { format!("n * {k}LL + k") } else { format!("k * {n}LL + n") };
        let helpers = format!(
            "KC_DEV float kc_load_a(long long m, long long k, long long z, const float* __restrict__ a, long long off) {{ (void)z; return a[off + {a_idx}]; }}\nKC_DEV float kc_load_b(long long k, long long n, long long z, const float* __restrict__ b, long long off) {{ (void)z; return b[off + {b_idx}]; }}\n"
        );
        let (bias, res) = Self::epilogue_names(e);
        let store = format!(
            "{}        out0[c_off + m * {n}LL + n] = v;",
            Self::epilogue(e, &bias, &res, "n", &format!("c_off + m * {n}LL + n"))
        );
        self.gemm((m, n, k, batches), offsets, helpers, store, (", in0, a_off", ", in1, b_off"))
    }

    fn conv(&self, a: &ConvAttrs, e: &Epilogue) -> Result<KernelSource, CodegenError> {
        let (x, w, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let r = a.strides.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let inp = lift(&x[1..=r], 1);
        let outp = lift(&out[1..=r], 1);
        let k = lift(&w[..r], 1);
        let s = lift(&a.strides, 1);
        let d = lift(&a.dilations, 1);
        let p = lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0);
        let (c, f) = (x[r + 1], w[r + 1]);
        let groups = a.groups.max(1);
        let (cg, fg) = (c / groups, f / groups);
        let rows = x[0] * outp.iter().product::<usize>();
        let (bias, res) = Self::epilogue_names(e);
        if groups > 1 && cg == 1 {
            return self.depthwise((inp, outp, k, s, d, p), (c, f, fg), rows, e);
        }
        let kk = k.iter().product::<usize>() * cg;
        let helpers = format!(
            "KC_DEV float kc_load_a(long long m, long long k, long long z, const float* __restrict__ x, int unused) {{
  (void)unused;
  const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
  const long long c = k % {cg}, tap = k / {cg};
  const long long kx = tap % {kw}, ky = (tap / {kw}) % {kh}, kz = tap / {khw};
  const long long ix = ox * {sx} + kx * {dx} - {px}, iy = oy * {sy} + ky * {dy} - {py}, iz = oz * {sz} + kz * {dz} - {pz};
  if (ix < 0 || iy < 0 || iz < 0 || ix >= {iw} || iy >= {ih} || iz >= {id}) return 0.f;
  return x[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c_all} + z * {cg} + c];
}}
KC_DEV float kc_load_b(long long k, long long n, long long z, const float* __restrict__ w, int unused) {{ (void)unused; return w[k * {f} + z * {fg} + n]; }}
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kw = k[2],
            kh = k[1],
            khw = k[1] * k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            c_all = c,
        );
        let o = format!("m * {f}LL + z * {fg}LL + n");
        let store = format!("{}        out0[{o}] = v;", Self::epilogue(e, &bias, &res, &format!("z * {fg}LL + n"), &o));
        self.gemm((rows, fg, kk, groups), String::new(), helpers, store, (", in0, 0", ", in1, 0"))
    }

    #[allow(clippy::type_complexity)]
    fn depthwise(
        &self,
        (inp, outp, k, s, d, p): ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3]),
        (c, f, dm): (usize, usize, usize),
        rows: usize,
        e: &Epilogue,
    ) -> Result<KernelSource, CodegenError> {
        let (bias, res) = Self::epilogue_names(e);
        let n = rows * f;
        let body = format!(
            "    const kc_idx fo = i % {f}, m = i / {f};
    const kc_idx ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    const kc_idx ch = fo / {dm};
    float v = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long iz = (long long)oz * {sz} + kz * {dz} - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long iy = (long long)oy * {sy} + ky * {dy} - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long ix = (long long)ox * {sx} + kx * {dx} - {px};
          if (ix < 0 || ix >= {iw}) continue;
          v += in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + ch] * in1[((kz * {kh} + ky) * {kw} + kx) * {f} + fo];
        }}
      }}
    }}
    {{
{epi}    }}
    out0[i] = v;
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            epi = Self::epilogue(e, &bias, &res, "fo", "i"),
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    fn conv_transpose(&self, a: &ConvTransposeAttrs) -> Result<KernelSource, CodegenError> {
        let (x, w, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let r = a.strides.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 transposed convolutions of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let pads: Vec<usize> = (0..r).map(|i| a.geometry(i, x[i + 1], w[i]).1).collect();
        let (inp, outp, k, s, d, p) = (
            lift(&x[1..=r], 1),
            lift(&out[1..=r], 1),
            lift(&w[..r], 1),
            lift(&a.strides, 1),
            lift(&a.dilations, 1),
            lift(&pads, 0),
        );
        let (c, f) = (x[r + 1], w[r]);
        let n = numel(&out);
        let body = format!(
            "    const kc_idx fo = i % {f}, m = i / {f};
    const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    float v = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long tz = oz + {pz} - kz * {dz};
      if (tz < 0 || tz % {sz} != 0 || tz / {sz} >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long ty = oy + {py} - ky * {dy};
        if (ty < 0 || ty % {sy} != 0 || ty / {sy} >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long tx = ox + {px} - kx * {dx};
          if (tx < 0 || tx % {sx} != 0 || tx / {sx} >= {iw}) continue;
          const long long base = (((nb * {id} + tz / {sz}) * {ih} + ty / {sy}) * {iw} + tx / {sx}) * {c};
          const long long wb = (((kz * {kh} + ky) * {kw} + kx) * {f} + fo) * {c};
          for (int ci = 0; ci < {c}; ++ci) v += in0[base + ci] * in1[wb + ci];
        }}
      }}
    }}
    out0[i] = v;
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// The gradient of an embedding lookup: each table element sums the output gradients of
    /// the ids that pick it (a gather over the ids, no atomics).
    fn gather_grad(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        if self.ity(1) != DType::F32 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("only float32 gradients"));
        }
        let out = self.oshape(0).to_vec();
        let d = out[axis];
        let inner: usize = out[axis + 1..].iter().product();
        let k = numel(self.ishape(0));
        let body = format!(
            "    const kc_idx in_ = i % {inner}, di = (i / {inner}) % {d}, o = i / ({inner} * {d});
    float acc = 0.f;
    for (kc_idx k = 0; k < {k}; ++k) {{
      if ((long long)in0[k] == (long long)di) acc += in1[(o * {k} + k) * {inner} + in_];
    }}
    out0[i] = acc;
",
            inner = inner.max(1),
            d = d.max(1),
        );
        let n = numel(&out);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// Convolution geometry lifted to three spatial axes: (input, output, kernel, strides,
    /// dilations, leading pads, channels in, channels out, groups).
    #[allow(clippy::type_complexity)]
    fn conv_geometry(
        a: &ConvAttrs,
        x: &[usize],
        w: &[usize],
        y: &[usize],
    ) -> ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], usize, usize, usize) {
        let r = a.strides.len();
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        (
            lift(&x[1..=r], 1),
            lift(&y[1..=r], 1),
            lift(&w[..r], 1),
            lift(&a.strides, 1),
            lift(&a.dilations, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
            x[r + 1],
            w[r + 1],
            a.groups.max(1),
        )
    }

    /// dx of a convolution: each input element gathers the output gradients of the taps that
    /// read it.
    fn conv_input_grad(&self, a: &ConvAttrs) -> Result<KernelSource, CodegenError> {
        if a.strides.len() > 3 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let (dy, w, x) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (inp, out, k, s, d, p, c, f, groups) = Self::conv_geometry(a, &x, &w, &dy);
        let (cg, fg) = (c / groups, f / groups);
        let body = format!(
            "    const kc_idx ch = i % {c}, m = i / {c};
    const long long ix = m % {iw}, iy = (m / {iw}) % {ih}, iz = (m / {ihw}) % {id}, nb = m / {idhw};
    const long long grp = ch / {cg}, cc = ch % {cg};
    float acc = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long tz = iz + {pz} - kz * {dz};
      if (tz < 0 || tz % {sz} != 0 || tz / {sz} >= {od}) continue;
      const long long oz = tz / {sz};
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long ty = iy + {py} - ky * {dy_};
        if (ty < 0 || ty % {sy} != 0 || ty / {sy} >= {oh}) continue;
        const long long oy = ty / {sy};
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long tx = ix + {px} - kx * {dx};
          if (tx < 0 || tx % {sx} != 0 || tx / {sx} >= {ow}) continue;
          const long long ox = tx / {sx};
          const long long tap = ((long long)kz * {kh} + ky) * {kw} + kx;
          const float* g = in0 + (((nb * {od} + oz) * {oh} + oy) * {ow} + ox) * {f} + grp * {fg};
          const float* wr = in1 + (tap * {cg} + cc) * {f} + grp * {fg};
          for (int fo = 0; fo < {fg}; ++fo) acc += g[fo] * wr[fo];
        }}
      }}
    }}
    out0[i] = acc;
",
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            ihw = inp[1] * inp[2],
            idhw = inp.iter().product::<usize>(),
            ow = out[2],
            oh = out[1],
            od = out[0],
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sz = s[0],
            sy = s[1],
            sx = s[2],
            dz = d[0],
            dy_ = d[1],
            dx = d[2],
            pz = p[0],
            py = p[1],
            px = p[2],
        );
        let n = numel(&x);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// dw of a convolution: each kernel element sums input × output gradient over the batch and
    /// every output position.
    fn conv_filter_grad(&self, a: &ConvAttrs) -> Result<KernelSource, CodegenError> {
        if a.strides.len() > 3 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let (x, dy, w) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (inp, out, k, s, d, p, c, f, groups) = Self::conv_geometry(a, &x, &w, &dy);
        let (cg, fg) = (c / groups, f / groups);
        let body = format!(
            "    const kc_idx fo = i % {f}, cc = (i / {f}) % {cg}, tap = i / ({f} * {cg});
    const long long kx = tap % {kw}, ky = (tap / {kw}) % {kh}, kz = tap / ({kw} * {kh});
    const long long grp = fo / {fg};
    float acc = 0.f;
    for (long long nb = 0; nb < {nn}; ++nb)
    for (long long oz = 0; oz < {od}; ++oz) {{
      const long long iz = oz * {sz} + kz * {dz} - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (long long oy = 0; oy < {oh}; ++oy) {{
        const long long iy = oy * {sy} + ky * {dy_} - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (long long ox = 0; ox < {ow}; ++ox) {{
          const long long ix = ox * {sx} + kx * {dx} - {px};
          if (ix < 0 || ix >= {iw}) continue;
          acc += in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + grp * {cg} + cc]
               * in1[(((nb * {od} + oz) * {oh} + oy) * {ow} + ox) * {f} + fo];
        }}
      }}
    }}
    out0[i] = acc;
",
            nn = x[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            ow = out[2],
            oh = out[1],
            od = out[0],
            kh = k[1],
            kw = k[2],
            sz = s[0],
            sy = s[1],
            sx = s[2],
            dz = d[0],
            dy_ = d[1],
            dx = d[2],
            pz = p[0],
            py = p[1],
            px = p[2],
        );
        let n = numel(&w);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// dx of pooling: each input element collects from the windows that contain it (max: only
    /// where it is the window's first maximum; average: an equal share of the cells inside).
    fn pool_grad(&self, a: &PoolAttrs) -> Result<KernelSource, CodegenError> {
        let (x, dy) = (self.ishape(0).to_vec(), self.ishape(1).to_vec());
        let r = a.window.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 pooling of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let (inp, outp, k, s, p) = (
            lift(&x[1..=r], 1),
            lift(&dy[1..=r], 1),
            lift(&a.window, 1),
            lift(&a.strides, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
        );
        let c = x[r + 1];
        let share = match a.kind {
            PoolKind::Max => "
        // This element takes the gradient if it is the window's first maximum.
        long long best = -1; float bv = 0.f;
        for (int kz = 0; kz < KD; ++kz) { const long long jz = oz * SZ + kz - PZ; if (jz < 0 || jz >= ID) continue;
        for (int ky = 0; ky < KH; ++ky) { const long long jy = oy * SY + ky - PY; if (jy < 0 || jy >= IH) continue;
        for (int kx = 0; kx < KW; ++kx) { const long long jx = ox * SX + kx - PX; if (jx < 0 || jx >= IW) continue;
          const long long j = (((nb * ID + jz) * IH + jy) * IW + jx) * C + ch;
          if (best < 0 || in0[j] > bv) { best = j; bv = in0[j]; } } } }
        if (best == (long long)i) acc += g;
",
            PoolKind::Avg => "
        int cnt = 0;
        for (int kz = 0; kz < KD; ++kz) { const long long jz = oz * SZ + kz - PZ; if (jz < 0 || jz >= ID) continue;
        for (int ky = 0; ky < KH; ++ky) { const long long jy = oy * SY + ky - PY; if (jy < 0 || jy >= IH) continue;
        for (int kx = 0; kx < KW; ++kx) { const long long jx = ox * SX + kx - PX; if (jx < 0 || jx >= IW) continue; ++cnt; } } }
        acc += g / (float)(cnt > 0 ? cnt : 1);
",
        };
        let template = "    const long long ch = i % C, m = i / C;
    const long long ix = m % IW, iy = (m / IW) % IH, iz = (m / (IW * IH)) % ID, nb = m / (IW * IH * ID);
    float acc = 0.f;
    for (long long oz = 0; oz < OD; ++oz) { const long long kz0 = iz + PZ - oz * SZ; if (kz0 < 0 || kz0 >= KD) continue;
    for (long long oy = 0; oy < OH; ++oy) { const long long ky0 = iy + PY - oy * SY; if (ky0 < 0 || ky0 >= KH) continue;
    for (long long ox = 0; ox < OW; ++ox) { const long long kx0 = ix + PX - ox * SX; if (kx0 < 0 || kx0 >= KW) continue;
        const float g = in1[(((nb * OD + oz) * OH + oy) * OW + ox) * C + ch];SHARE    } } }
    out0[i] = acc;
";
        let mut body = template.replace("SHARE", share);
        for (name, v) in [
            ("C", c),
            ("IW", inp[2]),
            ("IH", inp[1]),
            ("ID", inp[0]),
            ("OW", outp[2]),
            ("OH", outp[1]),
            ("OD", outp[0]),
            ("KW", k[2]),
            ("KH", k[1]),
            ("KD", k[0]),
            ("SX", s[2]),
            ("SY", s[1]),
            ("SZ", s[0]),
            ("PX", p[2]),
            ("PY", p[1]),
            ("PZ", p[0]),
        ] {
            body = replace_word(&body, name, &format!("{v}LL"));
        }
        let n = numel(&x);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// Softmax cross-entropy from logits: the per-row loss, or (with the loss gradient as a third
    /// input) its gradient `(Σp·softmax − p)·dl`.
    fn cross_entropy(&self, sparse: bool, grad: bool) -> Result<KernelSource, CodegenError> {
        let z = self.ishape(0).to_vec();
        let c = *z.last().unwrap_or(&1);
        let rows = numel(&z) / c.max(1);
        let label = if sparse { "(long long)in1[r]".to_string() } else { String::new() };
        let row = format!(
            "    const float* zr = in0 + r * {c};
    float m = zr[0];
    for (int j = 1; j < {c}; ++j) m = fmaxf(m, zr[j]);
    float s = 0.f;
    for (int j = 0; j < {c}; ++j) s += expf(zr[j] - m);
    const float lse = m + logf(s);
"
        );
        let (n, body) = if !grad {
            let loss = if sparse {
                format!("    const long long lab = {label};\n    out0[r] = (lab < 0 || lab >= {c}) ? __int_as_float(0x7fc00000) : lse - zr[lab];\n")
            } else {
                format!("    float t = 0.f;\n    for (int j = 0; j < {c}; ++j) t += in1[r * {c} + j] * (zr[j] - lse);\n    out0[r] = -t;\n")
            };
            (rows, format!("    const kc_idx r = i;\n{row}{loss}"))
        } else {
            let (mass, target) = if sparse {
                ("1.f".to_string(), format!("({label} == (long long)j ? 1.f : 0.f)"))
            } else {
                (format!("0.f; for (int q = 0; q < {c}; ++q) mass += in1[r * {c} + q]"), format!("in1[r * {c} + j]"))
            };
            (
                numel(&z),
                format!(
                    "    const kc_idx r = i / {c}, j = i % {c};\n{row}    float mass = {mass};\n    out0[i] = (mass * expf(zr[j] - lse) - {target}) * in2[r];\n"
                ),
            )
        };
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    fn pool(&self, a: &PoolAttrs) -> Result<KernelSource, CodegenError> {
        let (x, out) = (self.ishape(0).to_vec(), self.oshape(0).to_vec());
        let r = a.window.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 pooling of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let (inp, outp, k, s, p) = (
            lift(&x[1..=r], 1),
            lift(&out[1..=r], 1),
            lift(&a.window, 1),
            lift(&a.strides, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
        );
        let c = x[r + 1];
        let n = numel(&out);
        let (init, acc, fin) = match a.kind {
            PoolKind::Max => ("-__int_as_float(0x7f800000)", "v = fmaxf(v, xv);", "out0[i] = v;"),
            PoolKind::Avg => ("0.f", "v += xv;", "out0[i] = cnt > 0 ? v / (float)cnt : 0.f;"),
        };
        let body = format!(
            "    const kc_idx ch = i % {c}, m = i / {c};
    const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    float v = {init};
    int cnt = 0;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long iz = oz * {sz} + kz - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long iy = oy * {sy} + ky - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long ix = ox * {sx} + kx - {px};
          if (ix < 0 || ix >= {iw}) continue;
          const float xv = in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + ch];
          {acc}
          ++cnt;
        }}
      }}
    }}
    (void)cnt;
    {fin}
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// For reductions over `axes` of input 0: the number of rows (kept positions), the number of
    /// reduced positions, and statements setting `base` (the row's offset) from row index `i`
    /// and a helper expression for the offset of reduced position `j`.
    fn rows(&self, axes: &[usize]) -> (usize, usize, String, String) {
        let x = self.ishape(0).to_vec();
        let st = strides(&x);
        let kept: Vec<usize> = (0..x.len()).filter(|a| !axes.contains(a)).collect();
        let rows: usize = kept.iter().map(|&a| x[a]).product();
        let red: usize = axes.iter().map(|&a| x[a]).product();
        let mut base = String::from("    kc_idx rr = i; long long base = 0;\n");
        for &a in kept.iter().rev() {
            let _ = writeln!(base, "    base += (long long)(rr % {}) * {}; rr /= {};", x[a].max(1), st[a], x[a].max(1));
        }
        let mut off = String::from("long long rj = j, o = 0; ");
        for &a in axes.iter().rev() {
            let _ = write!(off, "o += (rj % {}) * {}; rj /= {}; ", x[a].max(1), st[a], x[a].max(1));
        }
        (rows, red, base, off)
    }

    fn reduce(&self, kind: ReduceKind, axes: &[usize]) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 reductions"));
        }
        let (rows, red, base, off) = self.rows(axes);
        let (init, acc, fin) = match kind {
            ReduceKind::Sum => ("0.f", "v += xv;", "v"),
            ReduceKind::Mean => ("0.f", "v += xv;", &*format!("v / {}", expr::lit(red.max(1) as f32))),
            ReduceKind::Max => ("-__int_as_float(0x7f800000)", "v = fmaxf(v, xv);", "v"),
            ReduceKind::Min => ("__int_as_float(0x7f800000)", "v = fminf(v, xv);", "v"),
            ReduceKind::Prod => ("1.f", "v *= xv;", "v"),
        };
        let body = format!(
            "{base}    float v = {init};\n    for (long long j = 0; j < {red}; ++j) {{ {off}const float xv = in0[base + o]; {acc} }}\n    out0[i] = {fin};\n"
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    /// A kernel with one 128-thread block per row of the last axis (grid-stride over rows);
    /// `body` uses `row`, `t` and the block-wide reductions `kc_block_max`/`kc_block_sum`.
    fn row_blocks(&self, rows: usize, body: &str) -> KernelSource {
        let helpers = "KC_DEV float kc_block_sum(float v, float* red) {
  const int t = threadIdx.x;
  red[t] = v;
  __syncthreads();
  for (int s = 64; s > 0; s >>= 1) { if (t < s) red[t] += red[t + s]; __syncthreads(); }
  const float r = red[0];
  __syncthreads();
  return r;
}
KC_DEV float kc_block_max(float v, float* red) {
  const int t = threadIdx.x;
  red[t] = v;
  __syncthreads();
  for (int s = 64; s > 0; s >>= 1) { if (t < s) red[t] = fmaxf(red[t], red[t + s]); __syncthreads(); }
  const float r = red[0];
  __syncthreads();
  return r;
}
";
        let src = format!(
            "  __shared__ float red[128];\n  const int t = threadIdx.x;\n  for (long long row = blockIdx.x; row < {rows}LL; row += gridDim.x) {{\n{body}  }}\n"
        );
        let launch = Launch { grid: [rows.clamp(1, 1 << 16) as u32, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        self.kernel(src, launch, true, helpers)
    }

    /// Rows and row length when a reduction over `axes` is over the last axis only, with rows
    /// long enough for a block each.
    fn long_last_axis(&self, axes: &[usize]) -> Option<(usize, usize)> {
        let x = self.ishape(0);
        let last = x.len().checked_sub(1)?;
        let c = *x.last()?;
        (axes == [last] && c >= 64).then(|| (numel(x) / c.max(1), c))
    }

    fn softmax(&self, axes: &[usize], log: bool) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 softmax"));
        }
        if let Some((rows, c)) = self.long_last_axis(axes) {
            let fin = if log { "in0[base + j] - mx - logf(s)" } else { "expf(in0[base + j] - mx) * inv" };
            let body = format!(
                "    const long long base = row * {c}LL;
    float m = -__int_as_float(0x7f800000);
    for (long long j = t; j < {c}; j += 128) m = fmaxf(m, in0[base + j]);
    const float mx = kc_block_max(m, red);
    float a = 0.f;
    for (long long j = t; j < {c}; j += 128) a += expf(in0[base + j] - mx);
    const float s = kc_block_sum(a, red);
    const float inv = 1.f / s; (void)inv;
    for (long long j = t; j < {c}; j += 128) out0[base + j] = {fin};
"
            );
            return Ok(self.row_blocks(rows, &body));
        }
        let (rows, red, base, off) = self.rows(axes);
        let fin = if log {
            "out0[base + o] = in0[base + o] - mx - logf(s);"
        } else {
            "out0[base + o] = expf(in0[base + o] - mx) * inv;"
        };
        let body = format!(
            "{base}    float mx = -__int_as_float(0x7f800000);
    for (long long j = 0; j < {red}; ++j) {{ {off}mx = fmaxf(mx, in0[base + o]); }}
    float s = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}s += expf(in0[base + o] - mx); }}
    const float inv = 1.f / s; (void)inv;
    for (long long j = 0; j < {red}; ++j) {{ {off}{fin} }}
"
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    /// The offset into a parameter (broadcast against input 0) at input offset `pos`.
    fn param_offset(&self, k: usize, pos: &str) -> String {
        let x = self.ishape(0).to_vec();
        let pr = self.ishape(k).to_vec();
        let xs = strides(&x);
        let ps = strides(&pr);
        let lead = x.len() - pr.len();
        let terms: Vec<String> = (0..pr.len())
            .filter(|&a| pr[a] != 1)
            .map(|a| format!("(({pos} / {}) % {}) * {}", xs[a + lead], x[a + lead].max(1), ps[a]))
            .collect();
        if terms.is_empty() {
            "0".into()
        } else {
            terms.join(" + ")
        }
    }

    fn layer_norm(&self, axes: &[usize], eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 layer normalization"));
        }
        if let Some((rows, c)) = self.long_last_axis(axes) {
            let body = format!(
                "    const long long base = row * {c}LL;
    float a = 0.f;
    for (long long j = t; j < {c}; j += 128) a += in0[base + j];
    const float mean = kc_block_sum(a, red) / {n};
    float q = 0.f;
    for (long long j = t; j < {c}; j += 128) {{ const float dv = in0[base + j] - mean; q += dv * dv; }}
    const float var = kc_block_sum(q, red) / {n};
    const float rs = 1.f / sqrtf(var + {eps});
    for (long long j = t; j < {c}; j += 128) {{
      const long long p = base + j;
      const float inv = rs * in1[{g}];
      out0[p] = in0[p] * inv + (in2[{b}] - mean * inv);
    }}
",
                n = expr::lit(c as f32),
                eps = expr::lit(eps),
                g = self.param_offset(1, "p"),
                b = self.param_offset(2, "p"),
            );
            return Ok(self.row_blocks(rows, &body));
        }
        let (rows, red, base, off) = self.rows(axes);
        let n = expr::lit(red.max(1) as f32);
        let body = format!(
            "{base}    float mean = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}mean += in0[base + o]; }}
    mean /= {n};
    float var = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}const float dv = in0[base + o] - mean; var += dv * dv; }}
    var /= {n};
    const float rs = 1.f / sqrtf(var + {eps});
    for (long long j = 0; j < {red}; ++j) {{
      {off}const long long p = base + o;
      const float inv = rs * in1[{g}];
      out0[p] = in0[p] * inv + (in2[{b}] - mean * inv);
    }}
",
            eps = expr::lit(eps),
            g = self.param_offset(1, "p"),
            b = self.param_offset(2, "p"),
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    fn l2_normalize(&self, axes: &[usize], eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 normalization"));
        }
        let (rows, red, base, off) = self.rows(axes);
        let body = format!(
            "{base}    float ss = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}ss += in0[base + o] * in0[base + o]; }}
    const float inv = 1.f / sqrtf(fmaxf(ss, {eps}));
    for (long long j = 0; j < {red}; ++j) {{ {off}out0[base + o] = in0[base + o] * inv; }}
",
            eps = expr::lit(eps)
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    fn group_norm(&self, groups: usize, axis: usize, eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 group normalization"));
        }
        let x = self.ishape(0).to_vec();
        let st = strides(&x);
        let c = x[axis];
        let cg = c / groups.max(1);
        let per_sample: usize = x[1..].iter().product();
        let rows = x[0] * groups;
        let body = format!(
            "    const long long nb = i / {groups}, g = i % {groups};
    const long long base = nb * {per_sample}LL;
    float mean = 0.f; long long cnt = 0;
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) {{ mean += in0[base + p]; ++cnt; }} }}
    const float fc = cnt > 0 ? (float)cnt : 1.f;
    mean /= fc;
    float var = 0.f;
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) {{ const float dv = in0[base + p] - mean; var += dv * dv; }} }}
    var /= fc;
    const float inv = 1.f / sqrtf(var + {eps});
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) out0[base + p] = ((in0[base + p] - mean) * inv) * in1[ch] + in2[ch]; }}
",
            sa = st[axis],
            cg = cg.max(1),
            eps = expr::lit(eps),
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    /// A recurrent layer: one block per batch row runs every time step; the hidden (and cell)
    /// state lives in shared memory, each thread owning a strided set of units.
    fn rnn(&self, a: &RnnAttrs) -> Result<KernelSource, CodegenError> {
        let x = self.ishape(0).to_vec();
        let (nb, t, f) = (x[0], x[1], x[2]);
        let u = a.units;
        // Seven (units)-long shared arrays must fit in 48 KB of static shared memory.
        if u > 1536 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 recurrent layers of at most 1536 units"));
        }
        let gates = match a.kind {
            RnnKind::Simple => 1,
            RnnKind::Lstm => 4,
            RnnKind::Gru { .. } => 3,
        };
        let gu = gates * u;
        let has_bias = a.has_bias(self.node.inputs.len());
        let reset_after = matches!(a.kind, RnnKind::Gru { reset_after: true });
        let act = |v: &str| expr::unary(a.activation, v);
        let ract = |v: &str| expr::unary(a.recurrent_activation, v);
        let bias_in = |col: &str| if has_bias { format!("in3[{col}]") } else { "0.f".into() };
        let bias_rec = |col: &str| if has_bias && reset_after { format!("in3[{gu} + {col}]") } else { "0.f".into() };
        // x_t · W[:, col] + input bias, and h · U[:, col] (+ recurrent bias).
        let xw =
            |col: String| format!("({} + kc_dot_x(in0 + ((long long)b * {t} + ti) * {f}, in1 + {col}))", bias_in(&col));
        let hu = |col: String, h: &str| format!("({} + kc_dot_h({h}, in2 + {col}))", bias_rec(&col));
        let threads = u.clamp(32, 256).div_ceil(32) * 32;
        let step = match a.kind {
            RnnKind::Simple => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) hn[j] = {};\n",
                act(&format!("{} + {}", xw("j".into()), hu("j".into(), "h")))
            ),
            RnnKind::Lstm => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float ig = {i};
        const float fg = {fg};
        const float gg = {g};
        const float og = {o};
        const float cc = fg * c[j] + ig * gg;
        cn[j] = cc;
        hn[j] = og * {actc};
      }}
",
                i = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                fg = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                g = act(&format!("{} + {}", xw(format!("{} + j", 2 * u)), hu(format!("{} + j", 2 * u), "h"))),
                o = ract(&format!("{} + {}", xw(format!("{} + j", 3 * u)), hu(format!("{} + j", 3 * u), "h"))),
                actc = act("cc"),
            ),
            RnnKind::Gru { reset_after: true } => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float z = {z};
        const float r = {r};
        const float hh = {hh};
        hn[j] = z * h[j] + (1.f - z) * hh;
      }}
",
                z = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                r = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                hh = act(&format!("{} + r * {}", xw(format!("{} + j", 2 * u)), hu(format!("{} + j", 2 * u), "h"))),
            ),
            RnnKind::Gru { reset_after: false } => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float z = {z};
        const float r = {r};
        zs[j] = z;
        rh[j] = r * h[j];
      }}
      __syncthreads();
      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float hh = {hh};
        hn[j] = zs[j] * h[j] + (1.f - zs[j]) * hh;
      }}
",
                z = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                r = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                hh = act(&format!("{} + kc_dot_h(rh, in2 + {} + j)", xw(format!("{} + j", 2 * u)), 2 * u)),
            ),
        };
        // With a mask: `po` holds the output of the last kept step (zeros before it).
        let outv = if a.masked { "po" } else { "h" };
        let commit = if a.masked {
            let m = self.node.inputs.len() - 1;
            let masked_out = if a.zero_output_for_mask { "0.f" } else { "po[j]" };
            format!(
                "      const float keep = in{m}[(long long)b * {t} + ti];
      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        if (keep != 0.f) {{ h[j] = hn[j]; c[j] = cn[j]; po[j] = hn[j]; }} else {{ po[j] = {masked_out}; }}
      }}
"
            )
        } else {
            format!("      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{ h[j] = hn[j]; c[j] = cn[j]; }}\n")
        };
        let seq_out = if a.return_sequences {
            format!("      for (int j = threadIdx.x; j < {u}; j += blockDim.x) out0[((long long)b * {t} + step) * {u} + j] = {outv}[j];\n")
        } else {
            String::new()
        };
        let last_out =
            if a.return_sequences { String::new() } else { format!("    out0[(long long)b * {u} + j] = {outv}[j];\n") };
        let c_out =
            if a.kind == RnnKind::Lstm { format!("    out2[(long long)b * {u} + j] = c[j];\n") } else { String::new() };
        let ti = if a.go_backwards { format!("{} - step", t.saturating_sub(1)) } else { "step".into() };
        let (h0, c0) = if a.initial_state {
            let k = a.state_index(self.node.inputs.len());
            let c0 =
                if a.kind == RnnKind::Lstm { format!("in{}[(long long)b * {u} + j]", k + 1) } else { "0.f".into() };
            (format!("in{k}[(long long)b * {u} + j]"), c0)
        } else {
            ("0.f".to_string(), "0.f".to_string())
        };
        let helpers = format!(
            "KC_DEV float kc_dot_x(const float* __restrict__ xr, const float* __restrict__ wcol) {{ float s = 0.f; for (int q = 0; q < {f}; ++q) s += xr[q] * wcol[(long long)q * {gu}]; return s; }}
KC_DEV float kc_dot_h(const float* h, const float* __restrict__ ucol) {{ float s = 0.f; for (int q = 0; q < {u}; ++q) s += h[q] * ucol[(long long)q * {gu}]; return s; }}
"
        );
        let body = format!(
            "  __shared__ float h[{u}], hn[{u}], c[{u}], cn[{u}], zs[{u}], rh[{u}], po[{u}];
  (void)zs; (void)rh; (void)c; (void)cn; (void)po;
  const int b = blockIdx.x;
  if (b >= {nb}) return;
  for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{ h[j] = {h0}; c[j] = {c0}; po[j] = 0.f; }}
  __syncthreads();
  for (int step = 0; step < {t}; ++step) {{
      const int ti = {ti}; (void)ti;
{step}      __syncthreads();
{commit}      __syncthreads();
{seq_out}  }}
  for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
{last_out}    out1[(long long)b * {u} + j] = h[j];
{c_out}  }}
"
        );
        let launch = Launch { grid: [nb.max(1) as u32, 1, 1], block: [threads as u32, 1, 1], shared_bytes: 0 };
        Ok(self.kernel(body, launch, true, &helpers))
    }
}

/// `text` with whole-word occurrences of `word` replaced.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < text.len() {
        if text[i..].starts_with(word)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|&b| !is_ident(b))
        {
            out.push_str(with);
            i += word.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}
