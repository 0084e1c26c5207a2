//! Logical devices: the CPU split into several, each with its own thread pool over its share of
//! the threads, and a physical GPU split into several with a memory limit each, numbered as
//! TensorFlow numbers them after `tf.config.set_logical_device_configuration` (the logical GPUs
//! of GPU 0 first, then those of GPU 1, ...).

use crate::cuda::{CudaOptions, CudaStatus};
use crate::memory::{human_bytes, parse_bytes};
use crate::{Device, RuntimeError, SessionOptions};
use std::path::PathBuf;
use std::sync::Arc;

impl Device {
    /// Checks that the device exists among this machine's physical devices (no logical split)
    /// and can run plans here.
    pub fn ensure_available(self) -> Result<Device, RuntimeError> {
        LogicalDevices::physical().get(self).map(|d| d.device)
    }

    /// The default device: the lowest-numbered visible GPU when one can run plans, else the CPU.
    pub fn default_device() -> Device {
        LogicalDevices::physical().default_device()
    }
}

/// How to split the physical devices, e.g. `cpu=2`, `gpu:0=2x20GiB`, `gpu:1=10GiB+30GiB`,
/// comma-separated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogicalSpec {
    /// How many logical CPU devices (`None`: one, the whole CPU).
    pub cpus: Option<usize>,
    /// Per physical GPU ordinal, the memory limit of each of its logical GPUs.
    pub gpus: Vec<(usize, Vec<usize>)>,
}

fn bad_spec(spec: &str, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Logical(format!("'{spec}': {message}"))
}

fn bad_split(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Logical(message.into())
}

impl LogicalSpec {
    /// Parses `cpu=N`, `gpu[:K]=NxSIZE` and `gpu[:K]=SIZE+SIZE+...` entries separated by commas
    /// (sizes as [`parse_bytes`] reads them).
    pub fn parse(spec: &str) -> Result<LogicalSpec, RuntimeError> {
        let mut out = LogicalSpec::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kind, value) = entry
                .split_once('=')
                .ok_or_else(|| bad_spec(spec, format!("'{entry}' has no '=' (cpu=2, gpu:0=2x20GiB)")))?;
            let kind = kind.trim().to_ascii_lowercase();
            let value = value.trim();
            if kind == "cpu" {
                let n: usize = value.parse().map_err(|_| bad_spec(spec, format!("cpu={value}: not a count")))?;
                if n == 0 {
                    return Err(bad_spec(spec, "cpu=0: at least one CPU device is needed"));
                }
                if out.cpus.replace(n).is_some() {
                    return Err(bad_spec(spec, "the CPU is split twice"));
                }
                continue;
            }
            let ordinal = match kind.as_str() {
                "gpu" | "cuda" => 0,
                k => k
                    .strip_prefix("gpu:")
                    .or_else(|| k.strip_prefix("cuda:"))
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| bad_spec(spec, format!("'{kind}': expected cpu, gpu or gpu:K")))?,
            };
            let size = |s: &str| parse_bytes(s).map_err(|e| bad_spec(spec, format!("gpu:{ordinal}: {e}")));
            let limits = match value.split_once(['x', 'X']).filter(|(n, _)| n.trim().parse::<usize>().is_ok()) {
                Some((n, each)) => {
                    let n: usize = n.trim().parse().unwrap_or(0);
                    if n == 0 {
                        return Err(bad_spec(spec, format!("gpu:{ordinal}: at least one logical GPU is needed")));
                    }
                    vec![size(each)?; n]
                }
                None => value.split('+').map(size).collect::<Result<_, _>>()?,
            };
            if out.gpus.iter().any(|(o, _)| *o == ordinal) {
                return Err(bad_spec(spec, format!("GPU {ordinal} is split twice")));
            }
            out.gpus.push((ordinal, limits));
        }
        Ok(out)
    }
}

/// One device plans can be placed on.
#[derive(Clone)]
pub struct LogicalDevice {
    /// Its name, as TensorFlow numbers logical devices.
    pub device: Device,
    /// The physical device it is part of: `/CPU:0`, or the GPU by visible ordinal.
    pub physical: Device,
    pub name: String,
    /// CPU: the threads of its pool.
    pub threads: usize,
    /// GPU: the memory it may use (its logical limit, else the whole device's).
    pub memory_bytes: usize,
    /// GPU: the logical device's memory limit, when the GPU is split.
    pub memory_limit: Option<usize>,
    pub compute_capability: Option<(i32, i32)>,
    /// CPU: its own pool when the CPU is split; `None`: the process's global pool.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for LogicalDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalDevice")
            .field("device", &self.device)
            .field("physical", &self.physical)
            .field("threads", &self.threads)
            .field("memory_limit", &self.memory_limit)
            .finish()
    }
}

impl LogicalDevice {
    /// The most bytes a plan may take on this device: the smaller of `memory_limit` and the
    /// device's own limit (`None`: neither is set).
    pub fn limit(&self, memory_limit: Option<usize>) -> Option<usize> {
        match (memory_limit, self.memory_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Options of a CPU session on this device, under `memory_limit` as well as the device's own.
    pub fn session_options(&self, memory_limit: Option<usize>) -> SessionOptions {
        SessionOptions { device: Some(self.device), memory_limit: self.limit(memory_limit), pool: self.pool.clone() }
    }

    /// Options of a CUDA session on this device (its physical GPU, under its memory limit and
    /// `memory_limit`).
    pub fn cuda_options(&self, cache_dir: PathBuf, memory_limit: Option<usize>) -> Option<CudaOptions> {
        match self.physical {
            Device::Cuda(ordinal) => {
                Some(CudaOptions { memory_limit: self.limit(memory_limit), ..CudaOptions::new(ordinal, cache_dir) })
            }
            Device::Cpu(_) => None,
        }
    }

    /// The ordinal of the physical GPU this device runs on (`None`: a CPU device).
    pub fn gpu_ordinal(&self) -> Option<usize> {
        match self.physical {
            Device::Cuda(o) => Some(o),
            Device::Cpu(_) => None,
        }
    }

    /// This device running on `pool` (a CPU device; a GPU's host work keeps the caller's).
    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> LogicalDevice {
        if self.device.is_cpu() {
            self.threads = pool.current_num_threads();
            self.pool = Some(pool);
        }
        self
    }

    /// The CPU thread pool of this device (`None`: the global one).
    pub fn pool(&self) -> Option<&Arc<rayon::ThreadPool>> {
        self.pool.as_ref()
    }

    /// Runs `f` on this device's thread pool (on the caller's pool when it has none).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// The devices of this process: every physical device, or its logical split.
#[derive(Clone, Debug)]
pub struct LogicalDevices {
    devices: Vec<LogicalDevice>,
    /// Why no GPU can run plans here, if none can.
    why_no_gpu: Option<String>,
}

impl LogicalDevices {
    /// One logical device per physical one: the CPU on the global thread pool, then every
    /// usable GPU.
    pub fn physical() -> LogicalDevices {
        let threads = rayon::current_num_threads();
        match Self::with_status(&LogicalSpec::default(), threads, crate::cuda_status()) {
            Ok(d) => d,
            // An empty spec splits nothing and one CPU device needs one thread: this cannot fail.
            Err(e) => LogicalDevices { devices: Vec::new(), why_no_gpu: Some(e.to_string()) },
        }
    }

    /// The split `spec` of this machine's devices, the CPU's `threads` shared among its logical
    /// devices.
    pub fn new(spec: &LogicalSpec, threads: usize) -> Result<LogicalDevices, RuntimeError> {
        Self::with_status(spec, threads, crate::cuda_status())
    }

    /// [`LogicalDevices::new`] on the GPUs `status` describes.
    pub fn with_status(
        spec: &LogicalSpec,
        threads: usize,
        status: &CudaStatus,
    ) -> Result<LogicalDevices, RuntimeError> {
        let threads = threads.max(1);
        let cpus = spec.cpus.unwrap_or(1);
        if cpus > threads {
            return Err(bad_split(format!(
                "{cpus} logical CPU devices need at least as many threads; this process has {threads}"
            )));
        }
        let mut devices = Vec::new();
        for i in 0..cpus {
            let share = threads / cpus + usize::from(i < threads % cpus);
            let pool = if cpus == 1 {
                None
            } else {
                let p = rayon::ThreadPoolBuilder::new()
                    .num_threads(share)
                    .thread_name(move |t| format!("kerasc-cpu{i}-{t}"))
                    .build()
                    .map_err(|e| bad_split(format!("cannot start the threads of /CPU:{i}: {e}")))?;
                Some(Arc::new(p))
            };
            devices.push(LogicalDevice {
                device: Device::Cpu(i),
                physical: Device::CPU,
                name: "CPU".into(),
                threads: share,
                memory_bytes: 0,
                memory_limit: None,
                compute_capability: None,
                pool,
            });
        }
        let gpus = if status.why_no_gpu.is_none() { status.gpus.as_slice() } else { &[] };
        for (ordinal, _) in &spec.gpus {
            if !gpus.iter().any(|g| g.ordinal == *ordinal) {
                let why = status
                    .why_no_gpu
                    .clone()
                    .unwrap_or_else(|| format!("this machine has {} visible GPU(s)", gpus.len()));
                return Err(bad_split(format!("GPU {ordinal} cannot be split: {why}")));
            }
        }
        let mut next = 0;
        for g in gpus {
            let limits: Vec<Option<usize>> = match spec.gpus.iter().find(|(o, _)| *o == g.ordinal) {
                Some((_, l)) => {
                    let total = l.iter().fold(0usize, |a, &b| a.saturating_add(b));
                    if total > g.memory_bytes {
                        return Err(bad_split(format!(
                            "the logical GPUs of GPU {} ask for {} in all; it has {}",
                            g.ordinal,
                            human_bytes(total),
                            human_bytes(g.memory_bytes)
                        )));
                    }
                    l.iter().map(|&b| Some(b)).collect()
                }
                None => vec![None],
            };
            for limit in limits {
                devices.push(LogicalDevice {
                    device: Device::Cuda(next),
                    physical: Device::Cuda(g.ordinal),
                    name: g.name.clone(),
                    threads: 0,
                    memory_bytes: limit.unwrap_or(g.memory_bytes),
                    memory_limit: limit,
                    compute_capability: Some(g.compute_capability),
                    pool: None,
                });
                next += 1;
            }
        }
        Ok(LogicalDevices { devices, why_no_gpu: status.why_no_gpu.clone() })
    }

    /// Every device, CPUs first.
    pub fn list(&self) -> &[LogicalDevice] {
        &self.devices
    }

    /// Whether the CPU or a GPU is split.
    pub fn is_split(&self) -> bool {
        self.devices.iter().any(|d| d.pool.is_some() || d.memory_limit.is_some())
    }

    /// The device named `device`, or an error naming what there is.
    pub fn get(&self, device: Device) -> Result<&LogicalDevice, RuntimeError> {
        if let Some(d) = self.devices.iter().find(|d| d.device == device) {
            return Ok(d);
        }
        let reason = match device {
            Device::Cpu(_) => {
                let n = self.count(Device::is_cpu);
                if n == 1 {
                    "there is one CPU device, /CPU:0 (split it with --logical-devices cpu=N)".to_string()
                } else {
                    format!("there are {n} logical CPU devices")
                }
            }
            Device::Cuda(_) => match &self.why_no_gpu {
                Some(why) => why.clone(),
                None => format!("this machine has {} GPU device(s)", self.count(|d| !d.is_cpu())),
            },
        };
        Err(RuntimeError::Unavailable { requested: device.to_string(), reason, available: self.names() })
    }

    fn count(&self, pick: impl Fn(Device) -> bool) -> usize {
        self.devices.iter().filter(|d| pick(d.device)).count()
    }

    /// Every device's name, comma-separated.
    pub fn names(&self) -> String {
        self.devices.iter().map(|d| d.device.to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The lowest GPU when there is one, else `/CPU:0`.
    pub fn default_device(&self) -> Device {
        self.devices.iter().map(|d| d.device).find(|d| !d.is_cpu()).unwrap_or(Device::CPU)
    }

    /// The replicas of a strategy: `all` (every GPU, else every CPU device, as
    /// `tf.distribute.MirroredStrategy()` picks them) or comma-separated device names, each
    /// checked to exist and named once.
    pub fn select(&self, spec: &str) -> Result<Vec<Device>, RuntimeError> {
        if spec.trim().eq_ignore_ascii_case("all") {
            let gpus: Vec<Device> = self.devices.iter().map(|d| d.device).filter(|d| !d.is_cpu()).collect();
            return Ok(if gpus.is_empty() { self.devices.iter().map(|d| d.device).collect() } else { gpus });
        }
        let mut out: Vec<Device> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let d = self.get(Device::parse(name)?)?.device;
            if out.contains(&d) {
                return Err(RuntimeError::Unavailable {
                    requested: name.to_string(),
                    reason: "named twice among the replicas".into(),
                    available: self.names(),
                });
            }
            out.push(d);
        }
        if out.is_empty() {
            return Err(RuntimeError::BadDevice(spec.to_string()));
        }
        if out.iter().any(|d| d.is_cpu()) && out.iter().any(|d| !d.is_cpu()) {
            return Err(RuntimeError::Unavailable {
                requested: spec.to_string(),
                reason: "replicas are all CPU devices or all GPU devices".into(),
                available: self.names(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::GpuInfo;

    fn two_gpus() -> CudaStatus {
        let gpu =
            |ordinal| GpuInfo { ordinal, name: "H200".into(), memory_bytes: 140 << 30, compute_capability: (9, 0) };
        CudaStatus { gpus: vec![gpu(0), gpu(1)], ..Default::default() }
    }

    #[test]
    fn specs_parse_and_nonsense_is_refused() {
        let s = LogicalSpec::parse("cpu=2, gpu:0=2x20GiB,gpu:1=10GiB+30GiB").unwrap();
        assert_eq!(s.cpus, Some(2));
        assert_eq!(s.gpus, vec![(0, vec![20 << 30, 20 << 30]), (1, vec![10 << 30, 30 << 30])]);
        assert_eq!(LogicalSpec::parse("gpu=1GiB").unwrap().gpus, vec![(0, vec![1 << 30])]);
        for bad in
            ["cpu", "cpu=0", "cpu=x", "tpu=2", "gpu:0=0x1GiB", "gpu:0=2xfoo", "cpu=2,cpu=3", "gpu=1GiB,gpu:0=1GiB"]
        {
            assert!(LogicalSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logical_gpus_are_numbered_as_tensorflow_numbers_them() {
        let spec = LogicalSpec::parse("cpu=2,gpu:0=2x20GiB").unwrap();
        let d = LogicalDevices::with_status(&spec, 4, &two_gpus()).unwrap();
        let names: Vec<String> = d.list().iter().map(|d| d.device.to_string()).collect();
        assert_eq!(names, ["/CPU:0", "/CPU:1", "/GPU:0", "/GPU:1", "/GPU:2"]);
        let g1 = d.get(Device::Cuda(1)).unwrap();
        assert_eq!((g1.physical, g1.memory_limit), (Device::Cuda(0), Some(20 << 30)));
        let g2 = d.get(Device::Cuda(2)).unwrap();
        assert_eq!((g2.physical, g2.memory_limit), (Device::Cuda(1), None));
        assert_eq!(
            g1.cuda_options(PathBuf::new(), Some(30 << 30)).map(|o| (o.ordinal, o.memory_limit)),
            Some((0, Some(20 << 30)))
        );
        assert_eq!(d.list()[0].threads + d.list()[1].threads, 4);
        assert_eq!(d.select("all").unwrap(), [Device::Cuda(0), Device::Cuda(1), Device::Cuda(2)]);
        assert_eq!(d.select("/GPU:1,gpu:0").unwrap(), [Device::Cuda(1), Device::Cuda(0)]);
        for bad in ["/GPU:1,/GPU:1", "/CPU:0,/GPU:0", "/GPU:3", ""] {
            assert!(d.select(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn impossible_splits_are_clear_errors() {
        let e = LogicalDevices::with_status(&LogicalSpec::parse("cpu=3").unwrap(), 2, &CudaStatus::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 logical CPU devices") && e.contains("2"), "{e}");
        let e = LogicalDevices::with_status(&LogicalSpec::parse("gpu:0=2x100GiB").unwrap(), 2, &two_gpus())
            .unwrap_err()
            .to_string();
        assert!(e.contains("200.00 GiB") && e.contains("140.00 GiB"), "{e}");
        let none = CudaStatus { why_no_gpu: Some("no CUDA driver".into()), ..Default::default() };
        let e =
            LogicalDevices::with_status(&LogicalSpec::parse("gpu=1GiB").unwrap(), 2, &none).unwrap_err().to_string();
        assert!(e.contains("no CUDA driver"), "{e}");
        let e = LogicalDevices::with_status(&LogicalSpec::parse("gpu:2=1GiB").unwrap(), 2, &two_gpus())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 visible GPU"), "{e}");
    }

    #[test]
    fn each_logical_cpu_runs_on_its_own_pool_of_its_share() {
        let d = LogicalDevices::with_status(&LogicalSpec::parse("cpu=2").unwrap(), 3, &CudaStatus::default()).unwrap();
        let counts: Vec<usize> = d.list().iter().map(|c| c.install(rayon::current_num_threads)).collect();
        assert_eq!(counts, [2, 1]);
        let names: Vec<String> =
            d.list().iter().map(|c| c.install(|| std::thread::current().name().unwrap_or("").to_string())).collect();
        assert!(names[0].starts_with("kerasc-cpu0-") && names[1].starts_with("kerasc-cpu1-"), "{names:?}");
        let e = d.get(Device::Cpu(2)).unwrap_err().to_string();
        assert!(e.contains("2 logical CPU devices") && e.contains("/CPU:1"), "{e}");
        assert_eq!(d.select("all").unwrap(), [Device::Cpu(0), Device::Cpu(1)]);
    }
}
