//! Writing trained weights back: a copy of the original file with only the weight datasets'
//! bytes replaced (so every group, attribute and config stays exactly as Keras wrote it), and the optimizer's iteration count and learning rate when the
//! file records them. The result appears at its path only when complete (temporary file, then
//! rename).

use crate::FrontendError;
use ir::Tensor;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// What the optimizer had done, for files that record it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerState {
    pub iterations: i64,
    pub learning_rate: f32,
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
    opt: Option<OptimizerState>,
) -> Result<Vec<u8>, FrontendError> {
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
    for (at, t) in updates {
        let data = t.as_f32().ok_or_else(|| werr(origin, format!("{at}: only float32 weights are written")))?;
        region(at, data.iter().flat_map(|x| x.to_le_bytes()).collect())?;
    }
    if let Some(o) = opt {
        // The optimizer's group (named after it: sgd, adam, rmsprop, ...), where Keras keeps
        // the iteration count and learning rate.
        let groups: Vec<String> = match f.group("optimizer_weights").and_then(|g| g.groups()) {
            Ok(names) => names.into_iter().map(|n| format!("optimizer_weights/{n}")).collect(),
            Err(_) => Vec::new(),
        };
        for group in &groups {
            if let Ok(ds) = f.dataset(&format!("{group}/iteration")) {
                // int64 under TensorFlow, int32 under JAX (without x64).
                let four = matches!(ds.layout(), Ok(hdf5_pure::Layout::Contiguous { size: 4, .. }));
                let it = if four {
                    i32::try_from(o.iterations)
                        .map_err(|_| werr(origin, "the iteration count does not fit the file's int32"))?
                        .to_le_bytes()
                        .to_vec()
                } else {
                    o.iterations.to_le_bytes().to_vec()
                };
                region(&format!("{group}/iteration"), it)?;
            }
            if f.dataset(&format!("{group}/learning_rate")).is_ok() {
                region(&format!("{group}/learning_rate"), o.learning_rate.to_le_bytes().to_vec())?;
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
    Ok(out)
}

/// Writes `src` with the weight datasets in `updates` (paths as in `Model::weight_sources`)
/// replaced, to `out`: an `.h5` stays an `.h5`, a `.keras` archive gets a new
/// `model.weights.h5`.
pub fn save_trained(
    src: &Path,
    out: &Path,
    updates: &[(String, Tensor)],
    opt: Option<OptimizerState>,
) -> Result<(), FrontendError> {
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
            w.1 = patch_h5(std::mem::take(&mut w.1), src, updates, None)?;
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
            })
        })()
    } else {
        let patched = patch_h5(bytes, src, updates, opt)?;
        let tmp = temp_beside(out, "h5");
        let res = std::fs::write(&tmp, &patched)
            .map_err(|e| werr(&tmp, e.to_string()))
            .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| werr(out, e.to_string())));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    };
    result
}
