//! numpy arrays in and out: any array-like to kerasc's host arrays (numbers as tensors, strings
//! for the host-stage text layers), and tensors back to numpy arrays that take over the buffer.

use kerasc::ir::{DType, Tensor, TensorData};
use kerasc::npy::Array;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{PyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::error;

/// `obj` (a numpy array, a list, a scalar) as a host array. float64 and float16 become float32
/// (as Keras converts them for a float32 model), the integer and boolean kinds keep or widen
/// their type (the graph input's dtype is applied later, [`kerasc::host::as_input_dtypes`]);
/// unicode, bytes and object arrays are strings. `what` names the array in errors.
pub(crate) fn to_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Array> {
    to_array_in(obj, what, None)
}

/// Buffers of float32 inputs a model has run on, kept for its next call: copying a large input
/// into memory already touched costs a third of what a fresh allocation does (whose pages the
/// kernel must fault in and zero each time).
#[derive(Default)]
pub(crate) struct Spare(std::sync::Mutex<Vec<Vec<f32>>>);

impl Spare {
    /// How many buffers are kept at most (several threads may be calling the model).
    const KEPT: usize = 8;

    fn take(&self) -> Vec<f32> {
        self.0.lock().map(|mut v| v.pop()).ok().flatten().unwrap_or_default()
    }

    /// Keeps the float32 buffers of tensors a run is done with.
    pub(crate) fn give(&self, tensors: Vec<Tensor>) {
        let Ok(mut kept) = self.0.lock() else { return };
        for t in tensors {
            if kept.len() >= Self::KEPT {
                break;
            }
            if let TensorData::F32(v) = t.into_data() {
                kept.push(v);
            }
        }
    }
}

/// [`to_array`], copying a float32 array into a buffer from `spare` when one is given.
pub(crate) fn to_array_in(obj: &Bound<'_, PyAny>, what: &str, spare: Option<&Spare>) -> PyResult<Array> {
    let py = obj.py();
    // The common case first, with no call into Python: a C-ordered float32 array.
    if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        if a.is_c_contiguous() {
            let a = a.try_readonly().map_err(|e| error(py, "InputError", format!("{what}: {e}")))?;
            let src = a.as_slice().map_err(|e| error(py, "InputError", format!("{what}: {e}")))?;
            let mut v = spare.map(Spare::take).unwrap_or_default();
            v.clear();
            v.extend_from_slice(src);
            let data = TensorData::F32(v);
            return Tensor::new(a.shape().to_vec(), data)
                .map(Array::Tensor)
                .map_err(|e| error(py, "InputError", format!("{what}: {e}")));
        }
    }
    let arr = py.import("numpy")?.call_method1("ascontiguousarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    if matches!(kind.as_str(), "U" | "S" | "O") {
        let items = arr.call_method0("ravel")?.call_method0("tolist")?;
        let mut values = Vec::new();
        for item in items.try_iter()? {
            let item = item?;
            let s = match item.extract::<String>() {
                Ok(s) => s,
                Err(_) => match item.extract::<Vec<u8>>() {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(_) => {
                        return Err(error(
                            py,
                            "InputError",
                            format!("{what}: holds a {}, not a string", item.get_type().name()?),
                        ))
                    }
                },
            };
            values.push(s);
        }
        return Ok(Array::Strings(shape, values));
    }
    macro_rules! read {
        ($t:ty, $wrap:expr) => {
            if let Ok(a) = arr.extract::<PyReadonlyArrayDyn<'_, $t>>() {
                let v: Vec<$t> = match a.as_slice() {
                    Ok(s) => s.to_vec(),
                    Err(_) => a.as_array().iter().copied().collect(),
                };
                let data = ($wrap)(v);
                return Tensor::new(shape, data)
                    .map(Array::Tensor)
                    .map_err(|e| error(py, "InputError", format!("{what}: {e}")));
            }
        };
    }
    read!(f32, TensorData::F32);
    read!(f64, |v: Vec<f64>| TensorData::F32(v.into_iter().map(|x| x as f32).collect()));
    read!(i32, TensorData::I32);
    read!(i64, TensorData::I64);
    read!(u8, TensorData::U8);
    read!(bool, TensorData::Bool);
    read!(i8, |v: Vec<i8>| TensorData::I32(v.into_iter().map(i32::from).collect()));
    read!(i16, |v: Vec<i16>| TensorData::I32(v.into_iter().map(i32::from).collect()));
    read!(u16, |v: Vec<u16>| TensorData::I32(v.into_iter().map(i32::from).collect()));
    read!(u32, |v: Vec<u32>| TensorData::I64(v.into_iter().map(i64::from).collect()));
    read!(u64, |v: Vec<u64>| TensorData::I64(v.into_iter().map(|x| x as i64).collect()));
    if kind == "f" {
        // float16 (and any other float width numpy has): through float32.
        let as32 = arr.call_method1("astype", ("float32",))?;
        return to_array(&as32, what);
    }
    let dtype = arr.getattr("dtype")?.str()?.to_string();
    Err(error(py, "InputError", format!("{what}: arrays of {dtype} are not model inputs (numbers or strings are)")))
}

/// A tensor as a numpy array of its shape; float32 and the integer types move their buffer into
/// numpy (no copy), half floats become float32.
pub(crate) fn to_numpy(py: Python<'_>, t: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let shape = t.shape().to_vec();
    let half = matches!(t.dtype(), DType::F16 | DType::BF16);
    let data = if half { TensorData::F32(t.to_f32_vec()) } else { t.into_data() };
    // The vector becomes the array's buffer as it is, shaped in Rust (no call into Python).
    fn shaped<'py, T: numpy::Element>(py: Python<'py>, shape: Vec<usize>, v: Vec<T>) -> PyResult<Bound<'py, PyAny>> {
        let a = ArrayD::from_shape_vec(IxDyn(&shape), v)
            .map_err(|e| error(py, "ExecutionError", format!("an output does not fit its shape: {e}")))?;
        Ok(PyArray::from_owned_array(py, a).into_any())
    }
    match data {
        TensorData::F32(v) => shaped(py, shape, v),
        TensorData::I32(v) => shaped(py, shape, v),
        TensorData::I64(v) => shaped(py, shape, v),
        TensorData::U8(v) => shaped(py, shape, v),
        TensorData::Bool(v) => shaped(py, shape, v),
        // Converted to float32 above.
        TensorData::F16(v) | TensorData::BF16(v) => shaped(py, shape, v),
    }
}

/// The numbers of rows (first axis) of a host array.
pub(crate) fn rows(a: &Array) -> Option<usize> {
    match a {
        Array::Tensor(t) => t.shape().first().copied(),
        Array::Strings(s, _) => s.first().copied(),
    }
}
