//! Collectives across replicas. One interface, [`Collective`], with two implementations: the
//! in-process one here, for replicas that share this process's memory (logical devices), and
//! NCCL across physical GPUs ([`crate::cuda::Nccl`]).

use crate::RuntimeError;

/// An all-reduce across the replicas of a data-parallel step.
pub trait Collective: Send + Sync {
    /// Sums the replicas' buffers element-wise (one per replica, all of one length) and leaves
    /// the sum in every one of them.
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError>;

    /// What it runs over, for messages.
    fn name(&self) -> &'static str;

    /// Where this process's `local` replicas sit among all the run's replicas: the index of its
    /// first, and how many there are in all. In one process: `(0, local)`. Across processes
    /// (workers), [`Collective::all_reduce_sum`] sums every worker's replicas, in replica order.
    fn span(&self, local: usize) -> (usize, usize) {
        (0, local)
    }

    /// Sums `values` across workers: every worker gets the same sum, bit for bit (one process:
    /// nothing to do).
    fn sum_across(&self, values: &mut [f64]) -> Result<(), RuntimeError> {
        let _ = values;
        Ok(())
    }

    /// Whether every worker holds this same value (a checksum of its weights).
    fn agree(&self, value: f64) -> Result<bool, RuntimeError> {
        let _ = value;
        Ok(true)
    }
}

impl<C: Collective + ?Sized> Collective for std::sync::Arc<C> {
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        (**self).all_reduce_sum(buffers)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn span(&self, local: usize) -> (usize, usize) {
        (**self).span(local)
    }

    fn sum_across(&self, values: &mut [f64]) -> Result<(), RuntimeError> {
        (**self).sum_across(values)
    }

    fn agree(&self, value: f64) -> Result<bool, RuntimeError> {
        (**self).agree(value)
    }
}

/// Replicas in this process: the sum is taken in replica order (the same bits on every run and
/// every replica), split across the caller's threads by chunks of the buffers.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

/// Elements a task of the in-process sum takes.
const CHUNK: usize = 1 << 14;

impl Collective for InProcess {
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        use rayon::prelude::*;
        let Some(len) = buffers.first().map(|b| b.len()) else { return Ok(()) };
        if buffers.iter().any(|b| b.len() != len) {
            return Err(RuntimeError::Plan("all-reduce over buffers of different lengths".into()));
        }
        if buffers.len() == 1 {
            return Ok(());
        }
        // Chunk c of every replica, as one task.
        let mut chunks: Vec<Vec<&mut [f32]>> = (0..len.div_ceil(CHUNK)).map(|_| Vec::new()).collect();
        for b in buffers.iter_mut() {
            for (c, part) in chunks.iter_mut().zip(b.chunks_mut(CHUNK)) {
                c.push(part);
            }
        }
        chunks.par_iter_mut().for_each(|parts| {
            if let Some((first, rest)) = parts.split_first_mut() {
                for other in rest.iter() {
                    first.iter_mut().zip(other.iter()).for_each(|(a, b)| *a += b);
                }
                for other in rest.iter_mut() {
                    other.copy_from_slice(first);
                }
            }
        });
        Ok(())
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_ends_with_the_sum_in_replica_order() {
        let n = CHUNK * 2 + 5;
        let mut bufs: Vec<Vec<f32>> = (0..3).map(|r| (0..n).map(|i| (i * (r + 1)) as f32 * 0.25).collect()).collect();
        let want: Vec<f32> =
            (0..n).map(|i| (i as f32 * 0.25 + (i * 2) as f32 * 0.25) + (i * 3) as f32 * 0.25).collect();
        let mut refs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        InProcess.all_reduce_sum(&mut refs).unwrap();
        for b in &bufs {
            assert_eq!(b, &want);
        }
        let (mut a, mut b) = (vec![0f32; 3], vec![0f32; 4]);
        assert!(InProcess.all_reduce_sum(&mut [&mut a[..], &mut b[..]]).is_err());
    }
}
