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

/// The values of `d`, elements of numpy dtype `descr` (one of those [`parse`] takes).
fn decode(descr: &str, d: &[u8]) -> Option<TensorData> {
    Some(match descr {
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
        "<u4" => {
            TensorData::I64(d.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
        }
        _ => return None,
    })
}

/// `src`'s values written into `dst` from element `at` (both of one kind, `dst` long enough).
fn place(dst: &mut TensorData, at: usize, src: &TensorData) -> bool {
    fn put<T: Copy>(d: &mut [T], at: usize, s: &[T]) -> bool {
        match d.get_mut(at..at + s.len()) {
            Some(d) => {
                d.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
    match (dst, src) {
        (TensorData::F32(d), TensorData::F32(s)) => put(d, at, s),
        (TensorData::F16(d), TensorData::F16(s)) => put(d, at, s),
        (TensorData::I32(d), TensorData::I32(s)) => put(d, at, s),
        (TensorData::I64(d), TensorData::I64(s)) => put(d, at, s),
        (TensorData::U8(d), TensorData::U8(s)) => put(d, at, s),
        (TensorData::Bool(d), TensorData::Bool(s)) => put(d, at, s),
        _ => false,
    }
}

/// `count` zeros of `kind`'s kind.
fn zeros_like(kind: &TensorData, count: usize) -> TensorData {
    match kind {
        TensorData::F32(_) => TensorData::F32(vec![0.0; count]),
        TensorData::BF16(_) => TensorData::BF16(vec![0; count]),
        TensorData::F16(_) => TensorData::F16(vec![0; count]),
        TensorData::I32(_) => TensorData::I32(vec![0; count]),
        TensorData::I64(_) => TensorData::I64(vec![0; count]),
        TensorData::U8(_) => TensorData::U8(vec![0; count]),
        TensorData::Bool(_) => TensorData::Bool(vec![false; count]),
    }
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
    let t = decode(&descr, &data[..need]).ok_or_else(|| bad(&format!("unsupported dtype '{descr}'")))?;
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
    let shape = shape_text(t.shape());
    let mut out = header_bytes(descr, &shape);
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

/// A shape as numpy writes it in a header: `()`, `(3,)`, `(2, 3)`.
fn shape_text(shape: &[usize]) -> String {
    match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// A version 1.0 `.npy` header (signature, length, dictionary padded to 64 bytes).
fn header_bytes(descr: &str, shape: &str) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// The bytes of one element of a `.npy` dtype descriptor (numbers and strings).
fn elem_size(descr: &str) -> Option<usize> {
    let width = |prefix: &str| descr.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok());
    if let Some(n) = width("<U") {
        return n.checked_mul(4);
    }
    if let Some(n) = width("|S").or_else(|| width("S")) {
        return Some(n);
    }
    Some(match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" | "<u4" => 4,
        "<f2" => 2,
        "|u1" | "|b1" | "|i1" => 1,
        _ => return None,
    })
}

/// The header of a `.npy` stream, read from `r` (no further): its descriptor and shape.
fn read_header(r: &mut dyn std::io::Read, origin: &str) -> Result<(String, Vec<usize>), NpyError> {
    let io = |e: std::io::Error| NpyError(format!("{origin}: {e}"));
    let mut head = vec![0u8; 10];
    r.read_exact(&mut head).map_err(io)?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(NpyError(format!("{origin}: not a valid .npy file: missing the \\x93NUMPY signature")));
    }
    let hlen = if head[6] >= 2 {
        head.resize(12, 0);
        r.read_exact(&mut head[10..]).map_err(io)?;
        u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize
    } else {
        u16::from_le_bytes([head[8], head[9]]) as usize
    };
    if hlen > 1 << 20 {
        return Err(NpyError(format!("{origin}: not a valid .npy file: a header of {hlen} bytes")));
    }
    let start = head.len();
    head.resize(start + hlen, 0);
    r.read_exact(&mut head[start..]).map_err(io)?;
    let (descr, shape, _) = parse_header(&head, origin)?;
    Ok((descr, shape))
}

/// The rows `idx` of the `.npy` array that `r` streams, in that order (a row may come more than
/// once): one pass over the stream, holding only the rows taken. `bytes` is how long the stream
/// is: an array whose header claims more data than that is refused before anything is
/// allocated.
pub fn read_rows(r: &mut dyn std::io::Read, bytes: u64, idx: &[usize], origin: &str) -> Result<Array, NpyError> {
    let (descr, shape) = read_header(r, origin)?;
    let bad = |m: String| NpyError(format!("{origin}: {m}"));
    let elem = elem_size(&descr).ok_or_else(|| bad(format!("unsupported dtype '{descr}'")))?;
    let (&n, rest) = shape.split_first().ok_or_else(|| bad("a scalar has no rows to take".into()))?;
    let row = rest.iter().try_fold(elem, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("the shape overflows".into()))?;
    let claimed = (n as u64).checked_mul(row as u64).ok_or_else(|| bad("the shape overflows".into()))?;
    if claimed > bytes {
        return Err(bad(format!("not a valid .npy file: data is truncated: {claimed} bytes claimed, {bytes} in all")));
    }
    let size = idx.len().checked_mul(row).ok_or_else(|| bad("the rows taken overflow".into()))?;
    let mut wanted: Vec<(usize, usize)> = idx.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    wanted.sort_unstable();
    if let Some(&(last, _)) = wanted.last().filter(|(i, _)| *i >= n) {
        return Err(bad(format!("row {last} asked of an array of {n} rows")));
    }
    let mut taken = vec![idx.len()];
    taken.extend_from_slice(rest);
    // Numbers are decoded row by row into the tensor taken; strings gathered as bytes first.
    let numeric = decode(&descr, &[]);
    let mut values = numeric.as_ref().map(|k| zeros_like(k, idx.len() * (row / elem.max(1))));
    let mut bytes = match numeric {
        Some(_) => Vec::new(),
        None => vec![0u8; size],
    };
    let mut buf = vec![0u8; if values.is_some() { row } else { 0 }];
    let (mut at, mut prev): (usize, Option<(usize, usize)>) = (0, None);
    for (i, p) in wanted {
        if prev.is_none_or(|(pi, _)| pi != i) {
            let skip = ((i - at) as u64).saturating_mul(row as u64);
            let skipped = std::io::copy(&mut std::io::Read::take(&mut *r, skip), &mut std::io::sink())
                .map_err(|e| bad(e.to_string()))?;
            if skipped != skip {
                return Err(bad(format!("not a valid .npy file: data is truncated before row {i}")));
            }
            let dst = if values.is_some() { &mut buf[..] } else { &mut bytes[p * row..(p + 1) * row] };
            r.read_exact(dst).map_err(|_| bad(format!("not a valid .npy file: data is truncated in row {i}")))?;
            at = i + 1;
        } else if let (Some((_, pp)), None) = (prev, &values) {
            bytes.copy_within(pp * row..(pp + 1) * row, p * row);
        }
        if let Some(v) = &mut values {
            let decoded = decode(&descr, &buf).ok_or_else(|| bad(format!("unsupported dtype '{descr}'")))?;
            if !place(v, p * decoded.len(), &decoded) {
                return Err(bad("a row does not fit the rows taken".into()));
            }
        }
        prev = Some((i, p));
    }
    match values {
        Some(v) => Tensor::new(taken, v).map(Array::Tensor).map_err(|e| bad(e.to_string())),
        None => {
            let mut whole = header_bytes(&descr, &shape_text(&taken));
            whole.extend_from_slice(&bytes);
            drop(bytes);
            parse_array(&whole, origin)
        }
    }
}

/// The rows `idx` of a `.npy` file ([`read_rows`]).
pub fn read_file_rows(path: &Path, idx: &[usize]) -> Result<Array, NpyError> {
    let f = std::fs::File::open(path).map_err(|e| NpyError(format!("{}: {e}", path.display())))?;
    let bytes = f.metadata().map_err(|e| NpyError(format!("{}: {e}", path.display())))?.len();
    read_rows(&mut std::io::BufReader::new(f), bytes, idx, &path.display().to_string())
}

/// The shape of a `.npy` file's array, from its header alone.
pub fn file_shape(path: &Path) -> Result<Vec<usize>, NpyError> {
    let origin = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| NpyError(format!("{origin}: {e}")))?;
    let bytes = f.metadata().map_err(|e| NpyError(format!("{origin}: {e}")))?.len();
    let (descr, shape) = read_header(&mut std::io::BufReader::new(f), &origin)?;
    checked_shape(&descr, shape, bytes, &origin)
}

/// `shape`, where the data it claims of dtype `descr` fits in a stream of `bytes` bytes.
fn checked_shape(descr: &str, shape: Vec<usize>, bytes: u64, origin: &str) -> Result<Vec<usize>, NpyError> {
    let elem = elem_size(descr).ok_or_else(|| NpyError(format!("{origin}: unsupported dtype '{descr}'")))?;
    let claimed = shape.iter().try_fold(elem as u64, |a, &d| a.checked_mul(d as u64));
    match claimed {
        Some(c) if c <= bytes => Ok(shape),
        _ => Err(NpyError(format!(
            "{origin}: not a valid .npy file: data is truncated: its shape {shape:?} claims more than its {bytes} bytes"
        ))),
    }
}

/// An `.npz` file's members as streams: each member's name (without `.npy`), a reader of its
/// bytes (no further than it claims) and how many it claims, to `visit`, which reads as much of it as it needs.
fn each_npz_member(
    path: &Path,
    visit: impl FnMut(&str, &mut dyn std::io::Read, u64, &str) -> Result<(), NpyError>,
) -> Result<(), NpyError> {
    let origin = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| NpyError(format!("{origin}: {e}")))?;
    members(std::io::BufReader::new(f), &origin, visit)
}

/// The members of the zip that `reader` reads ([`each_npz_member`]). Sizes come from the file:
/// a member may not claim more than its compressed bytes can expand to (deflate's ratio is at
/// most 1032:1), and is read no further than it claims.
fn members<R: std::io::Read + std::io::Seek>(
    reader: R,
    origin: &str,
    mut visit: impl FnMut(&str, &mut dyn std::io::Read, u64, &str) -> Result<(), NpyError>,
) -> Result<(), NpyError> {
    use std::io::Read;
    let mut z =
        zip::ZipArchive::new(reader).map_err(|e| NpyError(format!("{origin}: not a valid .npz (zip) file: {e}")))?;
    for i in 0..z.len() {
        let f = z.by_index(i).map_err(|e| NpyError(format!("{origin}: {e}")))?;
        let name = f.name().map(|n| n.trim_end_matches(".npy").to_string()).unwrap_or_default();
        let (size, packed) = (f.size(), f.compressed_size());
        if size > packed.saturating_mul(1032).saturating_add(1 << 16) || size > (1 << 34) {
            return Err(NpyError(format!("{origin}: member '{name}' claims an implausible size ({size} bytes)")));
        }
        visit(&name, &mut f.take(size), size, &format!("{origin}:{name}"))?;
    }
    Ok(())
}

/// The shapes of an `.npz` file's arrays (numbers and strings), from their headers alone;
/// members that are not arrays kerasc reads are left out, as [`read_npz_arrays`] leaves them.
pub fn npz_shapes(path: &Path) -> Result<Vec<(String, Vec<usize>)>, NpyError> {
    let mut out = Vec::new();
    each_npz_member(path, |name, r, size, origin| {
        if let Ok((descr, shape)) = read_header(r, origin) {
            if elem_size(&descr).is_some() {
                out.push((name.to_string(), checked_shape(&descr, shape, size, origin)?));
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The rows `pick(name)` of each `.npz` member it names ([`read_rows`]; one pass over each
/// member, the others not decompressed).
pub fn read_npz_rows(path: &Path, pick: &dyn Fn(&str) -> Option<Vec<usize>>) -> Result<Vec<(String, Array)>, NpyError> {
    let mut out = Vec::new();
    each_npz_member(path, |name, r, size, origin| {
        if let Some(idx) = pick(name) {
            out.push((name.to_string(), read_rows(r, size, &idx, origin)?));
        }
        Ok(())
    })?;
    Ok(out)
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
    let mut out = Vec::new();
    members(std::io::Cursor::new(bytes), origin, |name, r, _, member| {
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(|e| NpyError(format!("{origin}: member '{name}': {e}")))?;
        if let Ok(a) = parse_array(&data, member) {
            out.push((name.to_string(), a));
        }
        Ok(())
    })?;
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

    #[test]
    fn rows_are_read_in_the_order_asked_in_one_pass() {
        let t = Tensor::from_f32(&[5, 2], (0..10).map(|v| v as f32).collect()).unwrap();
        let b = to_bytes(&t);
        let take = |idx: &[usize]| match read_rows(&mut &b[..], b.len() as u64, idx, "x") {
            Ok(Array::Tensor(t)) => Ok(t),
            Ok(Array::Strings(..)) => Err("strings".to_string()),
            Err(e) => Err(e.0),
        };
        assert_eq!(take(&[3, 0, 3, 4]).unwrap(), t.gather_rows(&[3, 0, 3, 4]).unwrap());
        assert_eq!(take(&[]).unwrap().shape(), &[0, 2]);
        assert!(take(&[5]).unwrap_err().contains("row 5"));
        let cut = &b[..b.len() - 3];
        assert!(read_rows(&mut &cut[..], b.len() as u64, &[4], "x").unwrap_err().0.contains("truncated"));
        assert!(read_rows(&mut &cut[..10], 10, &[0], "x").is_err());
        // A header claiming more rows than the stream holds is refused before allocating them.
        let mut huge = header_bytes("<f4", "(4000000000, 1000)");
        huge.extend_from_slice(&[0u8; 64]);
        assert!(read_rows(&mut &huge[..], huge.len() as u64, &[0], "h").unwrap_err().0.contains("claimed"));
        // The same from a file's header alone (how a worker counts the samples).
        let path = std::env::temp_dir().join(format!("kerasc-npy-huge-{}.npy", std::process::id()));
        std::fs::write(&path, &huge).unwrap();
        let e = file_shape(&path).unwrap_err().0;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(file_shape(&path).unwrap(), vec![5, 2]);
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("claims more than"), "{e}");
        // Strings: numpy's '<U2', rows of two.
        let mut s = header_bytes("<U2", "(3, 2)");
        for c in "abcdefghijkl".chars() {
            s.extend_from_slice(&(c as u32).to_le_bytes());
        }
        match read_rows(&mut &s[..], s.len() as u64, &[2, 0], "s").unwrap() {
            Array::Strings(shape, v) => {
                assert_eq!((shape, v), (vec![2, 2], vec!["ij".into(), "kl".into(), "ab".into(), "cd".into()]))
            }
            Array::Tensor(_) => panic!("numbers"),
        }
    }
}
