//! The optimizer's state as Keras keeps it in a saved file: its `optimizer.variables` after the
//! iteration count and learning rate, in the order Keras's optimizers create them (Adam: each
//! weight's momentum and velocity in turn, then AMSGrad's maxima; RMSprop: every velocity, then
//! every momentum, then every average gradient; Nadam ends with its momentum product). `fit`
//! starts from a file's state as Keras's `load_model` + `fit` does, and writes its own back, so
//! Keras continues where kerasc stopped.

use super::config;
use super::error::FitError;
use super::options::OptimizerFlags;
use crate::frontend::keras::save::SavedOptimizer;
use crate::frontend::keras::training_config::TrainingConfig;
use crate::ir::Tensor;
use crate::runtime::training::{KerasOptimizer, Kind};

/// One of Keras's optimizer variables: a slot of a weight, or Nadam's momentum product.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Var {
    Slot { weight: usize, slot: usize, suffix: &'static str },
    UProduct,
}

/// Keras's optimizer variables for `n` weights, in its order.
fn layout(kind: &Kind, n: usize) -> Vec<Var> {
    let each = |slot: usize, suffix: &'static str| (0..n).map(move |weight| Var::Slot { weight, slot, suffix });
    let pairs = || {
        (0..n).flat_map(|weight| {
            [Var::Slot { weight, slot: 0, suffix: "momentum" }, Var::Slot { weight, slot: 1, suffix: "velocity" }]
        })
    };
    match *kind {
        Kind::Sgd { momentum, .. } => each(0, "momentum").filter(|_| momentum != 0.0).collect(),
        Kind::Adam { amsgrad, .. } => pairs().chain(each(2, "velocity_hat").filter(|_| amsgrad)).collect(),
        Kind::RmsProp { momentum, centered, .. } => each(0, "velocity")
            .chain(each(1, "momentum").filter(|_| momentum > 0.0))
            .chain(each(2, "average_gradient").filter(|_| centered))
            .collect(),
        Kind::Adagrad { .. } => each(0, "accumulator").collect(),
        Kind::Nadam { .. } => pairs().chain([Var::UProduct]).collect(),
    }
}

/// Whether the optimizer `fit` trains with keeps the variables the file's own optimizer (the one
/// Keras rebuilds from its `training_config`) keeps, so that state can pass between them.
pub(crate) fn matches_file(tc: &TrainingConfig, used: &KerasOptimizer, flags: &OptimizerFlags) -> bool {
    let Some(file_opt) = &tc.optimizer else { return false };
    if flags.optimizer.as_deref().is_some_and(|n| n.to_lowercase() != file_opt.name) {
        return false;
    }
    let Ok(file) = config::optimizer(tc, &OptimizerFlags::default()) else { return false };
    std::mem::discriminant(&file.kind) == std::mem::discriminant(&used.kind)
        && layout(&file.kind, 1) == layout(&used.kind, 1)
}

/// The optimizer's variables to write, named as Keras names them (`dense_kernel_momentum`);
/// `names` and `shapes` are the trained weights', in Keras's order.
pub(crate) fn to_file(
    opt: &KerasOptimizer,
    names: &[String],
    shapes: &[Vec<usize>],
) -> Result<Vec<(String, Tensor)>, FitError> {
    let st = opt.state();
    layout(&opt.kind, names.len())
        .into_iter()
        .map(|v| match v {
            Var::Slot { weight, slot, suffix } => {
                let data = st.slots.get(weight).and_then(|s| s.get(slot)).cloned().unwrap_or_default();
                let t = Tensor::from_f32(&shapes[weight], data).map_err(|e| super::error::invalid(e.to_string()))?;
                Ok((format!("{}_{suffix}", names[weight].replace('/', "_")), t))
            }
            Var::UProduct => Ok(("variable".to_string(), Tensor::scalar(st.u_product))),
        })
        .collect()
}

/// Starts `opt` from a file's optimizer variables; `Err` says why they do not fit (then the
/// optimizer starts afresh, as Keras's does when it cannot load them).
pub(crate) fn restore(opt: &mut KerasOptimizer, saved: &SavedOptimizer, shapes: &[Vec<usize>]) -> Result<(), String> {
    let vars = layout(&opt.kind, shapes.len());
    if vars.len() != saved.variables.len() {
        return Err(format!(
            "the file's optimizer keeps {} variables where this one has {}",
            saved.variables.len(),
            vars.len()
        ));
    }
    opt.ensure_slots(shapes.iter().map(|s| s.iter().product()));
    let mut st = opt.state();
    for (v, t) in vars.iter().zip(&saved.variables) {
        let data = t.as_f32().ok_or("an optimizer variable is not float32")?;
        match *v {
            Var::Slot { weight, slot, .. } => {
                let n: usize = shapes[weight].iter().product();
                if data.len() != n {
                    return Err(format!("an optimizer variable holds {} values for a weight of {n}", data.len()));
                }
                let s = st.slots.get_mut(weight).and_then(|s| s.get_mut(slot)).ok_or("optimizer slots are missing")?;
                s.clear();
                s.extend_from_slice(data);
            }
            Var::UProduct => st.u_product = data.first().copied().unwrap_or(1.0),
        }
    }
    st.iterations = u64::try_from(saved.iterations).map_err(|_| "a negative iteration count")?;
    opt.restore(st);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_orders_its_optimizer_variables() {
        let names = |k: &Kind| {
            layout(k, 2)
                .iter()
                .map(|v| match v {
                    Var::Slot { weight, suffix, .. } => format!("{weight}{suffix}"),
                    Var::UProduct => "u".into(),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let adam = Kind::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: true };
        assert_eq!(names(&adam), "0momentum,0velocity,1momentum,1velocity,0velocity_hat,1velocity_hat");
        let rms = Kind::RmsProp { rho: 0.9, momentum: 0.5, epsilon: 1e-7, centered: true };
        assert_eq!(names(&rms), "0velocity,1velocity,0momentum,1momentum,0average_gradient,1average_gradient");
        assert_eq!(names(&Kind::Sgd { momentum: 0.0, nesterov: false }), "");
        assert_eq!(
            names(&Kind::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }),
            "0momentum,0velocity,1momentum,1velocity,u"
        );
    }
}
