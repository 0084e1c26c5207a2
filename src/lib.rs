//! kerasc: compile and run saved Keras models outside Python.
//!
//! A thin facade over the workspace crates: [`load`] a model file into an IR graph, bind it
//! to a device with [`Session`], run it.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod devices;
pub mod fit;
pub mod host;
pub mod npy;
pub mod report;
pub mod specialize;

pub use codegen;
pub use frontend::{self, load_bytes, FrontendError, LoadOptions, Model, ModelFormat, ModelInfo};
pub use ir;
pub use optimizer::{self, OptimizeOptions, OptimizeReport};
pub use runtime;
pub use runtime::{
    available_devices, Device, LogicalDevice, LogicalDevices, LogicalSpec, PlannedSession, RuntimeError, Session,
    SessionOptions,
};

use std::io::Write;
use std::path::Path;

/// Loads a Keras model file (`.h5` or `.keras`).
pub fn load(path: &Path) -> Result<Model, FrontendError> {
    frontend::load(path, &LoadOptions::default())
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
    /// Where to run: a physical or logical device ([`LogicalDevices`]).
    pub device: LogicalDevice,
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

/// A model bound to a device: the planned CPU executor, the naive CPU executor, or a GPU; or
/// bound to several, each running a share of the batch ([`Executor::mirrored`]).
#[allow(clippy::large_enum_variant)] // one per process; boxing buys nothing
pub enum Executor {
    Cpu(PlannedSession),
    CpuNaive(Session),
    Cuda(Box<runtime::cuda::CudaSession>),
    /// One executor per replica, all of the same graph.
    Mirrored(Vec<Executor>),
    /// Model parallelism: one executor per stage of the placed graph, micro-batches pipelined.
    Placed {
        placed: Box<runtime::placement::Placed>,
        stages: Vec<Executor>,
        micro_batches: usize,
    },
}

/// Where the nodes of a placed model go.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Balanced by estimated time, under each device's memory limit.
    Auto,
    /// Layer name → device (`with tf.device(...)` around layers); other layers follow their input.
    Layers(Vec<(String, Device)>),
}

impl Executor {
    /// Optimizes (unless naive) and binds the graph to the device.
    pub fn new(
        graph: &ir::Graph,
        options: &ExecutorOptions,
    ) -> Result<(Executor, Option<OptimizeReport>), CompileError> {
        let (g, report) = prepare(graph, options, &options.device)?;
        Ok((Executor::bind(g, options)?, report))
    }

    /// Binds a graph as it is to `options.device`: op by op, one buffer per tensor, when
    /// `options.naive`, else from a planned arena (the graph is not optimized again).
    pub fn bind(g: ir::Graph, options: &ExecutorOptions) -> Result<Executor, CompileError> {
        let device = &options.device;
        let exec = match (device.cuda_options(options.ptx_cache.clone(), options.memory_limit), options.naive) {
            (None, true) => Executor::CpuNaive(Session::new(g, device.session_options(options.memory_limit))?),
            (None, false) => Executor::Cpu(PlannedSession::new(g, device.session_options(options.memory_limit))?),
            (Some(cuda), naive) => {
                let cuda = runtime::cuda::CudaOptions {
                    cuda_graph: !naive,
                    precision: options.precision,
                    layout: if naive { runtime::Layout::Naive } else { runtime::Layout::Planned },
                    ..cuda
                };
                Executor::Cuda(Box::new(runtime::cuda::CudaSession::new(g, cuda)?))
            }
        };
        Ok(exec)
    }

    /// Data parallelism (`tf.distribute.MirroredStrategy`): optimizes the graph once (unless
    /// naive) and binds a copy to each of `devices`; a run splits the batch across them
    /// ([`runtime::strategy`]). `options.device` is not used.
    pub fn mirrored(
        graph: &ir::Graph,
        options: &ExecutorOptions,
        devices: &[LogicalDevice],
    ) -> Result<(Executor, Option<OptimizeReport>), CompileError> {
        if devices.is_empty() {
            return Err(RuntimeError::Plan("a mirrored executor needs at least one device".into()).into());
        }
        let (g, report) = prepare(graph, options, &devices[0])?;
        let replicas = devices
            .iter()
            .map(|d| Executor::bind(g.clone(), &ExecutorOptions { device: d.clone(), ..options.clone() }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Executor::Mirrored(replicas), report))
    }

    /// Model parallelism: optimizes the graph once, places its nodes on `devices` as
    /// `placement` says (transfers inserted where a value changes device), and binds each stage
    /// to its device; a run pipelines `micro_batches` micro-batches through the stages.
    pub fn placed(
        graph: &ir::Graph,
        options: &ExecutorOptions,
        devices: &[LogicalDevice],
        placement: &Placement,
        micro_batches: usize,
    ) -> Result<(Executor, Option<OptimizeReport>), CompileError> {
        let first = devices.first().ok_or_else(|| RuntimeError::Plan("placement needs at least one device".into()))?;
        let (g, report) = prepare(graph, options, first)?;
        let names: Vec<Device> = devices.iter().map(|d| d.device).collect();
        let assign = match placement {
            Placement::Auto => {
                let limits: Vec<Option<usize>> = devices.iter().map(|d| d.limit(options.memory_limit)).collect();
                runtime::placement::assign_auto(&g, &names, &limits)?
            }
            Placement::Layers(map) => runtime::placement::assign_layers(&g, graph, map, &names)?,
        };
        let placed = runtime::placement::place(&g, &names, &assign)?;
        let stages = placed
            .stages
            .iter()
            .map(|st| {
                let device = devices[st.device].clone();
                Executor::bind(st.graph.clone(), &ExecutorOptions { device, ..options.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Executor::Placed { placed: Box::new(placed), stages, micro_batches: micro_batches.max(1) }, report))
    }

    /// Runs the model on `inputs` (graph input order) and returns the outputs in order.
    pub fn run(&self, inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, RuntimeError> {
        match self {
            Executor::Cpu(s) => s.run(inputs),
            Executor::CpuNaive(s) => s.run(inputs),
            Executor::Cuda(s) => s.run(inputs),
            Executor::Mirrored(r) => {
                let cpu: Option<Vec<CpuExecutor>> = r.iter().map(Executor::cpu).collect();
                match cpu {
                    Some(cpu) => {
                        runtime::strategy::run_mirrored(&cpu, self.graph(), inputs, CpuExecutor::pool, |e, x| e.run(x))
                    }
                    // A CUDA session is not shared across threads (its captured CUDA graph may
                    // not be): GPU replicas take their shares in turn.
                    None => {
                        let work = runtime::strategy::split_for(self.graph(), inputs, r.len())?;
                        let outs = work.iter().map(|(i, x)| r[*i].run(x)).collect::<Result<Vec<_>, _>>()?;
                        runtime::strategy::gather(self.graph(), outs)
                    }
                }
            }
            Executor::Placed { placed, stages, micro_batches } => {
                let cpu: Option<Vec<CpuExecutor>> = stages.iter().map(Executor::cpu).collect();
                match cpu {
                    Some(cpu) => runtime::placement::run_pipelined(
                        placed,
                        &cpu,
                        inputs,
                        *micro_batches,
                        runtime::placement::Join::Gather,
                        CpuExecutor::pool,
                        |e, x| e.run(x),
                    ),
                    // A stage on a GPU: the stages take their turns.
                    None => runtime::placement::run_in_turn(
                        placed,
                        stages,
                        inputs,
                        *micro_batches,
                        runtime::placement::Join::Gather,
                        |e, x| e.run(x),
                    ),
                }
            }
        }
    }

    /// The graph being run.
    pub fn graph(&self) -> &ir::Graph {
        match self {
            Executor::Cpu(s) => s.graph(),
            Executor::CpuNaive(s) => s.graph(),
            Executor::Cuda(s) => s.graph(),
            Executor::Mirrored(r) => r.first().map(Executor::graph).unwrap_or(&EMPTY),
            Executor::Placed { placed, .. } => &placed.graph,
        }
    }
}

/// A placement as layer → device: a file's map as it is; `auto` as the optimized graph's
/// balanced split (each layer on the device of its first node). A training step is placed by
/// layer, so that each layer's backward nodes run beside its forward ones.
pub fn layer_placement(
    graph: &ir::Graph,
    devices: &[LogicalDevice],
    placement: &Placement,
    memory_limit: Option<usize>,
) -> Result<Vec<(String, Device)>, CompileError> {
    let map = match placement {
        Placement::Layers(map) => {
            let names: Vec<Device> = devices.iter().map(|d| d.device).collect();
            runtime::placement::check_layers(graph, map, &names)?;
            map.clone()
        }
        Placement::Auto => {
            let g = optimizer::optimize(graph, &OptimizeOptions::default())?.graph;
            let names: Vec<Device> = devices.iter().map(|d| d.device).collect();
            let limits: Vec<Option<usize>> = devices.iter().map(|d| d.limit(memory_limit)).collect();
            let assign = runtime::placement::assign_auto(&g, &names, &limits)?;
            let mut map: Vec<(String, Device)> = Vec::new();
            for (n, &d) in g.nodes().iter().zip(&assign) {
                let layer = runtime::placement::layer_of(&n.name).to_string();
                if !map.iter().any(|(l, _)| *l == layer) {
                    map.push((layer, names[d]));
                }
            }
            map
        }
    };
    Ok(map)
}

/// The graph an executor on `device` runs: the optimized one (with its report), or for the naive
/// plan the frontend's.
fn prepare(
    graph: &ir::Graph,
    options: &ExecutorOptions,
    device: &LogicalDevice,
) -> Result<(ir::Graph, Option<OptimizeReport>), CompileError> {
    if options.naive {
        // CUDA kernels are channels-last: a channels-first op becomes transposes around one
        // (a lowering, not an optimization; the CPU runs channels-first ops as they are).
        let g = if device.device.is_cpu() { graph.clone() } else { optimizer::layout::lower_channels_first(graph)?.0 };
        Ok((g, None))
    } else {
        let o = optimizer::optimize(graph, &options.optimize)?;
        Ok((o.graph, Some(o.report)))
    }
}

/// A CPU executor, borrowed: shared by the threads of a mirrored run.
enum CpuExecutor<'a> {
    Planned(&'a PlannedSession),
    Naive(&'a Session),
}

impl CpuExecutor<'_> {
    fn pool(&self) -> Option<&rayon::ThreadPool> {
        match self {
            CpuExecutor::Planned(s) => s.pool().as_deref(),
            CpuExecutor::Naive(s) => s.pool().as_deref(),
        }
    }

    fn run(&self, inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, RuntimeError> {
        match self {
            CpuExecutor::Planned(s) => s.run(inputs),
            CpuExecutor::Naive(s) => s.run(inputs),
        }
    }
}

impl Executor {
    fn cpu(&self) -> Option<CpuExecutor<'_>> {
        match self {
            Executor::Cpu(s) => Some(CpuExecutor::Planned(s)),
            Executor::CpuNaive(s) => Some(CpuExecutor::Naive(s)),
            _ => None,
        }
    }
}

/// The graph of an executor with no replica (never built: [`Executor::mirrored`] refuses it).
static EMPTY: std::sync::LazyLock<ir::Graph> = std::sync::LazyLock::new(ir::Graph::default);

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
