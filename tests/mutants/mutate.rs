//! Seeded mutations of model files, at the byte level and at the level of meaning: the JSON
//! config inside `.h5` and `.keras` files, the graph inside `.onnx` files, `.npy` headers.

use prost::Message;
use serde_json::Value;
use std::io::{Read, Write};

use kerasc::frontend::onnx::proto::{ModelProto, TensorProto};

/// SplitMix64, seeded: the same seed gives the same mutants.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, k: usize) -> bool {
        self.below(k) == 0
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Integers that break arithmetic that trusts them.
const INTS: [i64; 16] =
    [0, -1, 1, 2, -2, 3, 7, 255, 256, 65535, -99, 1 << 20, 1 << 31, (1 << 31) - 1, i64::MAX, i64::MIN];
const FLOATS: [f64; 10] = [0.0, -1.0, -99.0, 1e30, -1e30, 1e-30, 0.5, 2.0, f64::MAX, 7.5];

/// Byte-level damage: bit flips, integer overwrites, truncation, chunk duplication or removal.
pub fn bytes(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.is_empty() {
        return d;
    }
    for _ in 0..1 + rng.below(3) {
        let n = d.len();
        match rng.below(6) {
            0 => {
                let i = rng.below(n);
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let w = *rng.pick(&[1usize, 2, 4, 8]);
                let v = (*rng.pick(&INTS) as u64).to_le_bytes();
                let i = rng.below(n.saturating_sub(w).max(1));
                let m = w.min(n - i);
                d[i..i + m].copy_from_slice(&v[..m]);
            }
            2 => d.truncate(rng.below(n)),
            3 => {
                let i = rng.below(n);
                let len = (1 + rng.below(256)).min(n - i);
                let chunk = d[i..i + len].to_vec();
                let at = rng.below(n);
                d.splice(at..at, chunk);
            }
            4 => {
                let i = rng.below(n);
                let len = (1 + rng.below(64)).min(n - i);
                d.drain(i..i + len);
            }
            _ => {
                let i = rng.below(n);
                d[i] = rng.next() as u8;
            }
        }
        if d.is_empty() {
            break;
        }
    }
    d
}

/// A number, a string, a list or nothing where a config value was.
fn odd_value(rng: &mut Rng, old: &Value) -> Value {
    match rng.below(12) {
        0..=3 => Value::from(*rng.pick(&INTS)),
        4 | 5 => serde_json::Number::from_f64(*rng.pick(&FLOATS)).map(Value::Number).unwrap_or(Value::Null),
        6 => Value::Null,
        7 => Value::String(rng.pick(&["", "same", "valid", "causal", "relu", "channels_first", "x"]).to_string()),
        8 => Value::Array(vec![Value::from(*rng.pick(&INTS)); 1 + rng.below(4)]),
        9 => Value::Bool(rng.chance(2)),
        10 => match old {
            Value::Array(a) if !a.is_empty() => Value::Array(a[..rng.below(a.len())].to_vec()),
            Value::Array(a) => Value::Array(vec![Value::from(1); 1 + a.len()]),
            _ => Value::Object(Default::default()),
        },
        _ => match old {
            Value::Number(n) => Value::from(n.as_i64().unwrap_or(1).wrapping_mul(*rng.pick(&[-1i64, 0, 2, 1000]))),
            other => other.clone(),
        },
    }
}

/// Every path (object keys and array indices) to a value in a JSON tree, each with whether the
/// value is a number or a list of numbers.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<(Vec<Value>, bool)>) {
    let numeric = v.is_number() || v.as_array().is_some_and(|a| a.iter().all(|e| e.is_number()));
    out.push((at.clone(), numeric));
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                at.push(Value::String(k.clone()));
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(Value::from(i));
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Meaning-level edits of a Keras config: a few values replaced, removed or duplicated, with a
/// preference for the numbers and lists inside layer configs (sizes, strides, axes, units).
pub fn json(rng: &mut Rng, v: &Value) -> Value {
    let mut v = v.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let numeric: Vec<&Vec<Value>> = all.iter().filter(|p| p.1).map(|p| &p.0).collect();
        let path = if !numeric.is_empty() && rng.below(4) != 0 {
            numeric[rng.below(numeric.len())].clone()
        } else {
            all[rng.below(all.len())].0.clone()
        };
        let Some(target) = at_path(&mut v, &path) else { continue };
        *target = match (&*target, rng.below(3)) {
            (Value::Array(a), 0) if !a.is_empty() => {
                let mut a = a.clone();
                let i = rng.below(a.len());
                a[i] = odd_value(rng, &a[i]);
                Value::Array(a)
            }
            (old, _) => odd_value(rng, old),
        };
    }
    v
}

/// The model config of a legacy `.h5` file: the byte range of its JSON text.
fn h5_config_range(data: &[u8]) -> Option<(usize, usize)> {
    let start = data.windows(13).position(|w| w == b"{\"class_name\"")?;
    let mut it = serde_json::Deserializer::from_slice(&data[start..]).into_iter::<Value>();
    it.next()?.ok()?;
    Some((start, start + it.byte_offset()))
}

/// A `.h5` model whose JSON config is edited in place: the new config written compactly and
/// padded with spaces to the old length (Keras writes it with spaces, so there is room).
pub fn h5_config(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let (s, e) = h5_config_range(data)?;
    let v: Value = serde_json::from_slice(&data[s..e]).ok()?;
    for _ in 0..8 {
        let text = serde_json::to_vec(&json(rng, &v)).ok()?;
        if text.len() <= e - s {
            let mut out = data.to_vec();
            out[s..s + text.len()].copy_from_slice(&text);
            out[s + text.len()..e].fill(b' ');
            return Some(out);
        }
    }
    None
}

/// A `.keras` archive with its config.json edited.
pub fn keras_config(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).ok()?;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..z.len() {
        let mut f = z.by_index(i).ok()?;
        let name = f.name().map(|n| n.to_string()).unwrap_or_default();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).ok()?;
        if name == "config.json" {
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            bytes = serde_json::to_vec(&json(rng, &v)).ok()?;
        }
        out.start_file(name, opts).ok()?;
        out.write_all(&bytes).ok()?;
    }
    Some(out.finish().ok()?.into_inner())
}

fn tensor(rng: &mut Rng, t: &mut TensorProto) {
    match rng.below(4) {
        0 if !t.dims.is_empty() => {
            let i = rng.below(t.dims.len());
            t.dims[i] = *rng.pick(&INTS);
        }
        1 => {
            if let Some(r) = t.raw_data.as_mut() {
                let n = rng.below(r.len() + 1);
                r.truncate(n);
            }
        }
        2 => t.data_type = Some(rng.below(20) as i32),
        _ => {
            if !t.dims.is_empty() {
                t.dims.pop();
            } else {
                t.dims.push(*rng.pick(&INTS));
            }
        }
    }
}

/// Meaning-level edits of an ONNX model: node attributes (ints, floats, lists), op types,
/// input names, tensor dims and data, value-info dims.
pub fn onnx(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let mut m = ModelProto::decode(data).ok()?;
    let g = m.graph.as_mut()?;
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            0..=2 if !g.node.is_empty() => {
                let i = rng.below(g.node.len());
                let n = &mut g.node[i];
                if n.attribute.is_empty() {
                    continue;
                }
                let j = rng.below(n.attribute.len());
                let a = &mut n.attribute[j];
                if let Some(x) = a.i.as_mut() {
                    *x = *rng.pick(&INTS);
                } else if let Some(x) = a.f.as_mut() {
                    *x = *rng.pick(&FLOATS) as f32;
                } else if !a.ints.is_empty() {
                    let k = rng.below(a.ints.len());
                    if rng.chance(3) {
                        a.ints.truncate(k);
                    } else {
                        a.ints[k] = *rng.pick(&INTS);
                    }
                } else if let Some(t) = a.t.as_mut() {
                    tensor(rng, t);
                }
            }
            3 if !g.node.is_empty() => {
                let i = rng.below(g.node.len());
                let ops = [
                    "Relu",
                    "Add",
                    "MatMul",
                    "Conv",
                    "Reshape",
                    "Concat",
                    "Gather",
                    "LSTM",
                    "MaxPool",
                    "Softmax",
                    "Transpose",
                ];
                g.node[i].op_type = Some(rng.pick(&ops).to_string());
            }
            4 if g.node.len() > 1 => {
                // An input taken from another node's output.
                let i = rng.below(g.node.len());
                let j = rng.below(g.node.len());
                if let (Some(o), false) = (g.node[j].output.first().cloned(), g.node[i].input.is_empty()) {
                    let k = rng.below(g.node[i].input.len());
                    g.node[i].input[k] = o;
                }
            }
            5 if !g.initializer.is_empty() => {
                let i = rng.below(g.initializer.len());
                tensor(rng, &mut g.initializer[i]);
            }
            6 => {
                let vis: Vec<_> = g.input.iter_mut().chain(g.output.iter_mut()).collect();
                if vis.is_empty() {
                    continue;
                }
                let k = rng.below(vis.len());
                let Some(t) = vis.into_iter().nth(k).and_then(|v| v.r#type.as_mut()) else { continue };
                use kerasc::frontend::onnx::proto::type_proto::Value as TV;
                if let Some(TV::TensorType(tt)) = t.value.as_mut() {
                    if let Some(s) = tt.shape.as_mut() {
                        if !s.dim.is_empty() {
                            let d = rng.below(s.dim.len());
                            s.dim[d].value =
                                Some(kerasc::frontend::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(
                                    *rng.pick(&INTS),
                                ));
                        }
                    }
                }
            }
            _ if !g.node.is_empty() => {
                let i = rng.below(g.node.len());
                let n = &mut g.node[i];
                if !n.input.is_empty() && rng.chance(2) {
                    n.input.pop();
                } else {
                    n.input.push(g.initializer.first().and_then(|t| t.name.clone()).unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    Some(m.encode_to_vec())
}

/// A `.npy` file with its header damaged (shape, dtype, length).
pub fn npy(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let Some(end) = data.iter().position(|&b| b == b'\n') else { return bytes(rng, data) };
    let header = String::from_utf8_lossy(&data[..end]).to_string();
    let edited = match rng.below(4) {
        0 => {
            const DTYPES: [&str; 6] = ["'<f8'", "'<i4'", "'|b1'", "'>f4'", "'<c8'", "'O'"];
            let to = DTYPES[rng.below(DTYPES.len())];
            header.replace("'<f4'", to)
        }
        1 => {
            let start = header.find("'shape': (").map(|i| i + 10).unwrap_or(0);
            let stop = header[start..].find(')').map(|i| i + start).unwrap_or(start);
            let dims = *rng.pick(&["", "0,", "1, 1, 1, 1, 1, 1, 1, 1, 1", "99999999999999,", "2, 0", "-1,", "4, 4"]);
            format!("{}{dims}{}", &header[..start], &header[stop..])
        }
        2 => header.replace("False", "True"),
        _ => return bytes(rng, data),
    };
    let mut out = edited.into_bytes();
    out.extend_from_slice(&data[end..]);
    out
}
