//! Convolutions: implicit GEMM (through the matmul template) with fused epilogues, direct
//! depthwise, transposed convolution, and the gradients with respect to input and kernel.

use super::context::{launch_1d, numel, Ctx};
use super::KernelSource;
use crate::CodegenError;
use ir::{ConvAttrs, ConvTransposeAttrs, DType, Epilogue};

impl Ctx<'_> {
    pub(super) fn conv(&self, a: &ConvAttrs, e: &Epilogue) -> Result<KernelSource, CodegenError> {
        let (x, w, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let r = a.strides.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let inp = lift(&x[1..=r], 1);
        let outp = lift(&out[1..=r], 1);
        let k = lift(&w[..r], 1);
        let s = lift(&a.strides, 1);
        let d = lift(&a.dilations, 1);
        let p = lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0);
        let (c, f) = (x[r + 1], w[r + 1]);
        let groups = a.groups.max(1);
        let (cg, fg) = (c / groups, f / groups);
        let rows = x[0] * outp.iter().product::<usize>();
        let (bias, res) = Self::epilogue_names(e);
        if groups > 1 && cg == 1 {
            return self.depthwise((inp, outp, k, s, d, p), (c, f, fg), rows, e);
        }
        let kk = k.iter().product::<usize>() * cg;
        let helpers = format!(
            "KC_DEV float kc_load_a(long long m, long long k, long long z, const float* __restrict__ x, int unused) {{
  (void)unused;
  const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
  const long long c = k % {cg}, tap = k / {cg};
  const long long kx = tap % {kw}, ky = (tap / {kw}) % {kh}, kz = tap / {khw};
  const long long ix = ox * {sx} + kx * {dx} - {px}, iy = oy * {sy} + ky * {dy} - {py}, iz = oz * {sz} + kz * {dz} - {pz};
  if (ix < 0 || iy < 0 || iz < 0 || ix >= {iw} || iy >= {ih} || iz >= {id}) return 0.f;
  return x[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c_all} + z * {cg} + c];
}}
KC_DEV float kc_load_b(long long k, long long n, long long z, const float* __restrict__ w, int unused) {{ (void)unused; return w[k * {f} + z * {fg} + n]; }}
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kw = k[2],
            kh = k[1],
            khw = k[1] * k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            c_all = c,
        );
        let o = format!("m * {f}LL + z * {fg}LL + n");
        let store = format!("{}        out0[{o}] = v;", Self::epilogue(e, &bias, &res, &format!("z * {fg}LL + n"), &o));
        self.gemm((rows, fg, kk, groups), String::new(), helpers, store, (", in0, 0", ", in1, 0"))
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn depthwise(
        &self,
        (inp, outp, k, s, d, p): ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3]),
        (c, f, dm): (usize, usize, usize),
        rows: usize,
        e: &Epilogue,
    ) -> Result<KernelSource, CodegenError> {
        let (bias, res) = Self::epilogue_names(e);
        let n = rows * f;
        let body = format!(
            "    const kc_idx fo = i % {f}, m = i / {f};
    const kc_idx ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    const kc_idx ch = fo / {dm};
    float v = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long iz = (long long)oz * {sz} + kz * {dz} - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long iy = (long long)oy * {sy} + ky * {dy} - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long ix = (long long)ox * {sx} + kx * {dx} - {px};
          if (ix < 0 || ix >= {iw}) continue;
          v += in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + ch] * in1[((kz * {kh} + ky) * {kw} + kx) * {f} + fo];
        }}
      }}
    }}
    {{
{epi}    }}
    out0[i] = v;
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            epi = Self::epilogue(e, &bias, &res, "fo", "i"),
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    pub(super) fn conv_transpose(&self, a: &ConvTransposeAttrs) -> Result<KernelSource, CodegenError> {
        let (x, w, out) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let r = a.strides.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 transposed convolutions of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let pads: Vec<usize> = (0..r).map(|i| a.geometry(i, x[i + 1], w[i]).1).collect();
        let (inp, outp, k, s, d, p) = (
            lift(&x[1..=r], 1),
            lift(&out[1..=r], 1),
            lift(&w[..r], 1),
            lift(&a.strides, 1),
            lift(&a.dilations, 1),
            lift(&pads, 0),
        );
        let (c, f) = (x[r + 1], w[r]);
        let n = numel(&out);
        let body = format!(
            "    const kc_idx fo = i % {f}, m = i / {f};
    const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    float v = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long tz = oz + {pz} - kz * {dz};
      if (tz < 0 || tz % {sz} != 0 || tz / {sz} >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long ty = oy + {py} - ky * {dy};
        if (ty < 0 || ty % {sy} != 0 || ty / {sy} >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long tx = ox + {px} - kx * {dx};
          if (tx < 0 || tx % {sx} != 0 || tx / {sx} >= {iw}) continue;
          const long long base = (((nb * {id} + tz / {sz}) * {ih} + ty / {sy}) * {iw} + tx / {sx}) * {c};
          const long long wb = (((kz * {kh} + ky) * {kw} + kx) * {f} + fo) * {c};
          for (int ci = 0; ci < {c}; ++ci) v += in0[base + ci] * in1[wb + ci];
        }}
      }}
    }}
    out0[i] = v;
",
            ow = outp[2],
            oh = outp[1],
            od = outp[0],
            ohw = outp[1] * outp[2],
            odhw = outp.iter().product::<usize>(),
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sx = s[2],
            sy = s[1],
            sz = s[0],
            dx = d[2],
            dy = d[1],
            dz = d[0],
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// Convolution geometry lifted to three spatial axes: (input, output, kernel, strides,
    /// dilations, leading pads, channels in, channels out, groups).
    #[allow(clippy::type_complexity)]
    pub(super) fn conv_geometry(
        a: &ConvAttrs,
        x: &[usize],
        w: &[usize],
        y: &[usize],
    ) -> ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3], usize, usize, usize) {
        let r = a.strides.len();
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        (
            lift(&x[1..=r], 1),
            lift(&y[1..=r], 1),
            lift(&w[..r], 1),
            lift(&a.strides, 1),
            lift(&a.dilations, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
            x[r + 1],
            w[r + 1],
            a.groups.max(1),
        )
    }

    /// dx of a convolution: each input element gathers the output gradients of the taps that
    /// read it.
    pub(super) fn conv_input_grad(&self, a: &ConvAttrs) -> Result<KernelSource, CodegenError> {
        if a.strides.len() > 3 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let (dy, w, x) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (inp, out, k, s, d, p, c, f, groups) = Self::conv_geometry(a, &x, &w, &dy);
        let (cg, fg) = (c / groups, f / groups);
        let body = format!(
            "    const kc_idx ch = i % {c}, m = i / {c};
    const long long ix = m % {iw}, iy = (m / {iw}) % {ih}, iz = (m / {ihw}) % {id}, nb = m / {idhw};
    const long long grp = ch / {cg}, cc = ch % {cg};
    float acc = 0.f;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long tz = iz + {pz} - kz * {dz};
      if (tz < 0 || tz % {sz} != 0 || tz / {sz} >= {od}) continue;
      const long long oz = tz / {sz};
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long ty = iy + {py} - ky * {dy_};
        if (ty < 0 || ty % {sy} != 0 || ty / {sy} >= {oh}) continue;
        const long long oy = ty / {sy};
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long tx = ix + {px} - kx * {dx};
          if (tx < 0 || tx % {sx} != 0 || tx / {sx} >= {ow}) continue;
          const long long ox = tx / {sx};
          const long long tap = ((long long)kz * {kh} + ky) * {kw} + kx;
          const float* g = in0 + (((nb * {od} + oz) * {oh} + oy) * {ow} + ox) * {f} + grp * {fg};
          const float* wr = in1 + (tap * {cg} + cc) * {f} + grp * {fg};
          for (int fo = 0; fo < {fg}; ++fo) acc += g[fo] * wr[fo];
        }}
      }}
    }}
    out0[i] = acc;
",
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            ihw = inp[1] * inp[2],
            idhw = inp.iter().product::<usize>(),
            ow = out[2],
            oh = out[1],
            od = out[0],
            kd = k[0],
            kh = k[1],
            kw = k[2],
            sz = s[0],
            sy = s[1],
            sx = s[2],
            dz = d[0],
            dy_ = d[1],
            dx = d[2],
            pz = p[0],
            py = p[1],
            px = p[2],
        );
        let n = numel(&x);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// dw of a convolution: each kernel element sums input × output gradient over the batch and
    /// every output position.
    pub(super) fn conv_filter_grad(&self, a: &ConvAttrs) -> Result<KernelSource, CodegenError> {
        if a.strides.len() > 3 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("float32 convolutions of rank 1 to 3"));
        }
        let (x, dy, w) = (self.ishape(0).to_vec(), self.ishape(1).to_vec(), self.oshape(0).to_vec());
        let (inp, out, k, s, d, p, c, f, groups) = Self::conv_geometry(a, &x, &w, &dy);
        let (cg, fg) = (c / groups, f / groups);
        let body = format!(
            "    const kc_idx fo = i % {f}, cc = (i / {f}) % {cg}, tap = i / ({f} * {cg});
    const long long kx = tap % {kw}, ky = (tap / {kw}) % {kh}, kz = tap / ({kw} * {kh});
    const long long grp = fo / {fg};
    float acc = 0.f;
    for (long long nb = 0; nb < {nn}; ++nb)
    for (long long oz = 0; oz < {od}; ++oz) {{
      const long long iz = oz * {sz} + kz * {dz} - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (long long oy = 0; oy < {oh}; ++oy) {{
        const long long iy = oy * {sy} + ky * {dy_} - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (long long ox = 0; ox < {ow}; ++ox) {{
          const long long ix = ox * {sx} + kx * {dx} - {px};
          if (ix < 0 || ix >= {iw}) continue;
          acc += in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + grp * {cg} + cc]
               * in1[(((nb * {od} + oz) * {oh} + oy) * {ow} + ox) * {f} + fo];
        }}
      }}
    }}
    out0[i] = acc;
",
            nn = x[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
            ow = out[2],
            oh = out[1],
            od = out[0],
            kh = k[1],
            kw = k[2],
            sz = s[0],
            sy = s[1],
            sx = s[2],
            dz = d[0],
            dy_ = d[1],
            dx = d[2],
            pz = p[0],
            py = p[1],
            px = p[2],
        );
        let n = numel(&w);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }
}
