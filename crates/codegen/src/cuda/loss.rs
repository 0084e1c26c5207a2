//! Softmax cross-entropy from logits and its gradient.

use super::context::{launch_1d, numel, Ctx};
use super::KernelSource;
use crate::CodegenError;

impl Ctx<'_> {
    /// Softmax cross-entropy from logits: the per-row loss, or (with the loss gradient as a third
    /// input) its gradient `(Σp·softmax − p)·dl`.
    pub(super) fn cross_entropy(&self, sparse: bool, grad: bool) -> Result<KernelSource, CodegenError> {
        let z = self.ishape(0).to_vec();
        let c = *z.last().unwrap_or(&1);
        let rows = numel(&z) / c.max(1);
        let label = if sparse { "(long long)in1[r]".to_string() } else { String::new() };
        let row = format!(
            "    const float* zr = in0 + r * {c};
    float m = zr[0];
    for (int j = 1; j < {c}; ++j) m = fmaxf(m, zr[j]);
    float s = 0.f;
    for (int j = 0; j < {c}; ++j) s += expf(zr[j] - m);
    const float lse = m + logf(s);
"
        );
        let (n, body) = if !grad {
            let loss = if sparse {
                format!("    const long long lab = {label};\n    out0[r] = (lab < 0 || lab >= {c}) ? __int_as_float(0x7fc00000) : lse - zr[lab];\n")
            } else {
                format!("    float t = 0.f;\n    for (int j = 0; j < {c}; ++j) t += in1[r * {c} + j] * (zr[j] - lse);\n    out0[r] = -t;\n")
            };
            (rows, format!("    const kc_idx r = i;\n{row}{loss}"))
        } else {
            let (mass, target) = if sparse {
                ("1.f".to_string(), format!("({label} == (long long)j ? 1.f : 0.f)"))
            } else {
                (format!("0.f; for (int q = 0; q < {c}; ++q) mass += in1[r * {c} + q]"), format!("in1[r * {c} + j]"))
            };
            (
                numel(&z),
                format!(
                    "    const kc_idx r = i / {c}, j = i % {c};\n{row}    float mass = {mass};\n    out0[i] = (mass * expf(zr[j] - lse) - {target}) * in2[r];\n"
                ),
            )
        };
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }
}
