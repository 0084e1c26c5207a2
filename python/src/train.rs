//! `kerasc.fit`: fine-tuning from Python, with the command line's options as keyword arguments,
//! Keras's progress drawn through Python (so a notebook shows it) and Ctrl-C honoured between
//! steps.

use crate::convert::to_array;
use crate::errors::{error, fit_error, model_error};
use kerasc::fit::{Event, FitOptions, Listener};
use kerasc::npy::Array;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What `fit` returns: Keras's `History` (`history.history`, `history.epoch`) and each
/// training step's loss.
#[pyclass(module = "kerasc", frozen, get_all)]
pub(crate) struct History {
    /// Keras's `history.history`: each key (`loss`, metrics, their `val_` forms) to its value
    /// per epoch.
    history: Py<PyDict>,
    /// The epochs run (0-based), as Keras's `history.epoch`.
    epoch: Vec<usize>,
    /// Each training step's loss, before its update.
    step_loss: Vec<f64>,
}

#[pymethods]
impl History {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let keys: Vec<String> = self.history.bind(py).keys().iter().map(|k| k.to_string()).collect();
        Ok(format!("<kerasc.History: {} epoch(s) of {}>", self.epoch.len(), keys.join(", ")))
    }
}

/// `data` (one array, a list in order, or a dict by name) as the named arrays `fit` reads:
/// `{prefix}` for a single one, else `{prefix}_{name}` (the `.npz` names of `kerasc fit`).
fn named(data: &Bound<'_, PyAny>, prefix: &str, names: &[String], out: &mut Vec<(String, Array)>) -> PyResult<()> {
    let py = data.py();
    let key = |n: &str| if names.len() == 1 { prefix.to_string() } else { format!("{prefix}_{n}") };
    if let Ok(d) = data.cast::<PyDict>() {
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            if !names.contains(&k) {
                return Err(error(
                    py,
                    "FitError",
                    format!("{prefix}: no model input or output is named '{k}' (they are: {})", names.join(", ")),
                ));
            }
            out.push((key(&k), to_array(&v, &format!("{prefix}['{k}']"))?));
        }
        return Ok(());
    }
    if names.len() > 1 && (data.is_instance_of::<PyList>() || data.is_instance_of::<PyTuple>()) {
        let items: Vec<Bound<'_, PyAny>> = data.try_iter()?.collect::<PyResult<_>>()?;
        if items.len() != names.len() {
            return Err(error(
                py,
                "FitError",
                format!("{prefix}: {} array(s) for {} ({})", items.len(), names.len(), names.join(", ")),
            ));
        }
        for (a, n) in items.iter().zip(names) {
            out.push((key(n), to_array(a, &format!("{prefix} '{n}'"))?));
        }
        return Ok(());
    }
    let n = names.first().cloned().unwrap_or_default();
    out.push((key(&n), to_array(data, prefix)?));
    Ok(())
}

/// A keyword argument as command-line flags: `learning_rate=0.01` is `--learning-rate 0.01`,
/// `True` the bare flag, `False` and `None` nothing (`shuffle=False` is `--no-shuffle`), a list
/// comma-joined.
fn flags_of(key: &str, v: &Bound<'_, PyAny>, flags: &mut Vec<String>) -> PyResult<()> {
    let flag = format!("--{}", key.replace('_', "-"));
    if v.is_none() {
        return Ok(());
    }
    if let Ok(b) = v.extract::<bool>() {
        match (key, b) {
            ("shuffle", false) => flags.push("--no-shuffle".into()),
            ("dropout", false) => flags.push("--no-dropout".into()),
            ("shuffle" | "dropout", true) => {}
            (_, true) => flags.push(flag),
            (_, false) => {}
        }
        return Ok(());
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<String> =
            v.try_iter()?.map(|i| i.and_then(|i| Ok(i.str()?.to_string()))).collect::<PyResult<_>>()?;
        flags.push(flag);
        flags.push(items.join(","));
        return Ok(());
    }
    flags.push(flag);
    flags.push(v.str()?.to_string());
    Ok(())
}

/// Fine-tunes the model at `path` on `x`/`y` and writes it to `output` (in the input's format,
/// which Keras loads back); returns the history.
#[pyfunction]
#[pyo3(signature = (path, x, y, *, output, epochs=1, batch_size=32, verbose=1, validation_data=None, device=None, **options))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit(
    py: Python<'_>,
    path: PathBuf,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    output: PathBuf,
    epochs: usize,
    batch_size: usize,
    verbose: u8,
    validation_data: Option<&Bound<'_, PyAny>>,
    device: Option<String>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<History> {
    let model = py.detach(|| kerasc::load(&path)).map_err(|e| model_error(py, &e))?;
    let in_names = crate::model::input_names(&model);
    let out_names: Vec<String> = (0..model.graph.outputs().len())
        .map(|k| model.info.output_names.get(k).cloned().unwrap_or_else(|| format!("output_{k}")))
        .collect();
    let mut arrays = Vec::new();
    named(x, "x", &in_names, &mut arrays)?;
    named(y, "y", &out_names, &mut arrays)?;
    if let Some(v) = validation_data {
        let pair: Vec<Bound<'_, PyAny>> = v.try_iter()?.collect::<PyResult<_>>()?;
        if pair.len() != 2 {
            return Err(error(py, "FitError", "validation_data is a pair (x_val, y_val)"));
        }
        named(&pair[0], "x_val", &in_names, &mut arrays)?;
        named(&pair[1], "y_val", &out_names, &mut arrays)?;
    }
    let mut flags: Vec<String> = vec![
        "--output".into(),
        output.display().to_string(),
        "--epochs".into(),
        epochs.to_string(),
        "--batch-size".into(),
        batch_size.to_string(),
        "--verbose".into(),
        verbose.to_string(),
    ];
    if let Some(o) = options {
        for (k, v) in o.iter() {
            let k: String = k.extract()?;
            if matches!(k.as_str(), "data" | "x" | "y" | "label_column") {
                return Err(error(py, "FitError", format!("{k}=: pass the training data as x and y")));
            }
            flags_of(&k, &v, &mut flags)?;
        }
    }
    let mut opts = FitOptions::with_arrays(&flags, arrays).map_err(|e| {
        // clap's message names the flag; say it as the keyword.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
        error(py, "FitError", format!("fit options: {first}"))
    })?;
    let dev = crate::errors::pick_device(py, device.as_deref())?;
    opts.cuda = dev.cuda_options(kerasc::devices::ptx_cache_dir(), opts.memory_limit);
    opts.pool = dev.pool().cloned();
    opts.device = Some(dev.device);
    // Progress drawn by kerasc._progress (through sys.stdout), and Ctrl-C, checked at most every
    // 0.1 s between steps.
    let bar: Option<Py<PyAny>> = if verbose > 0 {
        Some(py.import("kerasc._progress")?.getattr("Progbar")?.call1((verbose,))?.unbind())
    } else {
        None
    };
    let failure: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let last = Mutex::new(std::time::Instant::now() - std::time::Duration::from_secs(1));
    let failed = failure.clone();
    opts.listener = Some(Listener(Arc::new(move |ev: Event<'_>| {
        if let Event::Step { step, steps, .. } = &ev {
            let mut t = last.lock().unwrap_or_else(|p| p.into_inner());
            if *step != *steps && t.elapsed().as_secs_f64() < 0.1 {
                return true;
            }
            *t = std::time::Instant::now();
        }
        Python::attach(|py| {
            let shown = match (&bar, &ev) {
                (None, _) => Ok(()),
                (Some(b), Event::Step { epoch, epochs, step, steps, logs }) => {
                    b.bind(py).call_method1("step", (*epoch, *epochs, *step, *steps, logs.to_vec())).map(|_| ())
                }
                (Some(b), Event::EpochEnd { epoch, epochs, steps, ms, logs }) => {
                    b.bind(py).call_method1("epoch_end", (*epoch, *epochs, *steps, *ms, logs.to_vec())).map(|_| ())
                }
            };
            match shown.and_then(|()| py.check_signals()) {
                Ok(()) => true,
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    false
                }
            }
        })
    })));
    let result = py.detach(|| kerasc::fit::fit(&model, &path, &opts));
    let h = match result {
        Ok(h) => h,
        Err(e) => {
            if let Some(err) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(err);
            }
            return Err(fit_error(py, &e));
        }
    };
    let history = PyDict::new(py);
    let mut epochs_run = 0;
    for (k, v) in &h.series {
        history.set_item(k, v.clone())?;
        epochs_run = epochs_run.max(v.len());
    }
    Ok(History { history: history.unbind(), epoch: (0..epochs_run).collect(), step_loss: h.step_loss })
}
