//! Where a layer's weights come from: the legacy `model_weights` group (by layer name and
//! `weight_names`) or a `.keras` archive's `layers/<key>/vars/<i>` tree.

use super::h5;
use crate::FrontendError;
use hdf5_pure::File;
use ir::Tensor;
use std::collections::HashMap;

/// One link of the path from the top-level model to a layer: its name and archive key.
#[derive(Debug, Clone)]
pub struct PathLink {
    pub name: String,
    pub key: String,
}

/// A model file's weights, looked up per layer in Keras's `layer.weights` order.
pub enum WeightStore {
    /// Legacy HDF5: each top-level layer's `(weight name, tensor)` list.
    Legacy { layers: HashMap<String, Vec<(String, Tensor)>> },
    /// `.keras` archive weights file.
    Archive { file: File, len: usize, origin: String },
}

impl WeightStore {
    /// Reads every layer's weights from a legacy file's `model_weights` group.
    pub fn from_legacy(file: &File, file_len: usize, origin: &str) -> Result<WeightStore, FrontendError> {
        let fmt = |m: String| FrontendError::Format { file: origin.into(), message: m };
        let mw = match file.group("model_weights") {
            Ok(g) => g,
            Err(_) => return Ok(WeightStore::Legacy { layers: HashMap::new() }),
        };
        let attrs = h5::group_attrs(&mw, origin, "model_weights")?;
        let names = h5::split_list_attr(&attrs, "layer_names")
            .ok_or_else(|| fmt("model_weights has no layer_names attribute".into()))?;
        let mut layers = HashMap::new();
        for name in names {
            let g =
                mw.group(&name).map_err(|e| fmt(format!("layer '{name}' is listed but has no weight group: {e}")))?;
            let gattrs = h5::group_attrs(&g, origin, &format!("model_weights/{name}"))?;
            let wnames = h5::split_list_attr(&gattrs, "weight_names").unwrap_or_default();
            let mut ws = Vec::with_capacity(wnames.len());
            for wn in wnames {
                let ds = g.dataset(&wn).map_err(|e| fmt(format!("weight '{wn}' of layer '{name}' is missing: {e}")))?;
                let t = h5::read_tensor(&ds, file_len, origin, &format!("model_weights/{name}/{wn}"))?;
                ws.push((wn, t));
            }
            layers.insert(name, ws);
        }
        Ok(WeightStore::Legacy { layers })
    }

    /// Wraps a `.keras` archive's weights file.
    pub fn from_archive(file: File, len: usize, origin: &str) -> WeightStore {
        WeightStore::Archive { file, len, origin: origin.into() }
    }

    /// The weights of the layer at `path` (top-level first), in `layer.weights` order, each with
    /// the path of the HDF5 dataset it was read from.
    pub fn layer_weights(&self, path: &[PathLink], class: &str) -> Result<Vec<(Tensor, String)>, FrontendError> {
        match self {
            WeightStore::Legacy { layers } => {
                let Some(first) = path.first() else { return Ok(Vec::new()) };
                let mut list: Vec<&(String, Tensor)> = match layers.get(&first.name) {
                    Some(l) => l.iter().collect(),
                    None => return Ok(Vec::new()),
                };
                for link in &path[1..] {
                    let filtered: Vec<_> = list
                        .iter()
                        .copied()
                        .filter(|(wn, _)| {
                            let parts: Vec<&str> = wn.split('/').collect();
                            parts[..parts.len().saturating_sub(1)].contains(&link.name.as_str())
                        })
                        .collect();
                    list = filtered;
                }
                Ok(list.into_iter().map(|(wn, t)| (t.clone(), format!("model_weights/{}/{wn}", first.name))).collect())
            }
            WeightStore::Archive { file, len, origin } => {
                let mut gpath = String::new();
                for link in path {
                    if !gpath.is_empty() {
                        gpath.push('/');
                    }
                    gpath.push_str("layers/");
                    let direct = format!("{gpath}{}", link.key);
                    let key = if file.group(&direct).is_ok() {
                        link.key.clone()
                    } else {
                        match find_by_name(file, &gpath, &link.name) {
                            Some(k) => k,
                            None => return Ok(Vec::new()),
                        }
                    };
                    gpath.push_str(&key);
                }
                let mut out = Vec::new();
                collect_vars(file, &gpath, class, *len, origin, &mut out, 0)?;
                Ok(out)
            }
        }
    }
}

/// Finds the child of `parent` (ending in `layers/`) whose `vars/@name` is `name`.
fn find_by_name(file: &File, parent: &str, name: &str) -> Option<String> {
    let g = file.group(parent.trim_end_matches('/')).ok()?;
    for child in g.groups().ok()? {
        let vars = match file.group(&format!("{parent}{child}/vars")) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if let Ok(attrs) = vars.attrs() {
            if attrs.get("name").and_then(h5::attr_string).as_deref() == Some(name) {
                return Some(child);
            }
        }
    }
    None
}

fn child_order(class: &str, mut children: Vec<String>) -> Vec<String> {
    children.retain(|c| c != "vars" && c != "layers");
    let rank: &[&str] = match class {
        "MultiHeadAttention" | "GroupQueryAttention" | "GroupedQueryAttention" => &["query", "key", "value", "output"],
        "Bidirectional" => &["forward", "backward"],
        _ => &[],
    };
    children.sort_by_key(|c| (rank.iter().position(|r| c.contains(r)).unwrap_or(rank.len()), c.clone()));
    children
}

fn collect_vars(
    file: &File,
    gpath: &str,
    class: &str,
    len: usize,
    origin: &str,
    out: &mut Vec<(Tensor, String)>,
    depth: usize,
) -> Result<(), FrontendError> {
    if depth > 16 {
        return Err(FrontendError::Format {
            file: origin.into(),
            message: format!("{gpath}: weight groups nested too deeply"),
        });
    }
    let fmt = |m: String| FrontendError::Format { file: origin.into(), message: m };
    if let Ok(vars) = file.group(&format!("{gpath}/vars")) {
        let mut names: Vec<(usize, String)> = vars
            .datasets()
            .map_err(|e| fmt(format!("{gpath}/vars: {e}")))?
            .into_iter()
            .filter_map(|n| n.parse::<usize>().ok().map(|i| (i, n)))
            .collect();
        names.sort();
        for (_, n) in names {
            let ds = vars.dataset(&n).map_err(|e| fmt(format!("{gpath}/vars/{n}: {e}")))?;
            let at = format!("{gpath}/vars/{n}");
            out.push((h5::read_tensor(&ds, len, origin, &at)?, at));
        }
    }
    let g = file.group(gpath).map_err(|e| fmt(format!("{gpath}: {e}")))?;
    let children = g.groups().map_err(|e| fmt(format!("{gpath}: {e}")))?;
    for c in child_order(class, children) {
        collect_vars(file, &format!("{gpath}/{c}"), class, len, origin, out, depth + 1)?;
    }
    Ok(())
}
