//! Keras 3's learning-rate schedules: the rate each computes at an optimizer step, in float32
//! as Keras computes it. Read from a file's config by the frontend, used by the training
//! optimizers.

/// A learning rate, constant or a Keras schedule of the iteration count.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Constant(f32),
    /// `initial · rate^(step / decay_steps)` (the exponent floored when `staircase`).
    ExponentialDecay {
        initial: f32,
        decay_steps: f32,
        decay_rate: f32,
        staircase: bool,
    },
    /// `initial · ((1 − alpha)·½(1 + cos(π·min(step, decay_steps)/decay_steps)) + alpha)`; with a
    /// warm-up `(target, steps)`, first linear from `initial` to `target` over `steps`, then the
    /// decay from `target`.
    CosineDecay {
        initial: f32,
        decay_steps: f32,
        alpha: f32,
        warmup: Option<(f32, f32)>,
    },
    /// `values[0]` up to and including `boundaries[0]`, ..., `values[n]` after the last.
    PiecewiseConstantDecay {
        boundaries: Vec<f32>,
        values: Vec<f32>,
    },
    /// `initial / (1 + rate · step / decay_steps)` (the quotient floored when `staircase`).
    InverseTimeDecay {
        initial: f32,
        decay_steps: f32,
        decay_rate: f32,
        staircase: bool,
    },
    /// `(initial − end)·(1 − step/decay_steps)^power + end`, the step held at `decay_steps`, or
    /// with `cycle` the decay stretched to the next multiple of `decay_steps`.
    PolynomialDecay {
        initial: f32,
        decay_steps: f32,
        end: f32,
        power: f32,
        cycle: bool,
    },
    /// Cosine decay with warm restarts (SGDR): periods growing by `t_mul`, peaks by `m_mul`.
    CosineDecayRestarts {
        initial: f32,
        first_decay_steps: f32,
        t_mul: f32,
        m_mul: f32,
        alpha: f32,
    },
}

/// `from · ((1 − alpha)·½(1 + cos(π·fraction)) + alpha)`, Keras's cosine decay.
fn cosine(from: f32, fraction: f32, alpha: f32) -> f32 {
    let cos = 0.5 * (1.0 + (std::f32::consts::PI * fraction).cos());
    from * ((1.0 - alpha) * cos + alpha)
}

impl Schedule {
    /// The learning rate at `step`.
    pub fn at(&self, step: u64) -> f32 {
        let s = step as f32;
        match self {
            Schedule::Constant(lr) => *lr,
            Schedule::ExponentialDecay { initial, decay_steps, decay_rate, staircase } => {
                let mut p = s / decay_steps;
                if *staircase {
                    p = p.floor();
                }
                initial * decay_rate.powf(p)
            }
            Schedule::CosineDecay { initial, decay_steps, alpha, warmup: None } => {
                cosine(*initial, s.min(*decay_steps) / decay_steps, *alpha)
            }
            Schedule::CosineDecay { initial, decay_steps, alpha, warmup: Some((target, steps)) } => {
                let s = s.min(decay_steps + steps);
                if s < *steps {
                    (target - initial) * (s / steps) + initial
                } else {
                    cosine(*target, (s - steps) / decay_steps, *alpha)
                }
            }
            Schedule::InverseTimeDecay { initial, decay_steps, decay_rate, staircase } => {
                let mut p = s / decay_steps;
                if *staircase {
                    p = p.floor();
                }
                initial / (1.0 + decay_rate * p)
            }
            Schedule::PolynomialDecay { initial, decay_steps, end, power, cycle } => {
                let (s, d) = if *cycle {
                    let multiplier = if s == 0.0 { 1.0 } else { (s / decay_steps).ceil() };
                    (s, decay_steps * multiplier)
                } else {
                    (s.min(*decay_steps), *decay_steps)
                };
                (initial - end) * (1.0 - s / d).powf(*power) + end
            }
            Schedule::CosineDecayRestarts { initial, first_decay_steps, t_mul, m_mul, alpha } => {
                let fraction = s / first_decay_steps;
                let (restart, fraction) = if *t_mul == 1.0 {
                    let i = fraction.floor();
                    (i, fraction - i)
                } else {
                    let i = ((1.0 - fraction * (1.0 - t_mul)).ln() / t_mul.ln()).floor();
                    let sum = (1.0 - t_mul.powf(i)) / (1.0 - t_mul);
                    (i, (fraction - sum) / t_mul.powf(i))
                };
                // Keras scales the cosine by m_mul^restart, not the floor alpha.
                let cos = 0.5 * m_mul.powf(restart) * (1.0 + (std::f32::consts::PI * fraction).cos());
                initial * ((1.0 - alpha) * cos + alpha)
            }
            Schedule::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries.iter().position(|&b| s <= b).unwrap_or(boundaries.len());
                values.get(i).or_else(|| values.last()).copied().unwrap_or(0.0)
            }
        }
    }
}
