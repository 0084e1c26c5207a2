//! `kerasc devices`: the physical devices and the logical ones plans run on, printed as
//! `tf.config.list_physical_devices()` and `tf.config.list_logical_devices()` print them.

use crate::{Device, LogicalDevice, LogicalDevices};
use std::fmt::Write;

fn kind(d: Device) -> &'static str {
    if d.is_cpu() {
        "CPU"
    } else {
        "GPU"
    }
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// One line about a device: its threads, or its GPU, memory and compute capability.
pub fn describe(d: &LogicalDevice, devs: &LogicalDevices) -> String {
    match d.compute_capability {
        Some((a, b)) => {
            let limit = if d.memory_limit.is_some() { " (logical limit)" } else { "" };
            format!("{}, {:.1} GiB{limit}, compute capability {a}.{b}", d.name, gib(d.memory_bytes))
        }
        None if d.device.is_cpu() && !devs.list().iter().any(|x| !x.device.is_cpu()) => {
            match crate::runtime::cuda_status().why_no_gpu.as_deref() {
                Some(why) => format!("no GPU: {why}; {} thread(s)", d.threads),
                None => format!("{} thread(s)", d.threads),
            }
        }
        None => format!("{} thread(s)", d.threads),
    }
}

/// The listing of `kerasc devices`: physical devices, logical devices, the CUDA driver and NVRTC.
pub fn listing(devs: &LogicalDevices) -> String {
    let mut s = String::new();
    let st = crate::runtime::cuda_status();
    for d in crate::available_devices() {
        let detail = match d.compute_capability {
            Some((a, b)) => format!("{}, {:.1} GiB, compute capability {a}.{b}", d.name, gib(d.memory_bytes)),
            None => format!("{} thread(s)", num_cpus()),
        };
        let k = kind(d.device);
        let _ =
            writeln!(s, "PhysicalDevice(name='/physical_device:{k}:{}', device_type='{k}')  {detail}", index(d.device));
    }
    for d in devs.list() {
        let k = kind(d.device);
        let detail = match d.compute_capability {
            Some(_) => format!("on {}, {:.1} GiB", d.physical.to_string().replace("/GPU", "GPU"), gib(d.memory_bytes)),
            None => format!("{} thread(s)", d.threads),
        };
        let _ = writeln!(s, "LogicalDevice(name='/device:{k}:{}', device_type='{k}')  {detail}", index(d.device));
    }
    match st.driver_version {
        Some(v) => {
            let _ = writeln!(s, "CUDA driver {}.{}", v / 1000, (v % 1000) / 10);
        }
        None => s.push_str("CUDA driver: not found\n"),
    }
    match st.nvrtc_version {
        Some((a, b)) => {
            let _ = writeln!(s, "NVRTC {a}.{b}");
        }
        None => s.push_str("NVRTC: not found\n"),
    }
    if let Some(why) = &st.why_no_gpu {
        let _ = writeln!(s, "no GPU: {why}");
    }
    s
}

fn index(d: Device) -> usize {
    match d {
        Device::Cpu(i) | Device::Cuda(i) => i,
    }
}

/// The cores this process may run on.
fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Where compiled PTX is cached for a front end (the command line, the Python module):
/// `$XDG_CACHE_HOME/kerasc/ptx`, else `~/.cache/kerasc/ptx`, else under the temporary folder.
pub fn ptx_cache_dir() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kerasc").join("ptx")
}
