//! Data-parallel training as `tf.distribute.MirroredStrategy` does it: the global batch split
//! across the replicas (the first `batch mod replicas` one row more), each replica's loss scaled
//! by the global batch size so that the gradients summed across replicas (the all-reduce) are
//! those of the global batch's mean loss, and every replica applying the same update to its own
//! copy of the weights and the optimizer's slots. Batch normalizations use each replica's own
//! batch statistics, and each replica keeps its own moving statistics, updated from its own
//! batches: Keras creates them with aggregation "none", which TensorFlow updates replica by
//! replica, and saves the first replica's.

use super::{KerasOptimizer, StepOutput, TrainStep};
use crate::collective::Collective;
use crate::strategy::{on_pools, Job};
use crate::RuntimeError;
use ir::Tensor;
use std::ops::Range;

/// A replica other than the first: its step, its copies of the weights and the optimizer (made
/// from the first replica's at the first step) and its own moving statistics.
struct Replica {
    step: TrainStep,
    weights: Vec<Tensor>,
    optimizer: Option<KerasOptimizer>,
    state: Vec<Tensor>,
}

/// The replicas of a mirrored training step after the first (whose step, weights and optimizer
/// the caller keeps), and the collective that sums their gradients.
pub struct Mirrored {
    others: Vec<Replica>,
    collective: Box<dyn Collective>,
    /// Each state tensor's momentum (batch normalization's moving statistics).
    momentum: Vec<f32>,
    /// Seconds spent in the collective (summing gradients and losses, joining predictions), and
    /// in whole steps, so far.
    pub collective_seconds: f64,
    pub step_seconds: f64,
    /// Steps whose gradients went to the collective during the backward pass.
    pub streamed_steps: usize,
}

/// A CPU training step, shared by the threads of a mirrored step.
struct Shared<'a>(&'a TrainStep);

// SAFETY: a `Shared` is made only for a step whose session is the CPU one
// (`TrainStep::cpu_session` is `Some`). Everything such a step holds is `Sync`: the planned
// session (its arenas behind a mutex), the weight list, the profile behind a mutex and an
// atomic flag. The CUDA session, the one part that is not, is not there.
unsafe impl Sync for Shared<'_> {}

impl Shared<'_> {
    fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.0.cpu_session().and_then(|s| s.pool().as_deref())
    }

    fn run(&self, part: &Part, weights: &[Tensor], state: &[Tensor]) -> Result<StepOutput, RuntimeError> {
        self.0.run_full(&part.inputs, &part.labels, weights, state, &part.noise)
    }
}

/// One replica's share of the batch.
struct Part {
    rows: usize,
    inputs: Vec<Tensor>,
    labels: Vec<Tensor>,
    noise: Vec<Tensor>,
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Plan(m.into())
}

/// The rows `r` of every tensor with `n` rows; others whole.
fn rows_of(ts: &[Tensor], n: usize, r: &Range<usize>) -> Result<Vec<Tensor>, RuntimeError> {
    let idx: Vec<usize> = r.clone().collect();
    ts.iter().map(|t| if t.shape().first() == Some(&n) { Ok(t.gather_rows(&idx)?) } else { Ok(t.clone()) }).collect()
}

impl Mirrored {
    /// Replicas 2.. of a mirrored step: one training step each, built like the first replica's
    /// (the same graph, losses and trained weights) on its own device.
    /// `momentum` is each state tensor's (moving statistic's) momentum.
    pub fn new(others: Vec<TrainStep>, collective: Box<dyn Collective>, momentum: Vec<f32>) -> Mirrored {
        let others = others
            .into_iter()
            .map(|step| Replica { step, weights: Vec::new(), optimizer: None, state: Vec::new() })
            .collect();
        Mirrored { others, collective, momentum, collective_seconds: 0.0, step_seconds: 0.0, streamed_steps: 0 }
    }

    /// Replica `r`'s moving statistics (`r` ≥ 1; empty before the first step).
    pub fn state(&self, r: usize) -> Option<&[Tensor]> {
        r.checked_sub(1).and_then(|i| self.others.get(i)).map(|o| o.state.as_slice())
    }

    /// How many replicas, the first included.
    pub fn replicas(&self) -> usize {
        self.others.len() + 1
    }

    /// Replica `r`'s weights (`r` ≥ 1; empty before the first step).
    pub fn weights(&self, r: usize) -> Option<&[Tensor]> {
        r.checked_sub(1).and_then(|i| self.others.get(i)).map(|o| o.weights.as_slice())
    }

    /// Where this process's replicas sit among all the run's: the first's index, how many
    /// there are here, and in all ([`Collective::span`]).
    pub fn span(&self) -> (usize, usize, usize) {
        let (first, total) = self.collective.span(self.replicas());
        (first, self.replicas(), total)
    }

    /// One global step over a batch of `batch` rows: each replica runs `first`'s step on its
    /// share of the batch, the gradients (each scaled by its share of the global batch) are
    /// summed across replicas, and every replica applies the same update (the first to
    /// `weights` and `optimizer`, with moving statistics `state`). `inputs` and `labels` hold
    /// the rows of this process's replicas' shares, in order (in one process, the whole batch;
    /// a worker holds its own); `noise` the whole batch's. The output is the global batch's loss
    /// as one device would report it, this process's replicas' predictions in batch order
    /// (float32 with no rows where they had none), with the first replica's batch statistics
    /// (for the caller's `state`; the other replicas update their own); no gradients. A step
    /// whose loss is not finite changes no weights.
    #[allow(clippy::too_many_arguments)]
    pub fn run_update(
        &mut self,
        first: &TrainStep,
        weights: &mut [Tensor],
        optimizer: &mut KerasOptimizer,
        inputs: &[Tensor],
        labels: &[Tensor],
        state: &[Tensor],
        noise: &[Tensor],
        batch: usize,
    ) -> Result<StepOutput, RuntimeError> {
        let n = batch;
        let held = inputs.first().and_then(|t| t.shape().first().copied()).ok_or_else(|| err("no batch"))?;
        let step_start = std::time::Instant::now();
        for o in &mut self.others {
            if o.optimizer.is_none() {
                o.weights = weights.to_vec();
                o.optimizer = Some(optimizer.clone());
                o.state = state.to_vec();
            }
        }
        // Across workers: the global batch is split over every worker's replicas, this one
        // taking the shares of its own.
        let (first_replica, replicas, total) = self.span();
        let cut = crate::strategy::shares(n, total);
        let mine = &cut[first_replica..first_replica + replicas];
        let (lo, hi) = (mine.first().map_or(0, |r| r.start), mine.last().map_or(0, |r| r.end));
        if hi - lo != held {
            return Err(err(format!(
                "this process holds {held} rows of a batch of {n}; its replicas' shares are {} rows",
                hi - lo
            )));
        }
        let parts = mine
            .iter()
            .map(|r| {
                let here = r.start - lo..r.end - lo;
                Ok(Part {
                    rows: r.len(),
                    inputs: rows_of(inputs, held, &here)?,
                    labels: rows_of(labels, held, &here)?,
                    noise: rows_of(noise, n, r)?,
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let values: usize = weights.iter().map(Tensor::len).sum();
        if self.others.is_empty() && first.cpu_session().is_some() && self.collective.streams(values) {
            let part = parts.into_iter().next().ok_or_else(|| err("no replica"))?;
            return self.run_streamed(first, weights, optimizer, &part, n, state, step_start);
        }
        let steps: Vec<&TrainStep> = std::iter::once(first).chain(self.others.iter().map(|o| &o.step)).collect();
        let ws: Vec<&[Tensor]> =
            std::iter::once(&*weights).chain(self.others.iter().map(|o| o.weights.as_slice())).collect();
        let states: Vec<&[Tensor]> =
            std::iter::once(state).chain(self.others.iter().map(|o| o.state.as_slice())).collect();
        let outs = forward_backward(&steps, &ws, &parts, &states)?;

        // The global loss, and each replica's gradients scaled by its share, one buffer each.
        let sizes: Vec<usize> = weights.iter().map(Tensor::len).collect();
        let total: usize = sizes.iter().sum();
        let mut bufs: Vec<Vec<f32>> = Vec::with_capacity(outs.len());
        for (o, p) in outs.iter().zip(&parts) {
            let mut buf = Vec::with_capacity(total);
            match o {
                Some(o) => {
                    let share = p.rows as f64 / n as f64;
                    for g in &o.grads {
                        let g = g.as_f32().ok_or_else(|| err("gradient is not float32"))?;
                        buf.extend(g.iter().map(|&x| x * share as f32));
                    }
                    if buf.len() != total {
                        return Err(err(format!("a replica gave {} gradient values, {total} expected", buf.len())));
                    }
                }
                None => buf.resize(total, 0.0),
            }
            bufs.push(buf);
        }
        let mut refs: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        let t0 = std::time::Instant::now();
        self.collective.all_reduce_sum(&mut refs)?;
        for (o, out) in self.others.iter_mut().zip(outs.iter().skip(1)) {
            for (i, batch) in out.iter().flat_map(|out| &out.batch_stats) {
                let (Some(s), Some(&m)) = (o.state.get_mut(*i), self.momentum.get(*i)) else {
                    return Err(err("a batch statistic without its moving statistic"));
                };
                super::moving_update(s, batch, m)?;
            }
        }
        let rows: Vec<usize> = parts.iter().map(|p| p.rows).collect();
        let output = self.global_output(outs, &rows, n, first.outputs())?;
        self.collective_seconds += t0.elapsed().as_secs_f64();
        if output.loss.is_finite() {
            self.update(first, weights, optimizer, &bufs, &sizes)?;
        }
        self.step_seconds += step_start.elapsed().as_secs_f64();
        Ok(output)
    }

    /// [`Mirrored::run_update`] for a worker of one CPU replica whose collective streams: the
    /// gradients go to the collective as the backward pass writes them (scaled by the
    /// replica's share, as the buffers of the other path are), and the sum comes back once
    /// the last bucket is summed. The collective's time is what is left of it after the
    /// backward pass: the part the overlap did not hide.
    #[allow(clippy::too_many_arguments)]
    fn run_streamed(
        &mut self,
        first: &TrainStep,
        weights: &mut [Tensor],
        optimizer: &mut KerasOptimizer,
        part: &Part,
        n: usize,
        state: &[Tensor],
        step_start: std::time::Instant,
    ) -> Result<StepOutput, RuntimeError> {
        let sizes: Vec<usize> = weights.iter().map(Tensor::len).collect();
        let offsets = offsets(&sizes);
        let total = offsets[sizes.len()];
        let share = part.rows as f64 / n as f64;
        let mut summed = vec![0f32; total];
        let mut out: Option<StepOutput> = None;
        let mut produced = 0.0;
        let t0 = std::time::Instant::now();
        {
            let w: &[Tensor] = weights;
            self.collective.sum_while(
                total,
                &mut |sink| {
                    let p0 = std::time::Instant::now();
                    if part.rows == 0 {
                        // No rows of this batch here: this worker's share of the sum is zero.
                        sink.put(0, &vec![0.0; total], 1.0);
                    } else {
                        let (x, y, z) = (&part.inputs, &part.labels, &part.noise);
                        let starts = &offsets[..sizes.len()];
                        out = Some(first.run_into_sink(x, y, w, state, z, sink, starts, share as f32)?);
                    }
                    produced = p0.elapsed().as_secs_f64();
                    Ok(())
                },
                &mut summed,
            )?;
        }
        let output = self.global_output(vec![out], &[part.rows], n, first.outputs())?;
        self.collective_seconds += t0.elapsed().as_secs_f64() - produced;
        self.streamed_steps += 1;
        if output.loss.is_finite() {
            self.update(first, weights, optimizer, &[summed], &sizes)?;
        }
        self.step_seconds += step_start.elapsed().as_secs_f64();
        Ok(output)
    }

    /// The step's output from this process's replicas' outputs (`rows` each, of a batch of
    /// `n`): the global batch's loss and each output's, every replica's weighted by its share
    /// and summed across workers, with the predictions and statistics of [`gather`].
    fn global_output(
        &self,
        outs: Vec<Option<StepOutput>>,
        rows: &[usize],
        n: usize,
        n_out: usize,
    ) -> Result<StepOutput, RuntimeError> {
        let (mut loss, mut losses) = (0f64, vec![0f64; n_out]);
        for (o, &r) in outs.iter().zip(rows) {
            if let Some(o) = o {
                let share = r as f64 / n as f64;
                loss += f64::from(o.loss) * share;
                losses.iter_mut().zip(&o.losses).for_each(|(a, &l)| *a += f64::from(l) * share);
            }
        }
        let mut totals: Vec<f64> = std::iter::once(loss).chain(losses).collect();
        self.collective.sum_across(&mut totals)?;
        gather(outs, totals[0] as f32, totals[1..].iter().map(|&l| l as f32).collect())
    }

    /// Every replica applies the update of the summed gradients in its own buffer.
    fn update(
        &mut self,
        first: &TrainStep,
        weights: &mut [Tensor],
        optimizer: &mut KerasOptimizer,
        bufs: &[Vec<f32>],
        sizes: &[usize],
    ) -> Result<(), RuntimeError> {
        let offsets = offsets(sizes);
        let apply = |w: &mut [Tensor], opt: &mut KerasOptimizer, buf: &[f32]| {
            opt.apply_with(w, |i: usize| &buf[offsets[i]..offsets[i + 1]])
        };
        let mut jobs: Vec<(&mut [Tensor], &mut KerasOptimizer, &TrainStep)> = vec![(weights, optimizer, first)];
        for o in &mut self.others {
            let opt = o.optimizer.as_mut().ok_or_else(|| err("a replica has no optimizer"))?;
            jobs.push((&mut o.weights, opt, &o.step));
        }
        if jobs.iter().all(|(_, _, s)| s.cpu_session().is_some()) {
            let apply = &apply;
            let work: Vec<Job<'_, Result<(), RuntimeError>>> = jobs
                .into_iter()
                .zip(bufs)
                .map(|((w, opt, step), buf)| {
                    let pool = step.cpu_session().and_then(|s| s.pool().as_deref());
                    (pool, Box::new(move || apply(w, opt, buf)) as Box<dyn FnOnce() -> _ + Send>)
                })
                .collect();
            on_pools(work)?.into_iter().collect()
        } else {
            // GPU replicas take their turn (a CUDA session stays on its thread).
            jobs.into_iter().zip(bufs).try_for_each(|((w, opt, _), buf)| apply(w, opt, buf))
        }
    }
}

/// Where each of these buffers starts in their concatenation, and (last) where it ends.
fn offsets(sizes: &[usize]) -> Vec<usize> {
    std::iter::once(0)
        .chain(sizes.iter().scan(0, |a, &s| {
            *a += s;
            Some(*a)
        }))
        .collect()
}

/// Each replica's step on its part (`None` for a replica without rows): all at once on the
/// CPU, each on a thread of its own; in turn where a replica is on a GPU.
fn forward_backward(
    steps: &[&TrainStep],
    ws: &[&[Tensor]],
    parts: &[Part],
    states: &[&[Tensor]],
) -> Result<Vec<Option<StepOutput>>, RuntimeError> {
    let shared: Option<Vec<Shared>> = steps.iter().map(|s| s.cpu_session().map(|_| Shared(s))).collect();
    let results: Vec<Option<Result<StepOutput, RuntimeError>>> = match &shared {
        Some(shared) => {
            let mut jobs: Vec<Job<'_, Result<StepOutput, RuntimeError>>> = Vec::new();
            let mut ran = Vec::new();
            for ((s, p), (&w, &state)) in shared.iter().zip(parts).zip(ws.iter().zip(states)) {
                ran.push(p.rows > 0);
                if p.rows > 0 {
                    jobs.push((s.pool(), Box::new(move || s.run(p, w, state))));
                }
            }
            let mut done = on_pools(jobs)?.into_iter();
            ran.into_iter().map(|r| if r { done.next() } else { None }).collect()
        }
        None => steps
            .iter()
            .zip(parts)
            .zip(ws.iter().zip(states))
            .map(|((s, p), (&w, &state))| (p.rows > 0).then(|| s.run_full(&p.inputs, &p.labels, w, state, &p.noise)))
            .collect(),
    };
    results.into_iter().map(Option::transpose).collect()
}

/// The step's output of the replicas' outputs (in replica order; `None` for a replica without
/// rows), with the first replica's batch statistics (none where it had no rows: a worker
/// whose replicas had no rows of a short last batch keeps its statistics).
fn gather(outs: Vec<Option<StepOutput>>, loss: f32, losses: Vec<f32>) -> Result<StepOutput, RuntimeError> {
    let ran: Vec<StepOutput> = outs.into_iter().flatten().collect();
    let n_out = losses.len();
    let preds = (0..n_out)
        .map(|k| match ran.first() {
            None => Ok(Tensor::zeros(&[0])),
            Some(_) => Ok(Tensor::concat_rows(&ran.iter().map(|o| o.preds[k].clone()).collect::<Vec<_>>())?),
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    let batch_stats = ran.first().map(|f| f.batch_stats.clone()).unwrap_or_default();
    let pred = preds.first().cloned().ok_or_else(|| err("the model has no output"))?;
    Ok(StepOutput { loss, losses, grads: Vec::new(), pred, preds, batch_stats })
}
