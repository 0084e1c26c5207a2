//! Models compiled for the inputs they run on. An ONNX graph may leave sizes other than the
//! batch symbolic, or take as inputs the tensors that decide its shapes (Resize's scales,
//! Slice's starts, Reshape's target) or its weights: it compiles once those inputs are seen.
//! As XLA does with compile-time-constant inputs, the inputs' shapes and the values that
//! matter key a cache of compiled plans, so a second run with the same ones compiles nothing.

use crate::{host, ir, npy, FrontendError, LoadOptions, Model};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a model could not be prepared for some inputs.
#[derive(Debug, thiserror::Error)]
pub enum SpecializeError {
    #[error(transparent)]
    Model(#[from] FrontendError),
    #[error(transparent)]
    Input(#[from] host::InputError),
    #[error(transparent)]
    Compile(#[from] crate::CompileError),
}

/// The shape of a host array.
pub fn shape_of(a: &npy::Array) -> &[usize] {
    match a {
        npy::Array::Tensor(t) => t.shape(),
        npy::Array::Strings(s, _) => s,
    }
}

/// Loads `path` for `arrays` (model input order): symbolic sizes take theirs, and the inputs
/// whose values the graph needs at load time are bound to them (rounds of
/// [`FrontendError::NeedsInputs`], each binding what the last asked). Returns the model and, per
/// input, whether it was bound.
pub fn load_for(path: &Path, arrays: &[npy::Array]) -> Result<(Model, Vec<bool>), SpecializeError> {
    let shapes: Vec<Vec<usize>> = arrays.iter().map(|a| shape_of(a).to_vec()).collect();
    let mut values: Vec<Option<ir::Tensor>> = vec![None; arrays.len()];
    loop {
        let options = LoadOptions { input_shapes: Some(shapes.clone()), input_values: values.clone() };
        match frontend::load(path, &options) {
            Ok(m) => return Ok((m, values.iter().map(Option::is_some).collect())),
            Err(FrontendError::NeedsInputs { file, needs }) => {
                let mut bound_one = false;
                for n in &needs {
                    match (n.values, arrays.get(n.index), values.get(n.index)) {
                        (true, Some(npy::Array::Tensor(t)), Some(None)) => {
                            values[n.index] = Some(t.clone());
                            bound_one = true;
                        }
                        (_, None, _) => {
                            return Err(host::InputError(format!(
                                "{file}: {} array(s) were given, but compiling needs {n}",
                                arrays.len()
                            ))
                            .into())
                        }
                        _ => {}
                    }
                }
                if !bound_one {
                    return Err(FrontendError::NeedsInputs { file, needs }.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What about the inputs a compiled plan depends on: each input's shape past the first axis,
/// and the values of the bound ones.
#[derive(Debug, Clone, PartialEq)]
struct Key(Vec<(Vec<usize>, Option<ir::Tensor>)>);

fn key(arrays: &[npy::Array], bound: &[bool]) -> Key {
    Key(arrays
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let s = shape_of(a);
            let value = match a {
                npy::Array::Tensor(t) if bound.get(k).copied().unwrap_or(false) => Some(t.clone()),
                _ => None,
            };
            (if value.is_some() { s.to_vec() } else { s.iter().skip(1).copied().collect() }, value)
        })
        .collect())
}

/// One compiled specialization: the model as loaded for its inputs, and what runs it (an
/// [`Executor`], or what a caller builds from the model).
pub struct Compiled<R> {
    pub model: Model,
    /// Per model input, whether its values are compiled in (the run does not take it).
    pub bound: Vec<bool>,
    pub runner: R,
}

/// A model file compiled per distinct inputs, the last few plans kept.
pub struct Specializing<R> {
    path: PathBuf,
    /// Per model input, whether its values were bound the last time (a key needs them).
    bound: Mutex<Vec<bool>>,
    plans: Mutex<Vec<(Key, Arc<Compiled<R>>)>>,
}

/// Plans kept per model.
const KEPT: usize = 8;

impl<R> Specializing<R> {
    pub fn new(path: &Path) -> Specializing<R> {
        Specializing { path: path.to_path_buf(), bound: Mutex::new(Vec::new()), plans: Mutex::new(Vec::new()) }
    }

    /// The plan for `arrays`: a kept one, or compiled now by `build` from the model loaded for
    /// them ([`load_for`]).
    pub fn get(
        &self,
        arrays: &[npy::Array],
        build: impl FnOnce(&Model) -> Result<R, SpecializeError>,
    ) -> Result<Arc<Compiled<R>>, SpecializeError> {
        let bound = self.bound.lock().map(|b| b.clone()).unwrap_or_default();
        let k = key(arrays, &bound);
        if let Ok(mut plans) = self.plans.lock() {
            if let Some(i) = plans.iter().position(|(pk, _)| *pk == k) {
                let hit = plans.remove(i);
                let c = hit.1.clone();
                plans.insert(0, hit);
                return Ok(c);
            }
        }
        let (model, now_bound) = load_for(&self.path, arrays)?;
        let runner = build(&model)?;
        let compiled = Arc::new(Compiled { model, bound: now_bound.clone(), runner });
        if let Ok(mut b) = self.bound.lock() {
            *b = now_bound.clone();
        }
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(0, (key(arrays, &now_bound), compiled.clone()));
            plans.truncate(KEPT);
        }
        Ok(compiled)
    }

    /// The plan compiled or used last, if any.
    pub fn latest(&self) -> Option<Arc<Compiled<R>>> {
        self.plans.lock().ok()?.first().map(|(_, c)| c.clone())
    }

    /// How many plans are kept now.
    pub fn kept(&self) -> usize {
        self.plans.lock().map(|p| p.len()).unwrap_or(0)
    }
}
