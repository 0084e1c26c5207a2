//! kerasc's runtime: devices, the CPU executor (a kernel for every op) and sessions.

pub mod cpu;
pub mod cuda;
mod device;
mod error;
mod executor;
mod planned;
pub mod training;

pub use device::{available_devices, cuda_status, Device, DeviceInfo};
pub use error::RuntimeError;
pub use executor::{check_inputs, Session, SessionOptions};
pub use planned::{PlannedSession, Planner};
