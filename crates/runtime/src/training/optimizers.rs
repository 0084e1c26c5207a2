//! Optimizers with Keras 3's update rules, in Keras's order: clip the gradients (clipnorm, else
//! global_clipnorm, else clipvalue), decay the weights (`w −= w·wd·lr`), update, count the
//! iteration. The learning rate is the schedule's value at the iteration count before the
//! update. The update itself is one fused pass over all weights (`kernels::optim` on the CPU;
//! `codegen::cuda::optim` is the same pass as a CUDA kernel).

use crate::RuntimeError;
use ir::Tensor;

/// Updates weights from their gradients.
pub trait Optimizer {
    /// One update of every weight (`weights[i]` with `grads[i]`).
    fn apply(&mut self, weights: &mut [Tensor], grads: &[Tensor]) -> Result<(), RuntimeError>;
    /// Updates applied so far (Keras's `iterations`).
    fn iterations(&self) -> u64;
    /// The learning rate the next update uses.
    fn learning_rate(&self) -> f32;
}

/// A learning rate, constant or a Keras schedule of the iteration count.
pub use ir::Schedule;

/// The update rule and its hyper-parameters (Keras 3's defaults in [`Kind::keras_default`]).
pub type Kind = ir::UpdateRule;

/// One optimizer with Keras's gradient clipping and weight decay.
#[derive(Debug, Clone)]
pub struct KerasOptimizer {
    pub kind: Kind,
    pub schedule: Schedule,
    pub clipnorm: Option<f32>,
    pub global_clipnorm: Option<f32>,
    pub clipvalue: Option<f32>,
    pub weight_decay: Option<f32>,
    /// Per weight: the optimizer's slot variables (momentum, velocity, ...), `kind.slots()`
    /// blocks of the weight's size one after the other.
    slots: Vec<Vec<f32>>,
    iterations: u64,
    /// Nadam's running product of momentum factors.
    u_product: f32,
}

/// Keras's SGD.
pub struct Sgd;

impl Sgd {
    /// SGD with a constant learning rate.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(learning_rate: f32, momentum: f32, nesterov: bool) -> KerasOptimizer {
        KerasOptimizer::new(Kind::Sgd { momentum, nesterov }, Schedule::Constant(learning_rate))
    }
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Plan(m.into())
}

/// Everything an optimizer carries between steps, for checkpoints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub iterations: u64,
    pub u_product: f32,
    /// Per weight, its slot variables (each the weight's size).
    pub slots: Vec<Vec<Vec<f32>>>,
}

impl KerasOptimizer {
    /// The state to checkpoint.
    pub fn state(&self) -> OptimizerState {
        let n = self.kind.slots().max(1);
        let slots = self
            .slots
            .iter()
            .map(|flat| {
                let len = flat.len() / n;
                (0..n).map(|k| flat[k * len..(k + 1) * len].to_vec()).collect()
            })
            .collect();
        OptimizerState { iterations: self.iterations, u_product: self.u_product, slots }
    }

    /// Continues from a checkpointed state (slots of the wrong size are an error at the next
    /// update).
    pub fn restore(&mut self, s: OptimizerState) {
        self.iterations = s.iterations;
        self.u_product = s.u_product;
        self.slots = s.slots.into_iter().map(|w| w.concat()).collect();
    }

    /// An optimizer without clipping or weight decay.
    pub fn new(kind: Kind, schedule: Schedule) -> KerasOptimizer {
        KerasOptimizer {
            kind,
            schedule,
            clipnorm: None,
            global_clipnorm: None,
            clipvalue: None,
            weight_decay: None,
            slots: Vec::new(),
            iterations: 0,
            u_product: 1.0,
        }
    }

    /// The clipping Keras applies.
    pub fn clip(&self) -> ir::GradClip {
        ir::GradClip::from_keras(self.clipnorm, self.global_clipnorm, self.clipvalue)
    }

    /// The scalars of the next update, and Nadam's product after it; the state is unchanged.
    pub fn next_scalars(&self) -> (ir::UpdateScalars, f32) {
        let t = self.iterations + 1;
        let u_product = self.kind.next_u_product(self.u_product, t);
        (self.kind.scalars(self.learning_rate(), self.weight_decay, t, u_product), u_product)
    }

    /// Each weight's slot variables (`kind.slots()` blocks of its size), empty before the first
    /// update.
    pub fn slots(&self) -> &[Vec<f32>] {
        &self.slots
    }

    /// Replaces the slot variables (read back from a device that updated them).
    pub fn set_slots(&mut self, slots: Vec<Vec<f32>>) {
        self.slots = slots;
    }

    /// Counts an update made elsewhere (on a device) with [`KerasOptimizer::next_scalars`]'s
    /// scalars; `u_product` is the product those gave.
    pub fn commit(&mut self, u_product: f32) {
        self.u_product = u_product;
        self.iterations += 1;
    }

    /// The slot variables of weights of `sizes` elements, made (at the rule's initial value)
    /// unless there is one set per weight already.
    pub fn ensure_slots(&mut self, sizes: impl ExactSizeIterator<Item = usize>) {
        if self.slots.len() != sizes.len() {
            let (n, init) = (self.kind.slots(), self.kind.slot_init());
            self.slots = sizes.map(|len| vec![init; n * len]).collect();
        }
    }

    /// One update of every weight with the gradient `grad(i)` of weight `i`, wherever the
    /// gradients are (a training step's arena): one fused pass over all weights
    /// ([`kernels::optim::update_all`]), nothing copied.
    pub fn apply_with<'g>(
        &mut self,
        weights: &mut [Tensor],
        grad: impl Fn(usize) -> &'g [f32] + Sync,
    ) -> Result<(), RuntimeError> {
        self.ensure_slots(weights.iter().map(Tensor::len));
        let (s, u_product) = self.next_scalars();
        let clip = self.clip();
        kernels::optim::update_all(&self.kind, &s, clip, weights, &mut self.slots, grad)
            .map_err(|e| err(e.to_string()))?;
        self.commit(u_product);
        Ok(())
    }
}

impl Optimizer for KerasOptimizer {
    fn apply(&mut self, weights: &mut [Tensor], grads: &[Tensor]) -> Result<(), RuntimeError> {
        if weights.len() != grads.len() {
            return Err(err(format!("{} weights but {} gradients", weights.len(), grads.len())));
        }
        if grads.iter().any(|g| g.as_f32().is_none()) {
            return Err(err("gradient is not float32"));
        }
        self.apply_with(weights, |i| grads[i].as_f32().unwrap_or(&[]))
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn learning_rate(&self) -> f32 {
        self.schedule.at(self.iterations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut opt: KerasOptimizer, w0: &[f32], grads: &[&[f32]]) -> Vec<f32> {
        let mut w = vec![Tensor::from_f32(&[w0.len()], w0.to_vec()).unwrap()];
        for g in grads {
            let gt = Tensor::from_f32(&[g.len()], g.to_vec()).unwrap();
            opt.apply(&mut w, std::slice::from_ref(&gt)).unwrap();
        }
        w[0].as_f32().unwrap().to_vec()
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    // Each expected value below is worked out by hand from Keras 3's update formula.

    #[test]
    fn sgd_plain_momentum_nesterov() {
        // w = 1, g = 0.5 twice, lr 0.1. Momentum 0.9: m = -0.05, w = 0.95; m = -0.095, w = 0.855.
        close(&run(Sgd::new(0.1, 0.0, false), &[1.0], &[&[0.5]]), &[0.95]);
        close(&run(Sgd::new(0.1, 0.9, false), &[1.0], &[&[0.5], &[0.5]]), &[0.855]);
        // Nesterov, one step: m = -0.05, w += -0.05 + 0.9·(-0.05) = -0.095.
        close(&run(Sgd::new(0.1, 0.9, true), &[1.0], &[&[0.5]]), &[0.905]);
    }

    #[test]
    fn adam_and_amsgrad() {
        // Step 1, g = 0.5: m = 0.05, v = 0.00025, alpha = 0.1·√0.001/0.1 = √0.001,
        // w = 1 − 0.05·√0.001/(√0.00025 + 1e-7).
        let adam = || {
            KerasOptimizer::new(
                Kind::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false },
                Schedule::Constant(0.1),
            )
        };
        let w1 = 1.0 - 0.05 * 0.001f64.sqrt() / (0.00025f64.sqrt() + 1e-7);
        close(&run(adam(), &[1.0], &[&[0.5]]), &[w1]);
        // Step 2, g = -0.2: m = 0.045 − 0.02 = 0.025, v = 0.00024975 + 0.00004 = 0.00028975,
        // alpha = 0.1·√(1 − 0.999²)/(1 − 0.81).
        let alpha2 = 0.1 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.81);
        let w2 = w1 - 0.025 * alpha2 / (0.00028975f64.sqrt() + 1e-7);
        close(&run(adam(), &[1.0], &[&[0.5], &[-0.2]]), &[w2]);
        // AMSGrad with a shrinking second moment keeps the maximum: g = 1 then 0.
        let ams = KerasOptimizer::new(
            Kind::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: true },
            Schedule::Constant(0.1),
        );
        let v1 = 0.001f64;
        let wa1 = 1.0 - 0.1 * 0.001f64.sqrt() / (v1.sqrt() + 1e-7);
        let (m2, v2) = (0.09f64, 0.000999f64);
        let a2 = 0.1 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.81);
        let wa2 = wa1 - m2 * a2 / (v1.max(v2).sqrt() + 1e-7);
        close(&run(ams, &[1.0], &[&[1.0], &[0.0]]), &[wa2]);
    }

    #[test]
    fn adamw_decays_before_the_update() {
        // w = 2, g = 0: decay 2 − 2·0.004·0.1, Adam step is zero (m = 0).
        let mut o = KerasOptimizer::new(
            Kind::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false },
            Schedule::Constant(0.1),
        );
        o.weight_decay = Some(0.004);
        close(&run(o, &[2.0], &[&[0.0]]), &[2.0 - 2.0 * 0.004 * 0.1]);
    }

    #[test]
    fn rmsprop_plain_centered_momentum() {
        // v = 0.1·0.25 = 0.025; w = 1 − 0.1·0.5/√(0.025 + 1e-7).
        let plain = KerasOptimizer::new(
            Kind::RmsProp { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false },
            Schedule::Constant(0.1),
        );
        close(&run(plain, &[1.0], &[&[0.5]]), &[1.0 - 0.05 / (0.025f64 + 1e-7).sqrt()]);
        // Centered: avg = 0.05, denominator = 0.025 − 0.0025 + 1e-7.
        let cen = KerasOptimizer::new(
            Kind::RmsProp { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: true },
            Schedule::Constant(0.1),
        );
        close(&run(cen, &[1.0], &[&[0.5]]), &[1.0 - 0.05 / (0.0225f64 + 1e-7).sqrt()]);
        // Momentum 0.5 over two equal steps: inc1 = 0.05/√0.025, inc2 = 0.05/√0.0475.
        let mom = KerasOptimizer::new(
            Kind::RmsProp { rho: 0.9, momentum: 0.5, epsilon: 1e-7, centered: false },
            Schedule::Constant(0.1),
        );
        let i1 = 0.05 / (0.025f64 + 1e-7).sqrt();
        let i2 = 0.05 / (0.0475f64 + 1e-7).sqrt();
        close(&run(mom, &[1.0], &[&[0.5], &[0.5]]), &[1.0 - i1 - (0.5 * i1 + i2)]);
    }

    #[test]
    fn adagrad_and_nadam() {
        // Accumulator 0.1 + 0.25 = 0.35; w = 1 − 0.1·0.5/√(0.35 + 1e-7).
        let ada = KerasOptimizer::new(
            Kind::Adagrad { initial_accumulator_value: 0.1, epsilon: 1e-7 },
            Schedule::Constant(0.1),
        );
        close(&run(ada, &[1.0], &[&[0.5]]), &[1.0 - 0.05 / (0.35f64 + 1e-7).sqrt()]);
        // Nadam step 1, g = 0.5: u1 = 0.9(1 − 0.5·0.96), u2 = 0.9(1 − 0.5·0.96²), product = u1,
        // m = 0.05, v = 0.00025, m̂ = u2·m/(1 − u1·u2) + (1 − u1)·g/(1 − u1), v̂ = v/0.001.
        let u1 = 0.9 * (1.0 - 0.5 * 0.96f64);
        let u2 = 0.9 * (1.0 - 0.5 * 0.96f64 * 0.96);
        let mh = u2 * 0.05 / (1.0 - u1 * u2) + (1.0 - u1) * 0.5 / (1.0 - u1);
        let vh: f64 = 0.00025 / (1.0 - 0.999);
        let nad =
            KerasOptimizer::new(Kind::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }, Schedule::Constant(0.1));
        close(&run(nad, &[1.0], &[&[0.5]]), &[1.0 - mh * 0.1 / (vh.sqrt() + 1e-7)]);
    }

    #[test]
    fn clipping() {
        // clipnorm 1 on g = (3, 4): scaled by 1/5. global_clipnorm 1 over two weights (3), (4): 1/5.
        let mut o = Sgd::new(1.0, 0.0, false);
        o.clipnorm = Some(1.0);
        close(&run(o, &[0.0, 0.0], &[&[3.0, 4.0]]), &[-0.6, -0.8]);
        let mut o = Sgd::new(1.0, 0.0, false);
        o.global_clipnorm = Some(1.0);
        let mut w = vec![Tensor::from_f32(&[1], vec![0.0]).unwrap(), Tensor::from_f32(&[1], vec![0.0]).unwrap()];
        let g = [Tensor::from_f32(&[1], vec![3.0]).unwrap(), Tensor::from_f32(&[1], vec![4.0]).unwrap()];
        o.apply(&mut w, &g).unwrap();
        close(&[w[0].as_f32().unwrap()[0], w[1].as_f32().unwrap()[0]], &[-0.6, -0.8]);
        let mut o = Sgd::new(1.0, 0.0, false);
        o.clipvalue = Some(0.5);
        close(&run(o, &[0.0, 0.0], &[&[3.0, -0.25]]), &[-0.5, 0.25]);
    }

    #[test]
    fn schedules() {
        let e = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10.0, decay_rate: 0.5, staircase: false };
        assert!((e.at(5) - 0.1 * 0.5f32.powf(0.5)).abs() < 1e-7);
        let s = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10.0, decay_rate: 0.5, staircase: true };
        assert!((s.at(15) - 0.05).abs() < 1e-7);
        let c = Schedule::CosineDecay { initial: 0.1, decay_steps: 10.0, alpha: 0.2, warmup: None };
        assert!((c.at(5) - 0.1 * (0.8 * 0.5 + 0.2)).abs() < 1e-7);
        assert!((c.at(50) - 0.1 * 0.2).abs() < 1e-7);
        let p = Schedule::PiecewiseConstantDecay { boundaries: vec![10.0, 20.0], values: vec![1.0, 0.5, 0.1] };
        assert_eq!((p.at(10), p.at(11), p.at(20), p.at(21)), (1.0, 0.5, 0.5, 0.1));
        // The schedule is read at the iteration count before each update.
        let mut o = KerasOptimizer::new(Kind::Sgd { momentum: 0.0, nesterov: false }, p);
        assert_eq!(o.learning_rate(), 1.0);
        let mut w = vec![Tensor::from_f32(&[1], vec![0.0]).unwrap()];
        for _ in 0..11 {
            o.apply(&mut w, &[Tensor::from_f32(&[1], vec![1.0]).unwrap()]).unwrap();
        }
        assert_eq!(o.learning_rate(), 0.5);
        close(w[0].as_f32().unwrap(), &[-11.0]);
    }
}
