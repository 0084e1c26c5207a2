//! The graph's inputs from the arrays a user passes for the model's inputs: most as they are,
//! some through a layer kerasc runs on the host (`frontend::text`).

use crate::{ir, npy, Model};

/// An input array that does not fit the model (a string array where numbers go, too few
/// arrays, strings a text layer cannot take).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

macro_rules! bail_input {
    ($($t:tt)*) => {
        return Err(InputError(format!($($t)*)))
    };
}

/// The graph's input tensors from the model's input arrays (Keras's `model.inputs` order): each
/// as it is, or through a layer kerasc runs on the host (TextVectorization or StringLookup on
/// strings, HashedCrossing on integer features). `paths` name the arrays in errors.
pub fn host_inputs(
    model: &Model,
    arrays: Vec<npy::Array>,
    paths: &[std::path::PathBuf],
) -> Result<Vec<ir::Tensor>, InputError> {
    use frontend::text::HostInput;
    let n_model = if model.model_inputs.is_empty() { model.graph.inputs().len() } else { model.model_inputs.len() };
    if model.host_inputs.is_empty() || model.host_inputs.iter().all(|h| matches!(h, HostInput::Direct(_))) {
        return arrays
            .into_iter()
            .zip(paths)
            .map(|(a, p)| match a {
                npy::Array::Tensor(t) => Ok(t),
                npy::Array::Strings(..) => {
                    bail_input!("{}: holds strings, but the model takes numbers there", p.display())
                }
            })
            .collect();
    }
    if arrays.len() != n_model {
        bail_input!(
            "the model has {n_model} input(s) ({}), {} array(s) were given",
            model.model_inputs.join(", "),
            arrays.len()
        );
    }
    let name = |k: usize| model.model_inputs.get(k).cloned().unwrap_or_else(|| k.to_string());
    let tensor = |k: usize| -> Result<&ir::Tensor, InputError> {
        match &arrays[k] {
            npy::Array::Tensor(t) => Ok(t),
            npy::Array::Strings(..) => {
                bail_input!("{}: holds strings, but input '{}' takes numbers", paths[k].display(), name(k))
            }
        }
    };
    model
        .host_inputs
        .iter()
        .map(|h| match h {
            HostInput::Direct(k) => tensor(*k).cloned(),
            HostInput::Text(k, t) => match &arrays[*k] {
                npy::Array::Strings(shape, values) => t.apply(shape, values).map_err(InputError),
                npy::Array::Tensor(_) => {
                    bail_input!("{}: input '{}' takes strings (for {})", paths[*k].display(), name(*k), t.layer)
                }
            },
            HostInput::Cross(ks, c) => {
                let feats: Vec<frontend::text::Feature> = ks.iter().map(|&k| feature(&arrays[k])).collect();
                c.apply(&feats).map_err(InputError)
            }
            HostInput::Hash(k, h) => h.apply(feature(&arrays[*k])).map_err(InputError),
        })
        .collect()
}

fn feature(a: &npy::Array) -> frontend::text::Feature<'_> {
    match a {
        npy::Array::Tensor(t) => frontend::text::Feature::Ints(t),
        npy::Array::Strings(s, v) => frontend::text::Feature::Strings(s, v),
    }
}
