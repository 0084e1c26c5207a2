//! HDF5 helpers shared by the legacy `.h5` reader and the `.keras` archive's weights file:
//! attribute strings in every encoding Keras writes, and datasets as IR tensors.

use crate::FrontendError;
use hdf5_pure::{AttrValue, Dataset, File, Group};
use ir::{Tensor, TensorData};
use std::collections::HashMap;

/// Opens HDF5 bytes; a corrupt or truncated file is an error naming `origin`.
pub fn open(bytes: Vec<u8>, origin: &str) -> Result<File, FrontendError> {
    if let Some(eof) = declared_len(&bytes).filter(|&e| e > bytes.len() as u64) {
        return Err(FrontendError::Format {
            file: origin.into(),
            message: format!(
                "the file is truncated: it has {} of the {eof} bytes its HDF5 header declares (an interrupted download or copy?)",
                bytes.len()
            ),
        });
    }
    File::from_bytes(bytes)
        .map_err(|e| FrontendError::Format { file: origin.into(), message: format!("cannot read HDF5: {e}") })
}

/// The file length an HDF5 superblock at offset 0 declares (its base address plus its
/// end-of-file address), when the bytes hold one.
pub fn declared_len(b: &[u8]) -> Option<u64> {
    if !b.starts_with(b"\x89HDF\r\n\x1a\n") {
        return None;
    }
    let version = *b.get(8)?;
    let (size_of_offsets, base_at) = match version {
        0 => (*b.get(13)?, 24),
        1 => (*b.get(13)?, 28),
        2 | 3 => (*b.get(9)?, 12),
        _ => return None,
    };
    let o = usize::from(size_of_offsets);
    if !matches!(o, 2 | 4 | 8) {
        return None;
    }
    let read = |at: usize| -> Option<u64> {
        let bytes = b.get(at..at + o)?;
        Some(bytes.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    };
    // v0/v1: base, free-space, end-of-file, driver; v2/v3: base, extension, end-of-file, root.
    let base = read(base_at)?;
    let eof = read(base_at + 2 * o)?;
    (eof != u64::MAX >> (64 - 8 * o as u32)).then(|| base.saturating_add(eof))
}

/// A string attribute in any of Keras's encodings (vlen ASCII/UTF-8, fixed-length, bytes).
pub fn attr_string(v: &AttrValue) -> Option<String> {
    Some(match v {
        AttrValue::String(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenString(s)
        | AttrValue::VarLenAsciiString(s) => s.clone(),
        AttrValue::AsciiStringSized { value, .. } | AttrValue::StringSized { value, .. } => value.clone(),
        AttrValue::U8Array(b) => String::from_utf8_lossy(b).trim_end_matches('\0').to_string(),
        AttrValue::StringArray(v)
        | AttrValue::AsciiStringArray(v)
        | AttrValue::VarLenStringArray(v)
        | AttrValue::VarLenAsciiStringArray(v)
        | AttrValue::VarLenAsciiCharArray(v)
            if v.len() == 1 =>
        {
            v[0].clone()
        }
        _ => return None,
    })
}

/// A list-of-strings attribute; Keras writes an empty list as a float64 array of shape (0,).
pub fn attr_strings(v: &AttrValue) -> Option<Vec<String>> {
    Some(match v {
        AttrValue::StringArray(v)
        | AttrValue::AsciiStringArray(v)
        | AttrValue::VarLenStringArray(v)
        | AttrValue::VarLenAsciiStringArray(v)
        | AttrValue::VarLenAsciiCharArray(v) => v.iter().map(|s| s.trim_end_matches('\0').to_string()).collect(),
        AttrValue::StringArraySized { values, .. } | AttrValue::AsciiStringArraySized { values, .. } => {
            values.iter().map(|s| s.trim_end_matches('\0').to_string()).collect()
        }
        AttrValue::F64Array(a) if a.is_empty() => Vec::new(),
        AttrValue::F32Array(a) if a.is_empty() => Vec::new(),
        other => vec![attr_string(other)?],
    })
}

/// Reads a list attribute `name`, or its split form `name0`, `name1`, ... (Keras splits lists
/// that exceed the HDF5 object-header limit).
pub fn split_list_attr(attrs: &HashMap<String, AttrValue>, name: &str) -> Option<Vec<String>> {
    if let Some(v) = attrs.get(name) {
        return attr_strings(v);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(v) = attrs.get(&format!("{name}{i}")) {
        out.extend(attr_strings(v)?);
        i += 1;
    }
    if i == 0 {
        None
    } else {
        Some(out)
    }
}

/// Attributes of a group, as an error naming the file on failure.
pub fn group_attrs(g: &Group, origin: &str, what: &str) -> Result<HashMap<String, AttrValue>, FrontendError> {
    g.attrs().map_err(|e| FrontendError::Format {
        file: origin.into(),
        message: format!("cannot read attributes of {what}: {e}"),
    })
}

/// Reads a dataset into a tensor, checking its claimed size against the file before reading.
pub fn read_tensor(ds: &Dataset, file_len: usize, origin: &str, what: &str) -> Result<Tensor, FrontendError> {
    let bad = |m: String| FrontendError::Format { file: origin.into(), message: format!("dataset {what}: {m}") };
    let shape: Vec<usize> = ds.shape().map_err(|e| bad(e.to_string()))?.iter().map(|&d| d as usize).collect();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("size overflows".into()))?;
    let dtype = ds.dtype().map_err(|e| bad(e.to_string()))?;
    let elem = match dtype {
        hdf5_pure::DType::F64 | hdf5_pure::DType::I64 | hdf5_pure::DType::U64 => 8,
        hdf5_pure::DType::F32 | hdf5_pure::DType::I32 | hdf5_pure::DType::U32 => 4,
        hdf5_pure::DType::I16 | hdf5_pure::DType::U16 => 2,
        hdf5_pure::DType::I8 | hdf5_pure::DType::U8 => 1,
        ref other => return Err(bad(format!("unsupported element type {other}"))),
    };
    let bytes = count.checked_mul(elem).ok_or_else(|| bad("size overflows".into()))?;
    if ds.filters().is_empty() && bytes > file_len {
        return Err(bad(format!("claims {bytes} bytes but the file holds only {file_len}")));
    }
    let err = |e: hdf5_pure::Error| bad(e.to_string());
    let data = match dtype {
        hdf5_pure::DType::F32 => TensorData::F32(ds.read_f32().map_err(err)?),
        hdf5_pure::DType::F64 => TensorData::F32(ds.read_f64().map_err(err)?.into_iter().map(|v| v as f32).collect()),
        hdf5_pure::DType::I64 | hdf5_pure::DType::U64 | hdf5_pure::DType::U32 => {
            TensorData::I64(ds.read_i64().map_err(err)?)
        }
        hdf5_pure::DType::I32 | hdf5_pure::DType::I16 | hdf5_pure::DType::I8 | hdf5_pure::DType::U16 => {
            TensorData::I32(ds.read_i32().map_err(err)?)
        }
        _ => TensorData::U8(ds.read_u8().map_err(err)?),
    };
    Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
}
