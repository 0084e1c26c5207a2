//! What the CUDA executor's parts share: device buffers by their bytes, kernel launches with
//! their pointer arguments, and the driver's errors as the runtime's.

use crate::RuntimeError;
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig};
use ir::{Tensor, TensorData};
use std::sync::Arc;

pub(super) fn err(what: &str, e: impl std::fmt::Debug) -> RuntimeError {
    RuntimeError::Cuda(format!("{what}: {e:?}"))
}

/// A device buffer of any element type, by its raw bytes.
pub(super) struct DevBuf {
    pub(super) bytes: CudaSlice<u8>,
}

impl DevBuf {
    pub(super) fn ptr(&self, stream: &Arc<CudaStream>) -> u64 {
        let (p, _sync) = self.bytes.device_ptr(stream);
        p
    }
}

pub(super) fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    match t.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::F16(v) | TensorData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// One kernel launch: the function, its dimensions and its pointer arguments.
pub(super) struct Launch {
    pub(super) func: CudaFunction,
    pub(super) cfg: LaunchConfig,
    pub(super) args: Vec<u64>,
}
