//! NumPy `.npy` files: the inputs and outputs of `kerasc run`.

use ir::{DType, Tensor, TensorData};
use std::path::Path;

/// Errors reading or writing `.npy`.
#[derive(Debug)]
pub struct NpyError(pub String);

impl std::fmt::Display for NpyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NpyError {}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let i = header.find(&format!("'{key}'"))?;
    let rest = header[i + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

/// An array read from `.npy`: numbers, or strings (for a model whose TextVectorization or
/// StringLookup reads a string input).
#[derive(Debug, Clone)]
pub enum Array {
    Tensor(Tensor),
    /// Shape and values, row-major.
    Strings(Vec<usize>, Vec<String>),
}

/// Reads a `.npy` file of numbers or strings (numpy's `<U` unicode and `|S` bytes arrays).
pub fn read_array(path: &Path) -> Result<Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError(format!("{}: {e}", path.display())))?;
    parse_array(&bytes, &path.display().to_string())
}

/// [`read_array`] of `.npy` bytes; `origin` names them in errors.
pub fn parse_array(bytes: &[u8], origin: &str) -> Result<Array, NpyError> {
    let (descr, shape, end) = parse_header(bytes, origin)?;
    let width = |prefix: &str| descr.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok());
    let bad = |m: &str| NpyError(format!("{origin}: not a valid .npy file: {m}"));
    let (unicode, n) = match (width("<U"), width("|S").or_else(|| width("S"))) {
        (Some(n), _) => (true, n),
        (None, Some(n)) => (false, n),
        _ => return parse(bytes, origin).map(Array::Tensor),
    };
    let count: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let elem = if unicode { n.checked_mul(4) } else { Some(n) }.ok_or_else(|| bad("size overflows"))?;
    let need = count.checked_mul(elem).ok_or_else(|| bad("size overflows"))?;
    let data =
        bytes.get(end..end.saturating_add(need)).filter(|d| d.len() == need).ok_or_else(|| bad("data is truncated"))?;
    let mut values = Vec::with_capacity(count);
    for item in data.chunks_exact(elem.max(1)).take(count) {
        let s = if unicode {
            item.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&u| u != 0)
                .map(|u| char::from_u32(u).ok_or_else(|| bad("a string holds an invalid code point")))
                .collect::<Result<String, _>>()?
        } else {
            let end = item.iter().position(|&b| b == 0).unwrap_or(item.len());
            String::from_utf8(item[..end].to_vec()).map_err(|_| bad("a byte string is not UTF-8"))?
        };
        values.push(s);
    }
    if elem == 0 {
        values.resize(count, String::new());
    }
    Ok(Array::Strings(shape, values))
}

/// The header of `.npy` bytes: the dtype descriptor, the shape, where the data starts.
fn parse_header(bytes: &[u8], origin: &str) -> Result<(String, Vec<usize>, usize), NpyError> {
    let bad = |m: &str| NpyError(format!("{origin}: not a valid .npy file: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY signature"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(&format!("unsupported version {v}"))),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let descr = header_value(header, "descr").ok_or_else(|| bad("no descr"))?;
    let descr = descr.trim_start_matches(['\'', '"']);
    let descr: String = descr.chars().take_while(|c| *c != '\'' && *c != '"').collect();
    let fortran = header_value(header, "fortran_order").ok_or_else(|| bad("no fortran_order"))?;
    if fortran.starts_with("True") {
        return Err(bad("Fortran-ordered arrays are not supported (save with np.ascontiguousarray)"));
    }
    let shape_txt = header_value(header, "shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape_txt.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad("bad shape"))?;
    let mut shape = Vec::new();
    for p in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(p.parse::<usize>().map_err(|_| bad("bad shape"))?);
    }
    Ok((descr, shape, end))
}

/// Parses `.npy` bytes; `origin` names the file in errors.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Tensor, NpyError> {
    let bad = |m: &str| NpyError(format!("{origin}: not a valid .npy file: {m}"));
    let (descr, shape, end) = parse_header(bytes, origin)?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let data = &bytes[end..];
    let elem = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        "<f2" => 2,
        "<i4" => 4,
        "<i8" => 8,
        "|u1" => 1,
        "|b1" => 1,
        "|i1" => 1,
        "<u4" => 4,
        other => {
            return Err(bad(&format!(
                "unsupported dtype '{other}' (use float32, float64, int32, int64, uint8 or bool)"
            )))
        }
    };
    let need = count.checked_mul(elem).ok_or_else(|| bad("size overflows"))?;
    if data.len() < need {
        return Err(bad(&format!("data is truncated: {} bytes for {count} elements of {elem} bytes", data.len())));
    }
    let d = &data[..need];
    let t = match descr.as_str() {
        "<f4" => TensorData::F32(d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        "<f8" => TensorData::F32(
            d.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
        ),
        "<f2" => TensorData::F16(d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
        "<i4" => TensorData::I32(d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        "<i8" => TensorData::I64(
            d.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
        ),
        "|u1" => TensorData::U8(d.to_vec()),
        "|b1" => TensorData::Bool(d.iter().map(|&b| b != 0).collect()),
        "|i1" => TensorData::I32(d.iter().map(|&b| b as i8 as i32).collect()),
        _ => TensorData::I64(d.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
    };
    Tensor::new(shape, t).map_err(|e| bad(&e.to_string()))
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError(format!("{}: {e}", path.display())))?;
    parse(&bytes, &path.display().to_string())
}

/// Serializes a tensor as `.npy` (version 1.0).
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let descr = match t.dtype() {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::BF16 => "<f4",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    };
    let shape = match t.shape().len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape()[0]),
        _ => format!("({})", t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match t.data() {
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::BF16(_) => t.to_f32_vec().iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::Bool(v) => v.iter().for_each(|&x| out.push(x as u8)),
    }
    out
}

/// Writes a tensor to `path` atomically (a temporary file beside it, then a rename).
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    crate::write_atomic(path, &to_bytes(t)).map_err(|e| NpyError(format!("{}: {e}", path.display())))
}

/// The arrays of an `.npz` file (a zip of `.npy` members), by member name without `.npy`.
/// Members that are not numeric arrays (such as string arrays) are skipped.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, NpyError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NpyError(format!("{origin}: {e}")))?;
    parse_npz(bytes, &origin)
}

/// [`read_npz`] of the file's bytes; `origin` names it in errors.
pub fn parse_npz(bytes: Vec<u8>, origin: &str) -> Result<Vec<(String, Tensor)>, NpyError> {
    Ok(parse_npz_arrays(bytes, origin)?
        .into_iter()
        .filter_map(|(n, a)| match a {
            Array::Tensor(t) => Some((n, t)),
            Array::Strings(..) => None,
        })
        .collect())
}

/// The arrays of an `.npz` file, numbers and strings, by member name without `.npy`.
pub fn read_npz_arrays(path: &Path) -> Result<Vec<(String, Array)>, NpyError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NpyError(format!("{origin}: {e}")))?;
    parse_npz_arrays(bytes, &origin)
}

/// [`read_npz_arrays`] of the file's bytes.
pub fn parse_npz_arrays(bytes: Vec<u8>, origin: &str) -> Result<Vec<(String, Array)>, NpyError> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| NpyError(format!("{origin}: not a valid .npz (zip) file: {e}")))?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let f = z.by_index(i).map_err(|e| NpyError(format!("{origin}: {e}")))?;
        let name = f.name().map(|n| n.trim_end_matches(".npy").to_string()).unwrap_or_default();
        // Sizes come from the file: a member may not claim more than its compressed bytes can
        // expand to (deflate's ratio is at most 1032:1), and is read no further than it claims.
        let (size, packed) = (f.size(), f.compressed_size());
        if size > packed.saturating_mul(1032).saturating_add(1 << 16) || size > (1 << 34) {
            return Err(NpyError(format!("{origin}: member '{name}' claims an implausible size ({size} bytes)")));
        }
        let mut data = Vec::new();
        f.take(size).read_to_end(&mut data).map_err(|e| NpyError(format!("{origin}: member '{name}': {e}")))?;
        if let Ok(a) = parse_array(&data, &format!("{origin}:{name}")) {
            out.push((name, a));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let t = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let b = to_bytes(&t);
        assert_eq!((b.len() - 6 * 4) % 64, 0);
        assert_eq!(parse(&b, "x").unwrap(), t);
        assert!(parse(&b[..b.len() - 3], "x").is_err());
        assert!(parse(b"hello world", "x").is_err());
        let i = Tensor::new(vec![3], TensorData::I32(vec![1, -2, 3])).unwrap();
        assert_eq!(parse(&to_bytes(&i), "x").unwrap(), i);
    }
}
