//! `kerasc.Model`: a model file compiled for one device, run on numpy arrays.

use crate::convert::{rows, to_array_in, to_numpy, Spare};
use crate::errors::{compile_error, error, model_error, runtime_error};
use kerasc::frontend::text::HostInput;
use kerasc::ir::{self, Dim, Tensor};
use kerasc::npy::Array;
use kerasc::{Executor, ExecutorOptions, LogicalDevice, OptimizeOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

/// One input or output of a model: its name, its shape (`None` for the batch and any size not
/// fixed) and its dtype, as Keras's `model.inputs` shows them.
#[pyclass(module = "kerasc", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct TensorSpec {
    name: String,
    shape: Option<Vec<Option<usize>>>,
    dtype: String,
}

#[pymethods]
impl TensorSpec {
    fn __repr__(&self) -> String {
        let shape = match &self.shape {
            None => "None".to_string(),
            Some(s) => {
                let dims: Vec<String> = s.iter().map(|d| d.map_or("None".into(), |n| n.to_string())).collect();
                if dims.len() == 1 {
                    format!("({},)", dims[0])
                } else {
                    format!("({})", dims.join(", "))
                }
            }
        };
        format!("TensorSpec(name='{}', shape={shape}, dtype='{}')", self.name, self.dtype)
    }
}

fn spec_of(g: &ir::Graph, v: ir::ValueId, name: String) -> TensorSpec {
    let ty = &g.value(v).ty;
    let shape = ty
        .shape
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Some(*n),
            Dim::Batch => None,
        })
        .collect();
    TensorSpec { name, shape: Some(shape), dtype: ty.dtype.name().to_string() }
}

/// The names of `model`'s inputs, in order (Keras's `model.inputs`): the arrays a user passes.
pub(crate) fn input_names(model: &kerasc::Model) -> Vec<String> {
    if !model.model_inputs.is_empty() {
        return model.model_inputs.clone();
    }
    let g = &model.graph;
    (0..g.inputs().len())
        .map(|k| model.info.input_names.get(k).cloned().unwrap_or_else(|| g.value(g.inputs()[k]).name.clone()))
        .collect()
}

/// Where a model runs: a CPU session, shared by the calling threads; or a GPU session, which
/// stays on a thread of its own (its CUDA graph may not move between threads), each run sent to
/// it.
enum Runner {
    Planned(kerasc::PlannedSession),
    Naive(kerasc::Session),
    Gpu(Mutex<mpsc::Sender<Job>>),
}

/// A run for the GPU thread: the inputs, and where to send the outputs (and the inputs back).
type Job = (Vec<Tensor>, mpsc::Sender<Ran>);

/// A run's outputs, and the inputs it is done with.
type Ran = (Result<Vec<Tensor>, kerasc::RuntimeError>, Vec<Tensor>);

impl Runner {
    fn new(graph: &ir::Graph, options: ExecutorOptions) -> Result<Runner, kerasc::CompileError> {
        if options.device.device.is_cpu() {
            return match Executor::new(graph, &options)?.0 {
                Executor::Cpu(s) => Ok(Runner::Planned(s)),
                Executor::CpuNaive(s) => Ok(Runner::Naive(s)),
                _ => Err(kerasc::RuntimeError::Plan("a CPU device gave a GPU executor".into()).into()),
            };
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        let graph = graph.clone();
        std::thread::Builder::new()
            .name("kerasc-gpu".into())
            .spawn(move || {
                let exec = match Executor::new(&graph, &options) {
                    Ok((e, _)) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Until the model is dropped (its sender with it).
                while let Ok((inputs, reply)) = inbox.recv() {
                    let _ = reply.send((exec.run(&inputs), inputs));
                }
            })
            .map_err(|e| kerasc::RuntimeError::Plan(format!("cannot start the GPU thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Runner::Gpu(Mutex::new(jobs))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(kerasc::RuntimeError::Plan("the GPU thread ended before the model was ready".into()).into()),
        }
    }

    /// Runs on `inputs`; gives them back with the outputs.
    fn run(&self, inputs: Vec<Tensor>) -> Ran {
        match self {
            Runner::Planned(s) => (s.run(&inputs), inputs),
            Runner::Naive(s) => (s.run(&inputs), inputs),
            Runner::Gpu(jobs) => {
                let (tx, rx) = mpsc::channel();
                let sent = jobs.lock().unwrap_or_else(|p| p.into_inner()).send((inputs, tx));
                let gone = || (Err(kerasc::RuntimeError::Plan("the model's GPU thread has ended".into())), Vec::new());
                if sent.is_err() {
                    return gone();
                }
                rx.recv().unwrap_or_else(|_| gone())
            }
        }
    }
}

/// A saved Keras (`.keras`, `.h5`) or ONNX model, optimized and bound to a device.
#[pyclass(module = "kerasc", frozen)]
pub(crate) struct Model {
    path: PathBuf,
    model: kerasc::Model,
    runner: Runner,
    device: LogicalDevice,
    optimized: bool,
    /// The model's own thread pool (`threads=` given); `None`: the process's.
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The names of its inputs ([`input_names`]), and each as errors name it (`input 'x'`):
    /// made once, not on every call.
    names: Vec<String>,
    labels: Vec<PathBuf>,
    /// Input buffers kept from the last calls.
    spare: Spare,
}

impl Model {
    pub(crate) fn open(
        py: Python<'_>,
        path: PathBuf,
        device: LogicalDevice,
        optimize: bool,
        precision: kerasc::codegen::cuda::Precision,
        pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    ) -> PyResult<Model> {
        let (model, runner) = py
            .detach(|| {
                let model = kerasc::load(&path).map_err(Err)?;
                let mut device_for_run = device.clone();
                if let Some(p) = &pool {
                    device_for_run = device_for_run.with_pool(p.clone());
                }
                let options = ExecutorOptions {
                    device: device_for_run,
                    naive: !optimize,
                    optimize: OptimizeOptions::default(),
                    ptx_cache: kerasc::devices::ptx_cache_dir(),
                    precision,
                    memory_limit: None,
                };
                let runner = Runner::new(&model.graph, options).map_err(Ok)?;
                Ok((model, runner))
            })
            .map_err(|e: Result<kerasc::CompileError, kerasc::FrontendError>| match e {
                Err(f) => model_error(py, &f),
                Ok(c) => compile_error(py, &c),
            })?;
        let names = input_names(&model);
        let labels = names.iter().map(|n| PathBuf::from(format!("input '{n}'"))).collect();
        Ok(Model { path, model, runner, device, optimized: optimize, pool, names, labels, spare: Spare::default() })
    }

    /// The names of the model's inputs, in order (Keras's `model.inputs`).
    fn input_names(&self) -> &[String] {
        &self.names
    }

    /// `x` (one array, a list or tuple in input order, or a dict by input name) as one host
    /// array per model input.
    fn arrays(&self, x: &Bound<'_, PyAny>) -> PyResult<Vec<Array>> {
        let py = x.py();
        let names = self.input_names();
        if let Ok(d) = x.cast::<PyDict>() {
            for k in d.keys() {
                let k: String = k.extract()?;
                if !names.contains(&k) {
                    return Err(error(
                        py,
                        "InputError",
                        format!("no model input is named '{k}' (its inputs: {})", names.join(", ")),
                    ));
                }
            }
            return names
                .iter()
                .zip(&self.labels)
                .map(|(n, label)| match d.get_item(n)? {
                    Some(a) => to_array_in(&a, &label.to_string_lossy(), Some(&self.spare)),
                    None => Err(error(
                        py,
                        "InputError",
                        format!("no array for model input '{n}' (its inputs: {})", names.join(", ")),
                    )),
                })
                .collect();
        }
        if x.is_instance_of::<PyList>() || x.is_instance_of::<PyTuple>() {
            let items: Vec<Bound<'_, PyAny>> = x.try_iter()?.collect::<PyResult<_>>()?;
            if items.len() != names.len() {
                return Err(error(
                    py,
                    "InputError",
                    format!(
                        "the model has {} input(s) ({}), {} array(s) were given",
                        names.len(),
                        names.join(", "),
                        items.len()
                    ),
                ));
            }
            return items.iter().zip(&self.labels).map(|(a, l)| to_array_in(a, &l.to_string_lossy(), Some(&self.spare))).collect();
        }
        if names.len() != 1 {
            return Err(error(
                py,
                "InputError",
                format!("the model has {} inputs ({}): pass a list or a dict of arrays", names.len(), names.join(", ")),
            ));
        }
        Ok(vec![to_array_in(x, &self.labels[0].to_string_lossy(), Some(&self.spare))?])
    }

    /// The graph's input tensors for `x`, and the number of samples.
    fn tensors(&self, x: &Bound<'_, PyAny>) -> PyResult<(Vec<Tensor>, usize)> {
        let py = x.py();
        let arrays = self.arrays(x)?;
        let names = &self.labels;
        let n = arrays.first().and_then(rows).unwrap_or(0);
        for (a, name) in arrays.iter().zip(names) {
            if rows(a) != Some(n) {
                return Err(error(
                    py,
                    "InputError",
                    format!(
                        "{}: {:?} samples, but the first input has {n} (every input needs the same number)",
                        name.display(),
                        rows(a)
                    ),
                ));
            }
        }
        let raw = kerasc::host::host_inputs(&self.model, arrays, names).map_err(|e| error(py, "InputError", e))?;
        Ok((kerasc::host::as_input_dtypes(&self.model.graph, raw), n))
    }

    /// Runs the graph on `tensors` in chunks of `batch` samples (all at once when `None`), the
    /// interpreter free meanwhile; Ctrl-C is seen between chunks.
    fn run(
        &self,
        py: Python<'_>,
        tensors: Vec<Tensor>,
        n: usize,
        batch: Option<usize>,
        verbose: u8,
    ) -> PyResult<Vec<Tensor>> {
        let run = |t: Vec<Tensor>| {
            let (outs, inputs) = py.detach(|| self.runner.run(t));
            self.spare.give(inputs);
            outs.map_err(|e| runtime_error(py, &e))
        };
        let batch = batch.unwrap_or(n).max(1);
        let steps = n.div_ceil(batch).max(1);
        let bar = match verbose {
            0 => None,
            v => Some(py.import("kerasc._progress")?.getattr("PredictBar")?.call1((v, steps))?),
        };
        let shown = |step: usize| bar.as_ref().map_or(Ok(()), |b| b.call_method1("step", (step,)).map(drop));
        if n <= batch {
            let outs = run(tensors)?;
            shown(1)?;
            return Ok(outs);
        }
        let mut parts: Vec<Vec<Tensor>> = Vec::new();
        for start in (0..n).step_by(batch) {
            py.check_signals()?;
            let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
            let chunk = tensors
                .iter()
                .map(|t| t.gather_rows(&idx))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(py, "InputError", e))?;
            parts.push(run(chunk)?);
            shown(parts.len())?;
        }
        let n_out = parts.first().map_or(0, Vec::len);
        (0..n_out)
            .map(|k| {
                let pieces: Vec<Tensor> =
                    parts.iter_mut().map(|p| std::mem::replace(&mut p[k], Tensor::scalar(0.0))).collect();
                Tensor::concat_rows(&pieces).map_err(|e| error(py, "ExecutionError", e))
            })
            .collect()
    }

    /// One output as it is, several as a list.
    fn outputs<'py>(&self, py: Python<'py>, outs: Vec<Tensor>) -> PyResult<Bound<'py, PyAny>> {
        let mut arrays = outs.into_iter().map(|t| to_numpy(py, t)).collect::<PyResult<Vec<_>>>()?;
        if arrays.len() == 1 {
            return Ok(arrays.remove(0));
        }
        Ok(PyList::new(py, arrays)?.into_any())
    }
}

/// `predict`'s `verbose`, as Keras takes it: 0 (or `None`, kerasc's default) silent, 1 or
/// `"auto"` a progress bar, 2 one line.
fn verbosity(v: Option<&Bound<'_, PyAny>>) -> PyResult<u8> {
    let Some(v) = v.filter(|v| !v.is_none()) else { return Ok(0) };
    if let Ok(s) = v.extract::<String>() {
        if s == "auto" {
            return Ok(1);
        }
    }
    match v.extract::<i64>() {
        Ok(k @ 0..=2) => Ok(k as u8),
        _ => Err(error(v.py(), "InputError", format!("verbose must be 0, 1, 2 or \"auto\", not {v}"))),
    }
}

#[pymethods]
impl Model {
    /// Runs the model on `x` as `keras.Model.predict` does: one array, a list of arrays in
    /// input order, or a dict keyed by input name; any number of samples, run in batches of
    /// `batch_size` (32 by default, as Keras). Returns one numpy array per output (a list when
    /// the model has several). `verbose`: 1 or `"auto"` draws Keras's progress bar, 2 one line
    /// at the end, 0 or `None` (the default: a library call stays quiet) nothing.
    #[pyo3(signature = (x, batch_size=None, verbose=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        batch_size: Option<usize>,
        verbose: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if batch_size == Some(0) {
            return Err(error(py, "InputError", "batch_size must be at least 1"));
        }
        let verbose = verbosity(verbose.as_ref())?;
        let (tensors, n) = self.tensors(x)?;
        let outs = self.run(py, tensors, n, Some(batch_size.unwrap_or(32)), verbose)?;
        self.outputs(py, outs)
    }

    /// Runs the model on one batch `x` (as `model(x)`): every sample at once.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (tensors, n) = self.tensors(x)?;
        let outs = self.run(py, tensors, n, None, 0)?;
        self.outputs(py, outs)
    }

    /// Prints the model's layers as Keras's `model.summary()` does.
    fn summary(&self, py: Python<'_>) -> PyResult<()> {
        let text = kerasc::report::text::inspect(&self.model);
        py.import("builtins")?.call_method1("print", (text.trim_end(),))?;
        Ok(())
    }

    /// The model's inputs (Keras's `model.inputs`): name, shape and dtype of each.
    #[getter]
    fn inputs(&self) -> Vec<TensorSpec> {
        let g = &self.model.graph;
        let names = self.input_names().to_vec();
        if self.model.host_inputs.iter().all(|h| matches!(h, HostInput::Direct(_))) {
            return g.inputs().iter().zip(names).map(|(&v, n)| spec_of(g, v, n)).collect();
        }
        names
            .into_iter()
            .enumerate()
            .map(|(k, n)| {
                let direct = self.model.host_inputs.iter().position(|h| matches!(h, HostInput::Direct(j) if *j == k));
                match direct.and_then(|gi| g.inputs().get(gi)) {
                    Some(&v) => spec_of(g, v, n),
                    None => TensorSpec { name: n, shape: None, dtype: "string".into() },
                }
            })
            .collect()
    }

    /// The model's outputs (Keras's `model.outputs`).
    #[getter(outputs)]
    fn outputs_spec(&self) -> Vec<TensorSpec> {
        let g = &self.model.graph;
        g.outputs()
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let name = self.model.info.output_names.get(k).cloned().unwrap_or_else(|| g.value(v).name.clone());
                spec_of(g, v, name)
            })
            .collect()
    }

    /// The device the model runs on, as TensorFlow names it (`/CPU:0`, `/GPU:0`).
    #[getter]
    fn device(&self) -> String {
        self.device.device.to_string()
    }

    /// The file the model was loaded from.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// Times the naive plan against the optimized one on a random batch, as `kerasc bench
    /// --json` does, and returns the same dict.
    #[pyo3(signature = (batch_size=1, runs=30, warmup=5, seed=0, profile=false))]
    fn bench<'py>(
        &self,
        py: Python<'py>,
        batch_size: usize,
        runs: usize,
        warmup: usize,
        seed: u64,
        profile: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if batch_size == 0 || runs == 0 {
            return Err(error(py, "InputError", "batch_size and runs must be at least 1"));
        }
        let mut device = self.device.clone();
        if let Some(p) = &self.pool {
            device = device.with_pool(p.clone());
        }
        let opts = kerasc::bench::BenchOptions {
            device,
            spread: Vec::new(),
            placement: None,
            batch: batch_size,
            warmup,
            runs,
            profile,
            seed,
            ptx_cache: kerasc::devices::ptx_cache_dir(),
            precision: Default::default(),
            memory_limit: None,
        };
        let name = self.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let r = py
            .detach(|| kerasc::bench::bench(&name, &self.model.graph, &opts))
            .map_err(|e| error(py, "ExecutionError", e))?;
        let text = kerasc::report::json::bench(&r).to_string();
        py.import("json")?.call_method1("loads", (text,))
    }

    fn __repr__(&self) -> String {
        let plan = if self.optimized { "optimized" } else { "naive" };
        format!("<kerasc.Model '{}' on {} ({plan})>", self.model.info.name, self.device.device)
    }
}
