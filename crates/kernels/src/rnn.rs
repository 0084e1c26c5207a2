//! Recurrent layers (SimpleRNN, LSTM, GRU) over a whole sequence, with initial states and masks.

use crate::matmul::sgemm;
use crate::scalar::in_place_unary;
use crate::util::{f32s, tensor};
use crate::KernelError;
use ir::{Op, RnnAttrs, RnnKind, Tensor};

/// Runs a recurrent layer with zero initial state, the input projection done for all steps in
/// one GEMM. Outputs follow [`ir::RnnAttrs`].
pub fn rnn(op: &Op, a: &RnnAttrs, inputs: &[&Tensor]) -> Result<Vec<Tensor>, KernelError> {
    let x = f32s(op, inputs[0])?;
    let w = f32s(op, inputs[1])?;
    let rk = f32s(op, inputs[2])?;
    let bias = match inputs.get(3).filter(|_| a.has_bias(inputs.len())) {
        Some(b) => Some(f32s(op, b)?),
        None => None,
    };
    let sh = inputs[0].shape();
    let (n, t, f) = (sh[0], sh[1], sh[2]);
    let u = a.units;
    let gates = match a.kind {
        RnnKind::Simple => 1,
        RnnKind::Lstm => 4,
        RnnKind::Gru { .. } => 3,
    };
    let gu = gates * u;
    let mut xp = vec![0f32; n * t * gu];
    sgemm(n * t, gu, f, &mut xp, gu, x, f, 1, w, gu, 1, false, rayon::current_num_threads())?;
    let (in_bias, rec_bias): (Option<&[f32]>, Option<&[f32]>) = match (a.kind, bias) {
        (RnnKind::Gru { reset_after: true }, Some(b)) => (Some(&b[..gu]), Some(&b[gu..])),
        (_, b) => (b, None),
    };
    if let Some(b) = in_bias {
        for row in xp.chunks_mut(gu) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
    let mut h = vec![0f32; n * u];
    let mut c = vec![0f32; n * u];
    if a.initial_state {
        let k = a.state_index(inputs.len());
        h.copy_from_slice(f32s(op, inputs[k])?);
        if a.kind == RnnKind::Lstm {
            c.copy_from_slice(f32s(op, inputs[k + 1])?);
        }
    }
    let mut hp = vec![0f32; n * gu];
    // Scratch of the reset-before GRU step, allocated once.
    let (mut rh, mut zs, mut cand) = (vec![0f32; n * u], vec![0f32; n * u], vec![0f32; n * u]);
    let mut seq = if a.return_sequences { vec![0f32; n * t * u] } else { Vec::new() };
    let mask = if a.masked { Some(f32s(op, inputs[inputs.len() - 1])?) } else { None };
    // With a mask: the previous step's output (zeros before the first) and state.
    let mut prev_out = vec![0f32; n * u];
    let (mut h_old, mut c_old) = (Vec::new(), Vec::new());
    for step in 0..t {
        let ti = if a.go_backwards { t - 1 - step } else { step };
        if mask.is_some() {
            h_old.clone_from(&h);
            c_old.clone_from(&c);
        }
        match a.kind {
            RnnKind::Gru { reset_after: false } => {
                // z and r use h·U[:, :2u]; the candidate uses (r∘h)·U[:, 2u:].
                sgemm(n, 2 * u, u, &mut hp, gu, &h, u, 1, rk, gu, 1, false, 1)?;
                for b in 0..n {
                    let xr = &xp[(b * t + ti) * gu..(b * t + ti + 1) * gu];
                    // z and r as one row of 2u gates, activated at once.
                    let g = &mut hp[b * gu..b * gu + 2 * u];
                    g.iter_mut().zip(xr).for_each(|(v, &x)| *v += x);
                    in_place_unary(a.recurrent_activation, g);
                    zs[b * u..(b + 1) * u].copy_from_slice(&g[..u]);
                    for j in 0..u {
                        rh[b * u + j] = g[u + j] * h[b * u + j];
                    }
                }
                sgemm(n, u, u, &mut cand, u, &rh, u, 1, &rk[2 * u..], gu, 1, false, 1)?;
                for b in 0..n {
                    let xr = &xp[(b * t + ti) * gu..(b * t + ti + 1) * gu];
                    let cr = &mut cand[b * u..(b + 1) * u];
                    cr.iter_mut().zip(&xr[2 * u..]).for_each(|(v, &x)| *v += x);
                    in_place_unary(a.activation, cr);
                    for j in 0..u {
                        let z = zs[b * u + j];
                        h[b * u + j] = z * h[b * u + j] + (1.0 - z) * cr[j];
                    }
                }
            }
            RnnKind::Lstm => {
                sgemm(n, gu, u, &mut hp, gu, &h, u, 1, rk, gu, 1, false, 1)?;
                // The gates of each sample as whole rows: pre-activations, then each gate's
                // activation over its `u` values at once (vector sigmoid where it is one).
                for b in 0..n {
                    let xr = &xp[(b * t + ti) * gu..(b * t + ti + 1) * gu];
                    let g = &mut hp[b * gu..(b + 1) * gu];
                    g.iter_mut().zip(xr).for_each(|(v, &x)| *v += x);
                    let (ifg, rest) = g.split_at_mut(2 * u);
                    let (cand, og) = rest.split_at_mut(u);
                    in_place_unary(a.recurrent_activation, ifg);
                    in_place_unary(a.activation, cand);
                    in_place_unary(a.recurrent_activation, og);
                    let (ig, fg) = ifg.split_at(u);
                    let (cr, hr) = (&mut c[b * u..(b + 1) * u], &mut h[b * u..(b + 1) * u]);
                    for j in 0..u {
                        cr[j] = fg[j] * cr[j] + ig[j] * cand[j];
                    }
                    hr.copy_from_slice(cr);
                    in_place_unary(a.activation, hr);
                    hr.iter_mut().zip(og.iter()).for_each(|(v, &o)| *v *= o);
                }
            }
            _ => {
                sgemm(n, gu, u, &mut hp, gu, &h, u, 1, rk, gu, 1, false, 1)?;
                if let Some(rb) = rec_bias {
                    for row in hp.chunks_mut(gu) {
                        row.iter_mut().zip(rb).for_each(|(v, &bb)| *v += bb);
                    }
                }
                // Whole rows of gates per sample, each activation over them at once.
                for b in 0..n {
                    let xr = &xp[(b * t + ti) * gu..(b * t + ti + 1) * gu];
                    let hr = &mut hp[b * gu..(b + 1) * gu];
                    let hb = &mut h[b * u..(b + 1) * u];
                    if a.kind == RnnKind::Simple {
                        hb.iter_mut().zip(xr.iter().zip(hr.iter())).for_each(|(v, (&x, &r))| *v = x + r);
                        in_place_unary(a.activation, hb);
                        continue;
                    }
                    // GRU, reset after the recurrent product: z, r, then x_h + r ∘ (h·U_h).
                    let (zr, hh) = hr.split_at_mut(2 * u);
                    zr.iter_mut().zip(xr).for_each(|(v, &x)| *v += x);
                    in_place_unary(a.recurrent_activation, zr);
                    for j in 0..u {
                        hh[j] = xr[2 * u + j] + zr[u + j] * hh[j];
                    }
                    in_place_unary(a.activation, hh);
                    for j in 0..u {
                        let z = zr[j];
                        hb[j] = z * hb[j] + (1.0 - z) * hh[j];
                    }
                }
            }
        }
        if let Some(m) = mask {
            for b in 0..n {
                let row = b * u..(b + 1) * u;
                if m[b * t + ti] == 0.0 {
                    h[row.clone()].copy_from_slice(&h_old[row.clone()]);
                    c[row.clone()].copy_from_slice(&c_old[row.clone()]);
                    if a.zero_output_for_mask {
                        prev_out[row].fill(0.0);
                    }
                } else {
                    prev_out[row.clone()].copy_from_slice(&h[row]);
                }
            }
        }
        if a.return_sequences {
            let src = if mask.is_some() { &prev_out } else { &h };
            for b in 0..n {
                seq[(b * t + step) * u..(b * t + step + 1) * u].copy_from_slice(&src[b * u..(b + 1) * u]);
            }
        }
    }
    let last = if mask.is_some() { prev_out } else { h.clone() };
    let y = if a.return_sequences { tensor(&[n, t, u], seq)? } else { tensor(&[n, u], last)? };
    let mut out = vec![y, tensor(&[n, u], h)?];
    if a.kind == RnnKind::Lstm {
        out.push(tensor(&[n, u], c)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::UnaryOp;

    /// Tanh/sigmoid attributes of a layer without initial state, mask or reversal.
    fn attrs(kind: RnnKind, units: usize, return_sequences: bool) -> RnnAttrs {
        RnnAttrs {
            kind,
            units,
            activation: UnaryOp::Tanh,
            recurrent_activation: UnaryOp::Sigmoid,
            return_sequences,
            go_backwards: false,
            initial_state: false,
            masked: false,
            zero_output_for_mask: false,
        }
    }

    #[test]
    fn simple_rnn_by_hand() {
        // one unit, identity weights: h_t = tanh(x_t + h_{t-1})
        let x = Tensor::from_f32(&[1, 3, 1], vec![0.5, -0.25, 1.0]).unwrap();
        let w = Tensor::from_f32(&[1, 1], vec![1.0]).unwrap();
        let r = Tensor::from_f32(&[1, 1], vec![1.0]).unwrap();
        let a = attrs(RnnKind::Simple, 1, true);
        let out = rnn(&Op::Rnn(a.clone()), &a, &[&x, &w, &r]).unwrap();
        let h1 = 0.5f32.tanh();
        let h2 = (-0.25 + h1).tanh();
        let h3 = (1.0 + h2).tanh();
        let want = [h1 as f64, h2 as f64, h3 as f64];
        assert!(ir::Tolerance::ELEMENTWISE.compare(&out[0].to_f64_vec(), &want).passed());
        assert!(ir::Tolerance::ELEMENTWISE.compare(&out[1].to_f64_vec(), &want[2..]).passed());
    }

    #[test]
    fn gru_reset_before_and_after_agree_without_recurrent_bias() {
        // With zero recurrent bias and h0 = 0 for one step, both variants give the same result.
        let x = Tensor::from_f32(&[2, 1, 2], vec![0.3, -0.7, 1.1, 0.2]).unwrap();
        let w = Tensor::from_f32(&[2, 6], (0..12).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap();
        let r = Tensor::from_f32(&[2, 6], (0..12).map(|i| (i as f32 * 0.91).cos()).collect()).unwrap();
        let mk = |reset_after| attrs(RnnKind::Gru { reset_after }, 2, false);
        let a = mk(true);
        let b = mk(false);
        let ba = Tensor::zeros(&[2, 6]);
        let bb = Tensor::zeros(&[6]);
        let ya = rnn(&Op::Rnn(a.clone()), &a, &[&x, &w, &r, &ba]).unwrap();
        let yb = rnn(&Op::Rnn(b.clone()), &b, &[&x, &w, &r, &bb]).unwrap();
        assert!(ir::Tolerance::ELEMENTWISE.compare(&ya[0].to_f64_vec(), &yb[0].to_f64_vec()).passed());
    }

    /// GRU (reset before and after) and LSTM over several steps and a batch of 3, against
    /// Keras's formulas step by step in f64: the rows-of-gates kernels keep the arithmetic.
    #[test]
    fn recurrent_cells_match_keras_formulas_over_steps() {
        let (n, t, f, u) = (3usize, 5usize, 4usize, 6usize);
        let val = |k: usize, s: f32| (k as f32 * s).sin() * 0.8;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        for kind in [RnnKind::Gru { reset_after: false }, RnnKind::Gru { reset_after: true }, RnnKind::Lstm] {
            let g = if kind == RnnKind::Lstm { 4 } else { 3 };
            let gu = g * u;
            let x: Vec<f32> = (0..n * t * f).map(|k| val(k, 0.37)).collect();
            let w: Vec<f32> = (0..f * gu).map(|k| val(k, 0.71)).collect();
            let r: Vec<f32> = (0..u * gu).map(|k| val(k, 1.13)).collect();
            let reset_after = kind == (RnnKind::Gru { reset_after: true });
            let nb = if reset_after { 2 * gu } else { gu };
            let bias: Vec<f32> = (0..nb).map(|k| val(k, 0.53) * 0.5).collect();
            let a = attrs(kind, u, true);
            let bshape: Vec<usize> = if reset_after { vec![2, gu] } else { vec![gu] };
            let ts = [
                Tensor::from_f32(&[n, t, f], x.clone()).unwrap(),
                Tensor::from_f32(&[f, gu], w.clone()).unwrap(),
                Tensor::from_f32(&[u, gu], r.clone()).unwrap(),
                Tensor::from_f32(&bshape, bias.clone()).unwrap(),
            ];
            let got = rnn(&Op::Rnn(a.clone()), &a, &[&ts[0], &ts[1], &ts[2], &ts[3]]).unwrap();
            let mut want = vec![0f64; n * t * u];
            for b in 0..n {
                let (mut h, mut c) = (vec![0f64; u], vec![0f64; u]);
                for s in 0..t {
                    let xs = &x[(b * t + s) * f..(b * t + s + 1) * f];
                    let xw = |col: usize| -> f64 {
                        (0..f).map(|i| xs[i] as f64 * w[i * gu + col] as f64).sum::<f64>() + bias[col] as f64
                    };
                    let hu = |hv: &[f64], col: usize| -> f64 { (0..u).map(|i| hv[i] * r[i * gu + col] as f64).sum() };
                    let rb = |col: usize| if reset_after { bias[gu + col] as f64 } else { 0.0 };
                    let mut hn = vec![0f64; u];
                    match kind {
                        RnnKind::Lstm => {
                            for j in 0..u {
                                let i = sig(xw(j) + hu(&h, j));
                                let fg = sig(xw(u + j) + hu(&h, u + j));
                                let gg = (xw(2 * u + j) + hu(&h, 2 * u + j)).tanh();
                                let o = sig(xw(3 * u + j) + hu(&h, 3 * u + j));
                                c[j] = fg * c[j] + i * gg;
                                hn[j] = o * c[j].tanh();
                            }
                        }
                        _ => {
                            let z: Vec<f64> = (0..u).map(|j| sig(xw(j) + hu(&h, j) + rb(j))).collect();
                            let rr: Vec<f64> = (0..u).map(|j| sig(xw(u + j) + hu(&h, u + j) + rb(u + j))).collect();
                            let rh: Vec<f64> = (0..u).map(|j| rr[j] * h[j]).collect();
                            for j in 0..u {
                                let hh = if reset_after {
                                    (xw(2 * u + j) + rr[j] * (hu(&h, 2 * u + j) + rb(2 * u + j))).tanh()
                                } else {
                                    (xw(2 * u + j) + hu(&rh, 2 * u + j)).tanh()
                                };
                                hn[j] = z[j] * h[j] + (1.0 - z[j]) * hh;
                            }
                        }
                    }
                    h = hn;
                    want[(b * t + s) * u..(b * t + s + 1) * u].copy_from_slice(&h);
                }
            }
            let c = ir::Tolerance::MODEL.compare(&got[0].to_f64_vec(), &want);
            assert!(c.passed(), "{kind:?}: {c}");
        }
    }
}
