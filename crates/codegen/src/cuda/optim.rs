//! The optimizer update as CUDA: one launch over every trained weight of a step (the same pass
//! as `kernels::optim` on the CPU), so that on a GPU the weights, gradients and slots never
//! leave the device.
//!
//! The weights are described by a parameter table in device memory, [`PARAM_WORDS`] 64-bit
//! words per weight: the weight's address, its gradient's, its slots' (the rule's slots one
//! after the other, each the weight's size), its element count, its first chunk and its chunk
//! count. Each block updates one chunk of [`UPDATE_CHUNK`] elements of one weight (the chunk
//! table gives the weight of each chunk). The step's scalars ([`ir::UpdateScalars::to_array`])
//! are read from device memory, so a captured CUDA graph replays with each step's learning rate.
//! Norm clipping first sums each chunk's squared gradients ([`UpdateKernels::sumsq`]), then
//! every block adds its weight's (or all) partial sums in chunk order: the same result on every
//! run.

use super::expr::lit;
use ir::{GradClip, UpdateRule};

/// Elements of one weight one block updates.
pub const UPDATE_CHUNK: usize = 4096;
/// Threads per block of the update kernels.
pub const UPDATE_THREADS: u32 = 256;
/// 64-bit words per weight in the parameter table.
pub const PARAM_WORDS: usize = 6;

/// One kernel: entry point and self-contained CUDA C source. Its parameters are the parameter
/// table, the chunk table (`unsigned` per chunk), the scalars (`float[8]`), the partial sums
/// (`float` per chunk) and the step's loss (`float[1]`: the update is skipped when it is not
/// finite), in that order; launch one block of [`UPDATE_THREADS`] per chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateKernel {
    pub name: String,
    pub source: String,
}

/// The kernels of one update step: the partial sums of squares (norm clipping only), then the
/// update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateKernels {
    pub sumsq: Option<UpdateKernel>,
    pub update: UpdateKernel,
}

/// The chunks of weights of `sizes` elements: the weight of each chunk, and each weight's
/// (first chunk, chunk count).
pub fn update_chunks(sizes: &[usize]) -> (Vec<u32>, Vec<(usize, usize)>) {
    let mut of = Vec::new();
    let mut spans = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        let k = n.div_ceil(UPDATE_CHUNK);
        spans.push((of.len(), k));
        of.extend(std::iter::repeat_n(i as u32, k));
    }
    (of, spans)
}

const HEADER: &str = "    const unsigned t = threadIdx.x, c = blockIdx.x, p = chunks[c];
    const unsigned long long* q = params + p * 6ULL;
    const unsigned long long n = q[3], first = q[4], start = (c - first) * CHUNKULL;
    const unsigned long long end = start + CHUNKULL < n ? start + CHUNKULL : n;
    const float* G = (const float*)q[1];
";

fn with_chunk(s: &str) -> String {
    s.replace("CHUNKULL", &format!("{UPDATE_CHUNK}ULL"))
}

/// The sources of the update for `rule`, `clip` and (when `decay`) decoupled weight decay.
pub fn update_kernels(rule: &UpdateRule, clip: GradClip, decay: bool) -> UpdateKernels {
    let threads = UPDATE_THREADS;
    let sig = "(const unsigned long long* __restrict__ params, const unsigned* __restrict__ chunks, const float* __restrict__ scal, float* __restrict__ partial, const float* __restrict__ loss)";
    let norm_clip = matches!(clip, GradClip::Norm(_) | GradClip::GlobalNorm(_));
    let sumsq = norm_clip.then(|| {
        let name = "kc_opt_sumsq".to_string();
        let source = with_chunk(&format!(
            "extern \"C\" __global__ void __launch_bounds__({threads}) {name}{sig} {{
    (void)scal;
    (void)loss;
    __shared__ float red[{threads}];
{HEADER}    float s = 0.f;
    for (unsigned long long j = start + t; j < end; j += {threads}) s += G[j] * G[j];
    red[t] = s;
    __syncthreads();
    for (unsigned o = {threads} / 2; o > 0; o >>= 1) {{
      if (t < o) red[t] += red[t + o];
      __syncthreads();
    }}
    if (t == 0) partial[c] = red[0];
}}
"
        ));
        named(name, source)
    });
    // The gradient element as the update sees it, from `G[j]` and the block's `scale`.
    let (scale, pre) = match clip {
        GradClip::None => (String::new(), "G[j]".to_string()),
        GradClip::Value(c) => (String::new(), format!("G[j] < -{c} ? -{c} : (G[j] > {c} ? {c} : G[j])", c = lit(c))),
        GradClip::Norm(c) => (
            format!(
                "    __shared__ float scale;
    if (t == 0) {{
      float sq = 0.f;
      for (unsigned long long k = first; k < first + q[5]; ++k) sq += partial[k];
      scale = fmaxf(sqrtf(sq), {c});
    }}
    __syncthreads();
",
                c = lit(c)
            ),
            format!("G[j] * {} / scale", lit(c)),
        ),
        GradClip::GlobalNorm(c) => (
            format!(
                "    __shared__ float scale;
    if (t == 0) {{
      float sq = 0.f;
      for (unsigned k = 0; k < gridDim.x; ++k) sq += partial[k];
      const float norm = sqrtf(sq);
      // Keras: c·min(1/norm, 1/c), NaN when the norm is not finite (norm − norm is 0 only then).
      scale = norm - norm == 0.f ? {c} * fminf(1.f / norm, 1.f / {c}) : __int_as_float(0x7fc00000);
    }}
    __syncthreads();
",
                c = lit(c)
            ),
            "G[j] * scale".to_string(),
        ),
    };
    let decay = if decay { "      w -= w * wd * lr;\n" } else { "" };
    let one_minus = |b: f32| lit(1.0 - b);
    let body = match *rule {
        UpdateRule::Sgd { momentum: 0.0, .. } => "      w -= g * lr;\n".to_string(),
        UpdateRule::Sgd { momentum, nesterov } => {
            let mo = lit(momentum);
            let step = if nesterov { format!("-g * lr + m * {mo}") } else { "m".into() };
            format!("      const float m = -g * lr + S[j] * {mo};\n      S[j] = m;\n      w += {step};\n")
        }
        UpdateRule::Adam { beta_1, beta_2, epsilon, amsgrad } => {
            let v =
                if amsgrad { "      const float vh = fmaxf(S[2 * n + j], v);\n      S[2 * n + j] = vh;\n" } else { "" };
            format!(
                "      float m = S[j], v = S[n + j];
      m += (g - m) * {b1};
      v += (g * g - v) * {b2};
      S[j] = m;
      S[n + j] = v;
{v}      w -= m * scal[2] / (sqrtf({vv}) + {eps});
",
                b1 = one_minus(beta_1),
                b2 = one_minus(beta_2),
                vv = if amsgrad { "vh" } else { "v" },
                eps = lit(epsilon)
            )
        }
        UpdateRule::RmsProp { rho, momentum, epsilon, centered } => {
            let (r, r1, eps) = (lit(rho), one_minus(rho), lit(epsilon));
            let denom = if centered {
                format!("      const float a = {r} * S[2 * n + j] + {r1} * g;\n      S[2 * n + j] = a;\n      const float d = vel - a * a + {eps};\n")
            } else {
                format!("      const float d = vel + {eps};\n")
            };
            let apply = if momentum > 0.0 {
                format!(
                    "      const float mo = {} * S[n + j] + inc;\n      S[n + j] = mo;\n      w -= mo;\n",
                    lit(momentum)
                )
            } else {
                "      w -= inc;\n".into()
            };
            format!(
                "      const float vel = {r} * S[j] + {r1} * g * g;\n      S[j] = vel;\n{denom}      const float inc = lr * g / sqrtf(d);\n{apply}"
            )
        }
        UpdateRule::Adagrad { epsilon, .. } => format!(
            "      const float acc = S[j] + g * g;\n      S[j] = acc;\n      w -= lr * g / sqrtf(acc + {});\n",
            lit(epsilon)
        ),
        UpdateRule::Nadam { beta_1, beta_2, epsilon } => format!(
            "      float m = S[j], v = S[n + j];
      m += (g - m) * {b1};
      v += (g * g - v) * {b2};
      S[j] = m;
      S[n + j] = v;
      const float m_hat = scal[2] * m / scal[3] + scal[4] * g / scal[5];
      const float v_hat = v / scal[6];
      w -= m_hat * lr / (sqrtf(v_hat) + {eps});
",
            b1 = one_minus(beta_1),
            b2 = one_minus(beta_2),
            eps = lit(epsilon)
        ),
    };
    let name = "kc_opt_update".to_string();
    let source = with_chunk(&format!(
        "extern \"C\" __global__ void __launch_bounds__({threads}) {name}{sig} {{
    (void)partial;
    // A step whose loss is not finite leaves everything as it was (loss − loss is 0 only for a
    // finite loss); the whole block returns together.
    if (!(loss[0] - loss[0] == 0.f)) return;
{HEADER}    float* W = (float*)q[0];
    float* S = (float*)q[2];
    (void)S;
    const float lr = scal[0], wd = scal[1];
    (void)wd;
{scale}    for (unsigned long long j = start + t; j < end; j += {threads}) {{
      const float g = {pre};
      float w = W[j];
{decay}{body}      W[j] = w;
    }}
}}
"
    ));
    UpdateKernels { sumsq, update: named(name, source) }
}

/// The kernel with its entry point suffixed by a hash of its source: the rule's constants are
/// in the source, so each variant has a name of its own.
fn named(name: String, source: String) -> UpdateKernel {
    let h = source.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let unique = format!("{name}_{h:016x}");
    UpdateKernel { source: source.replace(&name, &unique), name: unique }
}
