//! kerasc's runtime: devices, the CPU executors (naive and planned, over the `kernels` crate),
//! the CUDA session, and training steps.

pub mod cuda;
mod device;
mod error;
mod executor;
pub mod memory;
mod planned;
pub mod training;

pub use device::{available_devices, cuda_status, Device, DeviceInfo};
pub use error::RuntimeError;
pub use executor::{check_inputs, Layout, Session, SessionOptions};
pub use planned::{ArenaOutputs, PlannedSession};
