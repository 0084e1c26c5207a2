//! kerasc: compile and run saved Keras models outside Python.
//!
//! A thin facade over the workspace crates: [`load`] a model file into an IR graph, bind it
//! to a device with [`Session`], run it.

pub mod bench;
pub mod npy;
pub mod report;

pub use codegen;
pub use frontend::{load_bytes, FrontendError, LoadOptions, Model, ModelFormat, ModelInfo};
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

/// The memory planner the planned executor uses.
pub fn planner(g: &ir::Graph, input_shapes: &[Vec<usize>]) -> Result<ir::MemoryPlan, String> {
    optimizer::plan_for_shapes(g, input_shapes).map_err(|e| e.to_string())
}

/// Optimizes a graph and binds it to a device, ready to run from one arena.
pub fn compile(
    graph: &ir::Graph,
    options: &OptimizeOptions,
    session: SessionOptions,
) -> Result<(PlannedSession, OptimizeReport), CompileError> {
    let opt = optimizer::optimize(graph, options)?;
    let s = PlannedSession::new(opt.graph, session, planner)?;
    Ok((s, opt.report))
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
