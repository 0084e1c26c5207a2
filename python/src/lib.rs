//! `kerasc` for Python: the extension module `kerasc._kerasc`, re-exported by
//! `kerasc/__init__.py`. Every call goes through the same crates as the `kerasc` command line.

mod convert;
mod errors;
mod model;
mod runner;
mod train;

use errors::error;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;

/// Loads a `.keras`, `.h5` or `.onnx` model and compiles it for `device` (TensorFlow's names:
/// `/GPU:0`, `/device:CPU:0`, `cpu`, `gpu:1`; default: the lowest GPU, else the CPU, as the
/// command line chooses). `precision` is the GPU's matrix arithmetic (`fp32`, `tf32`, `bf16`,
/// `fp16`); `optimize=False` runs the file's graph op by op; `threads` gives the model a pool
/// of its own (default: every core).
#[pyfunction]
#[pyo3(signature = (path, device=None, precision="fp32", optimize=true, threads=None))]
fn load(
    py: Python<'_>,
    path: PathBuf,
    device: Option<String>,
    precision: &str,
    optimize: bool,
    threads: Option<usize>,
) -> PyResult<model::Model> {
    if let Some(dir) = std::env::var_os("KERASC_NVRTC_DIR") {
        kerasc::runtime::cuda::preload_nvrtc(&[PathBuf::from(dir)]);
    }
    let precision = kerasc::codegen::cuda::Precision::parse(precision).ok_or_else(|| {
        PyValueError::new_err(format!("unknown precision '{precision}': one of fp32, tf32, bf16, fp16"))
    })?;
    let dev = crate::errors::pick_device(py, device.as_deref())?;
    if precision != kerasc::codegen::cuda::Precision::Fp32 && dev.device.is_cpu() {
        return Err(PyValueError::new_err(format!(
            "precision '{}' runs on a GPU's tensor cores; on the CPU kerasc computes in fp32",
            precision.name()
        )));
    }
    let pool = match threads {
        None => None,
        Some(0) => return Err(PyValueError::new_err("threads must be at least 1")),
        Some(n) => Some(std::sync::Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("kerasc-{i}"))
                .build()
                .map_err(|e| error(py, "DeviceError", format!("cannot start {n} threads: {e}")))?,
        )),
    };
    model::Model::open(py, path, dev, optimize, precision, pool)
}

/// A device kerasc can run on, as `tf.config.list_physical_devices()` lists them.
#[pyclass(module = "kerasc", frozen, get_all)]
struct PhysicalDevice {
    /// `/physical_device:CPU:0`, `/physical_device:GPU:1`.
    name: String,
    /// `CPU` or `GPU`.
    device_type: String,
    /// The device's own name (the GPU's model).
    description: String,
    /// CPU: the worker threads; 0 for a GPU.
    threads: usize,
    /// GPU: its memory in bytes; 0 for the CPU.
    memory_bytes: usize,
}

#[pymethods]
impl PhysicalDevice {
    fn __repr__(&self) -> String {
        format!("PhysicalDevice(name='{}', device_type='{}')", self.name, self.device_type)
    }
}

/// The physical devices plans can run on here: the CPU, then every usable GPU.
#[pyfunction]
fn devices() -> Vec<PhysicalDevice> {
    kerasc::available_devices()
        .into_iter()
        .map(|d| {
            let kind = if d.device.is_cpu() { "CPU" } else { "GPU" };
            let index = d.device.to_string().rsplit(':').next().unwrap_or("0").to_string();
            PhysicalDevice {
                name: format!("/physical_device:{kind}:{index}"),
                device_type: kind.into(),
                description: d.name,
                threads: d.threads,
                memory_bytes: d.memory_bytes,
            }
        })
        .collect()
}

/// The `kerasc` command line, run in this process on `argv` (the program's name first); returns
/// its exit status. The `kerasc` command the package installs calls it.
#[pyfunction]
fn _cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| kerasc::cli::main(argv))
}

#[pymodule]
fn _kerasc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(train::fit, m)?)?;
    m.add_function(wrap_pyfunction!(_cli, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::TensorSpec>()?;
    m.add_class::<train::History>()?;
    m.add_class::<PhysicalDevice>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
