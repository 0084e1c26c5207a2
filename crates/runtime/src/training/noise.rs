//! The noise layers a training step makes active (Dropout and its kinds, Gaussian noise,
//! AlphaDropout): what each does with the noise tensor the step takes per batch.

/// A noise layer made active for training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// Keep each element with probability `1 − rate`, scaled by `1/(1 − rate)`.
    Dropout { rate: f32 },
    /// Like `Dropout`, one draw per channel for all spatial positions.
    SpatialDropout { rate: f32 },
    /// Add `N(0, stddev²)`.
    GaussianNoise { stddev: f32 },
    /// Multiply by `N(1, rate/(1 − rate))`.
    GaussianDropout { rate: f32 },
    /// Keras's AlphaDropout: a kept element becomes `a·x + b`, a dropped one `a·α′ + b`
    /// (α′ = −SELU's α·scale, `a` and `b` keeping SELU's mean and variance); the noise tensor is
    /// the 0/1 keep mask.
    AlphaDropout { rate: f32 },
}

/// AlphaDropout's constants at `rate`: (a, b, α′).
pub fn alpha_dropout_affine(rate: f32) -> (f32, f32, f32) {
    let (alpha, scale) = (1.673_263_2_f64, 1.050_701_f64);
    let alpha_p = -alpha * scale;
    let r = f64::from(rate);
    let a = ((1.0 - r) * (1.0 + r * alpha_p * alpha_p)).powf(-0.5);
    let b = -a * alpha_p * r;
    (a as f32, b as f32, alpha_p as f32)
}

#[cfg(test)]
mod tests {
    /// AlphaDropout's constants as Keras computes them (`keras.layers.AlphaDropout.call`).
    #[test]
    fn alpha_dropout_keeps_selu_statistics_as_keras() {
        let (a, b, alpha_p) = super::alpha_dropout_affine(0.2);
        assert!((a - 0.878_903_6).abs() < 1e-6 && (b - 0.309_04).abs() < 1e-5 && (alpha_p + 1.758_099_3).abs() < 1e-6);
    }
}
