//! Max and average pooling, and the pooling gradient.

use super::context::{launch_1d, numel, Ctx};
use super::KernelSource;
use crate::CodegenError;
use ir::{DType, PoolAttrs, PoolKind};

impl Ctx<'_> {
    pub(super) fn pool(&self, a: &PoolAttrs) -> Result<KernelSource, CodegenError> {
        let (x, out) = (self.ishape(0).to_vec(), self.oshape(0).to_vec());
        let r = a.window.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 pooling of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let (inp, outp, k, s, p) = (
            lift(&x[1..=r], 1),
            lift(&out[1..=r], 1),
            lift(&a.window, 1),
            lift(&a.strides, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
        );
        let c = x[r + 1];
        let n = numel(&out);
        let (init, acc, fin) = match a.kind {
            PoolKind::Max => ("-__int_as_float(0x7f800000)", "v = fmaxf(v, xv);", "out0[i] = v;"),
            PoolKind::Avg => ("0.f", "v += xv;", "out0[i] = cnt > 0 ? v / (float)cnt : 0.f;"),
        };
        let body = format!(
            "    const kc_idx ch = i % {c}, m = i / {c};
    const long long ox = m % {ow}, oy = (m / {ow}) % {oh}, oz = (m / {ohw}) % {od}, nb = m / {odhw};
    float v = {init};
    int cnt = 0;
    for (int kz = 0; kz < {kd}; ++kz) {{
      const long long iz = oz * {sz} + kz - {pz};
      if (iz < 0 || iz >= {id}) continue;
      for (int ky = 0; ky < {kh}; ++ky) {{
        const long long iy = oy * {sy} + ky - {py};
        if (iy < 0 || iy >= {ih}) continue;
        for (int kx = 0; kx < {kw}; ++kx) {{
          const long long ix = ox * {sx} + kx - {px};
          if (ix < 0 || ix >= {iw}) continue;
          const float xv = in0[(((nb * {id} + iz) * {ih} + iy) * {iw} + ix) * {c} + ch];
          {acc}
          ++cnt;
        }}
      }}
    }}
    (void)cnt;
    {fin}
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
            px = p[2],
            py = p[1],
            pz = p[0],
            iw = inp[2],
            ih = inp[1],
            id = inp[0],
        );
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }

    /// dx of pooling: each input element collects from the windows that contain it (max: only
    /// where it is the window's first maximum; average: an equal share of the cells inside).
    pub(super) fn pool_grad(&self, a: &PoolAttrs) -> Result<KernelSource, CodegenError> {
        let (x, dy) = (self.ishape(0).to_vec(), self.ishape(1).to_vec());
        let r = a.window.len();
        if r > 3 || self.ity(0) != DType::F32 {
            return Err(self.unsupported("float32 pooling of rank 1 to 3"));
        }
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut o = [fill; 3];
            o[3 - v.len()..].copy_from_slice(v);
            o
        };
        let (inp, outp, k, s, p) = (
            lift(&x[1..=r], 1),
            lift(&dy[1..=r], 1),
            lift(&a.window, 1),
            lift(&a.strides, 1),
            lift(&a.pads.iter().map(|p| p.0).collect::<Vec<_>>(), 0),
        );
        let c = x[r + 1];
        let share = match a.kind {
            PoolKind::Max => "
        // This element takes the gradient if it is the window's first maximum.
        long long best = -1; float bv = 0.f;
        for (int kz = 0; kz < KD; ++kz) { const long long jz = oz * SZ + kz - PZ; if (jz < 0 || jz >= ID) continue;
        for (int ky = 0; ky < KH; ++ky) { const long long jy = oy * SY + ky - PY; if (jy < 0 || jy >= IH) continue;
        for (int kx = 0; kx < KW; ++kx) { const long long jx = ox * SX + kx - PX; if (jx < 0 || jx >= IW) continue;
          const long long j = (((nb * ID + jz) * IH + jy) * IW + jx) * C + ch;
          if (best < 0 || in0[j] > bv) { best = j; bv = in0[j]; } } } }
        if (best == (long long)i) acc += g;
",
            PoolKind::Avg => "
        int cnt = 0;
        for (int kz = 0; kz < KD; ++kz) { const long long jz = oz * SZ + kz - PZ; if (jz < 0 || jz >= ID) continue;
        for (int ky = 0; ky < KH; ++ky) { const long long jy = oy * SY + ky - PY; if (jy < 0 || jy >= IH) continue;
        for (int kx = 0; kx < KW; ++kx) { const long long jx = ox * SX + kx - PX; if (jx < 0 || jx >= IW) continue; ++cnt; } } }
        acc += g / (float)(cnt > 0 ? cnt : 1);
",
        };
        let template = "    const long long ch = i % C, m = i / C;
    const long long ix = m % IW, iy = (m / IW) % IH, iz = (m / (IW * IH)) % ID, nb = m / (IW * IH * ID);
    float acc = 0.f;
    for (long long oz = 0; oz < OD; ++oz) { const long long kz0 = iz + PZ - oz * SZ; if (kz0 < 0 || kz0 >= KD) continue;
    for (long long oy = 0; oy < OH; ++oy) { const long long ky0 = iy + PY - oy * SY; if (ky0 < 0 || ky0 >= KH) continue;
    for (long long ox = 0; ox < OW; ++ox) { const long long kx0 = ix + PX - ox * SX; if (kx0 < 0 || kx0 >= KW) continue;
        const float g = in1[(((nb * OD + oz) * OH + oy) * OW + ox) * C + ch];SHARE    } } }
    out0[i] = acc;
";
        let mut body = template.replace("SHARE", share);
        for (name, v) in [
            ("C", c),
            ("IW", inp[2]),
            ("IH", inp[1]),
            ("ID", inp[0]),
            ("OW", outp[2]),
            ("OH", outp[1]),
            ("OD", outp[0]),
            ("KW", k[2]),
            ("KH", k[1]),
            ("KD", k[0]),
            ("SX", s[2]),
            ("SY", s[1]),
            ("SZ", s[0]),
            ("PX", p[2]),
            ("PY", p[1]),
            ("PZ", p[0]),
        ] {
            body = replace_word(&body, name, &format!("{v}LL"));
        }
        let n = numel(&x);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }
}

/// `text` with whole-word occurrences of `word` replaced.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < text.len() {
        if text[i..].starts_with(word)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|&b| !is_ident(b))
        {
            out.push_str(with);
            i += word.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}
