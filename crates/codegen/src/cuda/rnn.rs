//! Recurrent layers: one block per batch row stepping through time, the state in shared memory.

use super::context::Ctx;
use super::{expr, KernelSource, Launch};
use crate::CodegenError;
use ir::{DType, RnnAttrs, RnnKind};

impl Ctx<'_> {
    /// A recurrent layer: one block per batch row runs every time step; the hidden (and cell)
    /// state lives in shared memory, each thread owning a strided set of units.
    pub(super) fn rnn(&self, a: &RnnAttrs) -> Result<KernelSource, CodegenError> {
        let x = self.ishape(0).to_vec();
        let (nb, t, f) = (x[0], x[1], x[2]);
        let u = a.units;
        // Seven (units)-long shared arrays must fit in 48 KB of static shared memory.
        if u > 1536 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 recurrent layers of at most 1536 units"));
        }
        let gates = match a.kind {
            RnnKind::Simple => 1,
            RnnKind::Lstm => 4,
            RnnKind::Gru { .. } => 3,
        };
        let gu = gates * u;
        let has_bias = a.has_bias(self.node.inputs.len());
        let reset_after = matches!(a.kind, RnnKind::Gru { reset_after: true });
        let act = |v: &str| expr::unary(a.activation, v);
        let ract = |v: &str| expr::unary(a.recurrent_activation, v);
        let bias_in = |col: &str| if has_bias { format!("in3[{col}]") } else { "0.f".into() };
        let bias_rec = |col: &str| if has_bias && reset_after { format!("in3[{gu} + {col}]") } else { "0.f".into() };
        // x_t · W[:, col] + input bias, and h · U[:, col] (+ recurrent bias).
        let xw =
            |col: String| format!("({} + kc_dot_x(in0 + ((long long)b * {t} + ti) * {f}, in1 + {col}))", bias_in(&col));
        let hu = |col: String, h: &str| format!("({} + kc_dot_h({h}, in2 + {col}))", bias_rec(&col));
        let threads = u.clamp(32, 256).div_ceil(32) * 32;
        let step = match a.kind {
            RnnKind::Simple => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) hn[j] = {};\n",
                act(&format!("{} + {}", xw("j".into()), hu("j".into(), "h")))
            ),
            RnnKind::Lstm => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float ig = {i};
        const float fg = {fg};
        const float gg = {g};
        const float og = {o};
        const float cc = fg * c[j] + ig * gg;
        cn[j] = cc;
        hn[j] = og * {actc};
      }}
",
                i = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                fg = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                g = act(&format!("{} + {}", xw(format!("{} + j", 2 * u)), hu(format!("{} + j", 2 * u), "h"))),
                o = ract(&format!("{} + {}", xw(format!("{} + j", 3 * u)), hu(format!("{} + j", 3 * u), "h"))),
                actc = act("cc"),
            ),
            RnnKind::Gru { reset_after: true } => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float z = {z};
        const float r = {r};
        const float hh = {hh};
        hn[j] = z * h[j] + (1.f - z) * hh;
      }}
",
                z = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                r = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                hh = act(&format!("{} + r * {}", xw(format!("{} + j", 2 * u)), hu(format!("{} + j", 2 * u), "h"))),
            ),
            RnnKind::Gru { reset_after: false } => format!(
                "      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float z = {z};
        const float r = {r};
        zs[j] = z;
        rh[j] = r * h[j];
      }}
      __syncthreads();
      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        const float hh = {hh};
        hn[j] = zs[j] * h[j] + (1.f - zs[j]) * hh;
      }}
",
                z = ract(&format!("{} + {}", xw("j".into()), hu("j".into(), "h"))),
                r = ract(&format!("{} + {}", xw(format!("{u} + j")), hu(format!("{u} + j"), "h"))),
                hh = act(&format!("{} + kc_dot_h(rh, in2 + {} + j)", xw(format!("{} + j", 2 * u)), 2 * u)),
            ),
        };
        // With a mask: `po` holds the output of the last kept step (zeros before it).
        let outv = if a.masked { "po" } else { "h" };
        let commit = if a.masked {
            let m = self.node.inputs.len() - 1;
            let masked_out = if a.zero_output_for_mask { "0.f" } else { "po[j]" };
            format!(
                "      const float keep = in{m}[(long long)b * {t} + ti];
      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
        if (keep != 0.f) {{ h[j] = hn[j]; c[j] = cn[j]; po[j] = hn[j]; }} else {{ po[j] = {masked_out}; }}
      }}
"
            )
        } else {
            format!("      for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{ h[j] = hn[j]; c[j] = cn[j]; }}\n")
        };
        let seq_out = if a.return_sequences {
            format!("      for (int j = threadIdx.x; j < {u}; j += blockDim.x) out0[((long long)b * {t} + step) * {u} + j] = {outv}[j];\n")
        } else {
            String::new()
        };
        let last_out =
            if a.return_sequences { String::new() } else { format!("    out0[(long long)b * {u} + j] = {outv}[j];\n") };
        let c_out =
            if a.kind == RnnKind::Lstm { format!("    out2[(long long)b * {u} + j] = c[j];\n") } else { String::new() };
        let ti = if a.go_backwards { format!("{} - step", t.saturating_sub(1)) } else { "step".into() };
        let (h0, c0) = if a.initial_state {
            let k = a.state_index(self.node.inputs.len());
            let c0 =
                if a.kind == RnnKind::Lstm { format!("in{}[(long long)b * {u} + j]", k + 1) } else { "0.f".into() };
            (format!("in{k}[(long long)b * {u} + j]"), c0)
        } else {
            ("0.f".to_string(), "0.f".to_string())
        };
        let helpers = format!(
            "KC_DEV float kc_dot_x(const float* __restrict__ xr, const float* __restrict__ wcol) {{ float s = 0.f; for (int q = 0; q < {f}; ++q) s += xr[q] * wcol[(long long)q * {gu}]; return s; }}
KC_DEV float kc_dot_h(const float* h, const float* __restrict__ ucol) {{ float s = 0.f; for (int q = 0; q < {u}; ++q) s += h[q] * ucol[(long long)q * {gu}]; return s; }}
"
        );
        let body = format!(
            "  __shared__ float h[{u}], hn[{u}], c[{u}], cn[{u}], zs[{u}], rh[{u}], po[{u}];
  (void)zs; (void)rh; (void)c; (void)cn; (void)po;
  const int b = blockIdx.x;
  if (b >= {nb}) return;
  for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{ h[j] = {h0}; c[j] = {c0}; po[j] = 0.f; }}
  __syncthreads();
  for (int step = 0; step < {t}; ++step) {{
      const int ti = {ti}; (void)ti;
{step}      __syncthreads();
{commit}      __syncthreads();
{seq_out}  }}
  for (int j = threadIdx.x; j < {u}; j += blockDim.x) {{
{last_out}    out1[(long long)b * {u} + j] = h[j];
{c_out}  }}
"
        );
        let launch = Launch { grid: [nb.max(1) as u32, 1, 1], block: [threads as u32, 1, 1], shared_bytes: 0 };
        Ok(self.kernel(body, launch, true, &helpers))
    }
}
