//! Data movement: every output element read from one input element (transpose, repeat, tile,
//! broadcast, copy), pad, slice, concat, resize, gather, and the gather's gradient.

use super::context::{launch_1d, numel, strides, Ctx};
use super::{expr, KernelSource};
use crate::CodegenError;
use ir::{DType, ResizeMode};
use std::fmt::Write;

impl Ctx<'_> {
    /// A plain copy (a reshape that does not alias its input).
    pub(super) fn copy(&self) -> Result<KernelSource, CodegenError> {
        self.pointwise(|_| "    out0[i] = in0[i];\n".to_string(), true)
    }

    pub(super) fn transpose(&self, perm: &[usize]) -> Result<KernelSource, CodegenError> {
        self.remap(|c, ax| {
            Some(format!("c{}", perm.iter().position(|&p| p == ax).unwrap_or(ax))).map(|s| (s, c.ishape(0)[ax]))
        })
    }

    pub(super) fn repeat_interleave(&self, axis: usize, repeats: usize) -> Result<KernelSource, CodegenError> {
        self.remap(|c, ax| {
            let d = c.ishape(0)[ax];
            Some(if ax == axis { (format!("(c{ax} / {})", repeats.max(1)), d) } else { (format!("c{ax}"), d) })
        })
    }

    pub(super) fn tile(&self) -> Result<KernelSource, CodegenError> {
        self.remap(|c, ax| {
            let d = c.ishape(0)[ax];
            Some((format!("(c{ax} % {})", d.max(1)), d))
        })
    }

    /// numpy broadcasting: input axes align with the output's from the right.
    pub(super) fn broadcast_to(&self) -> Result<KernelSource, CodegenError> {
        let off = self.oshape(0).len().saturating_sub(self.ishape(0).len());
        self.remap(|c, ax| {
            let d = c.ishape(0)[ax];
            Some((if d == 1 { "0".to_string() } else { format!("c{}", ax + off) }, d))
        })
    }

    /// Output element `i` copied from the input position whose coordinate along each axis is
    /// `src(ax)` (an expression over `c*`, and the input's extent on that axis).
    pub(super) fn remap(
        &self,
        src: impl Fn(&Self, usize) -> Option<(String, usize)>,
    ) -> Result<KernelSource, CodegenError> {
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut terms = Vec::new();
        for (ax, stride) in st.iter().enumerate() {
            let (e, _) = src(self, ax).ok_or_else(|| self.unsupported("axis mapping"))?;
            terms.push(format!("({e}) * {stride}"));
        }
        let idx = if terms.is_empty() { "0".to_string() } else { terms.join(" + ") };
        let body = format!("{}    out0[i] = in0[{idx}];\n", Self::coords(&out, "i"));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    pub(super) fn pad(&self, pads: &[(usize, usize)], value: f32) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 padding"));
        }
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut cond = Vec::new();
        let mut terms = Vec::new();
        for ax in 0..ins.len() {
            let b = pads.get(ax).map(|p| p.0).unwrap_or(0);
            cond.push(format!("c{ax} >= {b} && c{ax} < {}", b + ins[ax]));
            terms.push(format!("(c{ax} - {b}) * {}", st[ax]));
        }
        let body = format!(
            "{}    out0[i] = ({}) ? in0[{}] : {};\n",
            Self::coords(&out, "i"),
            if cond.is_empty() { "true".into() } else { cond.join(" && ") },
            if terms.is_empty() { "0".into() } else { terms.join(" + ") },
            expr::lit(value)
        );
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    pub(super) fn slice(
        &self,
        axes: &[usize],
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> Result<KernelSource, CodegenError> {
        let ins = self.ishape(0).to_vec();
        self.remap(|_, ax| {
            let d = ins[ax];
            Some(match axes.iter().position(|&a| a == ax) {
                None => (format!("c{ax}"), d),
                Some(k) => {
                    let (s, _) = ir::slice_bounds(d, starts[k], ends[k], steps[k]);
                    (format!("({s}LL + (long long)c{ax} * {}LL)", steps[k]), d)
                }
            })
        })
    }

    pub(super) fn concat(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        let out = self.oshape(0).to_vec();
        let mut body = Self::coords(&out, "i");
        let mut start = 0usize;
        for k in 0..self.node.inputs.len() {
            let ins = self.ishape(k).to_vec();
            let st = strides(&ins);
            let terms: Vec<String> =
                (0..ins.len())
                    .map(|ax| {
                        if ax == axis {
                            format!("(c{ax} - {start}) * {}", st[ax])
                        } else {
                            format!("c{ax} * {}", st[ax])
                        }
                    })
                    .collect();
            let end = start + ins[axis];
            let _ = writeln!(
                body,
                "    {}if (c{axis} < {end}) out0[i] = in{k}[{}];",
                if k == 0 { "" } else { "else " },
                terms.join(" + ")
            );
            start = end;
        }
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    pub(super) fn resize(&self, sizes: &[usize], mode: &ResizeMode) -> Result<KernelSource, CodegenError> {
        if self.ity(0) != DType::F32 {
            return Err(self.unsupported("only float32 resizing"));
        }
        if let ResizeMode::Onnx(spec) = mode {
            return self.resize_taps(sizes, spec);
        }
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let mut body = Self::coords(&out, "i");
        let r = out.len();
        // Per resized axis: the low and high source index and the weight of the high one.
        let mut lerp_axes = Vec::new();
        for (k, &size) in sizes.iter().enumerate() {
            let ax = k + 1;
            let inn = ins[ax];
            if inn == size {
                let _ = writeln!(body, "    const kc_idx lo{ax} = c{ax}, hi{ax} = c{ax}; const float t{ax} = 0.f;");
                continue;
            }
            let scale = expr::lit(inn as f32 / size as f32);
            match mode {
                ResizeMode::Nearest => {
                    let _ = writeln!(
                        body,
                        "    kc_idx lo{ax} = (kc_idx)floorf(((float)c{ax} + 0.5f) * {scale}); if (lo{ax} > {m}) lo{ax} = {m}; const kc_idx hi{ax} = lo{ax}; const float t{ax} = 0.f;",
                        m = inn - 1
                    );
                }
                ResizeMode::Onnx(_) => return Err(self.unsupported("resized by taps")),
                ResizeMode::Bilinear => {
                    let _ = writeln!(
                        body,
                        "    const float f{ax} = fmaxf(((float)c{ax} + 0.5f) * {scale} - 0.5f, 0.f);\n    kc_idx lo{ax} = (kc_idx)floorf(f{ax}); if (lo{ax} > {m}) lo{ax} = {m};\n    const kc_idx hi{ax} = lo{ax} + 1 > {m} ? {m} : lo{ax} + 1; const float t{ax} = f{ax} - (float)lo{ax};",
                        m = inn - 1
                    );
                    lerp_axes.push(ax);
                }
            }
        }
        let resized: Vec<usize> = (1..=sizes.len()).collect();
        let at = |pick: &dyn Fn(usize) -> &'static str| -> String {
            (0..r)
                .map(|ax| {
                    let c = if resized.contains(&ax) { format!("{}{ax}", pick(ax)) } else { format!("c{ax}") };
                    format!("{c} * {}", st[ax])
                })
                .collect::<Vec<_>>()
                .join(" + ")
        };
        // Sum over the 2^k corners of the interpolated axes, in the CPU's axis order.
        let k = lerp_axes.len();
        let mut terms = Vec::new();
        for mask in 0..(1usize << k) {
            let hi_axes: Vec<usize> = (0..k).filter(|b| mask >> b & 1 == 1).map(|b| lerp_axes[b]).collect();
            let w: Vec<String> = lerp_axes
                .iter()
                .map(|ax| if hi_axes.contains(ax) { format!("t{ax}") } else { format!("(1.f - t{ax})") })
                .collect();
            let idx = at(&|ax| if hi_axes.contains(&ax) { "hi" } else { "lo" });
            terms.push(if w.is_empty() { format!("in0[{idx}]") } else { format!("{} * in0[{idx}]", w.join(" * ")) });
        }
        let _ = writeln!(body, "    out0[i] = {};", terms.join(" + "));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    /// ONNX's Resize in general: per resized axis, constant tables of each output coordinate's
    /// input indices and weights ([`ir::interp::Interpolation::taps`]); each output element sums
    /// the products over all axes' taps, or takes the extrapolation value outside a crop.
    fn resize_taps(&self, sizes: &[usize], spec: &ir::interp::Interpolation) -> Result<KernelSource, CodegenError> {
        let out = self.oshape(0).to_vec();
        let ins = self.ishape(0).to_vec();
        let st = strides(&ins);
        let name = self.name();
        let mut tables = String::new();
        let mut body = Self::coords(&out, "i");
        let mut loops = Vec::new();
        let mut outside = Vec::new();
        for (k, &size) in sizes.iter().enumerate() {
            let ax = k + 1;
            let taps = spec.taps(k, ins[ax], size);
            let idx: Vec<String> = taps.idx.iter().map(|i| i.to_string()).collect();
            let w: Vec<String> = taps.w.iter().map(|&w| expr::lit(w)).collect();
            let _ = writeln!(tables, "__constant__ unsigned int {name}_i{ax}[{}] = {{{}}};", idx.len(), idx.join(","));
            let _ = writeln!(tables, "__constant__ float {name}_w{ax}[{}] = {{{}}};", w.len(), w.join(","));
            if taps.outside.iter().any(|&o| o) {
                let o: Vec<&str> = taps.outside.iter().map(|&o| if o { "1" } else { "0" }).collect();
                let _ = writeln!(tables, "__constant__ unsigned char {name}_o{ax}[{}] = {{{}}};", o.len(), o.join(","));
                outside.push(format!("{name}_o{ax}[c{ax}]"));
            }
            loops.push((ax, taps.n));
        }
        let _ = writeln!(body, "    float acc = 0.f;");
        let mut close = String::new();
        let mut weight = Vec::new();
        for &(ax, n) in &loops {
            let _ = writeln!(
                body,
                "    for (int t{ax} = 0; t{ax} < {n}; ++t{ax}) {{ const kc_idx s{ax} = {name}_i{ax}[c{ax} * {n} + t{ax}]; const float w{ax} = {name}_w{ax}[c{ax} * {n} + t{ax}];"
            );
            weight.push(format!("w{ax}"));
            close.push('}');
        }
        let at: Vec<String> = (0..out.len())
            .map(|ax| {
                if loops.iter().any(|l| l.0 == ax) {
                    format!("s{ax} * {}", st[ax])
                } else {
                    format!("c{ax} * {}", st[ax])
                }
            })
            .collect();
        let w = if weight.is_empty() { "1.f".to_string() } else { weight.join(" * ") };
        let _ = writeln!(
            body,
            "      acc += {w} * in0[{}];
    {close}",
            at.join(" + ")
        );
        if !outside.is_empty() {
            let _ = writeln!(
                body,
                "    if ({}) acc = {};",
                outside.join(" || "),
                expr::lit(f32::from_bits(spec.extrapolation))
            );
        }
        let _ = writeln!(body, "    out0[i] = acc;");
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, &tables))
    }

    pub(super) fn gather(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        let data = self.ishape(0).to_vec();
        let idx = self.ishape(1).to_vec();
        let out = self.oshape(0).to_vec();
        let d = data[axis];
        let ist = strides(&idx);
        let dst = strides(&data);
        let mut body = Self::coords(&out, "i");
        // Output axes: data's leading axes, the index axes, then data's trailing axes.
        let iterms: Vec<String> = (0..idx.len()).map(|k| format!("c{} * {}", axis + k, ist[k])).collect();
        let _ = writeln!(
            body,
            "    long long j = (long long)in1[{}];\n    j = j < 0 ? 0 : (j >= {d} ? {} : j);",
            if iterms.is_empty() { "0".into() } else { iterms.join(" + ") },
            d.saturating_sub(1)
        );
        let mut dterms = Vec::new();
        for (a, stride) in dst.iter().enumerate() {
            dterms.push(match a.cmp(&axis) {
                std::cmp::Ordering::Less => format!("c{a} * {stride}"),
                std::cmp::Ordering::Equal => format!("j * {stride}"),
                std::cmp::Ordering::Greater => format!("c{} * {stride}", a - 1 + idx.len()),
            });
        }
        let _ = writeln!(body, "    out0[i] = in0[{}];", dterms.join(" + "));
        Ok(self.kernel(Self::grid_loop(numel(&out), &body), launch_1d(numel(&out)), true, ""))
    }

    /// The gradient of an embedding lookup: each table element sums the output gradients of
    /// the ids that pick it (a gather over the ids, no atomics).
    pub(super) fn gather_grad(&self, axis: usize) -> Result<KernelSource, CodegenError> {
        if self.ity(1) != DType::F32 || self.oty(0) != DType::F32 {
            return Err(self.unsupported("only float32 gradients"));
        }
        let out = self.oshape(0).to_vec();
        let d = out[axis];
        let inner: usize = out[axis + 1..].iter().product();
        let k = numel(self.ishape(0));
        let body = format!(
            "    const kc_idx in_ = i % {inner}, di = (i / {inner}) % {d}, o = i / ({inner} * {d});
    float acc = 0.f;
    for (kc_idx k = 0; k < {k}; ++k) {{
      if ((long long)in0[k] == (long long)di) acc += in1[(o * {k} + k) * {inner} + in_];
    }}
    out0[i] = acc;
",
            inner = inner.max(1),
            d = d.max(1),
        );
        let n = numel(&out);
        Ok(self.kernel(Self::grid_loop(n, &body), launch_1d(n), true, ""))
    }
}
