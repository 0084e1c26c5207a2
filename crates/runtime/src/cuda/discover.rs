//! GPU discovery through the CUDA driver, loaded at run time.

use super::nvrtc::nvrtc_version;
use cudarc::driver::{result, sys};
use std::path::PathBuf;

/// One visible GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    /// Ordinal among the visible devices (`CUDA_VISIBLE_DEVICES` applies).
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: usize,
    pub compute_capability: (i32, i32),
}

/// What this machine offers for CUDA, and why it cannot run on a GPU if it cannot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CudaStatus {
    pub gpus: Vec<GpuInfo>,
    /// `cuDriverGetVersion`, e.g. 13000.
    pub driver_version: Option<i32>,
    pub nvrtc_version: Option<(i32, i32)>,
    /// Set when there is no usable GPU: no driver library, no device, or no NVRTC.
    pub why_no_gpu: Option<String>,
}

/// Looks for the driver, the GPUs and NVRTC (in `nvrtc_dirs` if not on the loader's path).
/// Never panics: a missing library is a reason, not an error.
pub fn probe(nvrtc_dirs: &[PathBuf]) -> CudaStatus {
    let mut st = CudaStatus::default();
    let nvrtc = nvrtc_version(nvrtc_dirs);
    st.nvrtc_version = nvrtc.as_ref().ok().copied();
    // SAFETY: probing for a shared library by name has no preconditions; without it, no other
    // driver call is made.
    if !unsafe { sys::is_culib_present() } {
        st.why_no_gpu = Some("no CUDA driver library (libcuda.so) on this machine".into());
        return st;
    }
    if let Err(e) = result::init() {
        st.why_no_gpu = Some(format!("the CUDA driver did not initialise: {e:?}"));
        return st;
    }
    let mut v = 0;
    // SAFETY: the driver is loaded and initialised; the pointer is to a live local.
    if unsafe { sys::cuDriverGetVersion(&mut v) } == sys::CUresult::CUDA_SUCCESS {
        st.driver_version = Some(v);
    }
    let count = result::device::get_count().unwrap_or(0).max(0) as usize;
    for ordinal in 0..count {
        let Ok(dev) = result::device::get(ordinal as i32) else { continue };
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
        // SAFETY: `dev` is a valid device handle from the initialised driver.
        let memory_bytes = unsafe { result::device::total_mem(dev) }.unwrap_or(0);
        let attr = |a| {
            // SAFETY: as above.
            unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0)
        };
        let cc = (
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        );
        st.gpus.push(GpuInfo { ordinal, name, memory_bytes, compute_capability: cc });
    }
    if st.gpus.is_empty() {
        let vis =
            std::env::var("CUDA_VISIBLE_DEVICES").map(|v| format!(" (CUDA_VISIBLE_DEVICES={v})")).unwrap_or_default();
        st.why_no_gpu = Some(format!("the CUDA driver sees no device{vis}"));
    } else if let Err(e) = nvrtc {
        st.why_no_gpu = Some(format!("{} GPU(s) found but kernels cannot be compiled: {e}", st.gpus.len()));
    }
    st
}
