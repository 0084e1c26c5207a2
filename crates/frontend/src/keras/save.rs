//! Writing trained weights back: a copy of the original file with only the weight datasets'
//! bytes replaced (so every group, attribute and config stays exactly as Keras wrote it), and the
//! optimizer's state where the file keeps an optimizer: its iteration count and learning rate,
//! and its variables (rewritten in place, or added as Keras would have written them). The result
//! appears at its path only when complete (temporary file, then rename). Reading a file's
//! optimizer variables back is here too.

use crate::FrontendError;
use ir::Tensor;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// What the optimizer had done, for files that record it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub iterations: i64,
    pub learning_rate: f32,
    /// The optimizer's other variables in Keras's `optimizer.variables` order (its slots, then
    /// any scalar such as Nadam's momentum product), each with the name Keras gives it without
    /// the optimizer's prefix (`dense_kernel_momentum`). Empty: the file's are left alone.
    pub variables: Vec<(String, Tensor)>,
}

/// The optimizer's variables a file holds: Keras's `optimizer.variables`, after the iteration
/// count and the learning rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedOptimizer {
    pub iterations: i64,
    pub variables: Vec<Tensor>,
}

/// Where a file keeps its optimizer's variables, in Keras's order: a legacy `.h5` lists their
/// names in `optimizer_weights`' `weight_names` attribute; a `.keras` archive's weights file
/// numbers them under `optimizer/vars`.
struct OptimizerVars {
    /// Dataset paths, in order.
    paths: Vec<String>,
    /// How many of them are the iteration count and learning rate (1 or 2).
    prefix: usize,
    /// The `.h5` group of the optimizer's datasets (`optimizer_weights/adam`); `None` for an archive.
    legacy_group: Option<String>,
    /// The `.h5` names as listed (`adam/iteration`), for rewriting the list.
    legacy_names: Vec<String>,
}

fn attr_strings(v: &hdf5_pure::AttrValue) -> Option<Vec<String>> {
    use hdf5_pure::AttrValue as A;
    match v {
        A::StringArray(a) | A::AsciiStringArray(a) | A::VarLenStringArray(a) | A::VarLenAsciiStringArray(a) => {
            Some(a.clone())
        }
        A::StringArraySized { values, .. } | A::AsciiStringArraySized { values, .. } => Some(values.clone()),
        _ => None,
    }
}

fn is_scalar(f: &hdf5_pure::File, path: &str) -> bool {
    f.dataset(path).and_then(|d| d.shape()).is_ok_and(|s| s.iter().product::<u64>() == 1 && s.len() <= 1)
}

fn optimizer_vars(f: &hdf5_pure::File, archive: bool) -> Option<OptimizerVars> {
    let (paths, legacy_group, legacy_names) = if archive {
        let mut idx: Vec<usize> =
            f.group("optimizer/vars").ok()?.datasets().ok()?.iter().filter_map(|n| n.parse().ok()).collect();
        idx.sort_unstable();
        if idx.iter().enumerate().any(|(i, &k)| i != k) {
            return None;
        }
        (idx.iter().map(|k| format!("optimizer/vars/{k}")).collect::<Vec<_>>(), None, Vec::new())
    } else {
        let g = f.group("optimizer_weights").ok()?;
        let group = g.groups().ok()?.into_iter().next()?;
        let names = g.attrs().ok().and_then(|a| a.get("weight_names").and_then(attr_strings)).unwrap_or_else(|| {
            ["iteration", "learning_rate"]
                .iter()
                .filter(|n| f.dataset(&format!("optimizer_weights/{group}/{n}")).is_ok())
                .map(|n| format!("{group}/{n}"))
                .collect()
        });
        let paths = names.iter().map(|n| format!("optimizer_weights/{n}")).collect();
        (paths, Some(format!("optimizer_weights/{group}")), names)
    };
    if paths.is_empty() || !is_scalar(f, &paths[0]) {
        return None;
    }
    // A learning-rate schedule is no variable: then the second is already a slot.
    let lr = paths.get(1).is_some_and(|p| is_scalar(f, p) && (archive || p.ends_with("learning_rate")));
    Some(OptimizerVars { prefix: 1 + usize::from(lr), paths, legacy_group, legacy_names })
}

/// The optimizer variables of a Keras file (`.h5` or `.keras`), when it records any beyond the
/// iteration count and learning rate, as float32 tensors in Keras's order.
pub fn read_optimizer(path: &Path) -> Result<Option<SavedOptimizer>, FrontendError> {
    let bytes = std::fs::read(path).map_err(|e| werr(path, e.to_string()))?;
    let archive = bytes.starts_with(b"PK");
    let bytes = if archive {
        super::archive::Archive::open(&bytes, &path.display().to_string())?
            .bytes("model.weights.h5")?
            .ok_or_else(|| werr(path, "the archive has no model.weights.h5"))?
    } else {
        bytes
    };
    let f = hdf5_pure::File::from_bytes(bytes).map_err(|e| werr(path, format!("not a readable HDF5 file: {e}")))?;
    let Some(v) = optimizer_vars(&f, archive) else { return Ok(None) };
    if v.paths.len() == v.prefix {
        return Ok(None);
    }
    let it =
        f.dataset(&v.paths[0]).and_then(|d| d.read_i64()).map_err(|e| werr(path, format!("{}: {e}", v.paths[0])))?;
    let mut variables = Vec::new();
    for p in &v.paths[v.prefix..] {
        let d = f.dataset(p).map_err(|e| werr(path, format!("{p}: {e}")))?;
        let shape: Vec<usize> =
            d.shape().map_err(|e| werr(path, format!("{p}: {e}")))?.iter().map(|&n| n as usize).collect();
        let data = d.read_f32().map_err(|e| werr(path, format!("{p}: {e}")))?;
        variables.push(Tensor::from_f32(&shape, data).map_err(|e| werr(path, format!("{p}: {e}")))?);
    }
    Ok(Some(SavedOptimizer { iterations: it.first().copied().unwrap_or(0), variables }))
}

fn werr(path: &Path, message: impl Into<String>) -> FrontendError {
    FrontendError::Io { path: path.display().to_string(), message: message.into() }
}

fn temp_beside(out: &Path, tag: &str) -> PathBuf {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    dir.join(format!(".{name}.{tag}.{}.tmp", std::process::id()))
}

/// Overwrites the values of contiguous datasets in an HDF5 image: each update replaces exactly
/// the bytes of the dataset's data (same dtype and size), so the rest of the file, metadata and
/// attributes included, is untouched. Each write is read back to check it landed as intended.
fn patch_h5(
    bytes: Vec<u8>,
    origin: &Path,
    updates: &[(String, Tensor)],
    opt: Option<&OptimizerState>,
    archive: bool,
) -> Result<(Vec<u8>, Option<String>), FrontendError> {
    let f = hdf5_pure::File::from_bytes(bytes.clone())
        .map_err(|e| werr(origin, format!("not a readable HDF5 file: {e}")))?;
    let mut patches: Vec<(usize, Vec<u8>, String)> = Vec::new();
    let mut region = |at: &str, data: Vec<u8>| -> Result<(), FrontendError> {
        let ds = f.dataset(at).map_err(|e| werr(origin, format!("{at}: {e}")))?;
        match ds.layout().map_err(|e| werr(origin, format!("{at}: {e}")))? {
            hdf5_pure::Layout::Contiguous { address: Some(a), size } if size as usize == data.len() => {
                let a = usize::try_from(a).map_err(|_| werr(origin, format!("{at}: address out of range")))?;
                if a.checked_add(data.len()).is_none_or(|e| e > bytes.len()) {
                    return Err(werr(origin, format!("{at}: data lies outside the file")));
                }
                patches.push((a, data, at.to_string()));
                Ok(())
            }
            other => Err(werr(origin, format!("{at}: cannot rewrite a dataset stored as {other:?} of this size"))),
        }
    };
    let le_bytes = |at: &str, t: &Tensor| -> Result<Vec<u8>, FrontendError> {
        let data = t.as_f32().ok_or_else(|| werr(origin, format!("{at}: only float32 weights are written")))?;
        Ok(data.iter().flat_map(|x| x.to_le_bytes()).collect())
    };
    for (at, t) in updates {
        region(at, le_bytes(at, t)?)?;
    }
    let mut create: Option<(OptimizerVars, Vec<(String, Tensor)>)> = None;
    let mut note = None;
    if let Some(o) = opt {
        if let Some(v) = optimizer_vars(&f, archive) {
            // int64 under TensorFlow, int32 under JAX (without x64).
            let four = matches!(
                f.dataset(&v.paths[0]).and_then(|d| d.layout()),
                Ok(hdf5_pure::Layout::Contiguous { size: 4, .. })
            );
            let it = if four {
                i32::try_from(o.iterations)
                    .map_err(|_| werr(origin, "the iteration count does not fit the file's int32"))?
                    .to_le_bytes()
                    .to_vec()
            } else {
                o.iterations.to_le_bytes().to_vec()
            };
            region(&v.paths[0], it)?;
            if v.prefix == 2 {
                region(&v.paths[1], o.learning_rate.to_le_bytes().to_vec())?;
            }
            let rest = &v.paths[v.prefix..];
            let fits = |(p, (_, t)): (&String, &(String, Tensor))| {
                f.dataset(p).and_then(|d| d.shape()).is_ok_and(|s| {
                    s.iter().map(|&n| n as usize).product::<usize>() == t.len() && s.len() <= t.rank().max(1)
                })
            };
            if o.variables.is_empty() {
                // The file's variables are left as they are.
            } else if rest.len() == o.variables.len() && rest.iter().zip(&o.variables).all(fits) {
                for (p, (_, t)) in rest.iter().zip(&o.variables) {
                    region(p, le_bytes(p, t)?)?;
                }
            } else if rest.is_empty() {
                create = Some((v, o.variables.clone()));
            } else {
                note = Some(format!(
                    "the file's optimizer keeps {} variables where kerasc's has {}: its state was not written (Keras starts it afresh)",
                    rest.len(),
                    o.variables.len()
                ));
            }
        }
    }
    let mut out = bytes;
    for (a, data, _) in &patches {
        out[*a..*a + data.len()].copy_from_slice(data);
    }
    // Read every patched dataset back: a big-endian or otherwise unexpected type shows here.
    let check = hdf5_pure::File::from_bytes(out.clone()).map_err(|e| werr(origin, e.to_string()))?;
    for (_, data, at) in &patches {
        let raw = check.dataset(at).and_then(|d| d.read_raw()).map_err(|e| werr(origin, format!("{at}: {e}")))?;
        if &raw != data {
            return Err(werr(origin, format!("{at}: the rewritten values do not read back")));
        }
    }
    if let Some((v, vars)) = create {
        out = add_optimizer_vars(out, origin, &v, &vars)?;
    }
    Ok((out, note))
}

/// Adds the optimizer's variables to a file that holds only its iteration count and learning
/// rate (a model compiled and saved before training), as Keras would have written them.
fn add_optimizer_vars(
    bytes: Vec<u8>,
    origin: &Path,
    v: &OptimizerVars,
    vars: &[(String, Tensor)],
) -> Result<Vec<u8>, FrontendError> {
    // A scratch copy to edit (the output itself appears only when complete).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = std::env::temp_dir().join(format!(".kerasc-optimizer.{}.{nanos}.h5", std::process::id()));
    let e = |m: String| werr(origin, format!("adding the optimizer's variables: {m}"));
    std::fs::write(&tmp, &bytes).map_err(|x| e(x.to_string()))?;
    let result = (|| -> Result<Vec<u8>, FrontendError> {
        let f = hdf5_pure::File::open_rw(&tmp).map_err(|x| e(x.to_string()))?;
        let root = f.root();
        let mut names = v.legacy_names.clone();
        for (k, (name, t)) in vars.iter().enumerate() {
            let path = match &v.legacy_group {
                Some(g) => format!("{g}/{name}"),
                None => format!("optimizer/vars/{}", v.prefix + k),
            };
            if let Some(g) = &v.legacy_group {
                names.push(format!("{}/{name}", g.trim_start_matches("optimizer_weights/")));
            }
            let data = t.as_f32().ok_or_else(|| e(format!("{name} is not float32")))?.to_vec();
            let shape: Vec<u64> = t.shape().iter().map(|&n| n as u64).collect();
            root.create_dataset(&path, |b| {
                b.with_f32_data(&data).with_shape(&shape);
            })
            .map_err(|x| e(format!("{path}: {x}")))?;
        }
        if v.legacy_group.is_some() {
            f.group("optimizer_weights")
                .and_then(|g| g.set_attr("weight_names", hdf5_pure::AttrValue::AsciiStringArray(names)))
                .map_err(|x| e(x.to_string()))?;
        }
        f.close().map_err(|x| e(x.to_string()))?;
        std::fs::read(&tmp).map_err(|x| e(x.to_string()))
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Writes `src` with the weight datasets in `updates` (paths as in `Model::weight_sources`)
/// replaced, to `out`: an `.h5` stays an `.h5`, a `.keras` archive gets a new
/// `model.weights.h5`. With `opt`, the optimizer's iteration count, learning rate and variables
/// too, where the file keeps an optimizer; the `Ok` value says why its variables were left
/// alone, if they were.
pub fn save_trained(
    src: &Path,
    out: &Path,
    updates: &[(String, Tensor)],
    opt: Option<&OptimizerState>,
) -> Result<Option<String>, FrontendError> {
    let bytes = std::fs::read(src).map_err(|e| werr(src, e.to_string()))?;
    let result = if bytes.starts_with(b"PK") {
        (|| {
            let mut zin = zip::ZipArchive::new(Cursor::new(&bytes[..])).map_err(|e| werr(src, e.to_string()))?;
            let mut members = Vec::new();
            for i in 0..zin.len() {
                let mut f = zin.by_index(i).map_err(|e| werr(src, e.to_string()))?;
                let name = f.name().map(|n| n.to_string()).unwrap_or_default();
                let mut data = Vec::new();
                f.read_to_end(&mut data).map_err(|e| werr(src, e.to_string()))?;
                members.push((name, data));
            }
            let w = members
                .iter_mut()
                .find(|(n, _)| n == "model.weights.h5")
                .ok_or_else(|| werr(src, "the archive has no model.weights.h5"))?;
            let (patched, note) = patch_h5(std::mem::take(&mut w.1), src, updates, opt, true)?;
            w.1 = patched;
            let mut zout = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            for (name, data) in &members {
                zout.start_file(name.as_str(), opts).map_err(|e| werr(out, e.to_string()))?;
                zout.write_all(data).map_err(|e| werr(out, e.to_string()))?;
            }
            let archive = zout.finish().map_err(|e| werr(out, e.to_string()))?.into_inner();
            let tmp = temp_beside(out, "keras");
            std::fs::write(&tmp, archive).map_err(|e| werr(&tmp, e.to_string()))?;
            std::fs::rename(&tmp, out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                werr(out, e.to_string())
            })?;
            Ok(note)
        })()
    } else {
        let (patched, note) = patch_h5(bytes, src, updates, opt, false)?;
        let tmp = temp_beside(out, "h5");
        let res = std::fs::write(&tmp, &patched)
            .map_err(|e| werr(&tmp, e.to_string()))
            .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| werr(out, e.to_string())));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map(|_| note)
    };
    result
}
