use crate::{DType, IrError, Shape, TensorType};

/// The element storage of a host tensor. Half types are kept as raw bits.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<u16>),
    BF16(Vec<u16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    U8(Vec<u8>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) | TensorData::BF16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
        }
    }
}

/// A dense row-major host tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, IrError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(IrError::Tensor(format!(
                "shape {:?} holds {} elements but {} were given",
                shape,
                n,
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A float32 tensor; errors if the element count does not match.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, IrError> {
        Tensor::new(shape.to_vec(), TensorData::F32(data))
    }

    /// A float32 tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor { shape: shape.to_vec(), data: TensorData::F32(vec![0.0; n]) }
    }

    /// A float32 tensor filled with `v`.
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor { shape: shape.to_vec(), data: TensorData::F32(vec![v; n]) }
    }

    /// A float32 scalar.
    pub fn scalar(v: f32) -> Tensor {
        Tensor { shape: vec![], data: TensorData::F32(vec![v]) }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The static type of this tensor.
    pub fn tensor_type(&self) -> TensorType {
        TensorType::new(self.dtype(), Shape::fixed(&self.shape))
    }

    /// The storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Consumes the tensor into its storage.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The float32 elements, if this is a float32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Mutable float32 elements, if this is a float32 tensor.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The rows `idx` (along axis 0) of this tensor, as a new tensor
    /// ([`Tensor::gather_rows_from`] into zeros).
    pub fn gather_rows(&self, idx: &[usize]) -> Result<Tensor, IrError> {
        let mut shape = self.shape.clone();
        match shape.first_mut() {
            Some(n) => *n = idx.len(),
            None => return Err(IrError::Tensor("cannot take rows of a scalar".into())),
        }
        let n = shape.iter().product();
        let zeros = match &self.data {
            TensorData::F32(_) => TensorData::F32(vec![0.0; n]),
            TensorData::F16(_) => TensorData::F16(vec![0; n]),
            TensorData::BF16(_) => TensorData::BF16(vec![0; n]),
            TensorData::I32(_) => TensorData::I32(vec![0; n]),
            TensorData::I64(_) => TensorData::I64(vec![0; n]),
            TensorData::Bool(_) => TensorData::Bool(vec![false; n]),
            TensorData::U8(_) => TensorData::U8(vec![0; n]),
        };
        let mut out = Tensor::new(shape, zeros)?;
        out.gather_rows_from(self, idx)?;
        Ok(out)
    }

    /// Fills this tensor's rows (along axis 0) with the rows `idx` of `src`, in place: a batch
    /// gathered into a reused buffer. The dtypes, the row sizes and `idx.len()` (this tensor's
    /// rows) must agree, and every index must be a row of `src`.
    pub fn gather_rows_from(&mut self, src: &Tensor, idx: &[usize]) -> Result<(), IrError> {
        let per = |t: &Tensor| t.shape.iter().skip(1).product::<usize>();
        let (p, n_src) = (per(src), src.shape.first().copied().unwrap_or(0));
        let fits = self.dtype() == src.dtype()
            && self.shape.first() == Some(&idx.len())
            && per(self) == p
            && idx.iter().all(|&i| i < n_src);
        if !fits {
            return Err(IrError::Tensor(format!(
                "cannot gather {} rows of {:?} {:?} into {:?} {:?}",
                idx.len(),
                src.dtype(),
                src.shape,
                self.dtype(),
                self.shape
            )));
        }
        fn copy<T: Copy>(dst: &mut [T], src: &[T], idx: &[usize], per: usize) {
            for (d, &i) in dst.chunks_exact_mut(per.max(1)).zip(idx) {
                d.copy_from_slice(&src[i * per..(i + 1) * per]);
            }
        }
        match (&mut self.data, &src.data) {
            (TensorData::F32(d), TensorData::F32(s)) => copy(d, s, idx, p),
            (TensorData::F16(d), TensorData::F16(s)) | (TensorData::BF16(d), TensorData::BF16(s)) => copy(d, s, idx, p),
            (TensorData::I32(d), TensorData::I32(s)) => copy(d, s, idx, p),
            (TensorData::I64(d), TensorData::I64(s)) => copy(d, s, idx, p),
            (TensorData::Bool(d), TensorData::Bool(s)) => copy(d, s, idx, p),
            (TensorData::U8(d), TensorData::U8(s)) => copy(d, s, idx, p),
            _ => return Err(IrError::Tensor("gather between different dtypes".into())),
        }
        Ok(())
    }

    /// The tensors' rows one after the other (along axis 0): the same dtype and row shape, at
    /// least one part.
    pub fn concat_rows(parts: &[Tensor]) -> Result<Tensor, IrError> {
        let first = parts.first().ok_or_else(|| IrError::Tensor("nothing to concatenate".into()))?;
        let row = first.shape.get(1..).ok_or_else(|| IrError::Tensor("cannot concatenate scalars".into()))?;
        let mut rows = 0usize;
        for t in parts {
            if t.dtype() != first.dtype() || t.shape.get(1..) != Some(row) {
                return Err(IrError::Tensor(format!(
                    "cannot concatenate {:?} {:?} after {:?} {:?}",
                    t.dtype(),
                    t.shape,
                    first.dtype(),
                    first.shape
                )));
            }
            rows += t.shape[0];
        }
        fn cat<T: Copy>(parts: &[Tensor], pick: impl Fn(&TensorData) -> Option<&Vec<T>>) -> Vec<T> {
            parts.iter().filter_map(|t| pick(&t.data)).flat_map(|v| v.iter().copied()).collect()
        }
        let data = match &first.data {
            TensorData::F32(_) => {
                TensorData::F32(cat(parts, |d| if let TensorData::F32(v) = d { Some(v) } else { None }))
            }
            TensorData::F16(_) => {
                TensorData::F16(cat(parts, |d| if let TensorData::F16(v) = d { Some(v) } else { None }))
            }
            TensorData::BF16(_) => {
                TensorData::BF16(cat(parts, |d| if let TensorData::BF16(v) = d { Some(v) } else { None }))
            }
            TensorData::I32(_) => {
                TensorData::I32(cat(parts, |d| if let TensorData::I32(v) = d { Some(v) } else { None }))
            }
            TensorData::I64(_) => {
                TensorData::I64(cat(parts, |d| if let TensorData::I64(v) = d { Some(v) } else { None }))
            }
            TensorData::Bool(_) => {
                TensorData::Bool(cat(parts, |d| if let TensorData::Bool(v) = d { Some(v) } else { None }))
            }
            TensorData::U8(_) => TensorData::U8(cat(parts, |d| if let TensorData::U8(v) = d { Some(v) } else { None })),
        };
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Tensor::new(shape, data)
    }

    /// The same data with another shape of equal element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor, IrError> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(IrError::Tensor(format!(
                "cannot reshape {:?} ({} elements) to {:?}",
                self.shape,
                self.len(),
                shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// All elements converted to f64 (for comparisons and printing).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|&x| f16_to_f32(x) as f64).collect(),
            TensorData::BF16(v) => v.iter().map(|&x| f32::from_bits((x as u32) << 16) as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// All elements converted to f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            _ => self.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }

    /// All elements converted to i64 (floats truncated toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I64(v) => v.clone(),
            _ => self.to_f64_vec().into_iter().map(|x| x as i64).collect(),
        }
    }

    /// Converts to another element type.
    pub fn cast(&self, to: DType) -> Tensor {
        if to == self.dtype() {
            return self.clone();
        }
        let data = match to {
            DType::F32 => TensorData::F32(self.to_f32_vec()),
            DType::F16 => TensorData::F16(self.to_f32_vec().into_iter().map(f32_to_f16).collect()),
            DType::BF16 => TensorData::BF16(self.to_f32_vec().into_iter().map(f32_to_bf16).collect()),
            DType::I32 => TensorData::I32(self.to_i64_vec().into_iter().map(|x| x as i32).collect()),
            DType::I64 => TensorData::I64(self.to_i64_vec()),
            DType::Bool => TensorData::Bool(self.to_f64_vec().into_iter().map(|x| x != 0.0).collect()),
            DType::U8 => TensorData::U8(self.to_i64_vec().into_iter().map(|x| x as u8).collect()),
        };
        Tensor { shape: self.shape.clone(), data }
    }
}

/// IEEE half bits to f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if frac == 0 {
            sign << 31
        } else {
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            (sign << 31) | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        (sign << 31) | (0xff << 23) | (frac << 13)
    } else {
        (sign << 31) | ((exp + 127 - 15) << 23) | (frac << 13)
    };
    f32::from_bits(bits)
}

/// f32 to IEEE half bits, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// f32 to bfloat16 bits, rounding to nearest even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits + round) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_gathered_in_place() {
        let src = Tensor::new(vec![4, 2], TensorData::I32(vec![0, 1, 10, 11, 20, 21, 30, 31])).unwrap();
        let mut dst = Tensor::new(vec![3, 2], TensorData::I32(vec![0; 6])).unwrap();
        dst.gather_rows_from(&src, &[3, 0, 3]).unwrap();
        assert_eq!(dst.data(), &TensorData::I32(vec![30, 31, 0, 1, 30, 31]));
        assert_eq!(src.gather_rows(&[3, 0, 3]).unwrap(), dst);
        // A row that is not there, a batch of another size, another dtype: errors, nothing written.
        assert!(dst.gather_rows_from(&src, &[0, 4, 1]).is_err());
        assert!(dst.gather_rows_from(&src, &[0, 1]).is_err());
        assert!(dst.gather_rows_from(&Tensor::zeros(&[4, 2]), &[0, 1, 2]).is_err());
        assert_eq!(dst.data(), &TensorData::I32(vec![30, 31, 0, 1, 30, 31]));
    }

    #[test]
    fn rows_concatenated_in_order() {
        let a = Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2])).unwrap();
        let b = Tensor::new(vec![2, 2], TensorData::I64(vec![3, 4, 5, 6])).unwrap();
        let c = Tensor::concat_rows(&[a.clone(), b.clone()]).unwrap();
        assert_eq!((c.shape(), c.data()), (&[3usize, 2][..], &TensorData::I64(vec![1, 2, 3, 4, 5, 6])));
        assert_eq!(c.gather_rows(&[1, 2]).unwrap(), b);
        assert!(Tensor::concat_rows(&[a.clone(), Tensor::zeros(&[1, 2])]).is_err());
        assert!(Tensor::concat_rows(&[a, Tensor::new(vec![1, 3], TensorData::I64(vec![0; 3])).unwrap()]).is_err());
        assert!(Tensor::concat_rows(&[]).is_err());
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        assert!(Tensor::from_f32(&[2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::from_f32(&[2, 3], vec![0.0; 6]).is_ok());
    }

    #[test]
    fn half_round_trip() {
        for &x in &[0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 1e-7, 0.333] {
            let back = f16_to_f32(f32_to_f16(x));
            assert!((back - x).abs() <= x.abs() * 1e-3 + 1e-7, "{x} -> {back}");
        }
        assert_eq!(f32::from_bits((f32_to_bf16(1.5) as u32) << 16), 1.5);
    }

    #[test]
    fn cast_truncates_floats_to_ints() {
        let t = Tensor::from_f32(&[3], vec![1.7, -1.7, 3.0]).unwrap();
        assert_eq!(t.cast(DType::I32).to_i64_vec(), vec![1, -1, 3]);
    }
}
