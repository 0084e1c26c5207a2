//! Losses computed as one op: softmax cross-entropy and its gradient.

use crate::util::{f32s, tensor};
use crate::KernelError;
use ir::{Op, Tensor};

/// Per-row softmax cross-entropy of `logits` against class ids (`sparse`) or probabilities;
/// with `dloss`, its gradient with respect to the logits scaled by `dloss`.
pub fn cross_entropy(
    op: &Op,
    sparse: bool,
    logits: &Tensor,
    labels: &Tensor,
    dloss: Option<&Tensor>,
    out_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let z = f32s(op, logits)?;
    let c = *logits.shape().last().unwrap_or(&1);
    let rows = z.len() / c.max(1);
    let ids: Vec<i64> = if sparse { labels.to_f64_vec().iter().map(|&v| v as i64).collect() } else { Vec::new() };
    let probs: Vec<f32> = if sparse { Vec::new() } else { labels.to_f32_vec() };
    let dl = match dloss {
        Some(t) => Some(f32s(op, t)?),
        None => None,
    };
    let mut out = vec![0f32; out_shape.iter().product()];
    for r in 0..rows {
        let zr = &z[r * c..(r + 1) * c];
        let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = zr.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + sum.ln();
        if sparse && (ids[r] < 0 || ids[r] as usize >= c) {
            return Err(KernelError::new(op, format!("label {} is out of range [0, {c})", ids[r])));
        }
        match dl {
            None => {
                out[r] = if sparse {
                    lse - zr[ids[r] as usize]
                } else {
                    -(0..c).map(|j| probs[r * c + j] * (zr[j] - lse)).sum::<f32>()
                };
            }
            Some(dl) => {
                // d/dz_j of -Σ p·(z − lse) is (Σp)·softmax_j − p_j (Σp = 1 for one-hot labels).
                let mass: f32 = if sparse { 1.0 } else { probs[r * c..(r + 1) * c].iter().sum() };
                for j in 0..c {
                    let sm = (zr[j] - lse).exp();
                    let target = if sparse { f32::from(ids[r] as usize == j) } else { probs[r * c + j] };
                    out[r * c + j] = (mass * sm - target) * dl[r];
                }
            }
        }
    }
    tensor(out_shape, out)
}
