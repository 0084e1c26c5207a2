//! ONNX op type → lowering function: the same registry shape as the Keras frontend's.

mod math;
mod nn;
mod pool;
mod resize;
mod rnn;
mod shape;

use super::ctx::{Ctx, Lowered};
use super::proto::NodeProto;

/// A lowering: the node's inputs from `ctx`, IR nodes added, one value per output.
pub type LowerFn = fn(&mut Ctx, &NodeProto, &str) -> Lowered;

/// The lowering of an op type, or `None` when kerasc does not support it.
pub fn registry(op: &str) -> Option<LowerFn> {
    Some(match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" => math::binary,
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Reciprocal" | "Neg" | "Abs" | "Erf" | "Floor"
        | "Ceil" | "Sign" | "Sin" | "Cos" | "Softplus" | "Softsign" | "Elu" | "Selu" | "LeakyRelu" | "HardSigmoid"
        | "HardSwish" | "ThresholdedRelu" | "Gelu" | "Mish" | "Identity" | "Celu" => math::unary,
        "Clip" => math::clip,
        "PRelu" => math::prelu,
        "Dropout" => math::dropout,
        "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Equal" | "And" | "Or" | "Xor" | "Not" => math::logic,
        "Where" => math::where_,
        "Trilu" => math::trilu,
        "Mod" => math::mod_,
        "Cast" | "CastLike" => math::cast,
        "Constant" => math::constant,
        "MatMul" => nn::matmul,
        "Gemm" => nn::gemm,
        "Conv" => nn::conv,
        "ConvTranspose" => nn::conv_transpose,
        "MaxPool" | "AveragePool" => pool::pool,
        "GlobalAveragePool" | "GlobalMaxPool" => pool::global_pool,
        "BatchNormalization" => nn::batch_norm,
        "InstanceNormalization" => nn::instance_norm,
        "GroupNormalization" => nn::group_norm,
        "LayerNormalization" => nn::layer_norm,
        "LRN" => nn::lrn,
        "Softmax" | "LogSoftmax" => nn::softmax,
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceSumSquare" | "ReduceL2"
        | "ReduceL1" | "ReduceLogSum" | "ReduceLogSumExp" => nn::reduce,
        "DepthToSpace" | "SpaceToDepth" => nn::depth_space,
        "ArgMax" | "ArgMin" => nn::arg_reduce,
        "Transpose" => shape::transpose,
        "Reshape" => shape::reshape,
        "Flatten" => shape::flatten,
        "Squeeze" | "Unsqueeze" => shape::squeeze,
        "Concat" => shape::concat,
        "Split" => shape::split,
        "Slice" => shape::slice,
        "Gather" => shape::gather,
        "Pad" => shape::pad,
        "Resize" | "Upsample" => resize::resize,
        "Tile" => shape::tile,
        "Expand" => shape::expand,
        "ConstantOfShape" => shape::constant_of_shape,
        "Shape" | "Size" | "Range" => shape::folded_only,
        "LSTM" | "GRU" | "RNN" => rnn::rnn,
        _ => return None,
    })
}
