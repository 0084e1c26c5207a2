//! kerasc's runtime: devices, the CPU executors (naive and planned, over the `kernels` crate),
//! the CUDA session, and training steps.

pub mod collective;
pub mod cuda;
mod device;
mod error;
mod executor;
mod logical;
pub mod memory;
pub mod placement;
mod planned;
pub mod strategy;
pub mod training;

pub use device::{available_devices, cuda_status, Device, DeviceInfo};
pub use error::RuntimeError;
pub use executor::{check_inputs, Layout, Session, SessionOptions};
pub use logical::{LogicalDevice, LogicalDevices, LogicalSpec};
pub use planned::{ArenaOutputs, PlannedSession};
