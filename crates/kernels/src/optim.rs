//! The optimizer update as one fused element-wise pass over every trained weight: each element
//! is read once — its gradient clipped, the weight decayed, the slots and the weight updated —
//! in place, weights in parallel and a large weight split across threads. The arithmetic is
//! Keras 3's, in the order Keras writes it ([`ir::UpdateRule`]).

use crate::KernelError;
use ir::{GradClip, Tensor, UpdateRule, UpdateScalars};

/// Elements below which one weight's update is not split further across threads.
const SPLIT: usize = 1 << 15;

fn bad(message: impl Into<String>) -> KernelError {
    KernelError::Kernel { op: "OptimizerUpdate".into(), node: String::new(), message: message.into() }
}

/// What is done to a gradient element before the update.
#[derive(Debug, Clone, Copy)]
enum Pre {
    Keep,
    /// `g·c / denom` (the per-weight norm clip).
    MulDiv(f32, f32),
    /// `g·s` (the global norm clip).
    Mul(f32),
    /// `clamp(g, −c, c)`.
    Clamp(f32),
}

/// Sum of squares in a fixed order: [`LANES`] running sums over the elements (lane `k` takes
/// elements `k`, `k + LANES`, ...), the tail added to the first lanes, then the lanes added in
/// turn. Independent sums vectorize (one running sum waits on every add); the order does not
/// depend on the machine or the thread count, so a seeded run repeats bit for bit.
fn sum_squares(g: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut blocks = g.chunks_exact(LANES);
    for b in &mut blocks {
        acc.iter_mut().zip(b).for_each(|(a, v)| *a += v * v);
    }
    acc.iter_mut().zip(blocks.remainder()).for_each(|(a, v)| *a += v * v);
    acc.iter().sum()
}

/// Running sums of [`sum_squares`].
const LANES: usize = 16;

/// One update step of every weight: `weights[i]` (float32) with the gradient `grad(i)` and its
/// slots `slots[i]` (`rule.slots()` blocks of the weight's size, one after the other).
pub fn update_all<'g>(
    rule: &UpdateRule,
    s: &UpdateScalars,
    clip: GradClip,
    weights: &mut [Tensor],
    slots: &mut [Vec<f32>],
    grad: impl Fn(usize) -> &'g [f32] + Sync,
) -> Result<(), KernelError> {
    if slots.len() != weights.len() {
        return Err(bad(format!("{} weights but {} slot sets", weights.len(), slots.len())));
    }
    let mut total = 0usize;
    for (i, (w, sl)) in weights.iter().zip(slots.iter()).enumerate() {
        if w.as_f32().is_none() {
            return Err(bad(format!("weight {i} is not float32")));
        }
        if grad(i).len() != w.len() {
            return Err(bad(format!("weight {i} has {} elements, its gradient {}", w.len(), grad(i).len())));
        }
        if sl.len() != rule.slots() * w.len() {
            return Err(bad(format!("weight {i}: {} slot values, {} expected", sl.len(), rule.slots() * w.len())));
        }
        total += w.len();
    }
    let global = match clip {
        GradClip::GlobalNorm(c) => {
            let sq: f32 = (0..weights.len()).map(|i| sum_squares(grad(i))).sum();
            Some(GradClip::global_scale(c, sq.sqrt()))
        }
        _ => None,
    };
    let one = |i: usize, w: &mut Tensor, sl: &mut Vec<f32>| {
        let g = grad(i);
        let pre = match (clip, global) {
            (_, Some(scale)) => Pre::Mul(scale),
            (GradClip::Norm(c), _) => Pre::MulDiv(c, sum_squares(g).sqrt().max(c)),
            (GradClip::Value(c), _) => Pre::Clamp(c),
            _ => Pre::Keep,
        };
        if let Some(w) = w.as_f32_mut() {
            // The rule's slots one after the other, each the weight's size (none: empty).
            let (a, rest) = cut(sl, w.len());
            let (b, c) = cut(rest, w.len());
            split(rule, s, pre, w, g, [a, b, c]);
        }
    };
    if total < SPLIT || rayon::current_num_threads() == 1 {
        for (i, (w, sl)) in weights.iter_mut().zip(slots.iter_mut()).enumerate() {
            one(i, w, sl);
        }
    } else {
        use rayon::prelude::*;
        crate::on_pool(|| {
            weights.par_iter_mut().zip(slots.par_iter_mut()).enumerate().for_each(|(i, (w, sl))| one(i, w, sl));
        });
    }
    Ok(())
}

/// `x` split after `at` values (all of it when shorter).
fn cut(x: &mut [f32], at: usize) -> (&mut [f32], &mut [f32]) {
    let at = at.min(x.len());
    x.split_at_mut(at)
}

/// Halves a range until it is small enough, the halves in parallel.
fn split(rule: &UpdateRule, s: &UpdateScalars, pre: Pre, w: &mut [f32], g: &[f32], slots: [&mut [f32]; 3]) {
    let n = w.len();
    if n <= SPLIT {
        return match pre {
            Pre::Keep => range(rule, s, |g| g, w, g, slots),
            Pre::MulDiv(c, d) => range(rule, s, |g| g * c / d, w, g, slots),
            Pre::Mul(k) => range(rule, s, |g| g * k, w, g, slots),
            Pre::Clamp(c) => range(rule, s, |g: f32| g.clamp(-c, c), w, g, slots),
        };
    }
    let mid = n / 2;
    let [a, b, c] = slots;
    let ((a0, a1), (b0, b1), (c0, c1)) = (cut(a, mid), cut(b, mid), cut(c, mid));
    let (w0, w1) = w.split_at_mut(mid);
    let (g0, g1) = g.split_at(mid);
    rayon::join(|| split(rule, s, pre, w0, g0, [a0, b0, c0]), || split(rule, s, pre, w1, g1, [a1, b1, c1]));
}

/// The update of one range: weights `w`, gradients `g` (made by `pre`), slots `a`, `b`, `c`
/// (as many as the rule has, each `w`'s length; the others empty).
#[inline(always)]
fn range(
    rule: &UpdateRule,
    s: &UpdateScalars,
    pre: impl Fn(f32) -> f32 + Copy,
    w: &mut [f32],
    g: &[f32],
    [a, b, c]: [&mut [f32]; 3],
) {
    let lr = s.lr;
    if let Some(wd) = s.decay {
        w.iter_mut().for_each(|v| *v -= *v * wd * lr);
    }
    match *rule {
        UpdateRule::Sgd { momentum: 0.0, .. } => {
            w.iter_mut().zip(g).for_each(|(w, &g)| *w -= pre(g) * lr);
        }
        UpdateRule::Sgd { momentum, nesterov } => {
            for ((w, &g), m) in w.iter_mut().zip(g).zip(a.iter_mut()) {
                let g = pre(g);
                *m = -g * lr + *m * momentum;
                *w += if nesterov { -g * lr + *m * momentum } else { *m };
            }
        }
        UpdateRule::Adam { beta_1, beta_2, epsilon, amsgrad } => {
            let alpha = s.k[0];
            if amsgrad {
                for ((((w, &g), m), v), vh) in w.iter_mut().zip(g).zip(a.iter_mut()).zip(b.iter_mut()).zip(c.iter_mut())
                {
                    let g = pre(g);
                    *m += (g - *m) * (1.0 - beta_1);
                    *v += (g * g - *v) * (1.0 - beta_2);
                    *vh = vh.max(*v);
                    *w -= *m * alpha / (vh.sqrt() + epsilon);
                }
            } else {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(a.iter_mut()).zip(b.iter_mut()) {
                    let g = pre(g);
                    *m += (g - *m) * (1.0 - beta_1);
                    *v += (g * g - *v) * (1.0 - beta_2);
                    *w -= *m * alpha / (v.sqrt() + epsilon);
                }
            }
        }
        UpdateRule::RmsProp { rho, momentum, epsilon, centered } => {
            // Slots: velocity, momentum, average gradient. One loop per form, without branches
            // (written out: through closures the loops did not vectorize).
            let wg = w.iter_mut().zip(g).zip(a.iter_mut());
            match (centered, momentum > 0.0) {
                (false, false) => {
                    for ((w, &g), v) in wg {
                        let g = pre(g);
                        *v = rho * *v + (1.0 - rho) * g * g;
                        *w -= lr * g / (*v + epsilon).sqrt();
                    }
                }
                (true, false) => {
                    for (((w, &g), v), a) in wg.zip(c.iter_mut()) {
                        let g = pre(g);
                        *v = rho * *v + (1.0 - rho) * g * g;
                        *a = rho * *a + (1.0 - rho) * g;
                        *w -= lr * g / (*v - *a * *a + epsilon).sqrt();
                    }
                }
                (false, true) => {
                    for (((w, &g), v), m) in wg.zip(b.iter_mut()) {
                        let g = pre(g);
                        *v = rho * *v + (1.0 - rho) * g * g;
                        *m = momentum * *m + lr * g / (*v + epsilon).sqrt();
                        *w -= *m;
                    }
                }
                (true, true) => {
                    for ((((w, &g), v), m), a) in wg.zip(b.iter_mut()).zip(c.iter_mut()) {
                        let g = pre(g);
                        *v = rho * *v + (1.0 - rho) * g * g;
                        *a = rho * *a + (1.0 - rho) * g;
                        *m = momentum * *m + lr * g / (*v - *a * *a + epsilon).sqrt();
                        *w -= *m;
                    }
                }
            }
        }
        UpdateRule::Adagrad { epsilon, .. } => {
            for ((w, &g), acc) in w.iter_mut().zip(g).zip(a.iter_mut()) {
                let g = pre(g);
                *acc += g * g;
                *w -= lr * g / (*acc + epsilon).sqrt();
            }
        }
        UpdateRule::Nadam { beta_1, beta_2, epsilon } => {
            let [u_next, one_minus_next, one_minus_u, one_minus_prod, one_minus_b2p] = s.k;
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(a.iter_mut()).zip(b.iter_mut()) {
                let g = pre(g);
                *m += (g - *m) * (1.0 - beta_1);
                *v += (g * g - *v) * (1.0 - beta_2);
                let m_hat = u_next * *m / one_minus_next + one_minus_u * g / one_minus_prod;
                let v_hat = *v / one_minus_b2p;
                *w -= m_hat * lr / (v_hat.sqrt() + epsilon);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update of one element written out plainly, for the fused pass to be checked against.
    fn reference(rule: &UpdateRule, s: &UpdateScalars, g: f32, w: &mut f32, sl: &mut [f32]) {
        if let Some(wd) = s.decay {
            *w -= *w * wd * s.lr;
        }
        let lr = s.lr;
        match *rule {
            UpdateRule::Sgd { momentum, nesterov } => {
                if momentum == 0.0 {
                    *w -= g * lr;
                } else {
                    sl[0] = -g * lr + sl[0] * momentum;
                    *w += if nesterov { -g * lr + sl[0] * momentum } else { sl[0] };
                }
            }
            UpdateRule::Adam { beta_1, beta_2, epsilon, amsgrad } => {
                sl[0] += (g - sl[0]) * (1.0 - beta_1);
                sl[1] += (g * g - sl[1]) * (1.0 - beta_2);
                let v = if amsgrad {
                    sl[2] = sl[2].max(sl[1]);
                    sl[2]
                } else {
                    sl[1]
                };
                *w -= sl[0] * s.k[0] / (v.sqrt() + epsilon);
            }
            UpdateRule::RmsProp { rho, momentum, epsilon, centered } => {
                sl[0] = rho * sl[0] + (1.0 - rho) * g * g;
                let d = if centered {
                    sl[2] = rho * sl[2] + (1.0 - rho) * g;
                    sl[0] - sl[2] * sl[2] + epsilon
                } else {
                    sl[0] + epsilon
                };
                let inc = lr * g / d.sqrt();
                if momentum > 0.0 {
                    sl[1] = momentum * sl[1] + inc;
                    *w -= sl[1];
                } else {
                    *w -= inc;
                }
            }
            UpdateRule::Adagrad { epsilon, .. } => {
                sl[0] += g * g;
                *w -= lr * g / (sl[0] + epsilon).sqrt();
            }
            UpdateRule::Nadam { beta_1, beta_2, epsilon } => {
                sl[0] += (g - sl[0]) * (1.0 - beta_1);
                sl[1] += (g * g - sl[1]) * (1.0 - beta_2);
                let m_hat = s.k[0] * sl[0] / s.k[1] + s.k[2] * g / s.k[3];
                *w -= m_hat * lr / ((sl[1] / s.k[4]).sqrt() + epsilon);
            }
        }
    }

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 * 0.37 + seed) * 1.7).sin()).collect()
    }

    /// Every rule, with each kind of clipping and with weight decay, on weights large enough to
    /// be split across threads and small ones, for three steps: bit for bit the plain update.
    #[test]
    fn fused_pass_is_the_plain_update_bit_for_bit() {
        let sizes = [3usize, 70_001, 17];
        for rule in UpdateRule::test_cases() {
            for clip in [GradClip::None, GradClip::Norm(0.5), GradClip::GlobalNorm(1.0), GradClip::Value(0.3)] {
                let ns = rule.slots();
                let mut ws: Vec<Tensor> =
                    sizes.iter().map(|&n| Tensor::from_f32(&[n], values(n, 0.5)).unwrap()).collect();
                let mut sl: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![rule.slot_init(); ns * n]).collect();
                let mut want_w: Vec<Vec<f32>> = ws.iter().map(|w| w.as_f32().unwrap().to_vec()).collect();
                let mut want_s = sl.clone();
                let mut prod = 1.0f32;
                for t in 1..=3u64 {
                    let gs: Vec<Vec<f32>> = sizes.iter().map(|&n| values(n, t as f32 * 2.1)).collect();
                    prod = rule.next_u_product(prod, t);
                    let s = rule.scalars(0.01 * t as f32, (t == 2).then_some(0.004), t, prod);
                    update_all(&rule, &s, clip, &mut ws, &mut sl, |i| &gs[i]).unwrap();
                    // The reference: clip whole gradients first, then element by element.
                    let mut cg = gs.clone();
                    match clip {
                        GradClip::Norm(c) => cg.iter_mut().for_each(|g| {
                            let d = sum_squares(g).sqrt().max(c);
                            g.iter_mut().for_each(|v| *v = *v * c / d);
                        }),
                        GradClip::GlobalNorm(c) => {
                            let sq: f32 = cg.iter().map(|g| sum_squares(g)).sum();
                            let k = GradClip::global_scale(c, sq.sqrt());
                            cg.iter_mut().flatten().for_each(|v| *v *= k);
                        }
                        GradClip::Value(c) => cg.iter_mut().flatten().for_each(|v| *v = v.clamp(-c, c)),
                        GradClip::None => {}
                    }
                    for (k, n) in sizes.iter().enumerate() {
                        for i in 0..*n {
                            let mut e: Vec<f32> = (0..ns).map(|j| want_s[k][j * n + i]).collect();
                            reference(&rule, &s, cg[k][i], &mut want_w[k][i], &mut e);
                            (0..ns).for_each(|j| want_s[k][j * n + i] = e[j]);
                        }
                    }
                }
                for (k, w) in ws.iter().enumerate() {
                    let got = w.as_f32().unwrap();
                    let same = got.iter().zip(&want_w[k]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{rule:?} {clip:?}: weight {k} differs");
                    let same = sl[k].iter().zip(&want_s[k]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{rule:?} {clip:?}: slots of weight {k} differ");
                }
            }
        }
    }

    #[test]
    fn mismatched_operands_are_errors() {
        let rule = UpdateRule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false };
        let s = rule.scalars(0.1, None, 1, 1.0);
        let mut w = vec![Tensor::from_f32(&[4], vec![0.0; 4]).unwrap()];
        let g = vec![0.0f32; 3];
        let e = update_all(&rule, &s, GradClip::None, &mut w, &mut [vec![0.0; 8]], |_| &g).unwrap_err();
        assert!(e.to_string().contains("gradient 3"), "{e}");
        let g = vec![0.0f32; 4];
        let e = update_all(&rule, &s, GradClip::None, &mut w, &mut [vec![0.0; 4]], |_| &g).unwrap_err();
        assert!(e.to_string().contains("slot values"), "{e}");
        let mut wi = vec![Tensor::new(vec![4], ir::TensorData::I32(vec![0; 4])).unwrap()];
        let e = update_all(&rule, &s, GradClip::None, &mut wi, &mut [vec![0.0; 8]], |_| &g).unwrap_err();
        assert!(e.to_string().contains("float32"), "{e}");
    }
}
