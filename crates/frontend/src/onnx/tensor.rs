//! ONNX `TensorProto` → [`ir::Tensor`]: every size checked against the bytes actually present
//! before anything is allocated; external data read from files beside the model, confined to
//! its folder.

use super::proto::{tensor_proto::DataLocation, TensorProto};
use ir::{DType, Tensor, TensorData};
use std::path::Path;

/// Most elements one tensor may hold (2^31): beyond this a size is taken as hostile.
const MAX_ELEMENTS: u64 = 1 << 31;

/// ONNX element type codes.
pub mod elem {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// The IR dtype an ONNX element type is held in (floats of every width as f32, narrow integers
/// as i32, wide ones as i64), or why it is not supported.
pub fn dtype_of(code: i32) -> Result<DType, String> {
    Ok(match code {
        elem::FLOAT | elem::DOUBLE | elem::FLOAT16 | elem::BFLOAT16 => DType::F32,
        elem::UINT8 => DType::U8,
        elem::INT8 | elem::UINT16 | elem::INT16 | elem::INT32 => DType::I32,
        elem::INT64 | elem::UINT32 | elem::UINT64 => DType::I64,
        elem::BOOL => DType::Bool,
        8 => return Err("string tensors are not supported".into()),
        14 | 15 => return Err("complex tensors are not supported".into()),
        other => return Err(format!("element type {other} is not supported")),
    })
}

/// Bytes per element of an ONNX element type in `raw_data`.
fn width(code: i32) -> Option<usize> {
    Some(match code {
        elem::UINT8 | elem::INT8 | elem::BOOL => 1,
        elem::UINT16 | elem::INT16 | elem::FLOAT16 | elem::BFLOAT16 => 2,
        elem::FLOAT | elem::INT32 | elem::UINT32 => 4,
        elem::INT64 | elem::DOUBLE | elem::UINT64 => 8,
        _ => return None,
    })
}

/// The element count of `dims`, refusing negative sizes and absurd products.
pub fn element_count(dims: &[i64]) -> Result<usize, String> {
    let mut n: u64 = 1;
    for &d in dims {
        if d < 0 {
            return Err(format!("negative dimension {d} in {dims:?}"));
        }
        n = n
            .checked_mul(d as u64)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| format!("dimensions {dims:?} are too large"))?;
    }
    Ok(n as usize)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e as i32 - 15),
    }
}

/// Decodes one little-endian element array of `code` into the IR's representation.
fn from_raw(code: i32, raw: &[u8], n: usize) -> Result<TensorData, String> {
    let w = width(code).ok_or_else(|| format!("element type {code} has no raw form kerasc reads"))?;
    if raw.len() != n.checked_mul(w).ok_or("size overflow")? {
        return Err(format!("raw_data holds {} bytes, {n} elements of {w} bytes need {}", raw.len(), n * w));
    }
    let c = raw.chunks_exact(w);
    let arr = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        a
    };
    Ok(match code {
        elem::FLOAT => TensorData::F32(c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        elem::DOUBLE => TensorData::F32(c.map(|b| f64::from_le_bytes(arr(b)) as f32).collect()),
        elem::FLOAT16 => TensorData::F32(c.map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()),
        elem::BFLOAT16 => {
            TensorData::F32(c.map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect())
        }
        elem::UINT8 => TensorData::U8(raw.to_vec()),
        elem::INT8 => TensorData::I32(raw.iter().map(|&b| b as i8 as i32).collect()),
        elem::UINT16 => TensorData::I32(c.map(|b| u16::from_le_bytes([b[0], b[1]]) as i32).collect()),
        elem::INT16 => TensorData::I32(c.map(|b| i16::from_le_bytes([b[0], b[1]]) as i32).collect()),
        elem::INT32 => TensorData::I32(c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        elem::UINT32 => TensorData::I64(c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()),
        elem::INT64 | elem::UINT64 => TensorData::I64(c.map(|b| i64::from_le_bytes(arr(b))).collect()),
        elem::BOOL => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        other => return Err(format!("element type {other} is not supported")),
    })
}

/// Reads `location` (relative to `dir`, never outside it) at `offset`/`length`.
fn external(t: &TensorProto, dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
    let loc = get("location").ok_or("external data without a location")?;
    let rel = Path::new(&loc);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("external data location '{loc}' leaves the model's folder"));
    }
    let dir = dir.ok_or("external data needs the model's folder (load it from a file)")?;
    let path = dir.join(rel);
    let mut f = std::fs::File::open(&path).map_err(|e| format!("external data {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let num = |k: &str| -> Result<Option<u64>, String> {
        get(k).map(|v| v.parse::<u64>().map_err(|_| format!("external data {k} '{v}' is not a number"))).transpose()
    };
    let offset = num("offset")?.unwrap_or(0);
    let length = match num("length")? {
        Some(l) => l,
        None => len.checked_sub(offset).ok_or("external data offset is past the file's end")?,
    };
    if offset.checked_add(length).is_none_or(|e| e > len) {
        return Err(format!("external data {} has {len} bytes, {length} at offset {offset} requested", path.display()));
    }
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Converts a `TensorProto` (initializer, `Constant` value or attribute) to a tensor.
pub fn to_tensor(t: &TensorProto, dir: Option<&Path>) -> Result<Tensor, String> {
    let code = t.data_type.unwrap_or(0);
    let name = t.name.clone().unwrap_or_default();
    let ctx = |m: String| if name.is_empty() { m } else { format!("tensor '{name}': {m}") };
    dtype_of(code).map_err(&ctx)?;
    let n = element_count(&t.dims).map_err(&ctx)?;
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let external_loc = t.data_location == Some(DataLocation::External as i32);
    let data = if external_loc {
        from_raw(code, &external(t, dir).map_err(&ctx)?, n).map_err(&ctx)?
    } else if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty() || n == 0) {
        from_raw(code, raw, n).map_err(&ctx)?
    } else {
        let count = |have: usize| -> Result<(), String> {
            if have != n {
                return Err(ctx(format!("holds {have} values, its dimensions {:?} need {n}", t.dims)));
            }
            Ok(())
        };
        match code {
            elem::FLOAT => {
                count(t.float_data.len())?;
                TensorData::F32(t.float_data.clone())
            }
            elem::DOUBLE => {
                count(t.double_data.len())?;
                TensorData::F32(t.double_data.iter().map(|&v| v as f32).collect())
            }
            elem::INT64 => {
                count(t.int64_data.len())?;
                TensorData::I64(t.int64_data.clone())
            }
            elem::UINT32 | elem::UINT64 => {
                count(t.uint64_data.len())?;
                TensorData::I64(t.uint64_data.iter().map(|&v| v as i64).collect())
            }
            elem::FLOAT16 | elem::BFLOAT16 => {
                count(t.int32_data.len())?;
                let bits = t.int32_data.iter().map(|&v| v as u16);
                TensorData::F32(if code == elem::FLOAT16 {
                    bits.map(f16_to_f32).collect()
                } else {
                    bits.map(|b| f32::from_bits((b as u32) << 16)).collect()
                })
            }
            elem::BOOL => {
                count(t.int32_data.len())?;
                TensorData::Bool(t.int32_data.iter().map(|&v| v != 0).collect())
            }
            elem::UINT8 => {
                count(t.int32_data.len())?;
                TensorData::U8(t.int32_data.iter().map(|&v| v as u8).collect())
            }
            _ => {
                count(t.int32_data.len())?;
                TensorData::I32(t.int32_data.clone())
            }
        }
    };
    Tensor::new(shape, data).map_err(|e| ctx(e.to_string()))
}
