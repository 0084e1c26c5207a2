//! kerasc: compile and run saved Keras models outside Python.
//!
//! A thin facade over the workspace crates: [`load`] a model file into an IR graph, bind it
//! to a device with [`Session`], run it.

pub mod bench;
pub mod fit;
pub mod npy;
pub mod report;

pub use codegen;
pub use frontend::{self, load_bytes, FrontendError, LoadOptions, Model, ModelFormat, ModelInfo};
pub use ir;
pub use optimizer::{self, OptimizeOptions, OptimizeReport};
pub use runtime;
pub use runtime::{available_devices, Device, PlannedSession, RuntimeError, Session, SessionOptions};

use std::io::Write;
use std::path::Path;

/// Loads a Keras model file (`.h5` or `.keras`).
pub fn load(path: &Path) -> Result<Model, FrontendError> {
    frontend::load(path, &LoadOptions::default())
}

/// [`load`] for inputs of known shapes (sizes an ONNX model's symbolic non-batch dimensions).
pub fn load_for_inputs(path: &Path, input_shapes: &[Vec<usize>]) -> Result<Model, FrontendError> {
    frontend::load(path, &LoadOptions { input_shapes: Some(input_shapes.to_vec()) })
}

/// Optimizes a graph and binds it to a device, ready to run from one arena.
pub fn compile(
    graph: &ir::Graph,
    options: &OptimizeOptions,
    session: SessionOptions,
) -> Result<(PlannedSession, OptimizeReport), CompileError> {
    let opt = optimizer::optimize(graph, options)?;
    let s = PlannedSession::new(opt.graph, session)?;
    Ok((s, opt.report))
}

/// How to build an [`Executor`].
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub device: Device,
    /// Run the frontend's graph op by op, one buffer per tensor, no passes.
    pub naive: bool,
    pub optimize: OptimizeOptions,
    /// Where compiled PTX is cached.
    pub ptx_cache: std::path::PathBuf,
    /// Matrix products and convolutions on a GPU: float32, or tensor cores (tf32/bf16/fp16).
    pub precision: codegen::cuda::Precision,
    /// The most bytes the run's tensors may take; `None`: what the machine or device has.
    pub memory_limit: Option<usize>,
}

/// A model bound to a device: the planned CPU executor, the naive CPU executor, or a GPU.
#[allow(clippy::large_enum_variant)] // one per process; boxing buys nothing
pub enum Executor {
    Cpu(PlannedSession),
    CpuNaive(Session),
    Cuda(Box<runtime::cuda::CudaSession>),
}

impl Executor {
    /// Optimizes (unless naive) and binds the graph to the device.
    pub fn new(
        graph: &ir::Graph,
        options: &ExecutorOptions,
    ) -> Result<(Executor, Option<OptimizeReport>), CompileError> {
        let cpu = SessionOptions { device: Some(Device::Cpu), memory_limit: options.memory_limit };
        let (g, report) = if options.naive {
            // CUDA kernels are channels-last: a channels-first op becomes transposes around one
            // (a lowering, not an optimization; the CPU runs channels-first ops as they are).
            let g = if matches!(options.device, Device::Cuda(_)) {
                optimizer::layout::lower_channels_first(graph)?.0
            } else {
                graph.clone()
            };
            (g, None)
        } else {
            let o = optimizer::optimize(graph, &options.optimize)?;
            (o.graph, Some(o.report))
        };
        let exec = match (options.device, options.naive) {
            (Device::Cpu, true) => Executor::CpuNaive(Session::new(g, cpu)?),
            (Device::Cpu, false) => Executor::Cpu(PlannedSession::new(g, cpu)?),
            (Device::Cuda(ordinal), naive) => {
                let cuda = runtime::cuda::CudaOptions {
                    cuda_graph: !naive,
                    precision: options.precision,
                    layout: if naive { runtime::Layout::Naive } else { runtime::Layout::Planned },
                    memory_limit: options.memory_limit,
                    ..runtime::cuda::CudaOptions::new(ordinal, options.ptx_cache.clone())
                };
                Executor::Cuda(Box::new(runtime::cuda::CudaSession::new(g, cuda)?))
            }
        };
        Ok((exec, report))
    }

    /// Runs the model on `inputs` (graph input order) and returns the outputs in order.
    pub fn run(&self, inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, RuntimeError> {
        match self {
            Executor::Cpu(s) => s.run(inputs),
            Executor::CpuNaive(s) => s.run(inputs),
            Executor::Cuda(s) => s.run(inputs),
        }
    }

    /// The graph being run.
    pub fn graph(&self) -> &ir::Graph {
        match self {
            Executor::Cpu(s) => s.graph(),
            Executor::CpuNaive(s) => s.graph(),
            Executor::Cuda(s) => s.graph(),
        }
    }
}

/// Errors of [`compile`].
#[derive(Debug)]
pub enum CompileError {
    Optimize(optimizer::OptError),
    Runtime(RuntimeError),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Optimize(e) => write!(f, "optimizer: {e}"),
            CompileError::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CompileError {}

impl From<optimizer::OptError> for CompileError {
    fn from(e: optimizer::OptError) -> Self {
        CompileError::Optimize(e)
    }
}

impl From<RuntimeError> for CompileError {
    fn from(e: RuntimeError) -> Self {
        CompileError::Runtime(e)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so an
/// interrupted write never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
