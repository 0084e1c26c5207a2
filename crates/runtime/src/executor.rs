use crate::{Device, RuntimeError};
use ir::{Graph, Shape, Tensor};

/// Options of a [`Session`].
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Where to run: the CPU executors take `None` or `/CPU:0`.
    pub device: Option<Device>,
    /// The most bytes the run's tensors may take; `None`: what the machine has available.
    pub memory_limit: Option<usize>,
    /// The thread pool the kernels run on (a logical CPU device's, [`crate::LogicalDevice`]);
    /// `None`: the caller's, else the global one.
    pub pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

/// Runs `f` on `pool` when there is one, else where the caller is.
pub(crate) fn on<R: Send>(pool: &Option<std::sync::Arc<rayon::ThreadPool>>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// A graph bound to a device, ready to run many times.
pub struct Session {
    graph: Graph,
    device: Device,
    memory_limit: Option<usize>,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The input shapes whose memory need was last checked.
    checked: std::sync::Mutex<Vec<Vec<usize>>>,
}

impl Session {
    /// Validates the graph and binds it to a device.
    pub fn new(graph: Graph, options: SessionOptions) -> Result<Session, RuntimeError> {
        graph.validate()?;
        let device = cpu_only(options.device)?;
        Ok(Session {
            graph,
            device,
            memory_limit: options.memory_limit,
            pool: options.pool,
            checked: Default::default(),
        })
    }

    /// The device this session runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The thread pool it runs on (`None`: the caller's).
    pub fn pool(&self) -> &Option<std::sync::Arc<rayon::ThreadPool>> {
        &self.pool
    }

    /// Checks the inputs against the graph's input types (dtype, rank, fixed sizes and one
    /// consistent batch size).
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RuntimeError> {
        check_inputs(&self.graph, inputs).map(|_| ())
    }

    /// Runs the graph on `inputs` (in graph input order) and returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs, None)
    }

    /// Like [`Session::run`], also recording each node's wall time in seconds.
    pub fn run_profiled(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<f64>), RuntimeError> {
        let mut times = vec![0.0; self.graph.nodes().len()];
        let outs = self.run_timed(inputs, Some(&mut times))?;
        Ok((outs, times))
    }

    fn run_timed(&self, inputs: &[Tensor], mut times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>, RuntimeError> {
        self.check_inputs(inputs)?;
        self.check_memory(inputs)?;
        let outs = on(&self.pool, || {
            kernels::evaluate(&self.graph, inputs, |node, seconds| {
                if let Some(t) = times.as_deref_mut() {
                    t[node] = seconds;
                }
            })
        })?;
        Ok(outs)
    }
}

impl Session {
    /// Refuses inputs whose tensors would not fit in the memory the run may use (once per
    /// input shape).
    fn check_memory(&self, inputs: &[Tensor]) -> Result<(), RuntimeError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let mut checked = self.checked.lock().map_err(|_| RuntimeError::Plan("lock poisoned".into()))?;
        if *checked != shapes {
            let concrete = self.graph.concrete_shapes(&shapes)?;
            let needed = crate::memory::naive_peak_bytes(&self.graph, &concrete);
            let machine = crate::memory::available_memory().map(|m| (m, "available on this machine"));
            crate::memory::check(needed, self.memory_limit, machine)?;
            *checked = shapes;
        }
        Ok(())
    }
}

/// How a session lays out the tensors between its ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// The optimizer's memory plan: one arena, buffers shared by values whose lives do not overlap.
    #[default]
    Planned,
    /// One buffer per tensor (the naive plan).
    Naive,
}

impl Layout {
    /// The memory plan of `graph` for inputs of these shapes.
    pub fn plan(self, graph: &Graph, input_shapes: &[Vec<usize>]) -> Result<ir::MemoryPlan, RuntimeError> {
        match self {
            Layout::Planned => optimizer::plan_for_shapes(graph, input_shapes),
            Layout::Naive => optimizer::naive_plan_for_shapes(graph, input_shapes),
        }
        .map_err(|e| RuntimeError::Plan(e.to_string()))
    }
}

/// The device of a CPU executor: a CPU device, whatever the default; asking it for a GPU is an
/// error.
pub(crate) fn cpu_only(requested: Option<Device>) -> Result<Device, RuntimeError> {
    match requested {
        None => Ok(Device::CPU),
        Some(d @ Device::Cpu(_)) => Ok(d),
        Some(d) => Err(RuntimeError::Unavailable {
            requested: d.to_string(),
            reason: "this executor runs on the CPU; use the CUDA session for a GPU".into(),
            available: "/CPU:0".into(),
        }),
    }
}

/// Checks `inputs` against the graph's input types (dtype, rank, fixed sizes, one consistent
/// batch size) and returns that batch size, if any input has a batch axis.
pub fn check_inputs<T: std::borrow::Borrow<Tensor>>(
    graph: &Graph,
    inputs: &[T],
) -> Result<Option<usize>, RuntimeError> {
    let ins = graph.inputs();
    if inputs.len() != ins.len() {
        let names: Vec<String> = ins.iter().map(|&v| format!("'{}'", graph.value(v).name)).collect();
        return Err(RuntimeError::InputCount { expected: ins.len(), given: inputs.len(), names: names.join(", ") });
    }
    let mut batch = None;
    for (i, (t, &v)) in inputs.iter().zip(ins).enumerate() {
        let t: &Tensor = t.borrow();
        let value = graph.value(v);
        let err = |message: String| RuntimeError::Input { index: i, name: value.name.clone(), message };
        if t.dtype() != value.ty.dtype {
            return Err(err(format!("expected {} but got {}", value.ty.dtype, t.dtype())));
        }
        if !shape_matches(&value.ty.shape, t.shape()) {
            return Err(err(format!("expected shape {} but got {:?}", value.ty.shape, t.shape())));
        }
        if let Some(&b) = t.shape().first() {
            if value.ty.shape.dims().first().is_some_and(|d| d.fixed().is_none()) {
                match batch {
                    None => batch = Some(b),
                    Some(prev) if prev != b => {
                        return Err(err(format!("batch size {b} differs from the first input's {prev}")))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(batch)
}

/// Whether a concrete shape fits a static one (same rank, equal fixed sizes).
fn shape_matches(expected: &Shape, got: &[usize]) -> bool {
    expected.rank() == got.len() && expected.dims().iter().zip(got).all(|(d, &g)| d.fixed().is_none_or(|n| n == g))
}
