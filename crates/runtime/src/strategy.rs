//! Data parallelism as `tf.distribute.MirroredStrategy` runs inference: each replica takes a
//! share of the global batch (the first `batch mod replicas` replicas one row more), runs it on
//! its own device at the same time as the others, and the outputs are gathered in replica order.

use crate::RuntimeError;
use ir::{Graph, Tensor};
use std::ops::Range;

/// The rows of a global batch of `batch` that each of `replicas` takes, in order: `batch /
/// replicas` each and one more for the first `batch % replicas` (a replica may take none).
pub fn shares(batch: usize, replicas: usize) -> Vec<Range<usize>> {
    let n = replicas.max(1);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = batch / n + usize::from(i < batch % n);
            start += len;
            start - len..start
        })
        .collect()
}

/// Whether the graph's value `v` has a batch axis (its first dimension is not fixed).
pub fn batched(graph: &Graph, v: ir::ValueId) -> bool {
    graph.value(v).ty.shape.dims().first().is_some_and(|d| d.fixed().is_none())
}

/// Each share's inputs: the inputs with a batch axis cut into `shares`' rows, the others given
/// whole to every replica. The inputs must have been checked against the graph.
pub fn split_inputs(
    graph: &Graph,
    inputs: &[Tensor],
    shares: &[Range<usize>],
) -> Result<Vec<Vec<Tensor>>, RuntimeError> {
    shares
        .iter()
        .map(|r| {
            graph
                .inputs()
                .iter()
                .zip(inputs)
                .map(
                    |(&v, t)| {
                        if batched(graph, v) {
                            Ok(t.gather_rows(&r.clone().collect::<Vec<_>>())?)
                        } else {
                            Ok(t.clone())
                        }
                    },
                )
                .collect()
        })
        .collect()
}

/// The work of each replica that has rows of the batch: its index and its inputs.
pub fn split_for(graph: &Graph, inputs: &[Tensor], replicas: usize) -> Result<Vec<(usize, Vec<Tensor>)>, RuntimeError> {
    let batch = crate::check_inputs(graph, inputs)?.ok_or_else(|| {
        RuntimeError::Plan("a mirrored run splits the batch, and no input of this model has a batch axis".into())
    })?;
    let cut = shares(batch, replicas);
    let parts = split_inputs(graph, inputs, &cut)?;
    Ok(parts.into_iter().zip(&cut).enumerate().filter(|(_, (_, r))| !r.is_empty()).map(|(i, (p, _))| (i, p)).collect())
}

/// Runs `graph` mirrored: `run(replica, inputs)` for every replica that has rows of the batch,
/// all at once, each on its replica's thread pool ([`on_pools`]); the outputs with a batch axis
/// are concatenated in replica order, the others are the first replica's.
pub fn run_mirrored<E: Sync>(
    replicas: &[E],
    graph: &Graph,
    inputs: &[Tensor],
    pool: impl Fn(&E) -> Option<&rayon::ThreadPool>,
    run: impl Fn(&E, &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> + Sync,
) -> Result<Vec<Tensor>, RuntimeError> {
    let work = split_for(graph, inputs, replicas.len())?;
    let results = run_each(replicas, &work, pool, &run)?;
    gather(graph, results.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// `run(executors[i], inputs)` for every `(i, inputs)` of `work`, all at once, each on its
/// executor's pool ([`on_pools`]); the results in `work`'s order.
pub fn run_each<E: Sync, R: Send>(
    executors: &[E],
    work: &[(usize, Vec<Tensor>)],
    pool: impl Fn(&E) -> Option<&rayon::ThreadPool>,
    run: &(impl Fn(&E, &[Tensor]) -> R + Sync),
) -> Result<Vec<R>, RuntimeError> {
    let jobs: Vec<Job<'_, R>> = work
        .iter()
        .map(|(i, x)| {
            let e = executors.get(*i).ok_or_else(|| RuntimeError::Plan(format!("no executor {i}")))?;
            Ok((pool(e), Box::new(move || run(e, x)) as Box<dyn FnOnce() -> R + Send>))
        })
        .collect::<Result<_, RuntimeError>>()?;
    on_pools(jobs)
}

/// A job and the thread pool it runs on (`None`: a thread of its own).
pub type Job<'a, R> = (Option<&'a rayon::ThreadPool>, Work<'a, R>);

/// What a job runs.
pub type Work<'a, R> = Box<dyn FnOnce() -> R + Send + 'a>;

/// Runs every job at once and returns their results in order. Where every job has a pool, each
/// is handed to its pool from this thread (no thread is started: a logical CPU device's pool
/// takes its replica's work as it would take an op's); otherwise each runs on a thread of its
/// own.
pub fn on_pools<R: Send>(mut jobs: Vec<Job<'_, R>>) -> Result<Vec<R>, RuntimeError> {
    // One job without a pool runs here: this thread may be a worker of the global pool (the
    // command line's main thread is its worker 0), which a thread of its own would wait for.
    if jobs.len() == 1 && jobs[0].0.is_none() {
        let (_, job) = jobs.remove(0);
        return Ok(vec![job()]);
    }
    let slots: Vec<std::sync::Mutex<Option<R>>> = jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    if jobs.iter().all(|(p, _)| p.is_some()) {
        let work: Vec<(usize, &rayon::ThreadPool, Work<'_, R>)> =
            jobs.into_iter().enumerate().filter_map(|(i, (p, j))| p.map(|p| (i, p, j))).collect();
        nest(work.into_iter(), &slots);
    } else {
        std::thread::scope(|s| {
            for ((_, job), slot) in jobs.into_iter().zip(&slots) {
                s.spawn(move || {
                    let r = job();
                    if let Ok(mut g) = slot.lock() {
                        *g = Some(r);
                    }
                });
            }
        });
    }
    slots
        .into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().ok_or_else(|| RuntimeError::Plan("a replica's work did not finish".into()))
        })
        .collect()
}

/// Spawns each job into its pool inside the scope of the next one, so that all run at once and
/// the outermost scope returns when the last has finished.
fn nest<'s, R: Send>(
    mut jobs: impl Iterator<Item = (usize, &'s rayon::ThreadPool, Work<'s, R>)>,
    slots: &'s [std::sync::Mutex<Option<R>>],
) {
    if let Some((i, pool, job)) = jobs.next() {
        pool.in_place_scope(|s| {
            s.spawn(move |_| {
                let r = job();
                if let Ok(mut g) = slots[i].lock() {
                    *g = Some(r);
                }
            });
            nest(jobs, slots);
        });
    }
}

/// The replicas' outputs as one: those with a batch axis concatenated in order, the others the
/// first replica's.
pub fn gather(graph: &Graph, per_replica: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, RuntimeError> {
    let n = graph.outputs().len();
    if per_replica.iter().any(|o| o.len() != n) {
        return Err(RuntimeError::Plan(format!("a replica did not return the model's {n} output(s)")));
    }
    let mut columns: Vec<Vec<Tensor>> = (0..n).map(|_| Vec::with_capacity(per_replica.len())).collect();
    for outs in per_replica {
        for (c, t) in columns.iter_mut().zip(outs) {
            c.push(t);
        }
    }
    graph
        .outputs()
        .iter()
        .zip(columns)
        .map(|(&v, mut c)| {
            if batched(graph, v) {
                Ok(Tensor::concat_rows(&c)?)
            } else {
                c.drain(..).next().ok_or_else(|| RuntimeError::Plan("no replica ran".into()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uneven_batches_give_the_first_replicas_a_row_more() {
        assert_eq!(shares(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shares(8, 2), vec![0..4, 4..8]);
        assert_eq!(shares(1, 2), vec![0..1, 1..1]);
        assert_eq!(shares(5, 1), vec![0..5]);
    }
}
