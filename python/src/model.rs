//! `kerasc.Model`: a model file compiled for one device, run on numpy arrays.

use crate::convert::{rows, to_array_in, to_numpy, Spare};
use crate::errors::{compile_error, error, runtime_error, specialize_error};
use crate::runner::{Plan, Plans, Runner};
use kerasc::frontend::onnx::Declared;
use kerasc::frontend::text::HostInput;
use kerasc::ir::{self, Dim, Tensor};
use kerasc::npy::Array;
use kerasc::{ExecutorOptions, LogicalDevice, OptimizeOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::path::PathBuf;

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

/// The spec of an input or output as an ONNX file declares it.
fn declared_spec(d: &Declared) -> TensorSpec {
    TensorSpec {
        name: d.name.clone(),
        shape: d.shape.clone(),
        dtype: d.dtype.map_or_else(|| "unknown".to_string(), |t| t.name().to_string()),
    }
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

/// A saved Keras (`.keras`, `.h5`) or ONNX model, optimized and bound to a device.
#[pyclass(module = "kerasc", frozen)]
pub(crate) struct Model {
    path: PathBuf,
    plans: Plans,
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
        let plans = py
            .detach(|| match kerasc::load(&path) {
                Ok(model) => {
                    let runner = Runner::new(&model.graph, options).map_err(Ok)?;
                    Ok(Plans::Fixed(Box::new(model), runner))
                }
                // An ONNX graph that compiles for the inputs it is given: on each call.
                Err(e @ kerasc::FrontendError::NeedsInputs { .. }) => {
                    let bytes = std::fs::read(&path).map_err(|_| Err(e.to_string().into()))?;
                    let declared = kerasc::frontend::onnx::declared(&bytes, &path.display().to_string())
                        .map_err(|d| Err(d.to_string().into()))?;
                    let plans = kerasc::specialize::Specializing::new(&path);
                    Ok(Plans::PerInputs { plans, options, declared, why: e.to_string() })
                }
                Err(e) => Err(Err(e.to_string().into())),
            })
            .map_err(|e: Result<kerasc::CompileError, Box<str>>| match e {
                Err(f) => error(py, "ModelError", f),
                Ok(c) => compile_error(py, &c),
            })?;
        let names = match &plans {
            Plans::Fixed(model, _) => input_names(model),
            Plans::PerInputs { declared, .. } => declared.0.iter().map(|d| d.name.clone()).collect(),
        };
        let labels = names.iter().map(|n| PathBuf::from(format!("input '{n}'"))).collect();
        Ok(Model { path, plans, device, optimized: optimize, pool, names, labels, spare: Spare::default() })
    }

    /// The model compiled last: the one compiled at load, or for the last call's inputs.
    fn latest(&self) -> Option<Plan<'_>> {
        match &self.plans {
            Plans::Fixed(m, r) => Some(Plan::Fixed(m, r)),
            Plans::PerInputs { plans, .. } => plans.latest().map(Plan::Compiled),
        }
    }

    /// [`Model::latest`], or an error saying the model compiles on its first call.
    fn compiled(&self, py: Python<'_>, what: &str) -> PyResult<Plan<'_>> {
        self.latest().ok_or_else(|| {
            let why = match &self.plans {
                Plans::PerInputs { why, .. } => why.as_str(),
                Plans::Fixed(..) => "",
            };
            error(
                py,
                "InputError",
                format!("{what}: the model compiles for the inputs of its first call; call it once first ({why})"),
            )
        })
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
            return items
                .iter()
                .zip(&self.labels)
                .map(|(a, l)| to_array_in(a, &l.to_string_lossy(), Some(&self.spare)))
                .collect();
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

    /// The graph's input tensors for `x`, the number of samples, and the plan to run them on.
    fn tensors(&self, x: &Bound<'_, PyAny>) -> PyResult<(Vec<Tensor>, usize, Plan<'_>)> {
        let py = x.py();
        // The workers wake while the arrays are read.
        if let Plans::Fixed(_, r) = &self.plans {
            r.wake();
        }
        let arrays = self.arrays(x)?;
        let names = &self.labels;
        let plan = match &self.plans {
            Plans::Fixed(m, r) => Plan::Fixed(m, r),
            Plans::PerInputs { plans, options, .. } => {
                let got = py.detach(|| {
                    plans.get(&arrays, |m| {
                        Runner::new(&m.graph, options.clone()).map_err(kerasc::specialize::SpecializeError::from)
                    })
                });
                Plan::Compiled(got.map_err(|e| specialize_error(py, e))?)
            }
        };
        // Inputs compiled in (their values decide shapes) are not samples.
        let bound = match &plan {
            Plan::Compiled(c) => c.bound.clone(),
            Plan::Fixed(..) => Vec::new(),
        };
        let sampled = || arrays.iter().zip(names).enumerate().filter(|(k, _)| !bound.get(*k).copied().unwrap_or(false));
        let n = sampled().next().and_then(|(_, (a, _))| rows(a)).unwrap_or(0);
        for (_, (a, name)) in sampled() {
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
        let model = plan.model();
        let raw = kerasc::host::host_inputs(model, arrays, names).map_err(|e| error(py, "InputError", e))?;
        let tensors = kerasc::host::as_input_dtypes(&model.graph, raw);
        Ok((tensors, n, plan))
    }

    /// Runs the graph on `tensors` in chunks of `batch` samples (all at once when `None`), the
    /// interpreter free meanwhile; Ctrl-C is seen between chunks.
    fn run(
        &self,
        py: Python<'_>,
        plan: &Plan<'_>,
        tensors: Vec<Tensor>,
        n: usize,
        batch: Option<usize>,
        verbose: u8,
    ) -> PyResult<Vec<Tensor>> {
        let run = |t: Vec<Tensor>| {
            let (outs, inputs) = py.detach(|| plan.runner().run(t));
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
        let (tensors, n, plan) = self.tensors(x)?;
        let outs = self.run(py, &plan, tensors, n, Some(batch_size.unwrap_or(32)), verbose)?;
        self.outputs(py, outs)
    }

    /// Runs the model on one batch `x` (as `model(x)`): every sample at once.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (tensors, n, plan) = self.tensors(x)?;
        let outs = self.run(py, &plan, tensors, n, None, 0)?;
        self.outputs(py, outs)
    }

    /// Prints the model's layers as Keras's `model.summary()` does.
    fn summary(&self, py: Python<'_>) -> PyResult<()> {
        let text = match self.latest() {
            Some(plan) => kerasc::report::text::inspect(plan.model()),
            None => match &self.plans {
                Plans::PerInputs { why, .. } => format!("{why}\nThe model is compiled for the inputs of each call."),
                Plans::Fixed(..) => String::new(),
            },
        };
        py.import("builtins")?.call_method1("print", (text.trim_end(),))?;
        Ok(())
    }

    /// The model's inputs (Keras's `model.inputs`): name, shape and dtype of each.
    #[getter]
    fn inputs(&self) -> Vec<TensorSpec> {
        let model = match &self.plans {
            Plans::Fixed(m, _) => m,
            Plans::PerInputs { declared, .. } => return declared.0.iter().map(declared_spec).collect(),
        };
        let g = &model.graph;
        let names = self.input_names().to_vec();
        if model.host_inputs.iter().all(|h| matches!(h, HostInput::Direct(_))) {
            return g.inputs().iter().zip(names).map(|(&v, n)| spec_of(g, v, n)).collect();
        }
        names
            .into_iter()
            .enumerate()
            .map(|(k, n)| {
                let direct = model.host_inputs.iter().position(|h| matches!(h, HostInput::Direct(j) if *j == k));
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
        let model = match &self.plans {
            Plans::Fixed(m, _) => m,
            Plans::PerInputs { declared, .. } => return declared.1.iter().map(declared_spec).collect(),
        };
        let g = &model.graph;
        g.outputs()
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let name = model.info.output_names.get(k).cloned().unwrap_or_else(|| g.value(v).name.clone());
                spec_of(g, v, name)
            })
            .collect()
    }

    /// The device the model runs on, as TensorFlow names it (`/CPU:0`, `/GPU:0`).
    #[getter]
    fn device(&self) -> String {
        self.device.device.to_string()
    }

    /// How many compiled plans the model keeps: 1 when compiled at load; for a model compiled
    /// per inputs, one per distinct shapes and shape-deciding values seen (the last 8).
    #[getter]
    fn _plans(&self) -> usize {
        match &self.plans {
            Plans::Fixed(..) => 1,
            Plans::PerInputs { plans, .. } => plans.kept(),
        }
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
        let plan = self.compiled(py, "bench")?;
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
            .detach(|| kerasc::bench::bench(&name, &plan.model().graph, &opts))
            .map_err(|e| error(py, "ExecutionError", e))?;
        let text = kerasc::report::json::bench(&r).to_string();
        py.import("json")?.call_method1("loads", (text,))
    }

    fn __repr__(&self) -> String {
        let plan = if self.optimized { "optimized" } else { "naive" };
        let name = match &self.plans {
            Plans::Fixed(m, _) => m.info.name.clone(),
            Plans::PerInputs { .. } => {
                self.path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
            }
        };
        format!("<kerasc.Model '{name}' on {} ({plan})>", self.device.device)
    }
}
