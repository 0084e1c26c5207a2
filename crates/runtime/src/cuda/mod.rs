//! The CUDA side of the runtime: finding the driver, the GPUs and NVRTC at run time (nothing
//! is linked: a machine without them still runs everything else), and compiling generated
//! kernels to PTX with a disk cache.

mod buffers;
mod discover;
mod nccl;
mod nvrtc;
mod session;
mod update;

pub use discover::{probe, CudaStatus, GpuInfo};
pub use nccl::{nccl_available, nccl_unique_id, Nccl, NcclWorkers};
pub use nvrtc::{compile_ptx, default_nvrtc_dirs, nvrtc_version, preload_nvrtc, PtxCache};
pub use session::{CudaOptions, CudaSession};
pub use update::TrainedState;
