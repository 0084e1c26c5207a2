//! `kerasc fit`: fine-tuning a saved model on the CPU with Keras's numbers, writing a file
//! Keras loads back.

use crate::frontend::keras::save::{save_trained, OptimizerState as SavedOptimizer};
use crate::ir::{DType, Tensor, TensorData};
use crate::runtime::training::{
    KerasOptimizer, Kind, Loss, Noise, Optimizer, OptimizerState, Schedule, TrainOptions, TrainStep,
};
use crate::Model;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything `fit` needs.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `.npz` (x_train/y_train or x/y, optional x_val/y_val) or `.csv` (with `label_column`).
    pub data: Option<PathBuf>,
    /// Inputs and labels as two `.npy` files (instead of `data`).
    pub x: Option<PathBuf>,
    pub y: Option<PathBuf>,
    /// The label column of a CSV file: its header name or 0-based index.
    pub label_column: Option<String>,
    pub output: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    /// Optimizer name; `None` takes the file's `training_config`.
    pub optimizer: Option<String>,
    pub learning_rate: Option<f32>,
    pub momentum: Option<f32>,
    pub nesterov: bool,
    pub beta_1: Option<f32>,
    pub beta_2: Option<f32>,
    pub epsilon: Option<f32>,
    pub rho: Option<f32>,
    pub weight_decay: Option<f32>,
    pub clipnorm: Option<f32>,
    pub clipvalue: Option<f32>,
    pub global_clipnorm: Option<f32>,
    /// Loss name; `None` takes the file's `training_config`.
    pub loss: Option<String>,
    /// Metric names; `None` takes the file's `training_config`.
    pub metrics: Option<Vec<String>>,
    pub from_logits: bool,
    pub shuffle: bool,
    pub seed: u64,
    /// Dropout and noise layers off (they are identities in the compiled graph).
    pub no_dropout: bool,
    pub history: Option<PathBuf>,
    /// 0: silent, 1 or 2: one line per epoch.
    pub verbose: u8,
    /// Layers whose weights stay as they are.
    pub freeze: Vec<String>,
    /// Freeze every layer before this one.
    pub trainable_from: Option<String>,
    /// Hold out this last fraction of the data for validation (when the data has no x_val).
    pub validation_split: Option<f32>,
    /// Stop after this many epochs without improvement of val_loss (or loss).
    pub early_stopping: Option<usize>,
    /// Write a checkpoint here after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint in `checkpoint`.
    pub resume: bool,
    /// Test hook: abort the process before this (0-based, counted over the run) step.
    pub abort_after_steps: Option<usize>,
    /// Run each step's forward and backward pass on this GPU (the optimizer updates on the
    /// host); `None`: the CPU.
    pub cuda: Option<crate::runtime::cuda::CudaOptions>,
}

/// What Keras's `history.history` holds (`loss`, each metric, their `val_` forms, per epoch),
/// plus `step_loss`: each batch's loss before its update.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(key, values per epoch)` in Keras's order.
    pub series: Vec<(String, Vec<f64>)>,
    pub step_loss: Vec<f64>,
}

impl History {
    /// The values of one key.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.series.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    fn push(&mut self, key: &str, v: f64) {
        match self.series.iter_mut().find(|(k, _)| k == key) {
            Some((_, vals)) => vals.push(v),
            None => self.series.push((key.to_string(), vec![v])),
        }
    }
}

/// A metric, resolved the way Keras resolves the names given to `compile`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    SparseCategoricalAccuracy,
    CategoricalAccuracy,
    BinaryAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
}

impl Metric {
    fn resolve(name: &str, loss: Loss, classes: usize) -> Result<Metric, FitError> {
        Ok(match name {
            "accuracy" | "acc" => match loss {
                Loss::SparseCategoricalCrossentropy { .. } => Metric::SparseCategoricalAccuracy,
                Loss::BinaryCrossentropy { .. } => Metric::BinaryAccuracy,
                _ if classes == 1 => Metric::BinaryAccuracy,
                _ => Metric::CategoricalAccuracy,
            },
            "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
            "categorical_accuracy" => Metric::CategoricalAccuracy,
            "binary_accuracy" => Metric::BinaryAccuracy,
            "mae" | "mean_absolute_error" => Metric::MeanAbsoluteError,
            "mse" | "mean_squared_error" => Metric::MeanSquaredError,
            other => return Err(invalid(format!("metric '{other}' is not implemented yet (accuracy, mae, mse are)"))),
        })
    }

    /// The metric summed over the batch's samples.
    fn sum(&self, pred: &Tensor, labels: &Tensor) -> f64 {
        let p = pred.to_f64_vec();
        let y = labels.to_f64_vec();
        let c = pred.shape().last().copied().unwrap_or(1).max(1);
        let argmax = |row: &[f64]| {
            row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
        };
        match self {
            Metric::SparseCategoricalAccuracy => {
                p.chunks(c).zip(&y).filter(|(row, &lab)| argmax(row) as f64 == lab).count() as f64
            }
            Metric::CategoricalAccuracy => {
                p.chunks(c).zip(y.chunks(c)).filter(|(a, b)| argmax(a) == argmax(b)).count() as f64
            }
            Metric::BinaryAccuracy => {
                let hits = p.iter().zip(&y).filter(|(&a, &b)| f64::from(u8::from(a > 0.5)) == b).count() as f64;
                hits / c as f64
            }
            Metric::MeanAbsoluteError => p.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f64>() / c as f64,
            Metric::MeanSquaredError => p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / c as f64,
        }
    }
}

/// Errors of `fit`, each saying what to change.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
    #[error(transparent)]
    Frontend(#[from] crate::FrontendError),
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
}

fn invalid(m: impl Into<String>) -> FitError {
    FitError::Invalid(m.into())
}

fn rows(t: &Tensor, idx: &[usize]) -> Result<Tensor, FitError> {
    let per: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = idx.len();
    fn pick<T: Copy>(v: &[T], idx: &[usize], per: usize) -> Vec<T> {
        idx.iter().flat_map(|&i| v[i * per..(i + 1) * per].iter().copied()).collect()
    }
    let data = match t.data() {
        TensorData::F32(v) => TensorData::F32(pick(v, idx, per)),
        TensorData::I32(v) => TensorData::I32(pick(v, idx, per)),
        TensorData::I64(v) => TensorData::I64(pick(v, idx, per)),
        TensorData::U8(v) => TensorData::U8(pick(v, idx, per)),
        _ => return Err(invalid("training data must be float32, int32, int64 or uint8")),
    };
    Tensor::new(shape, data).map_err(|e| invalid(e.to_string()))
}

/// The per-epoch shuffle (seeded; not Keras's own order).
fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

/// Keras's EarlyStopping(patience) on the monitored loss (min_delta 0, no best-weight restore).
#[derive(Debug, Clone, PartialEq)]
struct EarlyStopping {
    patience: Option<usize>,
    best: f64,
    wait: usize,
    stopped: bool,
}

impl EarlyStopping {
    fn new(patience: Option<usize>) -> EarlyStopping {
        EarlyStopping { patience, best: f64::INFINITY, wait: 0, stopped: false }
    }

    fn update(&mut self, value: f64) {
        let Some(p) = self.patience else { return };
        if value < self.best {
            self.best = value;
            self.wait = 0;
        } else {
            self.wait += 1;
            if self.wait >= p {
                self.stopped = true;
            }
        }
    }
}

/// Layers that get no updates: the config's `trainable: false`, `--freeze`, and everything
/// before `--trainable-from`.
fn frozen_layers(model: &Model, o: &FitOptions) -> Result<std::collections::HashSet<String>, FitError> {
    let layers: Vec<&str> = model.info.layers.iter().map(|l| l.name.as_str()).collect();
    let mut frozen: std::collections::HashSet<String> =
        model.info.layers.iter().filter(|l| l.params > 0 && l.trainable_params == 0).map(|l| l.name.clone()).collect();
    for f in &o.freeze {
        if !layers.contains(&f.as_str()) {
            return Err(invalid(format!("--freeze: no layer '{f}' (layers: {})", layers.join(", "))));
        }
        frozen.insert(f.clone());
    }
    if let Some(t) = &o.trainable_from {
        let i = layers
            .iter()
            .position(|l| l == t)
            .ok_or_else(|| invalid(format!("--trainable-from: no layer '{t}' (layers: {})", layers.join(", "))))?;
        frozen.extend(layers[..i].iter().map(|l| l.to_string()));
    }
    Ok(frozen)
}

fn layer_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Weights Keras never trains (its non-trainable variables): batch-norm moving statistics and
/// the statistics of a Normalization layer.
fn never_trained(model: &Model, v: crate::ir::ValueId) -> bool {
    let name = &model.graph.value(v).name;
    name.ends_with("/moving_mean")
        || name.ends_with("/moving_variance")
        || model.info.layer_configs.get(layer_of(name)).is_some_and(|(class, _)| class == "Normalization")
}

/// The weights to train: those read from the file, minus frozen layers and non-trainable
/// variables.
fn trainable_weights(
    model: &Model,
    frozen: &std::collections::HashSet<String>,
) -> Result<Vec<crate::ir::ValueId>, FitError> {
    let g = &model.graph;
    Ok(g.constants()
        .keys()
        .copied()
        .filter(|v| model.weight_sources.contains_key(v))
        .filter(|v| !frozen.contains(layer_of(&g.value(*v).name)) && !never_trained(model, *v))
        .collect())
}

/// Training-mode layers: batch normalizations that are not frozen (batch statistics; their
/// moving statistics become step state, updated with the layer's momentum), and the active
/// noise layers with their data format.
struct TrainingMode {
    options: TrainOptions,
    /// Per state tensor: the momentum of its layer.
    momentum: Vec<f32>,
    /// Per noise layer (TrainOptions order): the channel axis for spatial dropout.
    channels_first: Vec<bool>,
}

fn training_mode(
    model: &Model,
    frozen: &std::collections::HashSet<String>,
    no_dropout: bool,
) -> Result<TrainingMode, FitError> {
    let g = &model.graph;
    let mut m = TrainingMode { options: TrainOptions::default(), momentum: Vec::new(), channels_first: Vec::new() };
    let mut refused = Vec::new();
    for node in g.nodes() {
        let cfg = model.info.layer_configs.get(&node.name);
        let f = |k: &str, d: f64| cfg.and_then(|(_, c)| c.get(k)).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
        match &node.op {
            crate::ir::Op::BatchNorm { .. } if !frozen.contains(layer_of(&node.name)) => {
                let stats = [node.inputs.get(3), node.inputs.get(4)];
                if stats.iter().any(|s| s.is_none_or(|v| g.constant(*v).is_none())) {
                    return Err(invalid(format!("batch normalization '{}' has no moving statistics", node.name)));
                }
                m.options.batch_norm.push(node.name.clone());
                for s in stats.into_iter().flatten() {
                    m.options.state.push(*s);
                    m.momentum.push(f("momentum", 0.99));
                }
            }
            crate::ir::Op::Unary(crate::ir::UnaryOp::Identity) if !no_dropout => {
                let Some((class, c)) = cfg else { continue };
                let rate = f("rate", 0.0);
                let kind = match class.as_str() {
                    "Dropout" | "SpatialDropout1D" | "SpatialDropout2D" | "SpatialDropout3D"
                        if c.get("noise_shape").is_some_and(|v| !v.is_null()) =>
                    {
                        refused.push(format!("{} (Dropout with a noise_shape)", node.name));
                        continue;
                    }
                    "Dropout" => Noise::Dropout { rate },
                    "SpatialDropout1D" | "SpatialDropout2D" | "SpatialDropout3D" => Noise::SpatialDropout { rate },
                    "GaussianNoise" => Noise::GaussianNoise { stddev: f("stddev", 0.0) },
                    "GaussianDropout" => Noise::GaussianDropout { rate },
                    "AlphaDropout" => {
                        refused.push(format!("{} (AlphaDropout)", node.name));
                        continue;
                    }
                    _ => continue,
                };
                let off = match kind {
                    Noise::GaussianNoise { stddev } => stddev == 0.0,
                    Noise::Dropout { rate } | Noise::SpatialDropout { rate } | Noise::GaussianDropout { rate } => {
                        rate == 0.0
                    }
                };
                if off {
                    continue;
                }
                if !(0.0..1.0).contains(&rate) {
                    return Err(invalid(format!("{}: rate {rate} is outside [0, 1)", node.name)));
                }
                m.options.noise.push((node.name.clone(), kind));
                m.channels_first.push(c.get("data_format").and_then(|v| v.as_str()) == Some("channels_first"));
            }
            _ => {}
        }
    }
    if !refused.is_empty() {
        return Err(invalid(format!(
            "noise layers kerasc cannot train with yet: {}; pass --no-dropout to train with them off",
            refused.join(", ")
        )));
    }
    Ok(m)
}

/// SplitMix64: the generator behind shuffling and the noise layers (seeded; not Keras's).
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, stream: u64) -> SplitMix {
        SplitMix(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One noise tensor of `shape` for `kind`: a mask to multiply by, or noise to add.
fn noise_tensor(kind: Noise, shape: &[usize], channels_first: bool, rng: &mut SplitMix) -> Result<Tensor, FitError> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = match kind {
        Noise::Dropout { rate } => {
            let keep = 1.0 / (1.0 - rate);
            (0..n).map(|_| if rng.uniform() >= rate as f64 { keep } else { 0.0 }).collect()
        }
        Noise::SpatialDropout { rate } => {
            // One draw per (sample, channel), broadcast over the spatial positions.
            let keep = 1.0 / (1.0 - rate);
            let b = shape.first().copied().unwrap_or(1);
            let c = if channels_first { shape.get(1) } else { shape.last() }.copied().unwrap_or(1);
            let draws: Vec<f32> = (0..b * c).map(|_| if rng.uniform() >= rate as f64 { keep } else { 0.0 }).collect();
            let inner: usize = if channels_first { shape.iter().skip(2).product() } else { 1 };
            let per_sample = n / b.max(1);
            (0..n)
                .map(|i| {
                    let (s, r) = (i / per_sample.max(1), i % per_sample.max(1));
                    let ch = if channels_first { r / inner.max(1) } else { r % c.max(1) };
                    draws[s * c + ch]
                })
                .collect()
        }
        Noise::GaussianNoise { stddev } => (0..n).map(|_| (rng.normal() * stddev as f64) as f32).collect(),
        Noise::GaussianDropout { rate } => {
            let sd = (rate as f64 / (1.0 - rate as f64)).sqrt();
            (0..n).map(|_| (1.0 + rng.normal() * sd) as f32).collect()
        }
    };
    Tensor::from_f32(shape, v).map_err(|e| invalid(e.to_string()))
}

struct Checkpoint {
    epoch: usize,
    weights: Vec<Tensor>,
    optimizer: OptimizerState,
    history: History,
    stopper: EarlyStopping,
}

fn ckpt_ext(source: &Path) -> String {
    source.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_else(|| "h5".into())
}

/// After each epoch: the model in the input's format, and `state.json` + `optimizer.npz` with
/// what a resumed run needs. Each file is written atomically; `state.json` last.
#[allow(clippy::too_many_arguments)]
fn write_checkpoint(
    dir: &Path,
    source: &Path,
    model: &Model,
    trainable: &[crate::ir::ValueId],
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
    let saved = SavedOptimizer { iterations: st.iterations as i64, learning_rate: opt.learning_rate() };
    save_trained(source, &dir.join(format!("checkpoint.{}", ckpt_ext(source))), &updates, Some(saved))?;
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

fn read_checkpoint(
    dir: &Path,
    source: &Path,
    trainable: &[crate::ir::ValueId],
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

/// A learning rate from a Keras config: a number, or a serialized schedule.
fn schedule_from(v: &serde_json::Value) -> Result<Schedule, FitError> {
    if let Some(x) = v.as_f64() {
        return Ok(Schedule::Constant(x as f32));
    }
    let class = v.get("class_name").and_then(|c| c.as_str()).unwrap_or("");
    let c = v.get("config").cloned().unwrap_or_default();
    let f = |k: &str, d: f64| c.get(k).and_then(|x| x.as_f64()).unwrap_or(d) as f32;
    let list = |k: &str| -> Vec<f32> {
        c.get(k)
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
            .unwrap_or_default()
    };
    Ok(match class {
        "ExponentialDecay" => Schedule::ExponentialDecay {
            initial: f("initial_learning_rate", 0.01),
            decay_steps: f("decay_steps", 1.0),
            decay_rate: f("decay_rate", 1.0),
            staircase: c.get("staircase").and_then(|x| x.as_bool()).unwrap_or(false),
        },
        "CosineDecay" if c.get("warmup_target").is_none_or(|x| x.is_null()) => Schedule::CosineDecay {
            initial: f("initial_learning_rate", 0.01),
            decay_steps: f("decay_steps", 1.0),
            alpha: f("alpha", 0.0),
        },
        "PiecewiseConstantDecay" => {
            Schedule::PiecewiseConstantDecay { boundaries: list("boundaries"), values: list("values") }
        }
        other => {
            return Err(invalid(format!(
                "learning-rate schedule '{other}' is not implemented yet; pass --learning-rate"
            )))
        }
    })
}

/// The optimizer: Keras's defaults for `name`, then the file's config, then the flags.
fn build_optimizer(name: &str, cfg: Option<&serde_json::Value>, o: &FitOptions) -> Result<KerasOptimizer, FitError> {
    let (mut kind, default_decay) = Kind::default_for(name).ok_or_else(|| {
        invalid(format!("optimizer '{name}' is not implemented yet (sgd, adam, adamw, rmsprop, adagrad and nadam are)"))
    })?;
    let num = |k: &str| cfg.and_then(|c| c.get(k)).and_then(|v| v.as_f64()).map(|v| v as f32);
    let flag = |k: &str| cfg.and_then(|c| c.get(k)).and_then(|v| v.as_bool());
    match &mut kind {
        Kind::Sgd { momentum, nesterov } => {
            *momentum = o.momentum.or(num("momentum")).unwrap_or(*momentum);
            *nesterov = o.nesterov || flag("nesterov").unwrap_or(*nesterov);
        }
        Kind::Adam { beta_1, beta_2, epsilon, amsgrad } => {
            *beta_1 = o.beta_1.or(num("beta_1")).unwrap_or(*beta_1);
            *beta_2 = o.beta_2.or(num("beta_2")).unwrap_or(*beta_2);
            *epsilon = o.epsilon.or(num("epsilon")).unwrap_or(*epsilon);
            *amsgrad = flag("amsgrad").unwrap_or(*amsgrad);
        }
        Kind::RmsProp { rho, momentum, epsilon, centered } => {
            *rho = o.rho.or(num("rho")).unwrap_or(*rho);
            *momentum = o.momentum.or(num("momentum")).unwrap_or(*momentum);
            *epsilon = o.epsilon.or(num("epsilon")).unwrap_or(*epsilon);
            *centered = flag("centered").unwrap_or(*centered);
        }
        Kind::Adagrad { initial_accumulator_value, epsilon } => {
            *initial_accumulator_value = num("initial_accumulator_value").unwrap_or(*initial_accumulator_value);
            *epsilon = o.epsilon.or(num("epsilon")).unwrap_or(*epsilon);
        }
        Kind::Nadam { beta_1, beta_2, epsilon } => {
            *beta_1 = o.beta_1.or(num("beta_1")).unwrap_or(*beta_1);
            *beta_2 = o.beta_2.or(num("beta_2")).unwrap_or(*beta_2);
            *epsilon = o.epsilon.or(num("epsilon")).unwrap_or(*epsilon);
        }
    }
    let schedule = match (o.learning_rate, cfg.and_then(|c| c.get("learning_rate"))) {
        (Some(lr), _) => Schedule::Constant(lr),
        (None, Some(v)) => schedule_from(v)?,
        (None, None) => Schedule::Constant(if name == "sgd" { 0.01 } else { 0.001 }),
    };
    let mut opt = KerasOptimizer::new(kind, schedule);
    opt.weight_decay = o.weight_decay.or(num("weight_decay")).or(default_decay).filter(|&w| w != 0.0);
    opt.clipnorm = o.clipnorm.or(num("clipnorm"));
    opt.clipvalue = o.clipvalue.or(num("clipvalue"));
    opt.global_clipnorm = o.global_clipnorm.or(num("global_clipnorm"));
    Ok(opt)
}

/// The training data as named arrays (`x`/`y` or `x_train`/`y_train`, `x_val`/`y_val`), and
/// what it was read from, for messages.
fn load_data(o: &FitOptions) -> Result<(String, std::collections::HashMap<String, Tensor>), FitError> {
    match (&o.data, &o.x, &o.y) {
        (Some(d), None, None) => {
            let is_csv = d.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let arrays = if is_csv {
                let col = o.label_column.as_deref().ok_or_else(|| {
                    invalid(format!("{}: a CSV file needs --label-column NAME (or its 0-based index)", d.display()))
                })?;
                let text = std::fs::read_to_string(d).map_err(|e| invalid(format!("{}: {e}", d.display())))?;
                let (x, y) = read_csv(&text, col).map_err(|m| invalid(format!("{}: {m}", d.display())))?;
                [("x".to_string(), x), ("y".to_string(), y)].into_iter().collect()
            } else {
                if o.label_column.is_some() {
                    return Err(invalid("--label-column applies to CSV data only"));
                }
                crate::npy::read_npz(d)?.into_iter().collect()
            };
            Ok((d.display().to_string(), arrays))
        }
        (None, Some(x), Some(y)) => {
            let arrays = [("x".to_string(), crate::npy::read(x)?), ("y".to_string(), crate::npy::read(y)?)];
            Ok((format!("{} and {}", x.display(), y.display()), arrays.into()))
        }
        (None, None, None) => Err(invalid("no training data: pass --data DATA.npz|DATA.csv, or --x X.npy --y Y.npy")),
        (Some(_), _, _) => Err(invalid("pass either --data or --x/--y, not both")),
        _ => Err(invalid("--x and --y go together")),
    }
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

/// A loss from a Keras config value: a name or a serialized loss object.
fn loss_from(v: &serde_json::Value, from_logits_flag: bool) -> Result<Loss, FitError> {
    let name = match v {
        serde_json::Value::String(s) => s.clone(),
        obj => obj
            .get("config")
            .and_then(|c| c.get("name"))
            .or_else(|| obj.get("class_name"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| invalid("the file's training_config has a loss kerasc cannot read; pass --loss"))?,
    };
    let from_logits = from_logits_flag || v.pointer("/config/from_logits").and_then(|v| v.as_bool()).unwrap_or(false);
    let loss = Loss::from_name(&name, from_logits).map(|l| match l {
        // Keras 3 does not serialize Huber's delta: the default 1.0 unless the config has one.
        Loss::Huber { .. } => {
            Loss::Huber { delta: v.pointer("/config/delta").and_then(|v| v.as_f64()).unwrap_or(1.0) as f32 }
        }
        other => other,
    });
    loss.ok_or_else(|| {
        invalid(format!(
            "loss '{name}' is not implemented yet (sparse/categorical/binary cross-entropy, mse, mae and huber are)"
        ))
    })
}

/// One loss per output: `--loss` (one name for every output, or one per output, comma-separated),
/// else the file's training_config (one loss, a list, or a dict by output name).
fn resolve_losses(model: &Model, options: &FitOptions) -> Result<Vec<Loss>, FitError> {
    let outs = &model.info.output_names;
    let n = model.graph.outputs().len();
    let per_output = |vals: Vec<serde_json::Value>| -> Result<Vec<Loss>, FitError> {
        match vals.len() {
            1 => Ok(vec![loss_from(&vals[0], options.from_logits)?; n]),
            k if k == n => vals.iter().map(|v| loss_from(v, options.from_logits)).collect(),
            k => Err(invalid(format!("{k} losses for {n} outputs"))),
        }
    };
    if let Some(l) = &options.loss {
        return per_output(l.split(',').map(|s| serde_json::Value::String(s.trim().to_string())).collect());
    }
    let tc = model.info.training_config.as_ref();
    match tc.and_then(|c| c.get("loss")) {
        None | Some(serde_json::Value::Null) => {
            Err(invalid("no loss: the file was saved without compile(); pass --loss"))
        }
        Some(serde_json::Value::Array(a)) => per_output(a.clone()),
        Some(serde_json::Value::Object(o)) if !o.contains_key("class_name") => outs
            .iter()
            .map(|name| {
                o.get(name)
                    .ok_or_else(|| invalid(format!("the training_config has no loss for output '{name}'; pass --loss")))
                    .and_then(|v| loss_from(v, options.from_logits))
            })
            .collect(),
        Some(v) => per_output(vec![v.clone()]),
    }
}

/// Metric names per output: `--metrics` for every output, else the training_config's (a list
/// for every output, a list per output, or a dict by output name).
fn resolve_metric_names(model: &Model, options: &FitOptions) -> Vec<Vec<String>> {
    let outs = &model.info.output_names;
    let n = model.graph.outputs().len();
    let names = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    };
    if let Some(m) = &options.metrics {
        return vec![m.clone(); n];
    }
    match model.info.training_config.as_ref().and_then(|c| c.get("metrics")) {
        Some(serde_json::Value::Object(o)) => {
            outs.iter().map(|name| o.get(name).map(names).unwrap_or_default()).collect()
        }
        Some(serde_json::Value::Array(a)) if n > 1 && a.len() == n && a.iter().all(|x| x.is_array() || x.is_null()) => {
            a.iter().map(names).collect()
        }
        Some(v) => vec![names(v); n],
        None => vec![Vec::new(); n],
    }
}

/// Casts labels to the loss's dtype and shapes them as Keras does: sparse labels `[n, 1]` are
/// squeezed; labels `[n]` for an output `[n, 1]` get the unit axis.
fn prep_labels(y: Tensor, dtype: DType, out_shape: &crate::ir::Shape) -> Result<Tensor, FitError> {
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

fn rows_all(ts: &[Tensor], idx: &[usize]) -> Result<Vec<Tensor>, FitError> {
    ts.iter().map(|t| rows(t, idx)).collect()
}

/// Trains `model` (loaded from `source`) as `options` say; writes the result and returns the
/// history.
pub fn fit(model: &Model, source: &Path, options: &FitOptions) -> Result<History, FitError> {
    if model.info.format == crate::ModelFormat::Onnx {
        return Err(invalid(
            "fine-tuning ONNX models is not implemented yet: kerasc fit trains Keras .h5 and .keras files",
        ));
    }
    let tc = model.info.training_config.as_ref();
    let g = &model.graph;
    let (n_in, n_out) = (g.inputs().len(), g.outputs().len());
    let losses = resolve_losses(model, options)?;
    let weighted = tc.and_then(|c| c.get("loss_weights")).filter(|w| !w.is_null()).is_some_and(|w| {
        let vals: Vec<f64> = match w {
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_f64()).collect(),
            serde_json::Value::Object(o) => o.values().filter_map(|v| v.as_f64()).collect(),
            other => other.as_f64().into_iter().collect(),
        };
        vals.iter().any(|&v| v != 1.0)
    });
    if weighted {
        return Err(invalid("loss_weights other than 1 are not implemented yet"));
    }
    let label_dtypes: Vec<DType> = losses.iter().map(|l| if l.sparse() { DType::I32 } else { DType::F32 }).collect();
    let opt_cfg = tc.and_then(|c| c.get("optimizer_config"));
    let opt_name = match &options.optimizer {
        Some(o) => o.to_lowercase(),
        None => opt_cfg
            .and_then(|o| o.get("class_name"))
            .and_then(|v| v.as_str())
            .map(str::to_lowercase)
            .ok_or_else(|| invalid("no optimizer: the file was saved without compile(); pass --optimizer"))?,
    };
    let cfg = opt_cfg.filter(|o| {
        o.get("class_name").and_then(|v| v.as_str()).map(str::to_lowercase).as_deref() == Some(opt_name.as_str())
    });
    let mut optimizer = build_optimizer(&opt_name, cfg.and_then(|o| o.get("config")), options)?;
    let frozen = frozen_layers(model, options)?;
    let trainable = trainable_weights(model, &frozen)?;
    let mut mode = training_mode(model, &frozen, options.no_dropout)?;
    mode.options.cuda = options.cuda.clone();
    // Metrics per output; with several outputs Keras names them `<output>_<metric>`.
    let out_names: Vec<String> =
        (0..n_out).map(|k| model.info.output_names.get(k).cloned().unwrap_or_else(|| format!("output_{k}"))).collect();
    let mut metrics: Vec<(usize, String, Metric)> = Vec::new();
    for (k, names) in resolve_metric_names(model, options).into_iter().enumerate() {
        let classes = g.value(g.outputs()[k]).ty.shape.dims().last().and_then(|d| d.fixed()).unwrap_or(1);
        for n in names {
            let m = Metric::resolve(&n, losses[k], classes)?;
            let key = if n_out > 1 { format!("{}_{n}", out_names[k]) } else { n };
            metrics.push((k, key, m));
        }
    }
    // Data: one input x (x_train/x) and one output y (y_train/y); with several, named
    // x_<input>/y_<output> (x_train_<input>, ...); validation x_val/y_val likewise.
    let (what, arrays) = load_data(options)?;
    let in_names: Vec<String> = (0..n_in)
        .map(|k| model.info.input_names.get(k).cloned().unwrap_or_else(|| g.value(g.inputs()[k]).name.clone()))
        .collect();
    let pick = |prefix: &str, names: &[String], single: bool, val: bool| -> Option<Result<Vec<Tensor>, FitError>> {
        let keys = |name: Option<&str>| -> Vec<String> {
            let base: Vec<String> =
                if val { vec![format!("{prefix}_val")] } else { vec![format!("{prefix}_train"), prefix.to_string()] };
            match name {
                None => base,
                Some(n) => base.iter().map(|b| format!("{b}_{n}")).collect(),
            }
        };
        let find = |ks: Vec<String>| ks.iter().find_map(|k| arrays.get(k)).cloned();
        if single {
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
    let want: Vec<DType> = g.inputs().iter().map(|&v| g.value(v).ty.dtype).collect();
    let out_shapes: Vec<crate::ir::Shape> = g.outputs().iter().map(|&v| g.value(v).ty.shape.clone()).collect();
    let prep = |xs: Vec<Tensor>, ys: Vec<Tensor>| -> Result<(Vec<Tensor>, Vec<Tensor>), FitError> {
        let xs: Vec<Tensor> =
            xs.into_iter().zip(&want).map(|(x, &d)| if x.dtype() != d { x.cast(d) } else { x }).collect();
        let ys: Vec<Tensor> = ys
            .into_iter()
            .enumerate()
            .map(|(k, y)| prep_labels(y, label_dtypes[k], &out_shapes[k]))
            .collect::<Result<_, _>>()?;
        let n = xs[0].shape().first().copied().unwrap_or(0);
        for t in xs.iter().chain(&ys) {
            if n == 0 || t.shape().first() != Some(&n) {
                return Err(invalid(format!("{what}: arrays of {n} and {:?} samples", t.shape().first())));
            }
        }
        Ok((xs, ys))
    };
    let missing = |which: &str, names: &[String]| {
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
    let x = pick("x", &in_names, n_in == 1, false).ok_or_else(|| missing("x", &in_names))??;
    let y = pick("y", &out_names, n_out == 1, false).ok_or_else(|| missing("y", &out_names))??;
    let (x, y) = prep(x, y)?;
    let given_val = match (pick("x", &in_names, n_in == 1, true), pick("y", &out_names, n_out == 1, true)) {
        (Some(a), Some(b)) => Some(prep(a?, b?)?),
        _ => None,
    };
    let (x, y, val) = match (given_val, options.validation_split) {
        (Some(v), _) => (x, y, Some(v)),
        // Keras's validation_split: the last fraction of the data, taken before any shuffling.
        (None, Some(f)) if f > 0.0 && f < 1.0 => {
            let n = x[0].shape()[0];
            let nv = ((n as f64) * f as f64).floor() as usize;
            if nv == 0 || nv >= n {
                return Err(invalid(format!("--validation-split {f} leaves no training or no validation data")));
            }
            let (tr, va): (Vec<usize>, Vec<usize>) = ((0..n - nv).collect(), (n - nv..n).collect());
            (rows_all(&x, &tr)?, rows_all(&y, &tr)?, Some((rows_all(&x, &va)?, rows_all(&y, &va)?)))
        }
        (None, Some(f)) if f != 0.0 => return Err(invalid(format!("--validation-split must be in (0, 1), got {f}"))),
        _ => (x, y, None),
    };
    let n = x[0].shape()[0];
    let loss_spec: Vec<(Loss, DType)> = losses.iter().copied().zip(label_dtypes.iter().copied()).collect();
    let step = TrainStep::with_losses(g, &loss_spec, &trainable, &mode.options)?;
    // Validation runs in inference mode (moving statistics, no noise).
    let eval_step = if mode.options.batch_norm.is_empty() && mode.options.noise.is_empty() {
        None
    } else {
        let o = TrainOptions {
            state: mode.options.state.clone(),
            cuda: mode.options.cuda.clone(),
            ..TrainOptions::default()
        };
        Some(TrainStep::with_losses(g, &loss_spec, &trainable, &o)?)
    };
    let mut weights: Vec<Tensor> = trainable.iter().filter_map(|v| g.constant(*v).cloned()).collect();
    let mut state: Vec<Tensor> = mode.options.state.iter().filter_map(|v| g.constant(*v).cloned()).collect();
    // What is saved: the trained weights, then the moving statistics.
    let saved: Vec<crate::ir::ValueId> = trainable.iter().chain(&mode.options.state).copied().collect();
    let bs = options.batch_size.max(1);
    let mut hist = History::default();
    let mut start_epoch = 0;
    let mut stopper = EarlyStopping::new(options.early_stopping);
    if options.resume {
        let dir = options.checkpoint.as_ref().ok_or_else(|| invalid("--resume needs --checkpoint DIR"))?;
        let ck = read_checkpoint(dir, source, &saved, model)?;
        let mut all = ck.weights;
        state = all.split_off(trainable.len());
        weights = all;
        optimizer.restore(ck.optimizer);
        hist = ck.history;
        stopper = EarlyStopping { patience: options.early_stopping, ..ck.stopper };
        start_epoch = ck.epoch;
        if options.verbose > 0 {
            eprintln!("resuming after epoch {start_epoch} from {}", dir.display());
        }
    }
    let steps = n.div_ceil(bs);
    let mut total_steps = hist.step_loss.len();
    for epoch in start_epoch..options.epochs {
        if stopper.stopped {
            break;
        }
        let order: Vec<usize> = if options.shuffle { shuffled(n, options.seed, epoch) } else { (0..n).collect() };
        let t0 = std::time::Instant::now();
        let mut loss_sum = 0.0f64;
        let mut out_loss_sums = vec![0.0f64; n_out];
        let mut seen = 0usize;
        let mut sums = vec![0.0f64; metrics.len()];
        // Keras's verbose=1: a live bar with steps, elapsed, ETA and the running loss and metrics
        // (drawn only on a terminal); verbose=2: the epoch line alone.
        let bar = (options.verbose == 1).then(|| {
            let pb = indicatif::ProgressBar::with_draw_target(
                Some(steps as u64),
                indicatif::ProgressDrawTarget::stderr_with_hz(10),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "Epoch {prefix} {pos}/{len} [{bar:30}] {elapsed} ETA {eta} {msg}",
            ) {
                pb.set_style(style.progress_chars("━╸ "));
            }
            pb.set_prefix(format!("{}/{}", epoch + 1, options.epochs));
            pb
        });
        for b in 0..steps {
            if options.abort_after_steps == Some(total_steps) {
                // Test hook: die like a killed process, mid-epoch, without any cleanup.
                std::process::abort();
            }
            let idx = &order[b * bs..((b + 1) * bs).min(n)];
            let (xb, yb) = (rows_all(&x, idx)?, rows_all(&y, idx)?);
            let mut noise = Vec::with_capacity(step.noise.len());
            if !step.noise.is_empty() {
                let xs: Vec<Vec<usize>> = xb.iter().map(|t| t.shape().to_vec()).collect();
                let ys: Vec<Vec<usize>> = yb.iter().map(|t| t.shape().to_vec()).collect();
                let shapes = step.noise_shapes(&xs, &ys)?;
                for (k, ((_, kind), shape)) in step.noise.iter().zip(&shapes).enumerate() {
                    // One stream per (seed, step, layer): a resumed run draws the same noise.
                    let mut rng = SplitMix::new(options.seed, ((total_steps as u64) << 16) ^ k as u64 ^ 0x5EED);
                    noise.push(noise_tensor(*kind, shape, mode.channels_first[k], &mut rng)?);
                }
            }
            let out = step.run_full(&xb, &yb, &weights, &state, &noise)?;
            let l = out.loss;
            if !l.is_finite() {
                return Err(invalid(format!(
                    "the loss became {l} at epoch {}, step {}: stopping; nothing was written (the last checkpoint, if any, holds the last good weights)",
                    epoch + 1,
                    b + 1
                )));
            }
            hist.step_loss.push(l as f64);
            total_steps += 1;
            // Keras's epoch loss is the mean of the batch losses; metrics are means over samples.
            loss_sum += l as f64;
            for (s, &v) in out_loss_sums.iter_mut().zip(&out.losses) {
                *s += v as f64;
            }
            seen += idx.len();
            for (s, (k, _, m)) in sums.iter_mut().zip(&metrics) {
                *s += m.sum(&out.preds[*k], &yb[*k]);
            }
            optimizer.apply(&mut weights, &out.grads)?;
            if let Some(pb) = &bar {
                let mut msg = format!("loss: {:.4}", loss_sum / (b + 1) as f64);
                for (s, (_, name, _)) in sums.iter().zip(&metrics) {
                    let _ = write!(msg, " - {name}: {:.4}", s / seen.max(1) as f64);
                }
                pb.set_message(msg);
                pb.inc(1);
            }
            // Keras: moving = moving * momentum + batch * (1 - momentum).
            for (i, batch) in &out.batch_stats {
                let m = mode.momentum[*i];
                let keep = (1.0 - m as f64) as f32;
                let b = batch.to_f32_vec();
                let mv: Vec<f32> = state[*i].to_f32_vec().iter().zip(&b).map(|(s, x)| s * m + x * keep).collect();
                state[*i] = Tensor::from_f32(state[*i].shape(), mv).map_err(|e| invalid(e.to_string()))?;
            }
        }
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        hist.push("loss", loss_sum / steps as f64);
        let mut line = format!(
            "Epoch {}/{} - {steps}/{steps} - {:.0}ms - loss: {:.4}",
            epoch + 1,
            options.epochs,
            t0.elapsed().as_secs_f64() * 1e3,
            loss_sum / steps as f64
        );
        if n_out > 1 {
            for (name, s) in out_names.iter().zip(&out_loss_sums) {
                let v = s / steps as f64;
                hist.push(&format!("{name}_loss"), v);
                let _ = write!(line, " - {name}_loss: {v:.4}");
            }
        }
        for (s, (_, name, _)) in sums.iter().zip(&metrics) {
            let v = s / seen.max(1) as f64;
            hist.push(name, v);
            let _ = write!(line, " - {name}: {v:.4}");
        }
        let mut monitored = loss_sum / steps as f64;
        if let Some((xv, yv)) = &val {
            let nv = xv[0].shape()[0];
            let mut vl = 0.0f64;
            let mut vouts = vec![0.0f64; n_out];
            let mut vsums = vec![0.0f64; metrics.len()];
            for s in (0..nv).step_by(bs) {
                let idx: Vec<usize> = (s..(s + bs).min(nv)).collect();
                let (xb, yb) = (rows_all(xv, &idx)?, rows_all(yv, &idx)?);
                let o = match &eval_step {
                    Some(e) => e.run_full(&xb, &yb, &weights, &state, &[])?,
                    None => step.run_full(&xb, &yb, &weights, &state, &[])?,
                };
                vl += o.loss as f64 * idx.len() as f64;
                for (acc, &v) in vouts.iter_mut().zip(&o.losses) {
                    *acc += v as f64 * idx.len() as f64;
                }
                for (s, (k, _, m)) in vsums.iter_mut().zip(&metrics) {
                    *s += m.sum(&o.preds[*k], &yb[*k]);
                }
            }
            let v = vl / nv.max(1) as f64;
            monitored = v;
            hist.push("val_loss", v);
            let _ = write!(line, " - val_loss: {v:.4}");
            if n_out > 1 {
                for (name, s) in out_names.iter().zip(&vouts) {
                    let v = s / nv.max(1) as f64;
                    hist.push(&format!("val_{name}_loss"), v);
                    let _ = write!(line, " - val_{name}_loss: {v:.4}");
                }
            }
            for (s, (_, name, _)) in vsums.iter().zip(&metrics) {
                let v = s / nv.max(1) as f64;
                hist.push(&format!("val_{name}"), v);
                let _ = write!(line, " - val_{name}: {v:.4}");
            }
        }
        if options.verbose > 0 {
            eprintln!("{line}");
        }
        stopper.update(monitored);
        if let Some(dir) = &options.checkpoint {
            let all: Vec<Tensor> = weights.iter().chain(&state).cloned().collect();
            write_checkpoint(dir, source, model, &saved, &all, &optimizer, &hist, &stopper, epoch + 1)?;
        }
        if stopper.stopped && options.verbose > 0 {
            eprintln!("early stopping: no improvement for {} epoch(s)", stopper.wait);
        }
    }
    let updates: Vec<(String, Tensor)> = saved
        .iter()
        .zip(weights.iter().chain(&state))
        .filter_map(|(v, w)| model.weight_sources.get(v).map(|p| (p.clone(), w.clone())))
        .collect();
    let state = SavedOptimizer { iterations: optimizer.iterations() as i64, learning_rate: optimizer.learning_rate() };
    save_trained(source, &options.output, &updates, Some(state))?;
    if let Some(h) = &options.history {
        let mut j = serde_json::Map::new();
        for (k, v) in &hist.series {
            j.insert(k.clone(), serde_json::json!(v));
        }
        j.insert("step_loss".into(), serde_json::json!(hist.step_loss));
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(j)).map_err(|e| invalid(e.to_string()))?;
        crate::write_atomic(h, text.as_bytes()).map_err(|e| invalid(format!("{}: {e}", h.display())))?;
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn dropout_masks_keep_the_expected_fraction_and_the_mean() {
        let mut rng = SplitMix::new(1, 2);
        let t = noise_tensor(Noise::Dropout { rate: 0.3 }, &[100, 1000], false, &mut rng).unwrap();
        let v = t.to_f32_vec();
        let zeros = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.01, "dropped {zeros}");
        assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.7).abs() < 1e-6));
        assert!((stats(&v).0 - 1.0).abs() < 0.02);
    }

    #[test]
    fn spatial_dropout_drops_whole_channels() {
        let mut rng = SplitMix::new(3, 4);
        // channels_last (batch 4, 5x6 positions, 16 channels) and channels_first (4, 16, 30).
        for (shape, cf) in [(vec![4usize, 5, 6, 16], false), (vec![4, 16, 30], true)] {
            let v = noise_tensor(Noise::SpatialDropout { rate: 0.5 }, &shape, cf, &mut rng).unwrap().to_f32_vec();
            let per = v.len() / 4;
            let mut dropped = 0;
            for s in 0..4 {
                for c in 0..16 {
                    let at: Vec<f32> = (0..per)
                        .filter(|r| if cf { r / 30 == c } else { r % 16 == c })
                        .map(|r| v[s * per + r])
                        .collect();
                    assert!(at.iter().all(|&x| x == at[0]), "channel {c} of sample {s} is not one draw");
                    dropped += usize::from(at[0] == 0.0);
                }
            }
            assert!(dropped > 10 && dropped < 54, "{dropped} of 64 channels dropped");
        }
    }

    #[test]
    fn gaussian_noise_and_dropout_have_keras_moments() {
        let mut rng = SplitMix::new(5, 6);
        let v = noise_tensor(Noise::GaussianNoise { stddev: 0.5 }, &[200_000], false, &mut rng).unwrap().to_f32_vec();
        let (m, s) = stats(&v);
        assert!(m.abs() < 0.01 && (s - 0.5).abs() < 0.01, "mean {m} std {s}");
        let v = noise_tensor(Noise::GaussianDropout { rate: 0.2 }, &[200_000], false, &mut rng).unwrap().to_f32_vec();
        let (m, s) = stats(&v);
        assert!((m - 1.0).abs() < 0.01 && (s - 0.5).abs() < 0.01, "mean {m} std {s} (want 1, sqrt(0.2/0.8))");
    }

    #[test]
    fn the_generator_is_seeded() {
        let draw = |seed, stream| {
            let mut r = SplitMix::new(seed, stream);
            (0..4).map(|_| r.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 2), draw(1, 2));
        assert_ne!(draw(1, 2), draw(1, 3));
        assert_ne!(draw(1, 2), draw(2, 2));
    }
}
