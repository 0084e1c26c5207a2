//! Keras 3 `keras.ops` calls recorded as layers of a functional model (`module` is
//! `keras.src.ops.*`): `x / 255.0`, `ops.mean(x, axis=1)`, `x[:, -1]`, `ops.einsum(...)`. Their
//! attributes are in the layer config; their operands (tensors, Python numbers, constant tensors,
//! slices) in the call's positional arguments. Keras does not carry masks through them.

mod args;
mod linalg;
mod math;
mod reduce;
mod shape;

pub(super) use linalg::einsum;

use super::ctx::LowerFn;
use linalg::{einsum_layer, matmul};
use math::{binary, cast, clip, identity, like, logic, select, unary, unary_op};
use reduce::{reduce, softmax};
use serde_json::Value;
use shape::{concatenate, get_item, reshape, split, take, tile_repeat_flip, transpose};

/// The table of supported `keras.ops` classes.
pub(crate) fn registry(class: &str) -> Option<LowerFn> {
    Some(match class {
        "Add" | "Subtract" | "Multiply" | "Divide" | "TrueDivide" | "Power" | "Maximum" | "Minimum" | "FloorDivide"
        | "Mod" => binary,
        "NotEqual" | "Equal" | "Greater" | "GreaterEqual" | "Less" | "LessEqual" | "LogicalOr" | "LogicalAnd"
        | "LogicalNot" | "Any" | "All" => logic,
        "ConvertToTensor" | "StopGradient" | "Copy" => identity,
        "Mean" | "Sum" | "Max" | "Min" | "Amax" | "Amin" | "Prod" | "Var" | "Std" | "Norm" => reduce,
        "Reshape" | "ExpandDims" | "Squeeze" => reshape,
        "Transpose" | "Swapaxes" | "Moveaxis" => transpose,
        "Concatenate" | "Stack" => concatenate,
        "Split" => split,
        "GetItem" => get_item,
        "Take" => take,
        "Tile" | "Repeat" | "Flip" => tile_repeat_flip,
        "Clip" => clip,
        "Where" => select,
        "Cast" => cast,
        "ZerosLike" | "OnesLike" | "FullLike" => like,
        "Matmul" | "Dot" => matmul,
        "Einsum" => einsum_layer,
        "Softmax" | "LogSoftmax" => softmax,
        c if unary_op(c, &Value::Null).is_ok_and(|u| u.is_some()) => unary,
        _ => return None,
    })
}
