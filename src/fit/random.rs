//! The run's seeded randomness (SplitMix64, not Keras's generator): the per-epoch shuffle and
//! the noise layers' masks and noise, drawn so that a resumed run draws the same.

use super::error::{invalid, FitError};
use crate::ir::Tensor;
use crate::runtime::training::Noise;

/// The per-epoch shuffle (seeded; not Keras's own order).
pub(crate) fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

/// SplitMix64: the generator behind shuffling and the noise layers (seeded; not Keras's).
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// A generator for one stream of a seeded run.
    pub(crate) fn new(seed: u64, stream: u64) -> SplitMix {
        SplitMix(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Values of `shape` drawn once per element of the noise shape, whose axes in `broadcast` (bit
/// `i` for axis `i`: Keras's `noise_shape` entry 1) have size 1, and repeated along them.
fn broadcast_draws(shape: &[usize], broadcast: u16, mut draw: impl FnMut() -> f32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if broadcast == 0 {
        return (0..n).map(|_| draw()).collect();
    }
    let small: Vec<usize> =
        shape.iter().enumerate().map(|(i, &d)| if broadcast >> i & 1 == 1 { 1 } else { d }).collect();
    let draws: Vec<f32> = (0..small.iter().product::<usize>()).map(|_| draw()).collect();
    (0..n)
        .map(|mut i| {
            // The element's index in the noise shape, axis by axis from the last.
            let (mut at, mut stride) = (0, 1);
            for (&d, &s) in shape.iter().zip(&small).rev() {
                at += (i % d) % s * stride;
                stride *= s;
                i /= d;
            }
            draws[at]
        })
        .collect()
}

/// One noise tensor of `shape` for `kind`: a mask to multiply by, or noise to add.
pub(crate) fn noise_tensor(
    kind: Noise,
    shape: &[usize],
    channels_first: bool,
    broadcast: u16,
    rng: &mut SplitMix,
) -> Result<Tensor, FitError> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = match kind {
        Noise::Dropout { rate } => {
            let keep = 1.0 / (1.0 - rate);
            broadcast_draws(shape, broadcast, || if rng.uniform() >= rate as f64 { keep } else { 0.0 })
        }
        Noise::AlphaDropout { rate } => {
            broadcast_draws(shape, broadcast, || if rng.uniform() >= rate as f64 { 1.0 } else { 0.0 })
        }
        Noise::SpatialDropout { rate } => {
            // One draw per (sample, channel), broadcast over the spatial positions.
            let keep = 1.0 / (1.0 - rate);
            let b = shape.first().copied().unwrap_or(1);
            let c = if channels_first { shape.get(1) } else { shape.last() }.copied().unwrap_or(1);
            let draws: Vec<f32> = (0..b * c).map(|_| if rng.uniform() >= rate as f64 { keep } else { 0.0 }).collect();
            let inner: usize = if channels_first { shape.iter().skip(2).product() } else { 1 };
            let per_sample = n / b.max(1);
            (0..n)
                .map(|i| {
                    let (s, r) = (i / per_sample.max(1), i % per_sample.max(1));
                    let ch = if channels_first { r / inner.max(1) } else { r % c.max(1) };
                    draws[s * c + ch]
                })
                .collect()
        }
        Noise::GaussianNoise { stddev } => (0..n).map(|_| (rng.normal() * stddev as f64) as f32).collect(),
        Noise::GaussianDropout { rate } => {
            let sd = (rate as f64 / (1.0 - rate as f64)).sqrt();
            (0..n).map(|_| (1.0 + rng.normal() * sd) as f32).collect()
        }
    };
    Tensor::from_f32(shape, v).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn dropout_masks_keep_the_expected_fraction_and_the_mean() {
        let mut rng = SplitMix::new(1, 2);
        let t = noise_tensor(Noise::Dropout { rate: 0.3 }, &[100, 1000], false, 0, &mut rng).unwrap();
        let v = t.to_f32_vec();
        let zeros = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.01, "dropped {zeros}");
        assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.7).abs() < 1e-6));
        assert!((stats(&v).0 - 1.0).abs() < 0.02);
    }

    #[test]
    fn spatial_dropout_drops_whole_channels() {
        let mut rng = SplitMix::new(3, 4);
        // channels_last (batch 4, 5x6 positions, 16 channels) and channels_first (4, 16, 30).
        for (shape, cf) in [(vec![4usize, 5, 6, 16], false), (vec![4, 16, 30], true)] {
            let v = noise_tensor(Noise::SpatialDropout { rate: 0.5 }, &shape, cf, 0, &mut rng).unwrap().to_f32_vec();
            let per = v.len() / 4;
            let mut dropped = 0;
            for s in 0..4 {
                for c in 0..16 {
                    let at: Vec<f32> = (0..per)
                        .filter(|r| if cf { r / 30 == c } else { r % 16 == c })
                        .map(|r| v[s * per + r])
                        .collect();
                    assert!(at.iter().all(|&x| x == at[0]), "channel {c} of sample {s} is not one draw");
                    dropped += usize::from(at[0] == 0.0);
                }
            }
            assert!(dropped > 10 && dropped < 54, "{dropped} of 64 channels dropped");
        }
    }

    #[test]
    fn gaussian_noise_and_dropout_have_keras_moments() {
        let mut rng = SplitMix::new(5, 6);
        let v =
            noise_tensor(Noise::GaussianNoise { stddev: 0.5 }, &[200_000], false, 0, &mut rng).unwrap().to_f32_vec();
        let (m, s) = stats(&v);
        assert!(m.abs() < 0.01 && (s - 0.5).abs() < 0.01, "mean {m} std {s}");
        let v =
            noise_tensor(Noise::GaussianDropout { rate: 0.2 }, &[200_000], false, 0, &mut rng).unwrap().to_f32_vec();
        let (m, s) = stats(&v);
        assert!((m - 1.0).abs() < 0.01 && (s - 0.5).abs() < 0.01, "mean {m} std {s} (want 1, sqrt(0.2/0.8))");
    }

    #[test]
    fn the_generator_is_seeded() {
        let draw = |seed, stream| {
            let mut r = SplitMix::new(seed, stream);
            (0..4).map(|_| r.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 2), draw(1, 2));
        assert_ne!(draw(1, 2), draw(1, 3));
        assert_ne!(draw(1, 2), draw(2, 2));
    }

    /// Dropout with a noise_shape draws once per element of the noise shape: the mask is
    /// constant along the axes whose entry is 1; AlphaDropout's keep mask is 0/1 at `1 − rate`.
    #[test]
    fn noise_shapes_broadcast_and_alpha_dropout_keeps() {
        let mut rng = SplitMix::new(3, 4);
        // (batch 50, time 20, features 8) with noise_shape (None, 1, 8): one draw per (sample, feature).
        let v = noise_tensor(Noise::Dropout { rate: 0.5 }, &[50, 20, 8], false, 0b010, &mut rng).unwrap().to_f32_vec();
        for b in 0..50 {
            for f in 0..8 {
                let first = v[b * 160 + f];
                assert!((0..20).all(|t| v[b * 160 + t * 8 + f] == first), "sample {b} feature {f} varies over time");
            }
        }
        let zeros = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.5).abs() < 0.08, "{zeros}");
        let m = noise_tensor(Noise::AlphaDropout { rate: 0.2 }, &[100_000], false, 0, &mut rng).unwrap().to_f32_vec();
        assert!(m.iter().all(|&x| x == 0.0 || x == 1.0));
        let kept = m.iter().sum::<f32>() as f64 / m.len() as f64;
        assert!((kept - 0.8).abs() < 0.01, "{kept}");
    }
}
