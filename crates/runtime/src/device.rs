use crate::cuda::CudaStatus;
use crate::RuntimeError;
use std::fmt;
use std::sync::OnceLock;

/// Where a plan runs: a logical device by kind and index, as TensorFlow names them (`/CPU:0`,
/// `/GPU:1`). Without logical devices ([`crate::LogicalDevices`]) there is one CPU, `/CPU:0`,
/// and the GPUs are the visible ones by ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu(usize),
    Cuda(usize),
}

impl Device {
    /// The first CPU device, `/CPU:0` (the whole CPU when it is not split).
    pub const CPU: Device = Device::Cpu(0);

    /// Whether this is a CPU device.
    pub fn is_cpu(self) -> bool {
        matches!(self, Device::Cpu(_))
    }
}

impl Device {
    /// Parses TensorFlow's device strings (`/GPU:0`, `/device:CPU:0`,
    /// `/job:localhost/replica:0/task:0/device:GPU:1`) and the short forms `cpu`, `gpu`, `gpu:1`,
    /// `cuda:1`, case-insensitively.
    pub fn parse(s: &str) -> Result<Device, RuntimeError> {
        let bad = || RuntimeError::BadDevice(s.to_string());
        let lower = s.trim().to_ascii_lowercase();
        let last = if lower.starts_with('/') {
            let parts: Vec<&str> = lower.split('/').filter(|p| !p.is_empty()).collect();
            for p in &parts[..parts.len().saturating_sub(1)] {
                let ok = p.starts_with("job:") || p.starts_with("replica:") || p.starts_with("task:");
                if !ok {
                    return Err(bad());
                }
            }
            let last = parts.last().ok_or_else(bad)?;
            last.strip_prefix("device:").unwrap_or(last).to_string()
        } else {
            lower
        };
        let (kind, idx) = match last.split_once(':') {
            Some((k, i)) => (k.to_string(), Some(i.parse::<usize>().map_err(|_| bad())?)),
            None => (last.clone(), None),
        };
        match kind.as_str() {
            "cpu" => Ok(Device::Cpu(idx.unwrap_or(0))),
            "gpu" | "cuda" => Ok(Device::Cuda(idx.unwrap_or(0))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu(i) => write!(f, "/CPU:{i}"),
            Device::Cuda(i) => write!(f, "/GPU:{i}"),
        }
    }
}

/// One entry of [`available_devices`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub device: Device,
    pub name: String,
    /// CPU worker threads (0 for a GPU).
    pub threads: usize,
    /// GPU memory in bytes (0 for the CPU).
    pub memory_bytes: usize,
    /// GPU compute capability.
    pub compute_capability: Option<(i32, i32)>,
}

/// What this machine offers for CUDA, probed once per process (NVRTC searched in
/// [`crate::cuda::default_nvrtc_dirs`] besides the loader's path).
pub fn cuda_status() -> &'static CudaStatus {
    static STATUS: OnceLock<CudaStatus> = OnceLock::new();
    STATUS.get_or_init(|| crate::cuda::probe(&crate::cuda::default_nvrtc_dirs()))
}

/// The physical devices plans can run on here: the CPU, then every usable GPU.
pub fn available_devices() -> Vec<DeviceInfo> {
    let mut v = vec![DeviceInfo {
        device: Device::CPU,
        name: "CPU".into(),
        threads: rayon::current_num_threads(),
        memory_bytes: 0,
        compute_capability: None,
    }];
    let st = cuda_status();
    if st.why_no_gpu.is_none() {
        for g in &st.gpus {
            v.push(DeviceInfo {
                device: Device::Cuda(g.ordinal),
                name: g.name.clone(),
                threads: 0,
                memory_bytes: g.memory_bytes,
                compute_capability: Some(g.compute_capability),
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tensorflow_and_short_names() {
        assert_eq!(Device::parse("/GPU:1").unwrap(), Device::Cuda(1));
        assert_eq!(Device::parse("/device:GPU:0").unwrap(), Device::Cuda(0));
        assert_eq!(Device::parse("/job:localhost/replica:0/task:0/device:GPU:2").unwrap(), Device::Cuda(2));
        assert_eq!(Device::parse("/CPU:0").unwrap(), Device::CPU);
        assert_eq!(Device::parse("/device:cpu:0").unwrap(), Device::CPU);
        assert_eq!(Device::parse("cpu").unwrap(), Device::CPU);
        assert_eq!(Device::parse("/CPU:1").unwrap(), Device::Cpu(1));
        assert_eq!(Device::parse("gpu").unwrap(), Device::Cuda(0));
        assert_eq!(Device::parse("CUDA:3").unwrap(), Device::Cuda(3));
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["", "tpu:0", "/GPU:x", "/foo/device:GPU:0", "gpu:-1"] {
            assert!(Device::parse(s).is_err(), "{s}");
        }
        let e = Device::Cpu(1).ensure_available().unwrap_err().to_string();
        assert!(e.contains("/CPU:1") && e.contains("--logical-devices"), "{e}");
    }

    #[test]
    fn a_gpu_that_is_not_there_is_a_clear_error() {
        let n = cuda_status().gpus.len();
        let e = Device::Cuda(n + 7).ensure_available().unwrap_err().to_string();
        assert!(e.contains(&format!("/GPU:{}", n + 7)) && e.contains("/CPU:0"), "{e}");
        if cuda_status().why_no_gpu.is_some() {
            assert_eq!(Device::default_device(), Device::CPU);
            let why = Device::Cuda(0).ensure_available().unwrap_err().to_string();
            assert!(why.contains(cuda_status().why_no_gpu.as_deref().unwrap_or("?")), "{why}");
        }
    }
}
