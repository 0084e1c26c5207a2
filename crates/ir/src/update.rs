//! Keras optimizers' update rules as data: what the CPU kernel (`kernels::optim`) and the CUDA
//! kernel (`codegen::cuda::optim`) apply, element by element, to every trained weight in one
//! pass. The per-step scalars are worked out once, here, for both.

/// An optimizer's update rule and its hyper-parameters (Keras 3's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateRule {
    Sgd { momentum: f32, nesterov: bool },
    Adam { beta_1: f32, beta_2: f32, epsilon: f32, amsgrad: bool },
    RmsProp { rho: f32, momentum: f32, epsilon: f32, centered: bool },
    Adagrad { initial_accumulator_value: f32, epsilon: f32 },
    Nadam { beta_1: f32, beta_2: f32, epsilon: f32 },
}

/// How gradients are clipped before the update (Keras's `clipnorm`, else `global_clipnorm`,
/// else `clipvalue`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradClip {
    None,
    /// Each weight's gradient scaled to an L2 norm of at most `c`: `g·c / max(‖g‖, c)`.
    Norm(f32),
    /// All gradients scaled together to a global L2 norm of at most `c`.
    GlobalNorm(f32),
    /// Each element clamped to `[−c, c]`.
    Value(f32),
}

impl GradClip {
    /// Keras's precedence: `clipnorm`, else `global_clipnorm`, else `clipvalue` (a value ≤ 0
    /// counts as unset).
    pub fn from_keras(clipnorm: Option<f32>, global_clipnorm: Option<f32>, clipvalue: Option<f32>) -> GradClip {
        let set = |c: Option<f32>| c.filter(|&c| c > 0.0);
        match (set(clipnorm), set(global_clipnorm), set(clipvalue)) {
            (Some(c), _, _) => GradClip::Norm(c),
            (None, Some(c), _) => GradClip::GlobalNorm(c),
            (None, None, Some(c)) => GradClip::Value(c),
            _ => GradClip::None,
        }
    }

    /// Keras's global-norm scale for gradients of global norm `norm`: `c·min(1/norm, 1/c)`,
    /// NaN when the norm is not finite.
    pub fn global_scale(c: f32, norm: f32) -> f32 {
        if norm.is_finite() {
            c * (1.0 / norm).min(1.0 / c)
        } else {
            f32::NAN
        }
    }
}

/// The scalars one update step uses, the same for every element.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UpdateScalars {
    /// The learning rate (the schedule's value before the step).
    pub lr: f32,
    /// Decoupled weight decay (`w −= w·decay·lr` before the update); `None`: none.
    pub decay: Option<f32>,
    /// Rule constants of this step. Adam: `[α, ..]` with `α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)`.
    /// Nadam: `[u_{t+1}, 1 − Πu_{..t+1}, 1 − u_t, 1 − Πu_{..t}, 1 − β₂ᵗ]`. Others: unused.
    pub k: [f32; 5],
}

/// How many values [`UpdateScalars::to_array`] gives.
pub const UPDATE_SCALARS: usize = 8;

impl UpdateScalars {
    /// The scalars as the CUDA kernel reads them: `[lr, decay (0 when none), k0..k4, 0]`.
    pub fn to_array(&self) -> [f32; UPDATE_SCALARS] {
        let k = self.k;
        [self.lr, self.decay.unwrap_or(0.0), k[0], k[1], k[2], k[3], k[4], 0.0]
    }
}

impl UpdateRule {
    /// Keras's defaults for an optimizer name, with its default weight decay (`adamw` is Adam
    /// with weight decay 0.004).
    pub fn keras_default(name: &str) -> Option<(UpdateRule, Option<f32>)> {
        Some(match name.to_lowercase().as_str() {
            "sgd" => (UpdateRule::Sgd { momentum: 0.0, nesterov: false }, None),
            "adam" => (UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, None),
            "adamw" => (UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, Some(0.004)),
            "rmsprop" => (UpdateRule::RmsProp { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false }, None),
            "adagrad" => (UpdateRule::Adagrad { initial_accumulator_value: 0.1, epsilon: 1e-7 }, None),
            "nadam" => (UpdateRule::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }, None),
            _ => return None,
        })
    }

    /// Slot variables per weight, each the weight's size: SGD its momentum; Adam `m`, `v` (and
    /// `v̂` with AMSGrad); RMSprop velocity, momentum, average gradient; Adagrad its
    /// accumulator; Nadam `m`, `v`.
    pub fn slots(&self) -> usize {
        match self {
            UpdateRule::Sgd { .. } | UpdateRule::Adagrad { .. } => 1,
            UpdateRule::Adam { amsgrad, .. } => 2 + usize::from(*amsgrad),
            UpdateRule::RmsProp { .. } => 3,
            UpdateRule::Nadam { .. } => 2,
        }
    }

    /// The value the slots start at.
    pub fn slot_init(&self) -> f32 {
        match self {
            UpdateRule::Adagrad { initial_accumulator_value, .. } => *initial_accumulator_value,
            _ => 0.0,
        }
    }

    /// Nadam's running product of momentum factors after step `t` (1-based), from the product
    /// before it; other rules keep it as it is.
    pub fn next_u_product(&self, u_product: f32, t: u64) -> f32 {
        match self {
            UpdateRule::Nadam { beta_1, .. } => u_product * beta_1 * (1.0 - 0.5 * 0.96f32.powf(t as f32)),
            _ => u_product,
        }
    }

    /// The scalars of step `t` (1-based) at learning rate `lr`; `u_product` is Nadam's product
    /// including step `t` ([`UpdateRule::next_u_product`]).
    pub fn scalars(&self, lr: f32, decay: Option<f32>, t: u64, u_product: f32) -> UpdateScalars {
        let tf = t as f32;
        let k = match *self {
            UpdateRule::Adam { beta_1, beta_2, .. } => {
                [lr * (1.0 - beta_2.powf(tf)).sqrt() / (1.0 - beta_1.powf(tf)), 0.0, 0.0, 0.0, 0.0]
            }
            UpdateRule::Nadam { beta_1, beta_2, .. } => {
                let u_t = beta_1 * (1.0 - 0.5 * 0.96f32.powf(tf));
                let u_t_1 = beta_1 * (1.0 - 0.5 * 0.96f32.powf(tf + 1.0));
                let u_product_t_1 = u_product * u_t_1;
                [u_t_1, 1.0 - u_product_t_1, 1.0 - u_t, 1.0 - u_product, 1.0 - beta_2.powf(tf)]
            }
            _ => [0.0; 5],
        };
        UpdateScalars { lr, decay, k }
    }

    /// One rule of each kind and option (plain SGD, momentum, Nesterov, Adam, AMSGrad,
    /// RMSprop plain and centered with momentum, Adagrad, Nadam), hyper-parameters away from
    /// the defaults where that matters: the cases every backend's update is checked on.
    pub fn test_cases() -> Vec<UpdateRule> {
        vec![
            UpdateRule::Sgd { momentum: 0.0, nesterov: false },
            UpdateRule::Sgd { momentum: 0.9, nesterov: false },
            UpdateRule::Sgd { momentum: 0.8, nesterov: true },
            UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false },
            UpdateRule::Adam { beta_1: 0.8, beta_2: 0.99, epsilon: 1e-6, amsgrad: true },
            UpdateRule::RmsProp { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false },
            UpdateRule::RmsProp { rho: 0.8, momentum: 0.5, epsilon: 1e-7, centered: true },
            UpdateRule::Adagrad { initial_accumulator_value: 0.1, epsilon: 1e-7 },
            UpdateRule::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 },
        ]
    }
}
