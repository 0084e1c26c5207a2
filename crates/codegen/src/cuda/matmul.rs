//! Matrix products: the tiled GEMM template (float32, or tensor-core `mma.sync` in tf32, bf16 or
//! fp16) with its fused epilogue; convolutions use the same template.

use super::context::{Ctx, Precision};
use super::{expr, KernelSource, Launch, PRELUDE};
use crate::CodegenError;
use ir::{DType, Epilogue};
use std::fmt::Write;

const GEMM_TEMPLATE: &str = include_str!("templates/gemm.cu");
const GEMM_TC_TEMPLATE: &str = include_str!("templates/gemm_tc.cu");

impl Ctx<'_> {
    /// The epilogue applied to `v` for output element `n` (channel) at flat index `o`.
    pub(super) fn epilogue(e: &Epilogue, bias: &str, residual: &str, chan: &str, o: &str) -> String {
        let mut s = String::new();
        if e.bias {
            let _ = writeln!(s, "        v += {bias}[{chan}];");
        }
        if let Some(a) = e.activation {
            let _ = writeln!(s, "        v = {};", expr::unary(a, "v"));
        }
        if e.residual {
            let _ = writeln!(s, "        v += {residual}[{o}];");
        }
        if let Some(a) = e.post_activation {
            let _ = writeln!(s, "        v = {};", expr::unary(a, "v"));
        }
        s
    }

    pub(super) fn epilogue_names(e: &Epilogue) -> (String, String) {
        let bias = "in2".to_string();
        let residual = if e.bias { "in3" } else { "in2" }.to_string();
        (bias, residual)
    }

    pub(super) fn gemm(
        &self,
        (m, n, k, batches): (usize, usize, usize, usize),
        offsets: String,
        helpers: String,
        store: String,
        args: (&str, &str),
    ) -> Result<KernelSource, CodegenError> {
        let gy = m.div_ceil(64);
        let gx = n.div_ceil(64);
        if gy > 65_535 || batches > 65_535 || gx > (1 << 31) - 1 {
            return Err(self.unsupported(format!("GEMM grid too large ({m}x{n}, {batches} batches)")));
        }
        let template = if self.precision == Precision::Fp32 { GEMM_TEMPLATE } else { GEMM_TC_TEMPLATE };
        let body = template
            .replace("KC_MMA", &Self::mma_steps(self.precision))
            .replace("KC_NAME", &self.name())
            .replace("KC_PARAMS", &self.params(true))
            .replace("KC_OFFSETS", &offsets)
            .replace("KC_STORE", &store)
            .replace("KC_ARGS_A", args.0)
            .replace("KC_ARGS_B", args.1)
            .replace("KC_M", &format!("{m}LL"))
            .replace("KC_N", &format!("{n}LL"))
            .replace("KC_K", &format!("{k}LL"));
        let source = format!("{PRELUDE}{helpers}{body}");
        let launch = Launch {
            grid: [gx.max(1) as u32, gy.max(1) as u32, batches.max(1) as u32],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        Ok(KernelSource { name: self.name(), source, launch, args: self.args() })
    }

    /// One 16-deep slice of the tile on the tensor cores: the warp's A fragment, then one mma
    /// per 8-column accumulator (fragment layouts of PTX's m16n8k8 .tf32 and m16n8k16
    /// .f16/.bf16: lane = 4·g + q holds rows g and g+8, columns q and q+4, or pairs 2q, 2q+1
    /// and 2q+8, 2q+9).
    pub(super) fn mma_steps(p: Precision) -> String {
        let (pack, mma) = match p {
            Precision::Bf16 => ("kc_pack_bf16", "kc_mma_bf16"),
            _ => ("kc_pack_f16", "kc_mma_f16"),
        };
        if p == Precision::Tf32 {
            "#pragma unroll
    for (int ks = 0; ks < 16; ks += 8) {
      const unsigned a[4] = {kc_tf32(As[ks + tq][wm + g]), kc_tf32(As[ks + tq][wm + g + 8]),
                             kc_tf32(As[ks + tq + 4][wm + g]), kc_tf32(As[ks + tq + 4][wm + g + 8])};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nn = wn + j * 8 + g;
        const unsigned b[2] = {kc_tf32(Bs[ks + tq][nn]), kc_tf32(Bs[ks + tq + 4][nn])};
        kc_mma_tf32(acc[j], a, b);
      }
    }"
            .to_string()
        } else {
            format!(
                "{{
      const unsigned a[4] = {{{pack}(As[2 * tq][wm + g], As[2 * tq + 1][wm + g]),
                             {pack}(As[2 * tq][wm + g + 8], As[2 * tq + 1][wm + g + 8]),
                             {pack}(As[2 * tq + 8][wm + g], As[2 * tq + 9][wm + g]),
                             {pack}(As[2 * tq + 8][wm + g + 8], As[2 * tq + 9][wm + g + 8])}};
#pragma unroll
      for (int j = 0; j < 4; ++j) {{
        const int nn = wn + j * 8 + g;
        const unsigned b[2] = {{{pack}(Bs[2 * tq][nn], Bs[2 * tq + 1][nn]), {pack}(Bs[2 * tq + 8][nn], Bs[2 * tq + 9][nn])}};
        {mma}(acc[j], a, b);
      }}
    }}"
            )
        }
    }

    pub(super) fn matmul(&self, ta: bool, tb: bool, e: &Epilogue) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 || self.ity(1) != DType::F32 {
            return Err(self.unsupported("only float32 matmul"));
        }
        let (a, b, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (ar, br, r) = (a.len(), b.len(), out.len());
        let (m, n) = (out[r - 2], out[r - 1]);
        let k = if ta { a[ar - 2] } else { a[ar - 1] };
        let batch = &out[..r - 2];
        let batches: usize = batch.iter().product();
        let mut offsets = String::from("  long long a_off = 0, b_off = 0;\n  { long long rz = z;\n");
        for ax in (0..batch.len()).rev() {
            let _ = writeln!(
                offsets,
                "    const long long bz{ax} = rz % {}; rz /= {};",
                batch[ax].max(1),
                batch[ax].max(1)
            );
            // Batch axes align from the right; size-1 axes broadcast.
            let lead = batch.len();
            for (name, sh, rank) in [("a_off", &a, ar), ("b_off", &b, br)] {
                let nb = rank - 2;
                if ax + nb >= lead {
                    let axo = ax + nb - lead;
                    if sh[axo] != 1 {
                        let stride: usize = sh[axo + 1..nb].iter().product::<usize>() * sh[nb] * sh[nb + 1];
                        let _ = writeln!(offsets, "    {name} += bz{ax} * {stride}LL;");
                    }
                }
            }
        }
        offsets.push_str("    (void)rz;\n  }\n");
        let _ = writeln!(offsets, "  const long long c_off = z * {}LL;", m * n);
        let a_idx = if ta { format!("k * {m}LL + m") } else { format!("m * {k}LL + k") };
        let b_idx = if tb { format!("n * {k}LL + k") } else { format!("k * {n}LL + n") };
        let helpers = format!(
            "KC_DEV float kc_load_a(long long m, long long k, long long z, const float* __restrict__ a, long long off) {{ (void)z; return a[off + {a_idx}]; }}\nKC_DEV float kc_load_b(long long k, long long n, long long z, const float* __restrict__ b, long long off) {{ (void)z; return b[off + {b_idx}]; }}\n"
        );
        let (bias, res) = Self::epilogue_names(e);
        let store = format!(
            "{}        out0[c_off + m * {n}LL + n] = v;",
            Self::epilogue(e, &bias, &res, "n", &format!("c_off + m * {n}LL + n"))
        );
        self.gemm((m, n, k, batches), offsets, helpers, store, (", in0, a_off", ", in1, b_off"))
    }
}
