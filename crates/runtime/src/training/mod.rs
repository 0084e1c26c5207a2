//! Training on the CPU: the model's graph turned into a training step (forward, loss, and the
//! backward pass from [`ir::grad`]), the weights as inputs of that step, and optimizers with
//! Keras 3's update formulas applied between steps.

mod exec;
mod mirrored;
mod noise;
mod optimizers;
mod step;
mod watched;

pub use exec::{StageOn, StepPlacement};
pub use mirrored::Mirrored;
pub use optimizers::{KerasOptimizer, Kind, Optimizer, OptimizerState, Schedule, Sgd};
pub use step::{Loss, Noise, StepOutput, TrainOptions, TrainStep};

/// Keras's moving statistic after a batch: `moving · momentum + batch · (1 − momentum)`.
pub fn moving_update(moving: &mut ir::Tensor, batch: &ir::Tensor, momentum: f32) -> Result<(), crate::RuntimeError> {
    let keep = (1.0 - momentum as f64) as f32;
    let (m, b) = (moving.as_f32_mut(), batch.as_f32());
    match (m, b) {
        (Some(m), Some(b)) if m.len() == b.len() => {
            m.iter_mut().zip(b).for_each(|(s, x)| *s = *s * momentum + x * keep);
            Ok(())
        }
        _ => Err(crate::RuntimeError::Plan("a moving statistic and its batch statistic differ in size or type".into())),
    }
}
