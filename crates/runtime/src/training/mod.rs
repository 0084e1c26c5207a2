//! Training on the CPU: the model's graph turned into a training step (forward, loss, and the
//! backward pass from [`ir::grad`]), the weights as inputs of that step, and optimizers with
//! Keras 3's update formulas applied between steps.

mod optimizers;
mod step;

pub use optimizers::{KerasOptimizer, Kind, Optimizer, OptimizerState, Schedule, Sgd};
pub use step::{Loss, Noise, StepOutput, TrainOptions, TrainStep};
