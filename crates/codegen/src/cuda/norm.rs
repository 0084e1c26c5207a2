//! Normalizations: batch (inference, point-wise; the batch's statistics and sums of training),
//! layer, group and L2.

use super::context::{launch_1d, numel, strides, Ctx};
use super::{expr, KernelSource};
use crate::CodegenError;
use ir::DType;

impl Ctx<'_> {
    /// Inference batch normalization along `axis`, as `tf.nn.batch_normalization` computes it.
    pub(super) fn batch_norm(&self, axis: usize, epsilon: f32) -> Result<KernelSource, CodegenError> {
        self.pointwise_f32(|c| {
            let ch = c.coord(axis, c.oshape(0));
            format!(
                "    const float s = in1[{ch}] / sqrtf(in4[{ch}] + {eps});\n    out0[i] = in0[i] * s + (in2[{ch}] - in3[{ch}] * s);\n",
                eps = expr::lit(epsilon)
            )
        })
    }

    /// One 128-thread block per channel of input 0 (channels at `axis`) summing over the other
    /// axes into `out0[ch]` and `out0[C + ch]`: [`ir::Op::Moments`] (the mean, then the mean
    /// squared deviation from it) or, with `grad_sums`, [`ir::Op::BatchNormSums`] (`Σ dy` and
    /// `Σ dy·(x − mean)` from inputs dy, x, mean).
    pub(super) fn channel_sums(&self, axis: usize, grad_sums: bool) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 batch statistics"));
        }
        let x = self.ishape(0).to_vec();
        let c = x[axis];
        let inner: usize = x[axis + 1..].iter().product();
        let m = numel(&x) / c.max(1);
        let pos = if inner == 1 {
            format!("j * {c}LL + row")
        } else {
            format!("(j / {inner}LL) * {ci}LL + row * {inner}LL + j % {inner}LL", ci = c * inner)
        };
        let n = expr::lit(m.max(1) as f32);
        let body = if grad_sums {
            format!(
                "    float a = 0.f, q = 0.f;
    const float mu = in2[row];
    for (long long j = t; j < {m}LL; j += 128) {{ const long long p = {pos}; a += in0[p]; q += in0[p] * (in1[p] - mu); }}
    const float s0 = kc_block_sum(a, red);
    const float s1 = kc_block_sum(q, red);
    if (t == 0) {{ out0[row] = s0; out0[{c} + row] = s1; }}
"
            )
        } else {
            format!(
                "    float a = 0.f;
    for (long long j = t; j < {m}LL; j += 128) a += in0[{pos}];
    const float mean = kc_block_sum(a, red) / {n};
    float q = 0.f;
    for (long long j = t; j < {m}LL; j += 128) {{ const float dv = in0[{pos}] - mean; q += dv * dv; }}
    const float var = kc_block_sum(q, red) / {n};
    if (t == 0) {{ out0[row] = mean; out0[{c} + row] = var; }}
"
            )
        };
        Ok(self.row_blocks(c, &body))
    }

    /// [`ir::Op::MomentsGrad`]: `dx = dmean/M + dvar·2(x − mean)/M`, point-wise.
    pub(super) fn moments_grad(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        let x = self.ishape(0).to_vec();
        let c = x[axis];
        let m = expr::lit((numel(&x) / c.max(1)).max(1) as f32);
        self.pointwise_f32(|k| {
            let ch = k.coord(axis, k.oshape(0));
            format!("    out0[i] = (in2[{ch}] + 2.f * in2[{c} + {ch}] * (in0[i] - in1[{ch}])) / {m};\n")
        })
    }

    /// The offset into a parameter (broadcast against input 0) at input offset `pos`.
    pub(super) fn param_offset(&self, k: usize, pos: &str) -> String {
        let x = self.ishape(0).to_vec();
        let pr = self.ishape(k).to_vec();
        let xs = strides(&x);
        let ps = strides(&pr);
        let lead = x.len() - pr.len();
        let terms: Vec<String> = (0..pr.len())
            .filter(|&a| pr[a] != 1)
            .map(|a| format!("(({pos} / {}) % {}) * {}", xs[a + lead], x[a + lead].max(1), ps[a]))
            .collect();
        if terms.is_empty() {
            "0".into()
        } else {
            terms.join(" + ")
        }
    }

    pub(super) fn layer_norm(&self, axes: &[usize], eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 layer normalization"));
        }
        if let Some((rows, c)) = self.long_last_axis(axes) {
            let body = format!(
                "    const long long base = row * {c}LL;
    float a = 0.f;
    for (long long j = t; j < {c}; j += 128) a += in0[base + j];
    const float mean = kc_block_sum(a, red) / {n};
    float q = 0.f;
    for (long long j = t; j < {c}; j += 128) {{ const float dv = in0[base + j] - mean; q += dv * dv; }}
    const float var = kc_block_sum(q, red) / {n};
    const float rs = 1.f / sqrtf(var + {eps});
    for (long long j = t; j < {c}; j += 128) {{
      const long long p = base + j;
      const float inv = rs * in1[{g}];
      out0[p] = in0[p] * inv + (in2[{b}] - mean * inv);
    }}
",
                n = expr::lit(c as f32),
                eps = expr::lit(eps),
                g = self.param_offset(1, "p"),
                b = self.param_offset(2, "p"),
            );
            return Ok(self.row_blocks(rows, &body));
        }
        let (rows, red, base, off) = self.rows(axes);
        let n = expr::lit(red.max(1) as f32);
        let body = format!(
            "{base}    float mean = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}mean += in0[base + o]; }}
    mean /= {n};
    float var = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}const float dv = in0[base + o] - mean; var += dv * dv; }}
    var /= {n};
    const float rs = 1.f / sqrtf(var + {eps});
    for (long long j = 0; j < {red}; ++j) {{
      {off}const long long p = base + o;
      const float inv = rs * in1[{g}];
      out0[p] = in0[p] * inv + (in2[{b}] - mean * inv);
    }}
",
            eps = expr::lit(eps),
            g = self.param_offset(1, "p"),
            b = self.param_offset(2, "p"),
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    pub(super) fn l2_normalize(&self, axes: &[usize], eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 normalization"));
        }
        let (rows, red, base, off) = self.rows(axes);
        let body = format!(
            "{base}    float ss = 0.f;
    for (long long j = 0; j < {red}; ++j) {{ {off}ss += in0[base + o] * in0[base + o]; }}
    const float inv = 1.f / sqrtf(fmaxf(ss, {eps}));
    for (long long j = 0; j < {red}; ++j) {{ {off}out0[base + o] = in0[base + o] * inv; }}
",
            eps = expr::lit(eps)
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }

    pub(super) fn group_norm(&self, groups: usize, axis: usize, eps: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 group normalization"));
        }
        let x = self.ishape(0).to_vec();
        let st = strides(&x);
        let c = x[axis];
        let cg = c / groups.max(1);
        let per_sample: usize = x[1..].iter().product();
        let rows = x[0] * groups;
        let body = format!(
            "    const long long nb = i / {groups}, g = i % {groups};
    const long long base = nb * {per_sample}LL;
    float mean = 0.f; long long cnt = 0;
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) {{ mean += in0[base + p]; ++cnt; }} }}
    const float fc = cnt > 0 ? (float)cnt : 1.f;
    mean /= fc;
    float var = 0.f;
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) {{ const float dv = in0[base + p] - mean; var += dv * dv; }} }}
    var /= fc;
    const float inv = 1.f / sqrtf(var + {eps});
    for (long long p = 0; p < {per_sample}; ++p) {{ const long long ch = (p / {sa}) % {c}; if (ch / {cg} == g) out0[base + p] = ((in0[base + p] - mean) * inv) * in1[ch] + in2[ch]; }}
",
            sa = st[axis],
            cg = cg.max(1),
            eps = expr::lit(eps),
        );
        Ok(self.kernel(Self::grid_loop(rows, &body), launch_1d(rows), true, ""))
    }
}
