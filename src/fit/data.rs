//! Training data: `.npz`, a pair of `.npy` files or a numeric CSV, as named arrays; picking each
//! input's and output's array, the labels shaped as Keras shapes them, the validation data
//! (given, or the last fraction), and batches of rows.

use super::error::{invalid, FitError};
use super::options::DataOptions;
use crate::ir::{DType, Shape, Tensor};
use crate::npy::Array;
use std::collections::HashMap;
use std::path::Path;

/// Where the training data comes from: in-memory arrays, an `.npz`, a pair of `.npy` files or a
/// numeric CSV (with its label column).
pub(crate) enum Source<'a> {
    Arrays(&'a [(String, crate::npy::Array)]),
    Npz(&'a Path),
    Pair(&'a Path, &'a Path),
    Csv(&'a Path, &'a str),
}

impl<'a> Source<'a> {
    /// The data `o` names, and what it is, for messages.
    pub(crate) fn of(o: &'a DataOptions) -> Result<(String, Source<'a>), FitError> {
        if let Some(arrays) = &o.arrays {
            if o.data.is_some() || o.x.is_some() || o.y.is_some() {
                return Err(invalid("pass the training data either as arrays or as files, not both"));
            }
            return Ok(("the arrays given".to_string(), Source::Arrays(arrays)));
        }
        match (&o.data, &o.x, &o.y) {
            (Some(d), None, None) => {
                let is_csv = d.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                let source = if is_csv {
                    let col = o.label_column.as_deref().ok_or_else(|| {
                        invalid(format!("{}: a CSV file needs --label-column NAME (or its 0-based index)", d.display()))
                    })?;
                    Source::Csv(d, col)
                } else {
                    if o.label_column.is_some() {
                        return Err(invalid("--label-column applies to CSV data only"));
                    }
                    Source::Npz(d)
                };
                Ok((d.display().to_string(), source))
            }
            (None, Some(x), Some(y)) => Ok((format!("{} and {}", x.display(), y.display()), Source::Pair(x, y))),
            (None, None, None) => {
                Err(invalid("no training data: pass --data DATA.npz|DATA.csv, or --x X.npy --y Y.npy"))
            }
            (Some(_), _, _) => Err(invalid("pass either --data or --x/--y, not both")),
            _ => Err(invalid("--x and --y go together")),
        }
    }

    /// Every array, whole.
    pub(crate) fn read_all(&self) -> Result<HashMap<String, Array>, FitError> {
        Ok(match self {
            Source::Arrays(a) => a.iter().cloned().collect(),
            Source::Npz(d) => crate::npy::read_npz_arrays(d)?.into_iter().collect(),
            Source::Pair(x, y) => {
                [("x".into(), crate::npy::read_array(x)?), ("y".into(), crate::npy::read_array(y)?)].into()
            }
            Source::Csv(d, col) => csv_arrays(d, col, None)?,
        })
    }

    /// Each array's rows (the length of its first axis), read from the files' headers (a CSV:
    /// counted in one pass).
    pub(crate) fn row_counts(&self) -> Result<HashMap<String, usize>, FitError> {
        let first = |s: &[usize]| s.first().copied().unwrap_or(0);
        Ok(match self {
            Source::Arrays(a) => a
                .iter()
                .map(|(n, a)| match a {
                    Array::Tensor(t) => (n.clone(), first(t.shape())),
                    Array::Strings(s, _) => (n.clone(), first(s)),
                })
                .collect(),
            Source::Npz(d) => crate::npy::npz_shapes(d)?.into_iter().map(|(n, s)| (n, first(&s))).collect(),
            Source::Pair(x, y) => [
                ("x".to_string(), first(&crate::npy::file_shape(x)?)),
                ("y".to_string(), first(&crate::npy::file_shape(y)?)),
            ]
            .into(),
            Source::Csv(d, _) => {
                let rows = csv_rows(d).map_err(|m| invalid(format!("{}: {m}", d.display())))?;
                [("x".to_string(), rows), ("y".to_string(), rows)].into()
            }
        })
    }

    /// The rows `pick(name)` (in that order) of each array it names, the others left out: one
    /// pass over the file, holding no more of it than the rows taken.
    pub(crate) fn read_rows(
        &self,
        pick: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<HashMap<String, Array>, FitError> {
        let take = |name: &str, path: &Path| -> Result<Option<(String, Array)>, FitError> {
            Ok(match pick(name) {
                Some(idx) => Some((name.to_string(), crate::npy::read_file_rows(path, &idx)?)),
                None => None,
            })
        };
        Ok(match self {
            Source::Arrays(a) => a
                .iter()
                .filter_map(|(n, a)| pick(n).map(|idx| Ok((n.clone(), array_rows(a, &idx)?))))
                .collect::<Result<_, FitError>>()?,
            Source::Npz(d) => crate::npy::read_npz_rows(d, pick)?.into_iter().collect(),
            Source::Pair(x, y) => take("x", x)?.into_iter().chain(take("y", y)?).collect(),
            Source::Csv(d, col) => match pick("x").or_else(|| pick("y")) {
                Some(idx) => csv_arrays(d, col, Some(&idx))?,
                None => HashMap::new(),
            },
        })
    }
}

/// The rows `idx` of an in-memory array.
fn array_rows(a: &Array, idx: &[usize]) -> Result<Array, FitError> {
    match a {
        Array::Tensor(t) => Ok(Array::Tensor(t.gather_rows(idx).map_err(|e| invalid(e.to_string()))?)),
        Array::Strings(shape, values) => {
            let (&n, rest) = shape.split_first().ok_or_else(|| invalid("a string scalar has no rows"))?;
            let width: usize = rest.iter().product();
            let mut out = Vec::with_capacity(idx.len() * width);
            for &i in idx {
                if i >= n {
                    return Err(invalid(format!("row {i} asked of an array of {n} rows")));
                }
                out.extend_from_slice(&values[i * width..(i + 1) * width]);
            }
            Ok(Array::Strings([&[idx.len()], rest].concat(), out))
        }
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

/// A CSV file's lines: `(line number, text)` of each non-empty line.
fn csv_lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String), String>>, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    Ok(std::io::BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(n, l)| l.map(|l| (n, l)).map_err(|e| e.to_string()))
        .filter(|l| l.as_ref().map_or(true, |(_, l)| !l.trim().is_empty())))
}

fn csv_cells(l: &str) -> Vec<String> {
    l.split(',').map(|c| c.trim().trim_matches('"').to_string()).collect()
}

/// Whether a CSV's first row is a header (a cell that is not a number).
fn is_header(first: &[String]) -> bool {
    first.iter().any(|c| c.parse::<f64>().is_err())
}

/// A CSV file's data rows (its non-empty lines, less a header).
fn csv_rows(path: &Path) -> Result<usize, String> {
    let mut lines = csv_lines(path)?;
    let Some(first) = lines.next().transpose()? else { return Ok(0) };
    let header = usize::from(is_header(&csv_cells(&first.1)));
    lines.try_fold(1 - header, |n, l| l.map(|_| n + 1))
}

/// [`read_csv`] of a file as arrays `x` and `y`; with `keep`, only those data rows, in that
/// order, each parsed as it is read.
fn csv_arrays(path: &Path, label: &str, keep: Option<&[usize]>) -> Result<HashMap<String, Array>, FitError> {
    let (x, y) = read_csv(path, label, keep).map_err(|m| invalid(format!("{}: {m}", path.display())))?;
    Ok([("x".to_string(), Array::Tensor(x)), ("y".to_string(), Array::Tensor(y))].into_iter().collect())
}

/// A numeric CSV: an optional header row, one sample per line; the label column (by header name
/// or 0-based index) becomes y `[n]`, the other columns x `[n, k]`. With `keep`, only those
/// data rows (0-based, in that order).
fn read_csv(path: &Path, label: &str, keep: Option<&[usize]>) -> Result<(Tensor, Tensor), String> {
    let mut lines = csv_lines(path)?.peekable();
    let first = match lines.peek() {
        Some(Ok((_, l))) => csv_cells(l),
        Some(Err(e)) => return Err(e.clone()),
        None => return Err("the file has no rows".into()),
    };
    let header = is_header(&first);
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
    // The rows kept: each data row's places in the output.
    let mut places: HashMap<usize, Vec<usize>> = HashMap::new();
    for (p, &r) in keep.unwrap_or_default().iter().enumerate() {
        places.entry(r).or_default().push(p);
    }
    let rows_out = keep.map(<[usize]>::len);
    let (mut xs, mut ys) = match rows_out {
        Some(k) => (vec![0f32; k * (width - 1)], vec![0f32; k]),
        None => (Vec::new(), Vec::new()),
    };
    let mut found = 0;
    for (r, line) in lines.enumerate() {
        let (n, l) = line?;
        let at = match keep {
            None => None,
            Some(_) => match places.get(&r) {
                Some(p) => Some(p),
                None => continue,
            },
        };
        let cells = csv_cells(&l);
        if cells.len() != width {
            return Err(format!("line {}: {} columns, the first row has {width}", n + 1, cells.len()));
        }
        let mut row = Vec::with_capacity(width - 1);
        let mut y = 0.0;
        for (i, c) in cells.iter().enumerate() {
            let v: f32 = c.parse().map_err(|_| format!("line {}, column {}: '{c}' is not a number", n + 1, i + 1))?;
            if i == li {
                y = v;
            } else {
                row.push(v);
            }
        }
        match at {
            None => {
                xs.extend_from_slice(&row);
                ys.push(y);
            }
            Some(places) => {
                found += 1;
                for &p in places {
                    xs[p * (width - 1)..(p + 1) * (width - 1)].copy_from_slice(&row);
                    ys[p] = y;
                }
            }
        }
    }
    if found < places.len() {
        return Err(format!("rows asked beyond the file's end ({found} of {} found)", places.len()));
    }
    let rows = ys.len();
    if rows == 0 && keep.is_none() {
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

/// The names of the arrays a run takes: the inputs', the labels', and the given validation
/// data's (both x and y), in model order.
pub(crate) struct Chosen {
    pub(crate) x: Vec<String>,
    pub(crate) y: Vec<String>,
    pub(crate) val: Option<(Vec<String>, Vec<String>)>,
}

/// Picks the model's arrays among those `have` holds: one input x (x_train/x) and one output y
/// (y_train/y); with several, named x_<input>/y_<output> (x_train_<input>, ...); validation
/// x_val/y_val likewise.
pub(crate) fn choose(
    what: &str,
    have: &dyn Fn(&str) -> bool,
    inputs: &[&str],
    outputs: &[&str],
) -> Result<Chosen, FitError> {
    let pick = |prefix: &str, names: &[&str], val: bool| -> Option<Result<Vec<String>, FitError>> {
        let keys = |name: Option<&str>| -> Vec<String> {
            let base: Vec<String> =
                if val { vec![format!("{prefix}_val")] } else { vec![format!("{prefix}_train"), prefix.to_string()] };
            match name {
                None => base,
                Some(n) => base.iter().map(|b| format!("{b}_{n}")).collect(),
            }
        };
        let find = |ks: Vec<String>| ks.into_iter().find(|k| have(k));
        if names.len() == 1 {
            return find(keys(None)).map(|k| Ok(vec![k]));
        }
        let found: Vec<Option<String>> = names.iter().map(|n| find(keys(Some(n)))).collect();
        if found.iter().all(Option::is_none) {
            return None;
        }
        Some(
            found
                .into_iter()
                .zip(names)
                .map(|(k, n)| k.ok_or_else(|| invalid(format!("{what}: no {} array", keys(Some(n))[0]))))
                .collect(),
        )
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
    let x = pick("x", inputs, false).ok_or_else(|| missing("x", inputs))??;
    let y = pick("y", outputs, false).ok_or_else(|| missing("y", outputs))??;
    let val = match (pick("x", inputs, true), pick("y", outputs, true)) {
        (Some(a), Some(b)) => Some((a?, b?)),
        _ => None,
    };
    Ok(Chosen { x, y, val })
}

/// Inputs cast to the model's dtypes, labels to the losses' (`outputs`) and shaped as Keras
/// shapes them; every array of one number of samples.
pub(crate) fn prepare(
    what: &str,
    xs: Vec<Tensor>,
    ys: Vec<Tensor>,
    inputs: &[(String, DType)],
    outputs: &[(String, DType, Shape)],
    empty_ok: bool,
) -> Result<(Vec<Tensor>, Vec<Tensor>), FitError> {
    let xs: Vec<Tensor> =
        xs.into_iter().zip(inputs).map(|(x, (_, d))| if x.dtype() != *d { x.cast(*d) } else { x }).collect();
    let ys: Vec<Tensor> =
        ys.into_iter().zip(outputs).map(|(y, (_, d, shape))| prep_labels(y, *d, shape)).collect::<Result<_, _>>()?;
    let n = xs[0].shape().first().copied().unwrap_or(0);
    for t in xs.iter().chain(&ys) {
        if (n == 0 && !empty_ok) || t.shape().first() != Some(&n) {
            return Err(invalid(format!("{what}: arrays of {n} and {:?} samples", t.shape().first())));
        }
    }
    Ok((xs, ys))
}

/// The validation rows a `--validation-split` of `n` samples leaves: the last `f` of them
/// (before any shuffling, as Keras takes them).
pub(crate) fn split_off(n: usize, f: f32) -> Result<usize, FitError> {
    if !(f > 0.0 && f < 1.0) {
        return Err(invalid(format!("--validation-split must be in (0, 1), got {f}")));
    }
    let nv = ((n as f64) * f as f64).floor() as usize;
    if nv == 0 || nv >= n {
        return Err(invalid(format!("--validation-split {f} leaves no training or no validation data")));
    }
    Ok(nv)
}

/// The model's arrays among the named ones ([`choose`], [`prepare`]); the validation data
/// given, else the last `validation_split` of the data.
pub(crate) fn training_data(
    what: &str,
    arrays: &HashMap<String, Tensor>,
    inputs: &[(String, DType)],
    outputs: &[(String, DType, Shape)],
    validation_split: Option<f32>,
) -> Result<Data, FitError> {
    let in_names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    let out_names: Vec<&str> = outputs.iter().map(|(n, _, _)| n.as_str()).collect();
    let chosen = choose(what, &|k| arrays.contains_key(k), &in_names, &out_names)?;
    let get = |names: &[String]| -> Vec<Tensor> { names.iter().filter_map(|k| arrays.get(k).cloned()).collect() };
    let (x, y) = prepare(what, get(&chosen.x), get(&chosen.y), inputs, outputs, false)?;
    let given_val = match &chosen.val {
        Some((a, b)) => Some(prepare(what, get(a), get(b), inputs, outputs, false)?),
        None => None,
    };
    Ok(match (given_val, validation_split) {
        (Some(v), _) => Data { x, y, val: Some(v) },
        (None, Some(f)) if f != 0.0 => {
            let n = x[0].shape()[0];
            let nv = split_off(n, f)?;
            let (tr, va): (Vec<usize>, Vec<usize>) = ((0..n - nv).collect(), (n - nv..n).collect());
            Data { x: rows_all(&x, &tr)?, y: rows_all(&y, &tr)?, val: Some((rows_all(&x, &va)?, rows_all(&y, &va)?)) }
        }
        _ => Data { x, y, val: None },
    })
}
