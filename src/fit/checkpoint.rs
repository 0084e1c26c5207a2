//! Checkpoints: after each epoch, the model in the input's format with the weights so far, the
//! optimizer's slots and the run's state, from which `--resume` continues exactly.

use super::error::{invalid, FitError};
use super::history::{EarlyStopping, History};
use crate::frontend::keras::save::{save_trained, OptimizerState as SavedOptimizer};
use crate::ir::{Tensor, ValueId};
use crate::runtime::training::{KerasOptimizer, Optimizer, OptimizerState};
use crate::Model;
use std::path::Path;

/// What a checkpoint restores: the epoch it was written after, the trained weights and
/// moving statistics, the optimizer's slots, the history and the early stopping.
pub(crate) struct Checkpoint {
    pub(crate) epoch: usize,
    pub(crate) weights: Vec<Tensor>,
    pub(crate) optimizer: OptimizerState,
    pub(crate) history: History,
    pub(crate) stopper: EarlyStopping,
}

fn ckpt_ext(source: &Path) -> String {
    source.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_else(|| "h5".into())
}

/// After each epoch: the model in the input's format, and `state.json` + `optimizer.npz` with
/// what a resumed run needs. Each file is written atomically; `state.json` last.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_checkpoint(
    dir: &Path,
    source: &Path,
    model: &Model,
    trainable: &[ValueId],
    weights: &[Tensor],
    opt: &KerasOptimizer,
    hist: &History,
    stopper: &EarlyStopping,
    epoch: usize,
) -> Result<(), FitError> {
    std::fs::create_dir_all(dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
    let updates: Vec<(String, Tensor)> = trainable
        .iter()
        .zip(weights)
        .filter_map(|(v, w)| model.weight_sources.get(v).map(|p| (p.clone(), w.clone())))
        .collect();
    let st = opt.state();
    // The optimizer's variables travel in the checkpoint's own state below.
    let saved =
        SavedOptimizer { iterations: st.iterations as i64, learning_rate: opt.learning_rate(), variables: Vec::new() };
    save_trained(source, &dir.join(format!("checkpoint.{}", ckpt_ext(source))), &updates, Some(&saved))?;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let zo = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (i, slots) in st.slots.iter().enumerate() {
        for (j, s) in slots.iter().enumerate() {
            let t = Tensor::from_f32(&[s.len()], s.clone()).map_err(|e| invalid(e.to_string()))?;
            z.start_file(format!("w{i}_s{j}.npy"), zo).map_err(|e| invalid(e.to_string()))?;
            std::io::Write::write_all(&mut z, &crate::npy::to_bytes(&t)).map_err(|e| invalid(e.to_string()))?;
        }
    }
    let bytes = z.finish().map_err(|e| invalid(e.to_string()))?.into_inner();
    crate::write_atomic(&dir.join("optimizer.npz"), &bytes).map_err(|e| invalid(e.to_string()))?;
    let mut h = serde_json::Map::new();
    for (k, v) in &hist.series {
        h.insert(k.clone(), serde_json::json!(v));
    }
    let state = serde_json::json!({
        "epoch": epoch,
        "iterations": st.iterations,
        "u_product": st.u_product,
        "slots": st.slots.iter().map(|s| s.len()).collect::<Vec<_>>(),
        "history": h,
        "step_loss": hist.step_loss,
        "early_stopping": {"best": if stopper.best.is_finite() { serde_json::json!(stopper.best) } else { serde_json::Value::Null }, "wait": stopper.wait, "stopped": stopper.stopped},
    });
    let text = serde_json::to_string_pretty(&state).map_err(|e| invalid(e.to_string()))?;
    crate::write_atomic(&dir.join("state.json"), text.as_bytes()).map_err(|e| invalid(e.to_string()))
}

/// Reads what [`write_checkpoint`] wrote in `dir`.
pub(crate) fn read_checkpoint(
    dir: &Path,
    source: &Path,
    trainable: &[ValueId],
    model: &Model,
) -> Result<Checkpoint, FitError> {
    let bad = |m: String| invalid(format!("{}: cannot resume: {m}", dir.display()));
    let text = std::fs::read(dir.join("state.json")).map_err(|e| bad(format!("state.json: {e}")))?;
    let st: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("state.json: {e}")))?;
    let ck = crate::load(&dir.join(format!("checkpoint.{}", ckpt_ext(source))))?;
    let mut weights = Vec::new();
    for v in trainable {
        let name = &model.graph.value(*v).name;
        let t = ck
            .graph
            .constants()
            .iter()
            .find(|(c, _)| ck.graph.value(**c).name == *name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| bad(format!("the checkpoint has no weight {name}")))?;
        weights.push(t);
    }
    let arrays: std::collections::HashMap<String, Tensor> =
        crate::npy::read_npz(&dir.join("optimizer.npz"))?.into_iter().collect();
    let counts: Vec<usize> = st["slots"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).map(|v| v as usize).collect())
        .unwrap_or_default();
    let mut slots = Vec::new();
    for (i, &k) in counts.iter().enumerate() {
        let mut per = Vec::new();
        for j in 0..k {
            let t = arrays.get(&format!("w{i}_s{j}")).ok_or_else(|| bad(format!("optimizer.npz lacks w{i}_s{j}")))?;
            per.push(t.to_f32_vec());
        }
        slots.push(per);
    }
    let mut history = History::default();
    if let Some(h) = st["history"].as_object() {
        for (k, v) in h {
            history.series.push((
                k.clone(),
                v.as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default(),
            ));
        }
    }
    history.step_loss =
        st["step_loss"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
    let es = &st["early_stopping"];
    Ok(Checkpoint {
        epoch: st["epoch"].as_u64().ok_or_else(|| bad("state.json has no epoch".into()))? as usize,
        weights,
        optimizer: OptimizerState {
            iterations: st["iterations"].as_u64().unwrap_or(0),
            u_product: st["u_product"].as_f64().unwrap_or(1.0) as f32,
            slots,
        },
        history,
        stopper: EarlyStopping {
            patience: None,
            best: es["best"].as_f64().unwrap_or(f64::INFINITY),
            wait: es["wait"].as_u64().unwrap_or(0) as usize,
            stopped: es["stopped"].as_bool().unwrap_or(false),
        },
    })
}
