//! Values during ONNX import: an IR value, or a small tensor known at import (numbers, or
//! multiples of the symbolic batch size).

use ir::{DType, Tensor, TensorData, ValueId};

/// Largest tensor kept as known data (bigger constants are weights in the graph).
pub const MAX_KNOWN: usize = 4096;

/// One element: a number, or a multiple of the batch size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum S {
    N(f64),
    B(f64),
}

/// `[2, N, 16]`-style text of a symbolic shape.
pub fn show(s: &[S]) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|d| match d {
            S::N(n) => format!("{n}"),
            S::B(k) if *k == 1.0 => "None".into(),
            S::B(k) => format!("{k}*None"),
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// A tensor known at import.
#[derive(Debug, Clone, PartialEq)]
pub struct KVal {
    /// The ONNX-side dtype (bool kept as bool).
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<S>,
}

pub(crate) fn sym(m: &str) -> String {
    format!("{m} of a batch-dependent size cannot be computed at load time")
}

impl KVal {
    pub fn from_tensor(t: &Tensor) -> KVal {
        KVal { dtype: t.dtype(), shape: t.shape().to_vec(), data: t.to_f64_vec().into_iter().map(S::N).collect() }
    }

    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<S>) -> KVal {
        KVal { dtype, shape, data }
    }

    pub fn scalar_of(&self) -> Option<S> {
        (self.data.len() == 1).then(|| self.data[0])
    }

    /// The numbers, or an error naming `what` when the batch is involved.
    pub fn nums(&self, what: &str) -> Result<Vec<f64>, String> {
        self.data.iter().map(|s| if let S::N(x) = s { Ok(*x) } else { Err(sym(what)) }).collect()
    }

    pub fn to_tensor(&self) -> Result<Tensor, String> {
        let v = self.nums("a constant")?;
        let data = match self.dtype {
            DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I64 => TensorData::I64(v.iter().map(|&x| x as i64).collect()),
            DType::Bool => TensorData::Bool(v.iter().map(|&x| x != 0.0).collect()),
            DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
            _ => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        };
        Tensor::new(self.shape.clone(), data).map_err(|e| e.to_string())
    }

    pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }
}

/// A value during import.
#[derive(Debug, Clone)]
pub enum Val {
    /// Computed at run time (or a large weight): an IR value.
    Ir(ValueId),
    /// Known at import: a small constant or a shape computation (the batch symbolic).
    Known(KVal),
    /// A constant filling a shape that involves the batch (`Expand`/`ConstantOfShape` of one).
    Splat { value: f64, dtype: DType, shape: Vec<S> },
}
