/// An element-wise comparison tolerance: pass where `|a − b| ≤ atol + rtol·|b|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

/// The outcome of comparing two sequences of numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Index of the worst element (largest excess over the tolerance, or largest difference).
    pub worst_index: usize,
    /// The worst element's actual and expected values.
    pub worst: (f64, f64),
    /// How many elements are out of tolerance.
    pub out_of_tolerance: usize,
    /// Number of elements compared.
    pub count: usize,
}

impl Comparison {
    /// True when every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.out_of_tolerance == 0
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} elements out of tolerance; worst at index {}: got {} expected {} (max |diff| {:.3e})",
            self.out_of_tolerance, self.count, self.worst_index, self.worst.0, self.worst.1, self.max_abs_diff
        )
    }
}

impl Tolerance {
    /// Integer, shape and data-movement ops: exact.
    pub const EXACT: Tolerance = Tolerance { atol: 0.0, rtol: 0.0 };
    /// f32 element-wise ops.
    pub const ELEMENTWISE: Tolerance = Tolerance { atol: 1e-6, rtol: 1e-5 };
    /// f32 reductions, matmul, convolution.
    pub const REDUCTION: Tolerance = Tolerance { atol: 1e-5, rtol: 1e-4 };
    /// A whole model against Keras; CUDA against CPU.
    pub const MODEL: Tolerance = Tolerance { atol: 1e-4, rtol: 1e-3 };
    /// f16 / bf16.
    pub const HALF: Tolerance = Tolerance { atol: 1e-2, rtol: 1e-2 };

    /// Compares `actual` against `expected` element-wise. Lengths must match; a length mismatch
    /// counts every element as out of tolerance. NaN matches NaN.
    pub fn compare(&self, actual: &[f64], expected: &[f64]) -> Comparison {
        let mut cmp = Comparison {
            max_abs_diff: 0.0,
            worst_index: 0,
            worst: (0.0, 0.0),
            out_of_tolerance: 0,
            count: expected.len(),
        };
        if actual.len() != expected.len() {
            cmp.out_of_tolerance = expected.len().max(actual.len()).max(1);
            cmp.max_abs_diff = f64::INFINITY;
            return cmp;
        }
        let mut worst_excess = f64::NEG_INFINITY;
        for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
            if a.is_nan() && b.is_nan() {
                continue;
            }
            let d = (a - b).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            let excess = d - (self.atol + self.rtol * b.abs());
            if d > cmp.max_abs_diff {
                cmp.max_abs_diff = d;
            }
            if excess > 0.0 {
                cmp.out_of_tolerance += 1;
            }
            if excess > worst_excess {
                worst_excess = excess;
                cmp.worst_index = i;
                cmp.worst = (a, b);
            }
        }
        cmp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_worst_element() {
        let c = Tolerance::MODEL.compare(&[1.0, 2.0, 3.5], &[1.0, 2.0, 3.0]);
        assert!(!c.passed());
        assert_eq!(c.worst_index, 2);
        assert_eq!(c.out_of_tolerance, 1);
        let ok = Tolerance::MODEL.compare(&[1.00005], &[1.0]);
        assert!(ok.passed());
    }

    #[test]
    fn length_mismatch_fails() {
        assert!(!Tolerance::EXACT.compare(&[1.0], &[1.0, 2.0]).passed());
    }
}
