//! Reductions, softmax and log-softmax (one thread per row, or one block per long row), and the
//! mean's gradient.

use super::context::{launch_1d, numel, strides, Ctx};
use super::{expr, KernelSource, Launch};
use crate::CodegenError;
use ir::{DType, ReduceKind};
use std::fmt::Write;

impl Ctx<'_> {
    /// `dy` broadcast back over the averaged axes, divided by their count.
    pub(super) fn mean_grad(&self, axes: &[usize]) -> Result<KernelSource, CodegenError> {
        let count: usize = axes.iter().map(|&a| self.oshape(0).get(a).copied().unwrap_or(1)).product();
        let inv = expr::lit(1.0 / count.max(1) as f32);
        self.pointwise_f32(|c| format!("    out0[i] = {} * {inv};\n", c.read(0)))
    }

    /// For reductions over `axes` of input 0: the number of rows (kept positions), the number of
    /// reduced positions, and statements setting `base` (the row's offset) from row index `i`
    /// and a helper expression for the offset of reduced position `j`.
    pub(super) fn rows(&self, axes: &[usize]) -> (usize, usize, String, String) {
        let x = self.ishape(0).to_vec();
        let st = strides(&x);
        let kept: Vec<usize> = (0..x.len()).filter(|a| !axes.contains(a)).collect();
        let rows: usize = kept.iter().map(|&a| x[a]).product();
        let red: usize = axes.iter().map(|&a| x[a]).product();
        let mut base = String::from("    kc_idx rr = i; long long base = 0;\n");
        for &a in kept.iter().rev() {
            let _ = writeln!(base, "    base += (long long)(rr % {}) * {}; rr /= {};", x[a].max(1), st[a], x[a].max(1));
        }
        let mut off = String::from("long long rj = j, o = 0; ");
        for &a in axes.iter().rev() {
            let _ = write!(off, "o += (rj % {}) * {}; rj /= {}; ", x[a].max(1), st[a], x[a].max(1));
        }
        (rows, red, base, off)
    }

    pub(super) fn reduce(&self, kind: ReduceKind, axes: &[usize]) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 reductions"));
        }
        let (rows, red, base, off) = self.rows(axes);
        let (init, acc, fin) = match kind {
            ReduceKind::Sum => ("0.f", "v += xv;", "v"),
            ReduceKind::Mean => ("0.f", "v += xv;", &*format!("v / {}", expr::lit(red.max(1) as f32))),
            ReduceKind::Max => ("-__int_as_float(0x7f800000)", "v = fmaxf(v, xv);", "v"),
            ReduceKind::Min => ("__int_as_float(0x7f800000)", "v = fminf(v, xv);", "v"),
            ReduceKind::Prod => ("1.f", "v *= xv;", "v"),
        };
        let body = format!(
            "{base}    float v = {init};\n    for (long long j = 0; j < {red}; ++j) {{ {off}const float xv = in0[base + o]; {acc} }}\n    out0[i] = {fin};\n"
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    /// ArgMax / ArgMin: one thread per output, a loop along the axis keeping the best index.
    pub(super) fn arg_reduce(&self, max: bool, axis: usize, last: bool) -> Result<KernelSource, CodegenError> {
        let (rows, red, base, off) = self.rows(&[axis]);
        let cmp = match (max, last) {
            (true, false) => ">",
            (true, true) => ">=",
            (false, false) => "<",
            (false, true) => "<=",
        };
        let body = format!(
            "{base}    double v = 0.0; long long best = 0;\n    for (long long j = 0; j < {red}; ++j) {{ {off}const double xv = (double)in0[base + o]; if (j == 0 || xv {cmp} v) {{ v = xv; best = j; }} }}\n    out0[i] = best;\n"
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    /// A kernel with one 128-thread block per row of the last axis (grid-stride over rows);
    /// `body` uses `row`, `t` and the block-wide reductions `kc_block_max`/`kc_block_sum`.
    pub(super) fn row_blocks(&self, rows: usize, body: &str) -> KernelSource {
        let helpers = "KC_DEV float kc_block_sum(float v, float* red) {
  const int t = threadIdx.x;
  red[t] = v;
  __syncthreads();
  for (int s = 64; s > 0; s >>= 1) { if (t < s) red[t] += red[t + s]; __syncthreads(); }
  const float r = red[0];
  __syncthreads();
  return r;
}
KC_DEV float kc_block_max(float v, float* red) {
  const int t = threadIdx.x;
  red[t] = v;
  __syncthreads();
  for (int s = 64; s > 0; s >>= 1) { if (t < s) red[t] = fmaxf(red[t], red[t + s]); __syncthreads(); }
  const float r = red[0];
  __syncthreads();
  return r;
}
";
        let src = format!(
            "  __shared__ float red[128];\n  const int t = threadIdx.x;\n  for (long long row = blockIdx.x; row < {rows}LL; row += gridDim.x) {{\n{body}  }}\n"
        );
        let launch = Launch { grid: [rows.clamp(1, 1 << 16) as u32, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        self.kernel(src, launch, true, helpers)
    }

    /// Rows and row length when a reduction over `axes` is over the last axis only, with rows
    /// long enough for a block each.
    pub(super) fn long_last_axis(&self, axes: &[usize]) -> Option<(usize, usize)> {
        let x = self.ishape(0);
        let last = x.len().checked_sub(1)?;
        let c = *x.last()?;
        (axes == [last] && c >= 64).then(|| (numel(x) / c.max(1), c))
    }

    pub(super) fn softmax(&self, axes: &[usize], log: bool) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 softmax"));
        }
        if let Some((rows, c)) = self.long_last_axis(axes) {
            let fin = if log { "in0[base + j] - mx - logf(s)" } else { "expf(in0[base + j] - mx) * inv" };
            let body = format!(
                "    const long long base = row * {c}LL;
    float m = -__int_as_float(0x7f800000);
    for (long long j = t; j < {c}; j += 128) m = fmaxf(m, in0[base + j]);
    const float mx = kc_block_max(m, red);
    float a = 0.f;
    for (long long j = t; j < {c}; j += 128) a += expf(in0[base + j] - mx);
    const float s = kc_block_sum(a, red);
    const float inv = 1.f / s; (void)inv;
    for (long long j = t; j < {c}; j += 128) out0[base + j] = {fin};
"
            );
            return Ok(self.row_blocks(rows, &body));
        }
        let (rows, red, base, off) = self.rows(axes);
        let fin = if log {
            "out0[base + o] = in0[base + o] - mx - logf(s);"
        } else {
            "out0[base + o] = expf(in0[base + o] - mx) * inv;"
        };
        let body = format!(
            "{base}    float mx = -__int_as_float(0x7f800000);
    for (long long j = 0; j < {red}; ++j) {{ {off}mx = fmaxf(mx, in0[base + o]); }}
    float s = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}s += expf(in0[base + o] - mx); }}
    const float inv = 1.f / s; (void)inv;
    for (long long j = 0; j < {red}; ++j) {{ {off}{fin} }}
"
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }
}
