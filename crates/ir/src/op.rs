//! The closed set of core ops. Keras layers are lowered to these at import; fused ops are made
//! only by the optimizer.

use crate::DType;

/// Element-wise functions of one tensor: math and every Keras activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Identity,
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Square,
    Reciprocal,
    Erf,
    Floor,
    Ceil,
    Sign,
    Sin,
    Cos,
    Relu,
    Relu6,
    /// Keras's general ReLU: `max_value` cap, `negative_slope` below `threshold`.
    ReluClip {
        max_value: Option<f32>,
        negative_slope: f32,
        threshold: f32,
    },
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu,
    ThresholdedRelu {
        theta: f32,
    },
    Sigmoid,
    /// Keras 3: `relu6(x + 3) / 6`.
    HardSigmoid,
    /// Keras 2: `clip(0.2·x + 0.5, 0, 1)`.
    HardSigmoidLegacy,
    /// `x · hard_sigmoid(x)` (Keras 3 hard_silu / hard_swish).
    HardSilu,
    Tanh,
    Softplus,
    Softsign,
    /// Exact, erf-based GELU.
    Gelu,
    /// Tanh-approximated GELU.
    GeluTanh,
    Silu,
    Mish,
    /// `x · scale + offset`.
    Affine {
        scale: f32,
        offset: f32,
    },
    /// `clip(x, lo, hi)`.
    Clip {
        lo: f32,
        hi: f32,
    },
}

impl UnaryOp {
    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Identity => "identity",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Square => "square",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Erf => "erf",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Sign => "sign",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Relu => "relu",
            UnaryOp::Relu6 => "relu6",
            UnaryOp::ReluClip { .. } => "relu_clip",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Elu { .. } => "elu",
            UnaryOp::Selu => "selu",
            UnaryOp::ThresholdedRelu { .. } => "thresholded_relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::HardSigmoid => "hard_sigmoid",
            UnaryOp::HardSigmoidLegacy => "hard_sigmoid_legacy",
            UnaryOp::HardSilu => "hard_silu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Softsign => "softsign",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::Silu => "silu",
            UnaryOp::Mish => "mish",
            UnaryOp::Affine { .. } => "affine",
            UnaryOp::Clip { .. } => "clip",
        }
    }
}

/// Element-wise functions of two tensors, with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl BinaryOp {
    /// Short lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Pow => "pow",
        }
    }
}

/// Reductions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

/// Pooling kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    /// Average over the window's cells inside the input (padding excluded, as Keras does).
    Avg,
}

/// Convolution over the spatial axes of a channels-last input `(N, spatial..., C)` with a
/// kernel `(k..., C/groups, F)`; `pads` are explicit (before, after) per spatial axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvAttrs {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<(usize, usize)>,
    pub groups: usize,
}

/// Keras / TensorFlow padding modes for transposed convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    Valid,
    Same,
}

/// Transposed convolution of a channels-last input with a kernel `(k..., F, C)` (Keras layout),
/// the adjoint of [`ConvAttrs`] convolution; output sizes follow Keras's rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvTransposeAttrs {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: PaddingMode,
    pub output_padding: Option<Vec<usize>>,
}

impl ConvTransposeAttrs {
    /// Output length and leading padding of one spatial axis, as Keras + TensorFlow compute them.
    pub fn geometry(&self, axis: usize, input: usize, kernel: usize) -> (usize, usize) {
        let s = self.strides[axis];
        let d = self.dilations[axis];
        let k_eff = (kernel - 1) * d + 1;
        let out = match &self.output_padding {
            None => match self.padding {
                PaddingMode::Valid => input * s + k_eff.saturating_sub(s),
                PaddingMode::Same => input * s,
            },
            Some(op) => {
                let pad = match self.padding {
                    PaddingMode::Same => k_eff / 2,
                    PaddingMode::Valid => 0,
                };
                ((input.saturating_sub(1)) * s + k_eff + op[axis]).saturating_sub(2 * pad)
            }
        };
        let before = match self.padding {
            PaddingMode::Valid => 0,
            PaddingMode::Same => {
                let total = ((input.saturating_sub(1)) * s + k_eff).saturating_sub(out);
                total / 2
            }
        };
        (out, before)
    }
}

/// Windowed pooling over the spatial axes of a channels-last input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolAttrs {
    pub kind: PoolKind,
    pub window: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<(usize, usize)>,
}

/// Interpolation modes of [`Op::Resize`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest,
    /// Bilinear with half-pixel centres (TensorFlow's `resize(..., half_pixel_centers=True)`).
    Bilinear,
    /// ONNX's Resize in general: any coordinate transformation, rounding, cubic, antialiasing.
    Onnx(Box<crate::interp::Interpolation>),
}

/// Recurrent cell kinds; gate orders are Keras's (LSTM i,f,c,o; GRU z,r,h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RnnKind {
    Simple,
    Lstm,
    Gru { reset_after: bool },
}

/// A recurrent layer over a `(N, T, F)` input with kernel, recurrent kernel and optional bias.
/// Outputs: the sequence `(N, T, U)` or the last output `(N, U)`, then the final states
/// (`h`, and `c` for LSTM).
#[derive(Debug, Clone, PartialEq)]
pub struct RnnAttrs {
    pub kind: RnnKind,
    pub units: usize,
    pub activation: UnaryOp,
    pub recurrent_activation: UnaryOp,
    pub return_sequences: bool,
    pub go_backwards: bool,
    /// The last inputs are the initial state (`h`, then `c` for an LSTM), each `(N, units)`;
    /// otherwise the state starts at zero.
    pub initial_state: bool,
    /// A `(N, T)` keep mask (float 0/1) is the very last input: at a masked step the state is
    /// unchanged and the output is the previous output (zeros with `zero_output_for_mask`).
    pub masked: bool,
    pub zero_output_for_mask: bool,
}

impl RnnAttrs {
    /// Number of state tensors (`h`, and `c` for an LSTM).
    pub fn n_states(&self) -> usize {
        if self.kind == RnnKind::Lstm {
            2
        } else {
            1
        }
    }

    /// Whether the inputs of a node with `n_inputs` inputs include a bias (input 3).
    pub fn has_bias(&self, n_inputs: usize) -> bool {
        n_inputs - if self.initial_state { self.n_states() } else { 0 } - usize::from(self.masked) > 3
    }

    /// Index of the first initial-state input.
    pub fn state_index(&self, n_inputs: usize) -> usize {
        n_inputs - usize::from(self.masked) - if self.initial_state { self.n_states() } else { 0 }
    }
}

/// What a fused Conv or MatMul applies to each output element `y`, in this order:
/// `post_activation(activation(y + bias) + residual)`; the bias runs along the last axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Epilogue {
    pub bias: bool,
    pub activation: Option<UnaryOp>,
    pub residual: bool,
    pub post_activation: Option<UnaryOp>,
}

impl Epilogue {
    /// How many inputs the epilogue adds after the two operands.
    pub fn extra_inputs(&self) -> usize {
        usize::from(self.bias) + usize::from(self.residual)
    }

    /// Short description, such as `+bias,relu,+res`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.bias {
            parts.push("+bias".to_string());
        }
        if let Some(a) = self.activation {
            parts.push(a.name().to_string());
        }
        if self.residual {
            parts.push("+residual".to_string());
        }
        if let Some(a) = self.post_activation {
            parts.push(a.name().to_string());
        }
        parts.join(",")
    }
}

/// One step of a [`FusedExpr`]; operands index earlier steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExprNode {
    /// The op's i-th input, broadcast to the output shape.
    Input(usize),
    Const(f32),
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
}

/// An element-wise expression over broadcast inputs, evaluated in one pass; the last step is
/// the result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FusedExpr {
    pub nodes: Vec<ExprNode>,
}

impl FusedExpr {
    /// The expression as text, e.g. `relu(add(in0, in1))`.
    pub fn render(&self) -> String {
        fn go(e: &FusedExpr, i: usize) -> String {
            match e.nodes.get(i) {
                Some(ExprNode::Input(k)) => format!("in{k}"),
                Some(ExprNode::Const(c)) => format!("{c}"),
                Some(ExprNode::Unary(u, a)) => format!("{}({})", u.name(), go(e, *a)),
                Some(ExprNode::Binary(b, x, y)) => format!("{}({}, {})", b.name(), go(e, *x), go(e, *y)),
                None => "?".into(),
            }
        }
        if self.nodes.is_empty() {
            return String::new();
        }
        go(self, self.nodes.len() - 1)
    }
}

/// The core ops. Inputs are listed on each variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `[x]`
    Unary(UnaryOp),
    /// `[a, b]`, broadcast.
    Binary(BinaryOp),
    /// `[a (..., M, K), b (..., K, N)]`; batch axes broadcast; optional transposes of the last two axes.
    MatMul { transpose_a: bool, transpose_b: bool },
    /// `[x, bias]`: adds the 1-D `bias` along `axis`.
    BiasAdd { axis: usize },
    /// `[x, kernel]`
    Conv(ConvAttrs),
    /// `[x, kernel]`
    ConvTranspose(ConvTransposeAttrs),
    /// `[x]`
    Pool(PoolAttrs),
    /// `[x]`
    Reduce { kind: ReduceKind, axes: Vec<usize>, keepdims: bool },
    /// `[x]` → int64: the index of the largest (`max`) or smallest element along `axis`, the
    /// first of equal ones or, with `last`, the last (ONNX's ArgMax / ArgMin).
    ArgReduce { max: bool, axis: usize, keepdims: bool, last: bool },
    /// `[x]`
    Softmax { axes: Vec<usize> },
    /// `[x]`
    LogSoftmax { axis: usize },
    /// `[x, gamma, beta, mean, variance]` (all 1-D along `axis`); inference arithmetic.
    BatchNorm { axis: usize, epsilon: f32 },
    /// `[x]`: the batch's statistics per channel along `axis`, `[2, C]`: the mean and the
    /// (biased) variance over every other axis (a batch normalization in training).
    Moments { axis: usize },
    /// `[x, moments, dmoments]` (both `[2, C]`): the gradient of [`Op::Moments`] with respect to
    /// `x`, `dmean/M + dvar·2(x − mean)/M` with M the values per channel (training).
    MomentsGrad { axis: usize },
    /// `[dy, x, mean]` (`mean` 1-D along `axis`): `[2, C]`, the per-channel sums `Σ dy` and
    /// `Σ dy·(x − mean)` over every other axis, from which a batch normalization's gradients
    /// follow (training).
    BatchNormSums { axis: usize },
    /// `[x, gamma, beta]` with shapes broadcastable to x; statistics over `axes`.
    LayerNorm { axes: Vec<usize>, epsilon: f32 },
    /// `[x, gamma, beta]` (1-D over channels `axis`).
    GroupNorm { groups: usize, axis: usize, epsilon: f32 },
    /// `[x]`: `x / sqrt(max(sum(x²), epsilon))` over `axes`.
    L2Normalize { axes: Vec<usize>, epsilon: f32 },
    /// `[x]`: target shape; 0 copies the input's size at that axis, -1 is inferred.
    Reshape { shape: Vec<i64> },
    /// `[x]`
    Transpose { perm: Vec<usize> },
    /// `[x...]`
    Concat { axis: usize },
    /// `[x]`: constant padding (before, after) per axis.
    Pad { pads: Vec<(usize, usize)>, value: f32 },
    /// `[x]`: numpy-style `start:end:step` per listed axis; negative indices count from the end.
    Slice { axes: Vec<usize>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64> },
    /// `[x]`: every element repeated `repeats` times along `axis`.
    RepeatInterleave { axis: usize, repeats: usize },
    /// `[x]`: the whole tensor tiled `repeats[i]` times along each axis.
    Tile { repeats: Vec<usize> },
    /// `[x]`: channels-last spatial resize to `sizes` (one per spatial axis).
    Resize { sizes: Vec<usize>, mode: ResizeMode },
    /// `[data, indices]`
    Gather { axis: usize },
    /// `[x]`
    Cast { to: DType },
    /// `[x]`: the same tensor, moved to device `to` (a TensorFlow device name). A placed graph's
    /// edge between two stages on different devices (model parallelism); an identity wherever
    /// the graph runs whole.
    Transfer { to: String },
    /// `[x, kernel, recurrent_kernel, (bias)]`
    Rnn(RnnAttrs),
    /// `[x, kernel, (bias), (residual)]`: a convolution with its epilogue (optimizer only).
    FusedConv { conv: ConvAttrs, epilogue: Epilogue },
    /// `[a, b, (bias), (residual)]`: a matmul with its epilogue (optimizer only).
    FusedMatMul { transpose_a: bool, transpose_b: bool, epilogue: Epilogue },
    /// `[x...]`: an element-wise expression over broadcast inputs (optimizer only).
    Fused(FusedExpr),
    /// `[v, like]`: `v` broadcast with `like` (numpy broadcasting of both shapes; `like`'s values
    /// are not read).
    BroadcastTo,
    /// `[dy, like]`: the gradient of a mean over `axes` of `like`: `dy` (those axes kept as 1)
    /// broadcast to `like`'s shape, divided by the count averaged, known only at run time when
    /// an axis is the batch (training).
    MeanGrad { axes: Vec<usize> },
    /// `[indices, dy]`: the gradient of `Gather { axis }` with respect to its data, whose shape
    /// is `data_dims`: `dy`'s rows added into the rows the indices picked (training).
    GatherGrad { axis: usize, data_dims: Vec<usize> },
    /// `[x, dy]`: `dy · f'(x)` for the unary function `f` (training).
    UnaryGrad(UnaryOp),
    /// `[a, b, dy]`: the gradient of `op(a, b)` with respect to operand `wrt` (0 or 1), in the
    /// broadcast output shape (training).
    BinaryGrad { op: BinaryOp, wrt: usize },
    /// `[dy, kernel]`: the gradient of a convolution with respect to its input, whose
    /// non-batch dimensions are `input_dims` (training).
    ConvInputGrad { conv: ConvAttrs, input_dims: Vec<usize> },
    /// `[x, dy]`: the gradient of a convolution with respect to its kernel of shape
    /// `kernel_dims` (training).
    ConvFilterGrad { conv: ConvAttrs, kernel_dims: Vec<usize> },
    /// `[x, dy]`: the gradient of pooling with respect to its input (max: to the first maximum;
    /// average: spread over the window's cells inside the input) (training).
    PoolGrad(PoolAttrs),
    /// `[logits (..., C), labels]`: per-row cross-entropy of `softmax(logits)`; `labels` are class
    /// ids `(...)` when `sparse`, else probabilities `(..., C)` (training).
    SoftmaxCrossEntropy { sparse: bool },
    /// `[logits, labels, dloss (...)]`: the gradient of [`Op::SoftmaxCrossEntropy`] with respect
    /// to the logits, `(softmax(logits) − onehot) · dloss` (training).
    SoftmaxCrossEntropyGrad { sparse: bool },
    /// `[x, rest...]`: the inner op (a convolution, pooling or resize, written for
    /// channels-last tensors) applied to a channels-first `x` `(N, C, spatial...)`, giving a
    /// channels-first output: ONNX's layout kept as an attribute. The optimizer's first pass
    /// lowers it to the inner op between two transposes, which then cancel against their
    /// neighbours.
    ChannelsFirst(Box<Op>),
}

/// The op families. An op's whole story — its CPU kernel, its CUDA kernel and its gradient
/// rule — lives in a file named after its family in every stage: `kernels/src/<family>.rs`,
/// `codegen/src/cuda/<family>.rs` and `ir/src/grad/<family>.rs`. An op's backward ops
/// (`ConvInputGrad`, `PoolGrad`, …) belong to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpFamily {
    /// Unary and binary ops, bias adds, casts, the optimizer's fused expressions.
    Elementwise,
    /// Matrix products, plain and with a fused epilogue.
    MatMul,
    /// Convolutions of every kind, plain, fused, transposed, and their gradients.
    Conv,
    /// Max and average pooling and its gradient.
    Pool,
    /// Reductions, softmax and log-softmax.
    Reduce,
    /// Batch, layer, group and L2 normalization.
    Norm,
    /// Data movement: reshape, transpose, concat, pad, slice, repeat, tile, resize, gather,
    /// broadcast, layout changes.
    ShapeOps,
    /// Recurrent layers.
    Rnn,
    /// Losses computed as one op.
    Loss,
}

impl OpFamily {
    /// Every family.
    pub const ALL: [OpFamily; 9] = [
        OpFamily::Elementwise,
        OpFamily::MatMul,
        OpFamily::Conv,
        OpFamily::Pool,
        OpFamily::Reduce,
        OpFamily::Norm,
        OpFamily::ShapeOps,
        OpFamily::Rnn,
        OpFamily::Loss,
    ];

    /// The name of the family's file in every stage (without `.rs`).
    pub fn file_stem(self) -> &'static str {
        match self {
            OpFamily::Elementwise => "elementwise",
            OpFamily::MatMul => "matmul",
            OpFamily::Conv => "conv",
            OpFamily::Pool => "pool",
            OpFamily::Reduce => "reduce",
            OpFamily::Norm => "norm",
            OpFamily::ShapeOps => "shape_ops",
            OpFamily::Rnn => "rnn",
            OpFamily::Loss => "loss",
        }
    }
}

impl Op {
    /// The family whose files hold this op's kernels and gradient rule.
    pub fn family(&self) -> OpFamily {
        match self {
            Op::Unary(_)
            | Op::Binary(_)
            | Op::BiasAdd { .. }
            | Op::Cast { .. }
            | Op::Fused(_)
            | Op::UnaryGrad(_)
            | Op::BinaryGrad { .. } => OpFamily::Elementwise,
            Op::MatMul { .. } | Op::FusedMatMul { .. } => OpFamily::MatMul,
            Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::FusedConv { .. }
            | Op::ConvInputGrad { .. }
            | Op::ConvFilterGrad { .. } => OpFamily::Conv,
            Op::Pool(_) | Op::PoolGrad(_) => OpFamily::Pool,
            Op::Reduce { .. }
            | Op::ArgReduce { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::MeanGrad { .. } => OpFamily::Reduce,
            Op::BatchNorm { .. }
            | Op::Moments { .. }
            | Op::MomentsGrad { .. }
            | Op::BatchNormSums { .. }
            | Op::LayerNorm { .. }
            | Op::GroupNorm { .. }
            | Op::L2Normalize { .. } => OpFamily::Norm,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Slice { .. }
            | Op::RepeatInterleave { .. }
            | Op::Tile { .. }
            | Op::Resize { .. }
            | Op::Transfer { .. }
            | Op::Gather { .. }
            | Op::GatherGrad { .. }
            | Op::BroadcastTo
            | Op::ChannelsFirst(_) => OpFamily::ShapeOps,
            Op::Rnn(_) => OpFamily::Rnn,
            Op::SoftmaxCrossEntropy { .. } | Op::SoftmaxCrossEntropyGrad { .. } => OpFamily::Loss,
        }
    }

    /// The permutation from channels-first to channels-last for a tensor of rank `r`
    /// (`(N, C, s...)` → `(N, s..., C)`), and its inverse.
    pub fn channels_last_perm(r: usize) -> (Vec<usize>, Vec<usize>) {
        let to_last: Vec<usize> = std::iter::once(0).chain(2..r).chain(std::iter::once(1)).collect();
        let to_first: Vec<usize> = std::iter::once(0).chain(std::iter::once(r - 1)).chain(1..r - 1).collect();
        (to_last, to_first)
    }

    /// Whether the op maps each output element from the same-index elements of its
    /// (broadcast) inputs.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::BiasAdd { .. } | Op::Fused(_))
    }

    /// The op's name as printed in reports and errors.
    pub fn name(&self) -> String {
        match self {
            Op::Unary(u) => u.name().to_string(),
            Op::Binary(b) => b.name().to_string(),
            Op::MatMul { .. } => "MatMul".into(),
            Op::BiasAdd { .. } => "BiasAdd".into(),
            Op::Conv(c) => format!("Conv{}D", c.strides.len()),
            Op::ConvTranspose(c) => format!("ConvTranspose{}D", c.strides.len()),
            Op::Pool(p) => format!("{:?}Pool{}D", p.kind, p.window.len()),
            Op::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            Op::ArgReduce { max, .. } => if *max { "ArgMax" } else { "ArgMin" }.into(),
            Op::Softmax { .. } => "Softmax".into(),
            Op::LogSoftmax { .. } => "LogSoftmax".into(),
            Op::BatchNorm { .. } => "BatchNorm".into(),
            Op::Moments { .. } => "Moments".into(),
            Op::MomentsGrad { .. } => "MomentsGrad".into(),
            Op::BatchNormSums { .. } => "BatchNormSums".into(),
            Op::LayerNorm { .. } => "LayerNorm".into(),
            Op::GroupNorm { .. } => "GroupNorm".into(),
            Op::L2Normalize { .. } => "L2Normalize".into(),
            Op::Reshape { .. } => "Reshape".into(),
            Op::Transpose { .. } => "Transpose".into(),
            Op::Concat { .. } => "Concat".into(),
            Op::Pad { .. } => "Pad".into(),
            Op::Slice { .. } => "Slice".into(),
            Op::RepeatInterleave { .. } => "RepeatInterleave".into(),
            Op::Tile { .. } => "Tile".into(),
            Op::Resize { .. } => "Resize".into(),
            Op::Gather { .. } => "Gather".into(),
            Op::Cast { .. } => "Cast".into(),
            Op::Transfer { .. } => "Transfer".into(),
            Op::FusedConv { conv, .. } => format!("FusedConv{}D", conv.strides.len()),
            Op::FusedMatMul { .. } => "FusedMatMul".into(),
            Op::Fused(_) => "Fused".into(),
            Op::BroadcastTo => "BroadcastTo".into(),
            Op::MeanGrad { .. } => "MeanGrad".into(),
            Op::GatherGrad { .. } => "GatherGrad".into(),
            Op::UnaryGrad(u) => format!("{}_grad", u.name()),
            Op::BinaryGrad { op, wrt } => format!("{}_grad{wrt}", op.name()),
            Op::ConvInputGrad { conv, .. } => format!("Conv{}DInputGrad", conv.strides.len()),
            Op::ConvFilterGrad { conv, .. } => format!("Conv{}DFilterGrad", conv.strides.len()),
            Op::PoolGrad(p) => format!("{:?}Pool{}DGrad", p.kind, p.window.len()),
            Op::SoftmaxCrossEntropy { .. } => "SoftmaxCrossEntropy".into(),
            Op::SoftmaxCrossEntropyGrad { .. } => "SoftmaxCrossEntropyGrad".into(),
            Op::ChannelsFirst(inner) => format!("{}[NCHW]", inner.name()),
            Op::Rnn(r) => match r.kind {
                RnnKind::Simple => "SimpleRnn",
                RnnKind::Lstm => "Lstm",
                RnnKind::Gru { .. } => "Gru",
            }
            .into(),
        }
    }
}
