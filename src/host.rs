//! The graph's inputs from the arrays a user passes for the model's inputs: most as they are,
//! some through a layer kerasc runs on the host (`frontend::text`).

use crate::{ir, npy, Model};
use frontend::text::{Feature, HostInput};

/// An input array that does not fit the model (a string array where numbers go, too few
/// arrays, strings a text layer cannot take).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn feature(a: &npy::Array) -> Feature<'_> {
    match a {
        npy::Array::Tensor(t) => Feature::Ints(t),
        npy::Array::Strings(s, v) => Feature::Strings(s, v),
    }
}

/// One model input's array as its graph input takes it: as it is (`None` or a direct input), or
/// through the TextVectorization, StringLookup or Hashing that reads it. `what` names the array
/// in errors.
pub fn through(host: Option<&HostInput>, a: npy::Array, what: &str) -> Result<ir::Tensor, InputError> {
    match (host, a) {
        (None | Some(HostInput::Direct(_)), npy::Array::Tensor(t)) => Ok(t),
        (None | Some(HostInput::Direct(_)), npy::Array::Strings(..)) => {
            Err(InputError(format!("{what}: holds strings, but the model takes numbers there")))
        }
        (Some(HostInput::Text(_, t)), npy::Array::Strings(shape, values)) => {
            t.apply(&shape, &values).map_err(InputError)
        }
        (Some(HostInput::Text(_, t)), npy::Array::Tensor(_)) => {
            Err(InputError(format!("{what}: holds numbers, but {} takes strings", t.layer)))
        }
        (Some(HostInput::Hash(_, h)), a) => h.apply(feature(&a)).map_err(InputError),
        (Some(HostInput::Cross(_, c)), _) => {
            Err(InputError(format!("{what}: {} crosses it with other inputs", c.layer)))
        }
    }
}

/// The graph's input tensors from the model's input arrays (Keras's `model.inputs` order): each
/// as it is, or through a layer kerasc runs on the host (TextVectorization or StringLookup on
/// strings, Hashing and HashedCrossing on integers or strings). `paths` name the arrays in
/// errors.
pub fn host_inputs(
    model: &Model,
    arrays: Vec<npy::Array>,
    paths: &[std::path::PathBuf],
) -> Result<Vec<ir::Tensor>, InputError> {
    let what = |k: usize| paths.get(k).map_or_else(|| format!("input {k}"), |p| p.display().to_string());
    let identity = model.host_inputs.iter().enumerate().all(|(i, h)| matches!(h, HostInput::Direct(k) if *k == i))
        && (model.model_inputs.is_empty() || model.model_inputs.len() == model.host_inputs.len());
    if identity {
        // Any number of arrays: the session says what it takes.
        return arrays
            .into_iter()
            .enumerate()
            .map(|(k, a)| match a {
                npy::Array::Tensor(t) => Ok(t),
                a => through(None, a, &what(k)),
            })
            .collect();
    }
    let n_model = if model.model_inputs.is_empty() { model.graph.inputs().len() } else { model.model_inputs.len() };
    if arrays.len() != n_model {
        return Err(InputError(format!(
            "the model has {n_model} input(s) ({}), {} array(s) were given",
            model.model_inputs.join(", "),
            arrays.len()
        )));
    }
    // Each model input feeds one graph input: its array is taken, not copied.
    let mut arrays: Vec<Option<npy::Array>> = arrays.into_iter().map(Some).collect();
    let mut take = |k: usize| {
        arrays.get_mut(k).and_then(Option::take).ok_or_else(|| InputError(format!("{}: read twice", what(k))))
    };
    model
        .host_inputs
        .iter()
        .map(|h| match h {
            HostInput::Direct(k) | HostInput::Text(k, _) | HostInput::Hash(k, _) => {
                through(Some(h), take(*k)?, &what(*k))
            }
            HostInput::Cross(ks, c) => {
                let taken = ks.iter().map(|&k| take(k)).collect::<Result<Vec<_>, _>>()?;
                let feats: Vec<Feature> = taken.iter().map(feature).collect();
                c.apply(&feats).map_err(InputError)
            }
        })
        .collect()
}

/// The graph's input tensors converted as Keras converts what it is given: token ids may come as
/// int32 or int64, and a float input as float64 or as integers (uint8 images) or booleans.
/// Floats into an integer input stay as they are (the session refuses them, naming both dtypes).
pub fn as_input_dtypes(graph: &ir::Graph, tensors: Vec<ir::Tensor>) -> Vec<ir::Tensor> {
    tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let Some(&v) = graph.inputs().get(i) else { return t };
            let want = graph.value(v).ty.dtype;
            if t.dtype() != want && (want.is_float() || !t.dtype().is_float()) {
                t.cast(want)
            } else {
                t
            }
        })
        .collect()
}
