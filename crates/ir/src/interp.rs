//! ONNX `Resize` in general ([`ResizeMode::Onnx`](crate::ResizeMode)): how each output
//! coordinate along a resized axis maps to input coordinates (the coordinate transformation) and
//! which input elements it weighs, by how much (nearest with its rounding, linear, cubic;
//! antialiased when downsampling; `exclude_outside`; extrapolation outside a crop). Resizing is
//! separable: the CPU kernel applies the taps axis by axis, the CUDA kernel reads them from
//! constant tables. The rules are ONNX's reference implementation's.

/// How an output coordinate maps to an input coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    /// From the region of interest (`roi`) of each axis; outside the input: the extrapolation value.
    TfCropAndResize,
}

impl CoordMode {
    pub fn parse(s: &str) -> Option<CoordMode> {
        Some(match s {
            "half_pixel" => CoordMode::HalfPixel,
            "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
            "tf_crop_and_resize" => CoordMode::TfCropAndResize,
            _ => return None,
        })
    }
}

/// How nearest resizing rounds a coordinate between two elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NearestRound {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

impl NearestRound {
    pub fn parse(s: &str) -> Option<NearestRound> {
        Some(match s {
            "round_prefer_floor" => NearestRound::RoundPreferFloor,
            "round_prefer_ceil" => NearestRound::RoundPreferCeil,
            "floor" => NearestRound::Floor,
            "ceil" => NearestRound::Ceil,
            _ => return None,
        })
    }
}

/// The interpolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterpKind {
    Nearest(NearestRound),
    Linear,
    /// Cubic convolution with coefficient `a` (f32 bits; -0.75 by default, -0.5 TensorFlow's).
    Cubic {
        a: u32,
    },
}

/// An ONNX resize: floats are held as their bits (the op is hashed and compared exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interpolation {
    pub coord: CoordMode,
    pub kind: InterpKind,
    pub antialias: bool,
    pub exclude_outside: bool,
    /// The value of output elements mapped outside the input (tf_crop_and_resize), f32 bits.
    pub extrapolation: u32,
    /// Per resized axis, in order: the scale, and the region of interest's start and end
    /// (fractions of the input; used by tf_crop_and_resize), as f32 bits.
    pub axes: Vec<(u32, u32, u32)>,
}

/// The taps of one resized axis: for output coordinate `o`, input indices
/// `idx[o * n .. (o + 1) * n]` (clamped into the input) weighed by `w[..]`; `outside[o]`: the
/// output takes the extrapolation value.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub n: usize,
    pub idx: Vec<usize>,
    pub w: Vec<f32>,
    pub outside: Vec<bool>,
}

fn cubic_coeff(x: f64, a: f64) -> f64 {
    let x = x.abs();
    let (x2, x3) = (x * x, x * x * x);
    if x <= 1.0 {
        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
    } else if x < 2.0 {
        a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
    } else {
        0.0
    }
}

impl Interpolation {
    /// The taps of resized axis `k` from `input` to `output` elements.
    pub fn taps(&self, k: usize, input: usize, output: usize) -> Taps {
        let (scale_bits, roi_start, roi_end) = self.axes.get(k).copied().unwrap_or((1f32.to_bits(), 0, 1f32.to_bits()));
        let scale = f32::from_bits(scale_bits) as f64;
        let (r0, r1) = (f32::from_bits(roi_start) as f64, f32::from_bits(roi_end) as f64);
        let (inn, out_f) = (input as f64, scale * input as f64);
        // The coefficients' function of the ratio (x minus the element below it, in (0, 1]).
        let aa_scale = if self.antialias { scale.min(1.0) } else { 1.0 };
        let (start, n): (i64, usize) = match self.kind {
            InterpKind::Nearest(_) => (0, 2),
            InterpKind::Linear => {
                let s = (-1.0 / aa_scale).floor() as i64 + 1;
                (s, (2 - 2 * s) as usize)
            }
            InterpKind::Cubic { .. } => {
                let s = (-2.0 / aa_scale).floor() as i64 + 1;
                (s, (2 - 2 * s) as usize)
            }
        };
        let coeffs = |ratio: f64| -> Vec<f64> {
            match self.kind {
                InterpKind::Nearest(round) => {
                    let hi = ratio >= 1.0
                        || match round {
                            NearestRound::RoundPreferFloor => ratio > 0.5,
                            NearestRound::RoundPreferCeil => ratio >= 0.5,
                            NearestRound::Floor => false,
                            NearestRound::Ceil => true,
                        };
                    vec![if hi { 0.0 } else { 1.0 }, if hi { 1.0 } else { 0.0 }]
                }
                InterpKind::Linear => {
                    let c: Vec<f64> =
                        (0..n).map(|j| (1.0 - ((start + j as i64) as f64 - ratio).abs() * aa_scale).max(0.0)).collect();
                    let s: f64 = c.iter().sum();
                    c.into_iter().map(|v| v / s).collect()
                }
                InterpKind::Cubic { a } => {
                    let a = f32::from_bits(a) as f64;
                    let c: Vec<f64> =
                        (0..n).map(|j| cubic_coeff(((start + j as i64) as f64 - ratio) * aa_scale, a)).collect();
                    if self.antialias {
                        let s: f64 = c.iter().sum();
                        c.into_iter().map(|v| v / s).collect()
                    } else {
                        c
                    }
                }
            }
        };
        let mut taps = Taps {
            n,
            idx: Vec::with_capacity(output * n),
            w: Vec::with_capacity(output * n),
            outside: vec![false; output],
        };
        for o in 0..output {
            let x = o as f64;
            let x_in = match self.coord {
                CoordMode::AlignCorners if out_f == 1.0 => 0.0,
                CoordMode::AlignCorners => x * (inn - 1.0) / (out_f - 1.0),
                CoordMode::Asymmetric => x / scale,
                CoordMode::TfCropAndResize => {
                    let v = if out_f == 1.0 {
                        (r1 - r0) * (inn - 1.0) / 2.0
                    } else {
                        x * (r1 - r0) * (inn - 1.0) / (out_f - 1.0)
                    };
                    v + r0 * (inn - 1.0)
                }
                CoordMode::PytorchHalfPixel if out_f == 1.0 => -0.5,
                CoordMode::PytorchHalfPixel | CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
                CoordMode::HalfPixelSymmetric => {
                    let adjustment = output as f64 / out_f;
                    let centre = inn / 2.0;
                    centre * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
                }
                CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
            };
            if self.coord == CoordMode::TfCropAndResize && (x_in < 0.0 || x_in > inn - 1.0) {
                taps.outside[o] = true;
            }
            // The element at or below x, so that the ratio is in (0, 1].
            let base = x_in.ceil() as i64 - 1;
            let ratio = x_in - base as f64;
            let mut c = coeffs(ratio);
            let first = base + start;
            if self.exclude_outside {
                for (j, cj) in c.iter_mut().enumerate() {
                    let i = first + j as i64;
                    if i < 0 || i >= input as i64 {
                        *cj = 0.0;
                    }
                }
                let s: f64 = c.iter().sum();
                if s != 0.0 {
                    c.iter_mut().for_each(|v| *v /= s);
                }
            }
            for (j, cj) in c.into_iter().enumerate() {
                taps.idx.push((first + j as i64).clamp(0, input as i64 - 1) as usize);
                taps.w.push(cj as f32);
            }
        }
        taps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(coord: CoordMode, kind: InterpKind, scale: f32) -> Interpolation {
        Interpolation {
            coord,
            kind,
            antialias: false,
            exclude_outside: false,
            extrapolation: 0,
            axes: vec![(scale.to_bits(), 0, 1f32.to_bits())],
        }
    }

    #[test]
    fn taps_follow_onnx_reference() {
        // Linear, half-pixel, 4 → 8: output 0 maps to -0.25, clamped to element 0.
        let t = spec(CoordMode::HalfPixel, InterpKind::Linear, 2.0).taps(0, 4, 8);
        assert_eq!((t.n, &t.idx[..4]), (2, &[0, 0, 0, 1][..]));
        assert!((t.w[0] - 0.25).abs() < 1e-6 && (t.w[1] - 0.75).abs() < 1e-6, "{:?}", t.w);
        // Nearest, asymmetric, floor, 4 → 8: element o/2.
        let t = spec(CoordMode::Asymmetric, InterpKind::Nearest(NearestRound::Floor), 2.0).taps(0, 4, 8);
        let picked: Vec<usize> =
            (0..8).map(|o| if t.w[2 * o] > 0.5 { t.idx[2 * o] } else { t.idx[2 * o + 1] }).collect();
        assert_eq!(picked, [0, 0, 1, 1, 2, 2, 3, 3]);
        // Cubic weights sum to 1 and pick the element itself at integer coordinates.
        let t = spec(CoordMode::AlignCorners, InterpKind::Cubic { a: (-0.75f32).to_bits() }, 1.0).taps(0, 5, 5);
        assert_eq!(t.n, 4);
        for o in 0..5 {
            let s: f32 = t.w[o * 4..o * 4 + 4].iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
            let best = (0..4).max_by(|&a, &b| t.w[o * 4 + a].total_cmp(&t.w[o * 4 + b])).unwrap();
            assert_eq!(t.idx[o * 4 + best], o);
        }
        // Antialiased linear downsampling by 2 spreads over 4 taps.
        let mut s = spec(CoordMode::HalfPixel, InterpKind::Linear, 0.5);
        s.antialias = true;
        assert_eq!(s.taps(0, 8, 4).n, 4);
    }
}
