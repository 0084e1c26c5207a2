//! What a run trains with, from the file's `training_config` and the flags (a flag wins):
//! the loss and metrics of each output, the optimizer and its schedule, the frozen and
//! trainable weights, and the layers that behave differently in training (batch
//! normalization's batch statistics, active noise layers).

use super::error::{invalid, FitError};
use super::metrics::Metric;
use super::options::{FitOptions, OptimizerFlags};
use crate::frontend::keras::training_config::{per_output, LearningRate, LossConfig, TrainingConfig};
use crate::ir::{Op, UnaryOp, ValueId};
use crate::runtime::placement::layer_of;
use crate::runtime::training::{KerasOptimizer, Kind, Loss, Noise, Schedule, TrainOptions};
use crate::Model;
use std::collections::{HashMap, HashSet};

/// The runtime loss of a configured one (`from_logits` set by the file or the flag).
fn loss(cfg: &LossConfig, from_logits_flag: bool) -> Result<Loss, FitError> {
    let from_logits = from_logits_flag || cfg.from_logits;
    let loss = Loss::from_name(&cfg.name, from_logits).map(|l| match l {
        // Keras 3 does not serialize Huber's delta: the default 1.0 unless the config has one.
        Loss::Huber { .. } => Loss::Huber { delta: cfg.delta.unwrap_or(1.0) },
        other => other,
    });
    loss.ok_or_else(|| {
        invalid(format!(
            "loss '{}' is not implemented yet (sparse/categorical/binary cross-entropy, mse, mae and huber are)",
            cfg.name
        ))
    })
}

/// One loss per output (named `outputs`): `--loss` (one name for every output, or one per
/// output, comma-separated), else the file's training_config.
pub(crate) fn losses(tc: &TrainingConfig, outputs: &[String], options: &FitOptions) -> Result<Vec<Loss>, FitError> {
    let configs = match &options.loss {
        Some(l) => per_output(l.split(',').map(LossConfig::named).collect(), outputs.len()),
        None => tc.losses(outputs),
    }
    .map_err(invalid)?;
    configs.iter().map(|c| loss(c, options.from_logits)).collect()
}

/// The metrics of each output, keyed as Keras names them in the history (`<output>_<metric>`
/// with several outputs): `--metrics` for every output, else the file's.
pub(crate) fn metrics(
    model: &Model,
    tc: &TrainingConfig,
    outputs: &[String],
    losses: &[Loss],
    options: &FitOptions,
) -> Result<Vec<(usize, String, Metric)>, FitError> {
    let g = &model.graph;
    let names = match &options.metrics {
        Some(m) => vec![m.clone(); outputs.len()],
        None => tc.metrics(outputs),
    };
    let mut metrics = Vec::new();
    for (k, names) in names.into_iter().enumerate() {
        let classes = g.value(g.outputs()[k]).ty.shape.dims().last().and_then(|d| d.fixed()).unwrap_or(1);
        for n in names {
            let m = Metric::resolve(&n, losses[k], classes)?;
            let key = if outputs.len() > 1 { format!("{}_{n}", outputs[k]) } else { n };
            metrics.push((k, key, m));
        }
    }
    Ok(metrics)
}

fn schedule(lr: &LearningRate) -> Result<Schedule, FitError> {
    Ok(match lr.clone() {
        LearningRate::Schedule(s) => s,
        LearningRate::Unsupported(other) => {
            return Err(invalid(format!(
                "learning-rate schedule '{other}' is not implemented yet; pass --learning-rate"
            )))
        }
    })
}

/// The optimizer: `--optimizer` or the file's; Keras's defaults for it, then the file's config
/// (when it is the same optimizer), then the flags.
pub(crate) fn optimizer(tc: &TrainingConfig, o: &OptimizerFlags) -> Result<KerasOptimizer, FitError> {
    let name = match &o.optimizer {
        Some(name) => name.to_lowercase(),
        None => tc
            .optimizer
            .as_ref()
            .map(|c| c.name.clone())
            .ok_or_else(|| invalid("no optimizer: the file was saved without compile(); pass --optimizer"))?,
    };
    let file = tc.optimizer.clone().filter(|c| c.name == name).unwrap_or_default();
    let (mut kind, default_decay) = Kind::keras_default(&name).ok_or_else(|| {
        invalid(format!("optimizer '{name}' is not implemented yet (sgd, adam, adamw, rmsprop, adagrad and nadam are)"))
    })?;
    match &mut kind {
        Kind::Sgd { momentum, nesterov } => {
            *momentum = o.momentum.or(file.momentum).unwrap_or(*momentum);
            *nesterov = o.nesterov || file.nesterov.unwrap_or(*nesterov);
        }
        Kind::Adam { beta_1, beta_2, epsilon, amsgrad } => {
            *beta_1 = o.beta_1.or(file.beta_1).unwrap_or(*beta_1);
            *beta_2 = o.beta_2.or(file.beta_2).unwrap_or(*beta_2);
            *epsilon = o.epsilon.or(file.epsilon).unwrap_or(*epsilon);
            *amsgrad = file.amsgrad.unwrap_or(*amsgrad);
        }
        Kind::RmsProp { rho, momentum, epsilon, centered } => {
            *rho = o.rho.or(file.rho).unwrap_or(*rho);
            *momentum = o.momentum.or(file.momentum).unwrap_or(*momentum);
            *epsilon = o.epsilon.or(file.epsilon).unwrap_or(*epsilon);
            *centered = file.centered.unwrap_or(*centered);
        }
        Kind::Adagrad { initial_accumulator_value, epsilon } => {
            *initial_accumulator_value = file.initial_accumulator_value.unwrap_or(*initial_accumulator_value);
            *epsilon = o.epsilon.or(file.epsilon).unwrap_or(*epsilon);
        }
        Kind::Nadam { beta_1, beta_2, epsilon } => {
            *beta_1 = o.beta_1.or(file.beta_1).unwrap_or(*beta_1);
            *beta_2 = o.beta_2.or(file.beta_2).unwrap_or(*beta_2);
            *epsilon = o.epsilon.or(file.epsilon).unwrap_or(*epsilon);
        }
    }
    let schedule = match (o.learning_rate, &file.learning_rate) {
        (Some(lr), _) => Schedule::Constant(lr),
        (None, Some(lr)) => schedule(lr)?,
        (None, None) => Schedule::Constant(if name == "sgd" { 0.01 } else { 0.001 }),
    };
    let mut opt = KerasOptimizer::new(kind, schedule);
    opt.weight_decay = o.weight_decay.or(file.weight_decay).or(default_decay).filter(|&w| w != 0.0);
    opt.clipnorm = o.clipnorm.or(file.clipnorm);
    opt.clipvalue = o.clipvalue.or(file.clipvalue);
    opt.global_clipnorm = o.global_clipnorm.or(file.global_clipnorm);
    Ok(opt)
}

/// Layers that get no updates: the config's `trainable: false`, `--freeze`, and everything
/// before `--trainable-from`.
pub(crate) fn frozen_layers(model: &Model, o: &FitOptions) -> Result<HashSet<String>, FitError> {
    let layers: Vec<&str> = model.info.layers.iter().map(|l| l.name.as_str()).collect();
    let mut frozen: HashSet<String> =
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

/// Weights Keras never trains (its non-trainable variables): batch-norm moving statistics and
/// the statistics of a Normalization layer.
fn never_trained(model: &Model, v: ValueId) -> bool {
    let name = &model.graph.value(v).name;
    name.ends_with("/moving_mean")
        || name.ends_with("/moving_variance")
        || model.info.layer_configs.get(layer_of(name)).is_some_and(|(class, _)| class == "Normalization")
}

/// The weights to train: those read from the file, minus frozen layers and non-trainable
/// variables, in Keras's `trainable_variables` order (which its optimizer's slots follow).
pub(crate) fn trainable_weights(model: &Model, frozen: &HashSet<String>) -> Vec<ValueId> {
    let g = &model.graph;
    let order: HashMap<&str, usize> = model.weight_order.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    let mut w: Vec<ValueId> = g
        .constants()
        .keys()
        .copied()
        .filter(|v| model.weight_sources.contains_key(v))
        .filter(|v| !frozen.contains(layer_of(&g.value(*v).name)) && !never_trained(model, *v))
        .collect();
    w.sort_by_key(|v| model.weight_sources.get(v).and_then(|p| order.get(p.as_str())).copied().unwrap_or(usize::MAX));
    w
}

/// Training-mode layers: batch normalizations that are not frozen (batch statistics; their
/// moving statistics become step state, updated with the layer's momentum), and the active
/// noise layers with their data format.
pub(crate) struct TrainingMode {
    pub(crate) options: TrainOptions,
    /// Per state tensor: the momentum of its layer.
    pub(crate) momentum: Vec<f32>,
    /// Per noise layer (TrainOptions order): the channel axis for spatial dropout.
    pub(crate) channels_first: Vec<bool>,
    /// Per noise layer: the axes its `noise_shape` broadcasts the noise along (bit per axis).
    pub(crate) broadcast: Vec<u16>,
}

pub(crate) fn training_mode(
    model: &Model,
    frozen: &HashSet<String>,
    no_dropout: bool,
) -> Result<TrainingMode, FitError> {
    let g = &model.graph;
    let mut m = TrainingMode {
        options: TrainOptions::default(),
        momentum: Vec::new(),
        channels_first: Vec::new(),
        broadcast: Vec::new(),
    };
    let (mut refused, mut augment) = (Vec::new(), Vec::new());
    for node in g.nodes() {
        let cfg = model.info.layer_configs.get(&node.name);
        let f = |k: &str, d: f64| cfg.and_then(|(_, c)| c.get(k)).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
        match &node.op {
            Op::BatchNorm { .. } if !frozen.contains(layer_of(&node.name)) => {
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
            Op::Unary(UnaryOp::Identity)
                if cfg.is_some_and(|(class, _)| {
                    crate::frontend::keras::layers::AUGMENTATIONS.contains(&class.as_str())
                }) =>
            {
                let class = cfg.map(|(c, _)| c.as_str()).unwrap_or("");
                augment.push(format!("{} ({class})", node.name));
            }
            Op::Unary(UnaryOp::Identity) if !no_dropout => {
                let Some((class, c)) = cfg else { continue };
                let rate = f("rate", 0.0);
                // Keras's noise_shape: an entry of 1 shares one draw along that axis.
                let mut broadcast = 0u16;
                if let Some(ns) = c.get("noise_shape").filter(|v| !v.is_null()) {
                    let entries =
                        ns.as_array().filter(|a| a.len() <= 16 && matches!(class.as_str(), "Dropout" | "AlphaDropout"));
                    let Some(entries) = entries else {
                        refused.push(format!("{} ({class} with the noise_shape {ns})", node.name));
                        continue;
                    };
                    for (i, e) in entries.iter().enumerate() {
                        if e.as_u64() == Some(1) {
                            broadcast |= 1 << i;
                        }
                    }
                }
                let kind = match class.as_str() {
                    "Dropout" => Noise::Dropout { rate },
                    "SpatialDropout1D" | "SpatialDropout2D" | "SpatialDropout3D" => Noise::SpatialDropout { rate },
                    "GaussianNoise" => Noise::GaussianNoise { stddev: f("stddev", 0.0) },
                    "GaussianDropout" => Noise::GaussianDropout { rate },
                    "AlphaDropout" => Noise::AlphaDropout { rate },
                    _ => continue,
                };
                let off = match kind {
                    Noise::GaussianNoise { stddev } => stddev == 0.0,
                    Noise::Dropout { rate }
                    | Noise::SpatialDropout { rate }
                    | Noise::GaussianDropout { rate }
                    | Noise::AlphaDropout { rate } => rate == 0.0,
                };
                if off {
                    continue;
                }
                if !(0.0..1.0).contains(&rate) {
                    return Err(invalid(format!("{}: rate {rate} is outside [0, 1)", node.name)));
                }
                m.options.noise.push((node.name.clone(), kind));
                m.channels_first.push(c.get("data_format").and_then(|v| v.as_str()) == Some("channels_first"));
                m.broadcast.push(broadcast);
            }
            _ => {}
        }
    }
    let mut spectral: Vec<&String> = model
        .info
        .layer_configs
        .iter()
        .filter(|(name, (class, _))| class == "SpectralNormalization" && !frozen.contains(name.as_str()))
        .map(|(name, _)| name)
        .collect();
    spectral.sort();
    if !spectral.is_empty() {
        return Err(invalid(format!(
            "fine-tuning through SpectralNormalization (its power iteration renormalizes the kernel each step) is not implemented yet: {}; --freeze them to train the rest",
            spectral.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if !augment.is_empty() {
        return Err(invalid(format!(
            "image augmentations Keras applies in training, which kerasc cannot train through yet: {} (they run as the identity in `run`)",
            augment.join(", ")
        )));
    }
    if !refused.is_empty() {
        return Err(invalid(format!(
            "noise layers kerasc cannot train with yet: {}; pass --no-dropout to train with them off",
            refused.join(", ")
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Keras schedule, read from the config Keras serializes and computed at each step,
    /// against Keras's own values (tests/models/train/schedules.json, scripts/make-schedules.py).
    #[test]
    fn schedules_give_keras_learning_rates() {
        let j: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/models/train/schedules.json")).unwrap();
        let steps: Vec<u64> = j["steps"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
        for (name, case) in j["cases"].as_object().unwrap() {
            let tc = TrainingConfig::from_value(Some(&serde_json::json!({
                "optimizer_config": {"class_name": "SGD", "config": {"learning_rate": case["config"]}}
            })));
            let lr = tc.optimizer.and_then(|o| o.learning_rate).unwrap();
            let s = schedule(&lr).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (&step, want) in steps.iter().zip(case["values"].as_array().unwrap()) {
                let (got, want) = (s.at(step) as f64, want.as_f64().unwrap());
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{name} at step {step}: {got} vs Keras {want}"
                );
            }
        }
    }
}
