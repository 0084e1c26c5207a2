//! `kerasc fit`: fine-tuning a saved model with Keras's numbers, writing a file Keras loads
//! back.
//!
//! [`fit`] reads top to bottom: the run's configuration from the file and the flags
//! (`config`), the data (`data`), the training step; then each epoch: its steps
//! ([`Trainer::train_epoch`]), validation ([`Trainer::validate`]), the epoch's line and history
//! (`history`), a checkpoint (`checkpoint`); at the end the trained file and the history.

mod checkpoint;
mod config;
mod data;
mod error;
mod history;
mod keras_state;
mod metrics;
mod options;
mod random;
mod shard;

pub use error::FitError;
pub use history::History;
pub use options::{DataOptions, Event, FitOptions, Listener, OptimizerFlags};

use crate::frontend::keras::save::{read_optimizer, save_trained, OptimizerState as SavedOptimizer};
use crate::frontend::keras::training_config::TrainingConfig;
use crate::ir::{DType, Shape, Tensor, ValueId};
use crate::runtime::training::{KerasOptimizer, Loss, Mirrored, Optimizer, TrainOptions, TrainStep};
use crate::Model;
use config::TrainingMode;
use error::invalid;
use history::EarlyStopping;
use metrics::Metric;
use random::SplitMix;
use std::fmt::Write as _;
use std::path::Path;

/// Trains `model` (loaded from `source`) as `options` say; writes the result and returns the
/// history.
pub fn fit(model: &Model, source: &Path, options: &FitOptions) -> Result<History, FitError> {
    if model.info.format == crate::ModelFormat::Onnx {
        return Err(invalid(
            "fine-tuning ONNX models is not implemented yet: kerasc fit trains Keras .h5 and .keras files",
        ));
    }
    if model.info.backend.as_deref() == Some("theano") {
        return Err(invalid(
            "fine-tuning a Keras 2 file written on Theano is not implemented yet (its convolution kernels are stored flipped; kerasc runs it, but would write them back the other way round)",
        ));
    }
    if let Some(crate::frontend::text::HostInput::Cross(_, c)) =
        model.host_inputs.iter().find(|h| matches!(h, crate::frontend::text::HostInput::Cross(..)))
    {
        return Err(invalid(format!(
            "fine-tuning a model whose {} crosses several inputs on the host is not implemented yet; `run` takes it",
            c.layer
        )));
    }
    let tc = TrainingConfig::from_value(model.info.training_config.as_ref());
    let g = &model.graph;
    let (n_in, n_out) = (g.inputs().len(), g.outputs().len());
    let out_names: Vec<String> =
        (0..n_out).map(|k| model.info.output_names.get(k).cloned().unwrap_or_else(|| format!("output_{k}"))).collect();
    let losses = config::losses(&tc, &out_names, options)?;
    let label_dtypes: Vec<DType> = losses.iter().map(|l| if l.sparse() { DType::I32 } else { DType::F32 }).collect();
    let optimizer = config::optimizer(&tc, &options.optimizer)?;
    let frozen = config::frozen_layers(model, options)?;
    let trainable = config::trainable_weights(model, &frozen);
    let mut mode = config::training_mode(model, &frozen, options.no_dropout)?;
    mode.options.cuda = options.cuda.clone();
    mode.options.pool = options.pool.clone();
    mode.options.placement = options.placement.clone();
    mode.options.memory_limit = options.memory_limit;
    mode.options.loss_weights = tc.loss_weights(&out_names).map_err(invalid)?;
    let metrics = config::metrics(model, &tc, &out_names, &losses, options)?;

    let inputs: Vec<(String, DType)> = (0..n_in)
        .map(|k| {
            let v = g.inputs()[k];
            (model.info.input_names.get(k).cloned().unwrap_or_else(|| g.value(v).name.clone()), g.value(v).ty.dtype)
        })
        .collect();
    let outputs: Vec<(String, DType, Shape)> = out_names
        .iter()
        .zip(&label_dtypes)
        .zip(g.outputs())
        .map(|((n, &d), &v)| (n.clone(), d, g.value(v).ty.shape.clone()))
        .collect();
    // One process reads the whole data; a worker of several, its shards of it.
    let (what, files) = data::Source::of(&options.data)?;
    let (mut data, mut shards) = match &options.worker {
        None => {
            let arrays = data::through_host(model, files.read_all()?)?;
            (Some(data::training_data(&what, &arrays, &inputs, &outputs, options.validation_split)?), None)
        }
        Some(_) => (None, Some(shard::Shards::open(what, files, &inputs, &outputs, options.validation_split)?)),
    };

    let loss_spec: Vec<(Loss, DType)> = losses.iter().copied().zip(label_dtypes.iter().copied()).collect();
    let mut step = TrainStep::with_losses(g, &loss_spec, &trainable, &mode.options)?;
    let mirror = if options.replicas.len() >= 2 || options.worker.is_some() {
        let cache = options.cuda.as_ref().map(|c| c.cache_dir.clone()).unwrap_or_else(std::env::temp_dir);
        let others = options
            .replicas
            .iter()
            .skip(1)
            .map(|d| {
                let o = TrainOptions {
                    cuda: d.cuda_options(cache.clone(), options.memory_limit),
                    pool: d.pool().cloned(),
                    ..mode.options.clone()
                };
                TrainStep::with_losses(g, &loss_spec, &trainable, &o)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let all_reduce: Box<dyn crate::runtime::collective::Collective> = match &options.worker {
            Some(w) => Box::new(w.collective.clone()),
            None => collective(&options.replicas, options.verbose),
        };
        Some(Mirrored::new(others, all_reduce, mode.momentum.clone()))
    } else {
        None
    };
    if options.profile || options.report.is_some() {
        step.enable_profile();
    }
    // Validation runs in inference mode (moving statistics, no noise); on a GPU in a step of
    // its own, since the training step's session updates the weights it keeps on the device.
    let eval_step =
        if mode.options.batch_norm.is_empty() && mode.options.noise.is_empty() && mode.options.cuda.is_none() {
            None
        } else {
            let o = TrainOptions {
                state: mode.options.state.clone(),
                cuda: mode.options.cuda.clone(),
                pool: mode.options.pool.clone(),
                memory_limit: mode.options.memory_limit,
                loss_weights: mode.options.loss_weights.clone(),
                ..TrainOptions::default()
            };
            Some(TrainStep::with_losses(g, &loss_spec, &trainable, &o)?)
        };
    // What is saved: the trained weights, then the moving statistics.
    let saved: Vec<ValueId> = trainable.iter().chain(&mode.options.state).copied().collect();
    let state = mode.options.state.iter().filter_map(|v| g.constant(*v).cloned()).collect();
    let step_metrics = metrics.iter().map(|(_, name, _)| (name.clone(), Vec::new())).collect();
    let mut t = Trainer {
        step,
        mirror,
        eval_step,
        metrics,
        mode,
        n_out,
        weights: trainable.iter().filter_map(|v| g.constant(*v).cloned()).collect(),
        state,
        optimizer,
        hist: History::default(),
        total_steps: 0,
        step_metrics,
    };
    // Keras's load_model + fit continues from the optimizer state the file keeps (its slots and
    // iteration count), when the file keeps all of it for the optimizer it trains with.
    let weight_names: Vec<String> = trainable.iter().map(|v| g.value(*v).name.clone()).collect();
    let weight_shapes: Vec<Vec<usize>> = t.weights.iter().map(|w| w.shape().to_vec()).collect();
    let same_optimizer = keras_state::matches_file(&tc, &t.optimizer, &options.optimizer);
    if same_optimizer && !options.resume {
        if let Some(saved) = read_optimizer(source)? {
            match keras_state::restore(&mut t.optimizer, &saved, &weight_shapes) {
                Ok(()) if options.verbose > 0 => {
                    eprintln!("continuing from the file's optimizer state (iteration {})", saved.iterations)
                }
                Ok(()) => {}
                Err(why) if options.verbose > 0 => {
                    eprintln!("note: {why}: the optimizer starts afresh, as Keras's would")
                }
                Err(_) => {}
            }
        }
    }
    let mut start_epoch = 0;
    let mut stopper = EarlyStopping::new(options.early_stopping);
    if options.resume {
        let dir = options.checkpoint.as_ref().ok_or_else(|| invalid("--resume needs --checkpoint DIR"))?;
        let ck = checkpoint::read_checkpoint(dir, source, &saved, model)?;
        let mut all = ck.weights;
        t.state = all.split_off(trainable.len());
        t.weights = all;
        t.optimizer.restore(ck.optimizer);
        t.hist = ck.history;
        stopper = EarlyStopping { patience: options.early_stopping, ..ck.stopper };
        start_epoch = ck.epoch;
        if options.verbose > 0 {
            eprintln!("resuming after epoch {start_epoch} from {}", dir.display());
        }
    }
    t.total_steps = t.hist.step_loss.len();
    let first_step = t.total_steps;
    let mut epoch_ms = Vec::new();
    let bs = options.batch_size.max(1);
    let span = t.mirror.as_ref().map_or((0, 1, 1), Mirrored::span);
    let val = match (&mut data, &shards) {
        (Some(d), _) => d.val.take().map(|(x, y)| {
            let rows = x[0].shape()[0];
            (x, y, shard::Batches::whole((0..rows).collect(), bs))
        }),
        (None, Some(s)) => s.validation(model, bs, span, &inputs, &outputs)?,
        (None, None) => None,
    };

    for epoch in start_epoch..options.epochs {
        if stopper.stopped {
            break;
        }
        let t0 = std::time::Instant::now();
        let n = data.as_ref().map_or_else(|| shards.as_ref().map_or(0, |s| s.n), |d| d.x[0].shape()[0]);
        let order: Vec<usize> =
            if options.shuffles() { random::shuffled(n, options.seed, epoch) } else { (0..n).collect() };
        let e = match (&data, &mut shards) {
            (Some(d), _) => t.train_epoch(&d.x, &d.y, &shard::Batches::whole(order, bs), epoch, options)?,
            (None, Some(s)) => {
                let (x, y, batches) = s.epoch(model, &order, bs, span, &inputs, &outputs)?;
                drop(order);
                if epoch == start_epoch && options.verbose > 0 {
                    let held = x.first().and_then(|t| t.shape().first()).copied().unwrap_or(0);
                    eprintln!("worker {} holds {held} of the {n} training samples this epoch (its replicas' shares of each batch)", span.0);
                }
                t.train_epoch(x, y, &batches, epoch, options)?
            }
            (None, None) => return Err(invalid("no training data")),
        };
        // Keras's epoch loss: the batch losses weighted by their batch's size.
        let samples = e.samples.max(1) as f64;
        t.hist.push("loss", e.loss / samples);
        // Milliseconds, with a decimal under 100 (a small model's epoch takes a few).
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        epoch_ms.push((epoch + 1, ms));
        let ms = if ms < 100.0 { format!("{ms:.1}") } else { format!("{ms:.0}") };
        let mut line = format!(
            "Epoch {}/{} - {}/{} - {ms}ms - loss: {:.4}",
            epoch + 1,
            options.epochs,
            e.steps,
            e.steps,
            e.loss / samples
        );
        if n_out > 1 {
            for (name, s) in out_names.iter().zip(&e.output_losses) {
                t.record(&mut line, &format!("{name}_loss"), s / samples);
            }
        }
        for (i, s) in e.metrics.iter().enumerate() {
            let name = t.metrics[i].1.clone();
            t.record(&mut line, &name, s / e.samples.max(1) as f64);
        }
        let mut monitored = e.loss / samples;
        if let Some((xv, yv, batches)) = &val {
            let v = t.validate(xv, yv, batches, options)?;
            let nv = v.samples.max(1) as f64;
            monitored = v.loss / nv;
            t.record(&mut line, "val_loss", v.loss / nv);
            if n_out > 1 {
                for (name, s) in out_names.iter().zip(&v.output_losses) {
                    t.record(&mut line, &format!("val_{name}_loss"), s / nv);
                }
            }
            for (i, s) in v.metrics.iter().enumerate() {
                let name = format!("val_{}", t.metrics[i].1);
                t.record(&mut line, &name, s / nv);
            }
        }
        if let Some(l) = &options.listener {
            let logs: Vec<(String, f64)> =
                t.hist.series.iter().filter_map(|(k, v)| v.last().map(|&x| (k.clone(), x))).collect();
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if !(l.0)(Event::EpochEnd { epoch, epochs: options.epochs, steps: e.steps, ms, logs: &logs }) {
                return Err(FitError::Interrupted);
            }
        } else if options.verbose > 0 {
            eprintln!("{line}");
        }
        stopper.update(monitored);
        // Every worker must hold the same weights: a cheap checksum compared across them.
        if let Some(w) = &options.worker {
            let sum: f64 =
                t.weights.iter().flat_map(|w| w.to_f64_vec()).enumerate().map(|(i, v)| v * (1 + i % 7) as f64).sum();
            if !w.collective.agree(sum).map_err(FitError::Runtime)? {
                return Err(invalid(format!(
                    "the workers' weights differ after epoch {} (worker {} of {}): stopping; nothing was written",
                    epoch + 1,
                    w.rank,
                    w.size
                )));
            }
        }
        let writer = options.worker.as_ref().is_none_or(|w| w.rank == 0);
        if let (Some(dir), true) = (&options.checkpoint, writer) {
            let all: Vec<Tensor> = t.weights.iter().chain(&t.state).cloned().collect();
            checkpoint::write_checkpoint(dir, source, model, &saved, &all, &t.optimizer, &t.hist, &stopper, epoch + 1)?;
        }
        if stopper.stopped && options.verbose > 0 {
            eprintln!("early stopping: no improvement for {} epoch(s)", stopper.wait);
        }
    }

    let profiled = t.total_steps - first_step;
    if let (Some(w), Some(m)) = (&options.worker, &t.mirror) {
        if options.verbose > 0 && profiled > 0 {
            eprintln!(
                "{} workers: a step took {:.2} ms, {:.2} ms of it in the collective over {} ({:.0} %){}",
                w.size,
                m.step_seconds * 1e3 / profiled as f64,
                m.collective_seconds * 1e3 / profiled as f64,
                w.collective.name(),
                100.0 * m.collective_seconds / m.step_seconds.max(1e-12),
                if m.streamed_steps > 0 {
                    "; the gradients went bucket by bucket during the backward pass, the rest waited after it"
                } else {
                    ""
                }
            );
        }
    }
    if options.profile {
        eprint!("{}", profile_text(&t.step.profile(), profiled.max(1)));
    }
    let updates: Vec<(String, Tensor)> = saved
        .iter()
        .zip(t.weights.iter().chain(&t.state))
        .filter_map(|(v, w)| model.weight_sources.get(v).map(|p| (p.clone(), w.clone())))
        .collect();
    // The optimizer's variables too, as Keras would have saved them, where its own optimizer
    // (rebuilt from the file's training_config) keeps the same ones.
    let variables =
        if same_optimizer { keras_state::to_file(&t.optimizer, &weight_names, &weight_shapes)? } else { Vec::new() };
    let state = SavedOptimizer {
        iterations: t.optimizer.iterations() as i64,
        learning_rate: t.optimizer.learning_rate(),
        variables,
    };
    // Across workers, rank 0 alone writes (every worker holds the same weights).
    if options.worker.as_ref().is_some_and(|w| w.rank != 0) {
        return Ok(t.hist);
    }
    if let Some(note) = save_trained(source, &options.output, &updates, Some(&state))? {
        if options.verbose > 0 {
            eprintln!("note: {note}");
        }
    }
    if let Some(h) = &options.history {
        let text = serde_json::to_string_pretty(&t.hist.to_json()).map_err(|e| invalid(e.to_string()))?;
        crate::write_atomic(h, text.as_bytes()).map_err(|e| invalid(format!("{}: {e}", h.display())))?;
    }
    if let Some(path) = &options.report {
        let device = match (options.device, &options.cuda) {
            (Some(d), _) => d.to_string(),
            (None, Some(c)) => format!("/GPU:{}", c.ordinal),
            (None, None) => "/CPU:0".into(),
        };
        let learning_rate: Vec<f64> =
            (0..t.total_steps as u64).map(|i| f64::from(t.optimizer.schedule.at(i))).collect();
        let model_name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let page = crate::report::fit_html::fit_html(&crate::report::fit_html::FitReport {
            model: &model_name,
            device: &device,
            history: &t.hist,
            step_metrics: &t.step_metrics,
            first_step,
            learning_rate: &learning_rate,
            epoch_ms: &epoch_ms,
            profile: &t.step.profile(),
            profiled_steps: profiled,
        });
        crate::write_atomic(path, page.as_bytes()).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(t.hist)
}

/// Sums over the batches of one pass: the loss (per batch for training, per sample for
/// validation), each output's loss, and each metric over samples.
struct Totals {
    steps: usize,
    samples: usize,
    loss: f64,
    output_losses: Vec<f64>,
    metrics: Vec<f64>,
}

/// The all-reduce of a mirrored run: NCCL where every replica is a GPU of its own, else (or
/// without the NCCL library, which is said) the sum in this process.
fn collective(replicas: &[crate::LogicalDevice], verbose: u8) -> Box<dyn crate::runtime::collective::Collective> {
    let gpus: Option<Vec<usize>> = replicas.iter().map(crate::LogicalDevice::gpu_ordinal).collect();
    let distinct = |o: &Vec<usize>| o.iter().enumerate().all(|(i, a)| !o[..i].contains(a));
    match gpus {
        Some(o) if o.len() >= 2 && distinct(&o) => match crate::runtime::cuda::Nccl::new(&o) {
            Ok(n) => Box::new(n),
            Err(e) => {
                if verbose > 0 {
                    eprintln!("note: {e}; the replicas' gradients are summed on the host");
                }
                Box::new(crate::runtime::collective::InProcess)
            }
        },
        _ => Box::new(crate::runtime::collective::InProcess),
    }
}

/// The state a run carries from step to step.
struct Trainer {
    step: TrainStep,
    /// The other replicas of a mirrored run (`step`, `weights` and `optimizer` are the first's).
    mirror: Option<Mirrored>,
    eval_step: Option<TrainStep>,
    metrics: Vec<(usize, String, Metric)>,
    mode: TrainingMode,
    n_out: usize,
    weights: Vec<Tensor>,
    /// Batch normalizations' moving statistics.
    state: Vec<Tensor>,
    optimizer: KerasOptimizer,
    hist: History,
    total_steps: usize,
    /// Each metric on each step's batch, for `--report`.
    step_metrics: Vec<(String, Vec<f64>)>,
}

impl Trainer {
    /// One epoch of training steps over `x`/`y` (shuffled unless `--no-shuffle`), each followed by
    /// the optimizer's update and the moving statistics' update.
    fn train_epoch(
        &mut self,
        x: &[Tensor],
        y: &[Tensor],
        batches: &shard::Batches,
        epoch: usize,
        options: &FitOptions,
    ) -> Result<Totals, FitError> {
        let steps = batches.len();
        let mut tot = Totals {
            steps,
            samples: 0,
            loss: 0.0,
            output_losses: vec![0.0; self.n_out],
            metrics: vec![0.0; self.metrics.len()],
        };
        let bar =
            (options.verbose == 1 && options.listener.is_none()).then(|| progress_bar(steps, epoch, options.epochs));
        let batch = |b: usize| batches.get(b).0;
        // Two batch buffers: the next batch is gathered while the current step runs.
        let (mut xb, mut yb, mut xn, mut yn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if steps > 0 {
            data::rows_into(x, batch(0), &mut xb)?;
            data::rows_into(y, batch(0), &mut yb)?;
        }
        for b in 0..steps {
            if options.abort_after_steps == Some(self.total_steps) {
                // Test hook: die like a killed process, mid-epoch, without any cleanup.
                std::process::abort();
            }
            let (idx, rows) = batches.get(b);
            let noise = self.noise(&xb, &yb, rows, options.seed)?;
            let mut next: Result<(), FitError> = Ok(());
            let out = rayon::in_place_scope(|sc| {
                if b + 1 < steps {
                    let (xn, yn, next) = (&mut xn, &mut yn, &mut next);
                    sc.spawn(move |_| {
                        *next = data::rows_into(x, batch(b + 1), xn).and_then(|_| data::rows_into(y, batch(b + 1), yn));
                    });
                }
                match &mut self.mirror {
                    Some(m) => {
                        let (w, o) = (&mut self.weights, &mut self.optimizer);
                        m.run_update(&self.step, w, o, &xb, &yb, &self.state, &noise, rows)
                    }
                    None => self.step.run_update(&xb, &yb, &mut self.weights, &self.state, &noise, &mut self.optimizer),
                }
            })?;
            next?;
            let l = out.loss;
            if !l.is_finite() {
                return Err(invalid(format!(
                    "the loss became {l} at epoch {}, step {}: stopping; nothing was written (the last checkpoint, if any, holds the last good weights)",
                    epoch + 1,
                    b + 1
                )));
            }
            self.hist.step_loss.push(l as f64);
            self.total_steps += 1;
            // Losses and metrics summed over samples: Keras's epoch loss weights each batch's by
            // its size.
            tot.loss += l as f64 * rows as f64;
            for (s, &v) in tot.output_losses.iter_mut().zip(&out.losses) {
                *s += v as f64 * rows as f64;
            }
            tot.samples += rows;
            // Metrics over the rows held (a worker's), summed across workers.
            let mut sums: Vec<f64> = self
                .metrics
                .iter()
                .map(|(k, _, m)| if idx.is_empty() { 0.0 } else { m.sum(&out.preds[*k], &yb[*k]) })
                .collect();
            if let Some(w) = &options.worker {
                w.collective.sum_across(&mut sums).map_err(FitError::Runtime)?;
            }
            for (i, (s, v)) in tot.metrics.iter_mut().zip(sums).enumerate() {
                *s += v;
                if let Some((_, per_step)) = self.step_metrics.get_mut(i) {
                    per_step.push(v / rows.max(1) as f64);
                }
            }
            if let Some(l) = &options.listener {
                let seen = tot.samples.max(1) as f64;
                let mut logs = vec![("loss".to_string(), tot.loss / seen)];
                logs.extend(tot.metrics.iter().zip(&self.metrics).map(|(s, (_, name, _))| (name.clone(), s / seen)));
                let ev = Event::Step { epoch, epochs: options.epochs, step: b + 1, steps, logs: &logs };
                if !(l.0)(ev) {
                    return Err(FitError::Interrupted);
                }
            }
            if let Some(pb) = &bar {
                let mut msg = format!("loss: {:.4}", tot.loss / tot.samples.max(1) as f64);
                for (s, (_, name, _)) in tot.metrics.iter().zip(&self.metrics) {
                    let _ = write!(msg, " - {name}: {:.4}", s / tot.samples.max(1) as f64);
                }
                pb.set_message(msg);
                pb.inc(1);
            }
            for (i, batch) in &out.batch_stats {
                runtime::training::moving_update(&mut self.state[*i], batch, self.mode.momentum[*i])?;
            }
            std::mem::swap(&mut xb, &mut xn);
            std::mem::swap(&mut yb, &mut yn);
        }
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        // On a GPU the weights were updated on the device: validation, checkpoints and the
        // written model read them here.
        self.step.sync_weights(&mut self.weights, &mut self.optimizer)?;
        Ok(tot)
    }

    /// The noise tensors of the step's active noise layers for one batch: one stream per
    /// (seed, step, layer), so a resumed run draws the same noise.
    /// The whole batch's (`rows` rows; `xb` and `yb` may hold a worker's share of them).
    fn noise(&self, xb: &[Tensor], yb: &[Tensor], rows: usize, seed: u64) -> Result<Vec<Tensor>, FitError> {
        let mut noise = Vec::with_capacity(self.step.noise.len());
        if self.step.noise.is_empty() {
            return Ok(noise);
        }
        let whole = |ts: &[Tensor]| -> Vec<Vec<usize>> {
            ts.iter().map(|t| std::iter::once(rows).chain(t.shape().iter().skip(1).copied()).collect()).collect()
        };
        let (xs, ys) = (whole(xb), whole(yb));
        let shapes = self.step.noise_shapes(&xs, &ys)?;
        for (k, ((_, kind), shape)) in self.step.noise.iter().zip(&shapes).enumerate() {
            let mut rng = SplitMix::new(seed, ((self.total_steps as u64) << 16) ^ k as u64 ^ 0x5EED);
            noise.push(random::noise_tensor(
                *kind,
                shape,
                self.mode.channels_first[k],
                self.mode.broadcast[k],
                &mut rng,
            )?);
        }
        Ok(noise)
    }

    /// The validation data in batches of `bs`, in inference mode; losses and metrics summed over
    /// samples. Mirrored, each batch is split across the replicas as in training and each
    /// replica's share uses that replica's moving statistics (as Keras evaluates under
    /// MirroredStrategy).
    fn validate(
        &self,
        xv: &[Tensor],
        yv: &[Tensor],
        batches: &shard::Batches,
        options: &FitOptions,
    ) -> Result<Totals, FitError> {
        let mut tot = Totals {
            steps: batches.len(),
            samples: (0..batches.len()).map(|b| batches.get(b).1).sum(),
            loss: 0.0,
            output_losses: vec![0.0; self.n_out],
            metrics: vec![0.0; self.metrics.len()],
        };
        // This process's replicas' shares of each batch (a worker's among all the workers').
        let (first, local, total) = self.mirror.as_ref().map_or((0, 1, 1), Mirrored::span);
        let shares = (0..batches.len()).flat_map(|b| {
            let (held, n) = batches.get(b);
            let cut = runtime::strategy::shares(n, total);
            let lo = cut[first].start;
            (0..local).map(move |r| (r, &held[cut[first + r].start - lo..cut[first + r].end - lo]))
        });
        for (r, rows) in shares.filter(|(_, rows)| !rows.is_empty()) {
            let idx: Vec<usize> = rows.to_vec();
            let (xb, yb) = (data::rows_all(xv, &idx)?, data::rows_all(yv, &idx)?);
            let state = match (r, &self.mirror) {
                (0, _) | (_, None) => &self.state[..],
                (r, Some(m)) => m.state(r).filter(|s| !s.is_empty()).unwrap_or(&self.state),
            };
            let o = self.eval_step.as_ref().unwrap_or(&self.step).run_full(&xb, &yb, &self.weights, state, &[])?;
            tot.loss += o.loss as f64 * idx.len() as f64;
            for (acc, &v) in tot.output_losses.iter_mut().zip(&o.losses) {
                *acc += v as f64 * idx.len() as f64;
            }
            for (s, (k, _, m)) in tot.metrics.iter_mut().zip(&self.metrics) {
                *s += m.sum(&o.preds[*k], &yb[*k]);
            }
        }
        if let Some(w) = &options.worker {
            let mut sums: Vec<f64> = [tot.loss].iter().chain(&tot.output_losses).chain(&tot.metrics).copied().collect();
            w.collective.sum_across(&mut sums).map_err(FitError::Runtime)?;
            tot.loss = sums[0];
            let k = 1 + tot.output_losses.len();
            tot.output_losses.copy_from_slice(&sums[1..k]);
            tot.metrics.copy_from_slice(&sums[k..]);
        }
        Ok(tot)
    }

    /// Appends `key: value` to the epoch's history and its line.
    fn record(&mut self, line: &mut String, key: &str, value: f64) {
        self.hist.push(key, value);
        let _ = write!(line, " - {key}: {value:.4}");
    }
}

/// `kerasc fit --profile`'s table: the step's time by op kind, then its most expensive nodes
/// (ms per step, and the share of the step).
fn profile_text(nodes: &[(String, String, f64)], steps: usize) -> String {
    let total: f64 = nodes.iter().map(|n| n.2).sum::<f64>().max(1e-12);
    let per_step = |s: f64| s * 1e3 / steps as f64;
    let mut kinds: Vec<(String, (f64, usize))> = crate::report::by_kind(nodes).into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    let mut out = format!("training step: {:.3} ms over {} node(s), by op kind:\n", per_step(total), nodes.len());
    for (kind, (s, count)) in kinds.iter().take(15) {
        let _ = writeln!(out, "  {:>9.3} ms {:>5.1}%  {kind} ({count})", per_step(*s), 100.0 * s / total);
    }
    out.push_str("most expensive nodes:\n");
    for (name, kind, s) in crate::report::top_ops(nodes) {
        let _ = writeln!(out, "  {:>9.3} ms {:>5.1}%  {name} ({kind})", per_step(*s), 100.0 * s / total);
    }
    out
}

/// Keras's verbose=1: a live bar with steps, elapsed, ETA and the running loss and metrics
/// (drawn only on a terminal); verbose=2 prints the epoch line alone.
fn progress_bar(steps: usize, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    let pb =
        indicatif::ProgressBar::with_draw_target(Some(steps as u64), indicatif::ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("Epoch {prefix} {pos}/{len} [{bar:30}] {elapsed} ETA {eta} {msg}")
    {
        pb.set_style(style.progress_chars("━╸ "));
    }
    pb.set_prefix(format!("{}/{}", epoch + 1, epochs));
    pb
}
