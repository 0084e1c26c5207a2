//! Training data: `.npz`, a pair of `.npy` files or a numeric CSV, as named arrays; picking each
//! input's and output's array, the labels shaped as Keras shapes them, the validation data
//! (given, or the last fraction), and batches of rows.

use super::error::{invalid, FitError};
use super::options::DataOptions;
use crate::ir::{DType, Shape, Tensor};
use std::collections::HashMap;

/// The training data as named arrays (`x`/`y` or `x_train`/`y_train`, `x_val`/`y_val`), and
/// what it was read from, for messages.
pub(crate) fn load_data(o: &DataOptions) -> Result<(String, HashMap<String, crate::npy::Array>), FitError> {
    use crate::npy::Array;
    if let Some(arrays) = &o.arrays {
        if o.data.is_some() || o.x.is_some() || o.y.is_some() {
            return Err(invalid("pass the training data either as arrays or as files, not both"));
        }
        return Ok(("the arrays given".to_string(), arrays.iter().cloned().collect()));
    }
    match (&o.data, &o.x, &o.y) {
        (Some(d), None, None) => {
            let is_csv = d.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let arrays = if is_csv {
                let col = o.label_column.as_deref().ok_or_else(|| {
                    invalid(format!("{}: a CSV file needs --label-column NAME (or its 0-based index)", d.display()))
                })?;
                let text = std::fs::read_to_string(d).map_err(|e| invalid(format!("{}: {e}", d.display())))?;
                let (x, y) = read_csv(&text, col).map_err(|m| invalid(format!("{}: {m}", d.display())))?;
                [("x".to_string(), Array::Tensor(x)), ("y".to_string(), Array::Tensor(y))].into_iter().collect()
            } else {
                if o.label_column.is_some() {
                    return Err(invalid("--label-column applies to CSV data only"));
                }
                crate::npy::read_npz_arrays(d)?.into_iter().collect()
            };
            Ok((d.display().to_string(), arrays))
        }
        (None, Some(x), Some(y)) => {
            let arrays = [("x".to_string(), crate::npy::read_array(x)?), ("y".to_string(), crate::npy::read_array(y)?)];
            Ok((format!("{} and {}", x.display(), y.display()), arrays.into()))
        }
        (None, None, None) => Err(invalid("no training data: pass --data DATA.npz|DATA.csv, or --x X.npy --y Y.npy")),
        (Some(_), _, _) => Err(invalid("pass either --data or --x/--y, not both")),
        _ => Err(invalid("--x and --y go together")),
    }
}

/// The training arrays as the graph takes them: an input array of a model input that a layer
/// runs on the host for (TextVectorization, StringLookup, Hashing) goes through it, as in `run`
/// (`x`, `x_train`, `x_val` for a one-input model, else `x_<input>`, `x_train_<input>`, ...);
/// strings anywhere else are an error.
pub(crate) fn through_host(
    model: &crate::Model,
    raw: HashMap<String, crate::npy::Array>,
) -> Result<HashMap<String, Tensor>, FitError> {
    use crate::frontend::text::HostInput;
    let names: &[String] = &model.model_inputs;
    let host_of = |key: &str| -> Option<&HostInput> {
        let k = ["x_train", "x_val", "x"].iter().find_map(|p| {
            let rest = key.strip_prefix(p)?;
            if rest.is_empty() {
                (names.len() <= 1).then_some(0)
            } else {
                names.iter().position(|n| rest.strip_prefix('_') == Some(n.as_str()))
            }
        })?;
        model.host_inputs.iter().find(|h| matches!(h, HostInput::Text(i, _) | HostInput::Hash(i, _) if *i == k))
    };
    let mut out = HashMap::with_capacity(raw.len());
    for (key, a) in raw {
        let t = crate::host::through(host_of(&key), a, &format!("array '{key}'")).map_err(|e| invalid(e.0))?;
        out.insert(key, t);
    }
    Ok(out)
}

/// A numeric CSV: an optional header row, one sample per line; the label column (by header name
/// or 0-based index) becomes y `[n]`, the other columns x `[n, k]`.
fn read_csv(text: &str, label: &str) -> Result<(Tensor, Tensor), String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
    let split = |l: &str| -> Vec<String> { l.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect() };
    let first = lines.peek().map(|(_, l)| split(l)).ok_or("the file has no rows")?;
    let header = first.iter().any(|c| c.parse::<f64>().is_err());
    if header {
        lines.next();
    }
    let width = first.len();
    let li = match label.parse::<usize>() {
        Ok(i) if !header || !first.iter().any(|c| c == label) => i,
        _ => first.iter().position(|c| c == label).ok_or_else(|| {
            format!(
                "no column '{label}'{}",
                if header { format!(" (columns: {})", first.join(", ")) } else { String::new() }
            )
        })?,
    };
    if li >= width {
        return Err(format!("label column {li} is out of range: rows have {width} columns"));
    }
    if width < 2 {
        return Err("the file needs at least one feature column besides the label".into());
    }
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (n, l) in lines {
        let cells = split(l);
        if cells.len() != width {
            return Err(format!("line {}: {} columns, the first row has {width}", n + 1, cells.len()));
        }
        for (i, c) in cells.iter().enumerate() {
            let v: f32 = c.parse().map_err(|_| format!("line {}, column {}: '{c}' is not a number", n + 1, i + 1))?;
            if i == li {
                ys.push(v);
            } else {
                xs.push(v);
            }
        }
    }
    let rows = ys.len();
    if rows == 0 {
        return Err("the file has no data rows".into());
    }
    let x = Tensor::from_f32(&[rows, width - 1], xs).map_err(|e| e.to_string())?;
    let y = Tensor::from_f32(&[rows], ys).map_err(|e| e.to_string())?;
    Ok((x, y))
}

/// The rows `idx` of a tensor (its first axis).
pub(crate) fn rows(t: &Tensor, idx: &[usize]) -> Result<Tensor, FitError> {
    if !matches!(t.dtype(), DType::F32 | DType::I32 | DType::I64 | DType::U8) {
        return Err(invalid("training data must be float32, int32, int64 or uint8"));
    }
    t.gather_rows(idx).map_err(|e| invalid(e.to_string()))
}

/// The rows `idx` of each tensor.
pub(crate) fn rows_all(ts: &[Tensor], idx: &[usize]) -> Result<Vec<Tensor>, FitError> {
    ts.iter().map(|t| rows(t, idx)).collect()
}

/// The rows `idx` of each tensor into `dst`, in place where `dst` already holds tensors of that
/// many rows (every full batch after the first), else into new ones.
pub(crate) fn rows_into(ts: &[Tensor], idx: &[usize], dst: &mut Vec<Tensor>) -> Result<(), FitError> {
    let fits = dst.len() == ts.len()
        && dst.iter().zip(ts).all(|(d, t)| {
            d.dtype() == t.dtype() && d.shape().first() == Some(&idx.len()) && d.shape().get(1..) == t.shape().get(1..)
        });
    if !fits {
        *dst = rows_all(ts, idx)?;
        return Ok(());
    }
    for (d, t) in dst.iter_mut().zip(ts) {
        d.gather_rows_from(t, idx).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

/// Casts labels to the loss's dtype and shapes them as Keras does: sparse labels `[n, 1]` are
/// squeezed; labels `[n]` for an output `[n, 1]` get the unit axis.
fn prep_labels(y: Tensor, dtype: DType, out_shape: &Shape) -> Result<Tensor, FitError> {
    if !(y.dtype().is_float() || matches!(y.dtype(), DType::I32 | DType::I64 | DType::U8 | DType::Bool)) {
        return Err(invalid(format!("labels of dtype {} are not supported", y.dtype())));
    }
    let y = if y.dtype() != dtype { y.cast(dtype) } else { y };
    let ys = y.shape().to_vec();
    let (rank, last) = (out_shape.rank(), out_shape.dims().last().and_then(|d| d.fixed()));
    if dtype == DType::I32 && ys.len() == 2 && ys[1] == 1 {
        y.reshape(&ys[..1]).map_err(|e| invalid(e.to_string()))
    } else if dtype != DType::I32 && ys.len() + 1 == rank && last == Some(1) {
        y.reshape(&[ys, vec![1]].concat()).map_err(|e| invalid(e.to_string()))
    } else {
        Ok(y)
    }
}

/// The data of a run: inputs and labels (sample axis first, in model order), and the
/// validation data.
pub(crate) struct Data {
    pub(crate) x: Vec<Tensor>,
    pub(crate) y: Vec<Tensor>,
    pub(crate) val: Option<(Vec<Tensor>, Vec<Tensor>)>,
}

/// Picks the model's arrays from the named ones: one input x (x_train/x) and one output y
/// (y_train/y); with several, named x_<input>/y_<output> (x_train_<input>, ...); validation
/// x_val/y_val likewise, else the last `validation_split` of the data (before any shuffling,
/// as Keras takes it). Inputs take the model's dtypes, labels the losses' (`label_dtypes`).
pub(crate) fn training_data(
    what: &str,
    arrays: &HashMap<String, Tensor>,
    inputs: &[(String, DType)],
    outputs: &[(String, DType, Shape)],
    validation_split: Option<f32>,
) -> Result<Data, FitError> {
    let pick = |prefix: &str, names: &[&str], val: bool| -> Option<Result<Vec<Tensor>, FitError>> {
        let keys = |name: Option<&str>| -> Vec<String> {
            let base: Vec<String> =
                if val { vec![format!("{prefix}_val")] } else { vec![format!("{prefix}_train"), prefix.to_string()] };
            match name {
                None => base,
                Some(n) => base.iter().map(|b| format!("{b}_{n}")).collect(),
            }
        };
        let find = |ks: Vec<String>| ks.iter().find_map(|k| arrays.get(k)).cloned();
        if names.len() == 1 {
            return find(keys(None)).map(|t| Ok(vec![t]));
        }
        let found: Vec<Option<Tensor>> = names.iter().map(|n| find(keys(Some(n)))).collect();
        if found.iter().all(Option::is_none) {
            return None;
        }
        Some(
            found
                .into_iter()
                .zip(names)
                .map(|(t, n)| t.ok_or_else(|| invalid(format!("{what}: no {} array", keys(Some(n))[0]))))
                .collect(),
        )
    };
    let prep = |xs: Vec<Tensor>, ys: Vec<Tensor>| -> Result<(Vec<Tensor>, Vec<Tensor>), FitError> {
        let xs: Vec<Tensor> =
            xs.into_iter().zip(inputs).map(|(x, (_, d))| if x.dtype() != *d { x.cast(*d) } else { x }).collect();
        let ys: Vec<Tensor> = ys
            .into_iter()
            .zip(outputs)
            .map(|(y, (_, d, shape))| prep_labels(y, *d, shape))
            .collect::<Result<_, _>>()?;
        let n = xs[0].shape().first().copied().unwrap_or(0);
        for t in xs.iter().chain(&ys) {
            if n == 0 || t.shape().first() != Some(&n) {
                return Err(invalid(format!("{what}: arrays of {n} and {:?} samples", t.shape().first())));
            }
        }
        Ok((xs, ys))
    };
    let missing = |which: &str, names: &[&str]| {
        if names.len() == 1 {
            invalid(format!("{what}: no {which}_train (or {which}) array"))
        } else {
            invalid(format!(
                "{what}: the model has {} {}s; name the arrays {}",
                names.len(),
                if which == "x" { "input" } else { "output" },
                names.iter().map(|n| format!("{which}_{n}")).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let in_names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    let out_names: Vec<&str> = outputs.iter().map(|(n, _, _)| n.as_str()).collect();
    let x = pick("x", &in_names, false).ok_or_else(|| missing("x", &in_names))??;
    let y = pick("y", &out_names, false).ok_or_else(|| missing("y", &out_names))??;
    let (x, y) = prep(x, y)?;
    let given_val = match (pick("x", &in_names, true), pick("y", &out_names, true)) {
        (Some(a), Some(b)) => Some(prep(a?, b?)?),
        _ => None,
    };
    Ok(match (given_val, validation_split) {
        (Some(v), _) => Data { x, y, val: Some(v) },
        (None, Some(f)) if f > 0.0 && f < 1.0 => {
            let n = x[0].shape()[0];
            let nv = ((n as f64) * f as f64).floor() as usize;
            if nv == 0 || nv >= n {
                return Err(invalid(format!("--validation-split {f} leaves no training or no validation data")));
            }
            let (tr, va): (Vec<usize>, Vec<usize>) = ((0..n - nv).collect(), (n - nv..n).collect());
            Data { x: rows_all(&x, &tr)?, y: rows_all(&y, &tr)?, val: Some((rows_all(&x, &va)?, rows_all(&y, &va)?)) }
        }
        (None, Some(f)) if f != 0.0 => return Err(invalid(format!("--validation-split must be in (0, 1), got {f}"))),
        _ => Data { x, y, val: None },
    })
}
