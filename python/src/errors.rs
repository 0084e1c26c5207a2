//! kerasc's errors as the Python exceptions of `kerasc._errors` (one class per kind, each also a
//! `ValueError` or `RuntimeError` where Python code would catch one).

use kerasc::fit::FitError;
use kerasc::{CompileError, FrontendError, RuntimeError};
use pyo3::prelude::*;

/// An exception of class `class` (a name in `kerasc._errors`) with `message`.
pub(crate) fn error(py: Python<'_>, class: &str, message: impl std::fmt::Display) -> PyErr {
    let message = message.to_string();
    let made = py
        .import("kerasc._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)))
        .map(PyErr::from_value);
    made.unwrap_or_else(|e| e)
}

pub(crate) fn model_error(py: Python<'_>, e: &FrontendError) -> PyErr {
    error(py, "ModelError", e)
}

pub(crate) fn runtime_error(py: Python<'_>, e: &RuntimeError) -> PyErr {
    let class = match e {
        RuntimeError::Input { .. } | RuntimeError::InputCount { .. } => "InputError",
        RuntimeError::BadDevice(_) | RuntimeError::Unavailable { .. } | RuntimeError::Logical(_) => "DeviceError",
        _ => "ExecutionError",
    };
    error(py, class, e)
}

pub(crate) fn compile_error(py: Python<'_>, e: &CompileError) -> PyErr {
    match e {
        CompileError::Runtime(r) => runtime_error(py, r),
        CompileError::Optimize(_) => error(py, "ExecutionError", e),
    }
}

/// Compiling a model for the inputs of a call failed: they do not fit (an input error), or the
/// model cannot be compiled for them.
pub(crate) fn specialize_error(py: Python<'_>, e: kerasc::specialize::SpecializeError) -> PyErr {
    use kerasc::specialize::SpecializeError as E;
    match e {
        E::Input(i) => error(py, "InputError", i),
        E::Model(m @ FrontendError::NeedsInputs { .. }) => error(py, "InputError", m),
        E::Model(m) => model_error(py, &m),
        E::Compile(c) => compile_error(py, &c),
    }
}

pub(crate) fn fit_error(py: Python<'_>, e: &FitError) -> PyErr {
    match e {
        FitError::Frontend(f) => model_error(py, f),
        FitError::Runtime(r) => runtime_error(py, r),
        FitError::Npy(n) => error(py, "InputError", n),
        FitError::Interrupted => pyo3::exceptions::PyKeyboardInterrupt::new_err(e.to_string()),
        FitError::Invalid(_) => error(py, "FitError", e),
    }
}

/// The device `requested` names (TensorFlow's names), else the lowest GPU, else the CPU, as the
/// command line chooses; `DeviceError` for a name that is not a device or not on this machine.
pub(crate) fn pick_device(py: Python<'_>, requested: Option<&str>) -> PyResult<kerasc::LogicalDevice> {
    let devs = kerasc::LogicalDevices::physical();
    let chosen = match requested {
        Some(s) => kerasc::Device::parse(s).map_err(|e| runtime_error(py, &e))?,
        None => devs.default_device(),
    };
    Ok(devs.get(chosen).map_err(|e| runtime_error(py, &e))?.clone())
}
