//! Optimizers with Keras 3's update rules, applied to host tensors.

use crate::RuntimeError;
use ir::Tensor;

/// Updates weights from their gradients.
pub trait Optimizer {
    /// One update of every weight (`weights[i]` with `grads[i]`).
    fn apply(&mut self, weights: &mut [Tensor], grads: &[Tensor]) -> Result<(), RuntimeError>;
    /// Updates applied so far (Keras's `iterations`).
    fn iterations(&self) -> u64;
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
}

/// Keras's SGD: `v = momentum·v − lr·g; w += v` (Nesterov: `w += momentum·v − lr·g`); plain
/// `w −= lr·g` without momentum.
#[derive(Debug, Clone)]
pub struct Sgd {
    pub learning_rate: f32,
    pub momentum: f32,
    pub nesterov: bool,
    velocity: Vec<Vec<f32>>,
    iterations: u64,
}

impl Sgd {
    /// An SGD optimizer.
    pub fn new(learning_rate: f32, momentum: f32, nesterov: bool) -> Sgd {
        Sgd { learning_rate, momentum, nesterov, velocity: Vec::new(), iterations: 0 }
    }
}

impl Optimizer for Sgd {
    fn apply(&mut self, weights: &mut [Tensor], grads: &[Tensor]) -> Result<(), RuntimeError> {
        if weights.len() != grads.len() {
            return Err(RuntimeError::Plan(format!("{} weights but {} gradients", weights.len(), grads.len())));
        }
        if self.velocity.len() != weights.len() {
            self.velocity = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        }
        let lr = self.learning_rate;
        for ((w, g), v) in weights.iter_mut().zip(grads).zip(&mut self.velocity) {
            let gs = g.as_f32().ok_or_else(|| RuntimeError::Plan("gradient is not float32".into()))?;
            let ws = w.as_f32_mut().ok_or_else(|| RuntimeError::Plan("weight is not float32".into()))?;
            if gs.len() != ws.len() {
                return Err(RuntimeError::Plan("gradient and weight sizes differ".into()));
            }
            if self.momentum == 0.0 {
                ws.iter_mut().zip(gs).for_each(|(w, &g)| *w -= lr * g);
                continue;
            }
            for ((w, &g), v) in ws.iter_mut().zip(gs).zip(v.iter_mut()) {
                *v = self.momentum * *v - lr * g;
                *w += if self.nesterov { self.momentum * *v - lr * g } else { *v };
            }
        }
        self.iterations += 1;
        Ok(())
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_momentum_and_nesterov_follow_keras() {
        // Hand-computed: w = 1, g = 0.5 twice, lr 0.1, momentum 0.9.
        let g = Tensor::from_f32(&[1], vec![0.5]).unwrap();
        let mut w = vec![Tensor::from_f32(&[1], vec![1.0]).unwrap()];
        let mut sgd = Sgd::new(0.1, 0.9, false);
        sgd.apply(&mut w, std::slice::from_ref(&g)).unwrap(); // v = -0.05, w = 0.95
        sgd.apply(&mut w, std::slice::from_ref(&g)).unwrap(); // v = -0.095, w = 0.855
        assert!((w[0].as_f32().unwrap()[0] - 0.855).abs() < 1e-6);
        let mut w = vec![Tensor::from_f32(&[1], vec![1.0]).unwrap()];
        let mut nes = Sgd::new(0.1, 0.9, true);
        nes.apply(&mut w, std::slice::from_ref(&g)).unwrap(); // v = -0.05, w += 0.9·-0.05 − 0.05 = -0.095
        assert!((w[0].as_f32().unwrap()[0] - 0.905).abs() < 1e-6);
        let mut w = vec![Tensor::from_f32(&[1], vec![1.0]).unwrap()];
        let mut plain = Sgd::new(0.1, 0.0, false);
        plain.apply(&mut w, &[g]).unwrap();
        assert!((w[0].as_f32().unwrap()[0] - 0.95).abs() < 1e-7);
        assert_eq!(plain.iterations(), 1);
    }
}
