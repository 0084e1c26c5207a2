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

    /// Whether [`Collective::sum_while`] sums a buffer of `len` values while it is produced
    /// (else it waits for the whole buffer, and the caller may as well sum it whole).
    fn streams(&self, len: usize) -> bool {
        let _ = len;
        false
    }

    /// Sums across workers a buffer of `len` values (this worker's one replica's) that
    /// `produce` writes into the sink it is given (a backward pass, gradient by gradient); the
    /// sum goes into `out`. An engine that can sends parts as they are complete, while the
    /// backward pass goes on.
    fn sum_while(
        &self,
        len: usize,
        produce: &mut dyn FnMut(&dyn Sink) -> Result<(), RuntimeError>,
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        produce_then_sum(self, len, produce, out)
    }

    /// Whether every worker holds this same value (a checksum of its weights).
    fn agree(&self, value: f64) -> Result<bool, RuntimeError> {
        let _ = value;
        Ok(true)
    }
}

/// Where the parts of a streamed sum go ([`Collective::sum_while`]).
pub trait Sink: Sync {
    /// This worker's values from `offset` of the buffer, each multiplied by `scale` (every value
    /// of the buffer is put once).
    fn put(&self, offset: usize, values: &[f32], scale: f32);
}

/// A buffer filled through [`Sink::put`].
pub struct Collected(std::sync::Mutex<Vec<f32>>);

impl Collected {
    /// `len` zeros.
    pub fn new(len: usize) -> Collected {
        Collected(std::sync::Mutex::new(vec![0.0; len]))
    }

    /// The buffer.
    pub fn into_inner(self) -> Vec<f32> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for Collected {
    fn put(&self, offset: usize, values: &[f32], scale: f32) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dst) = b.get_mut(offset..offset + values.len()) {
            dst.iter_mut().zip(values).for_each(|(d, &v)| *d = v * scale);
        }
    }
}

/// Produces a buffer of `len` values, then sums it across workers ([`Collective::sum_while`]
/// without overlap).
pub fn produce_then_sum(
    c: &(impl Collective + ?Sized),
    len: usize,
    produce: &mut dyn FnMut(&dyn Sink) -> Result<(), RuntimeError>,
    out: &mut [f32],
) -> Result<(), RuntimeError> {
    let collected = Collected::new(len);
    produce(&collected)?;
    let mut buf = collected.into_inner();
    c.all_reduce_sum(&mut [&mut buf[..]])?;
    out.copy_from_slice(&buf);
    Ok(())
}

impl<C: Collective + ?Sized> Collective for std::sync::Arc<C> {
    fn streams(&self, len: usize) -> bool {
        (**self).streams(len)
    }

    fn sum_while(
        &self,
        len: usize,
        produce: &mut dyn FnMut(&dyn Sink) -> Result<(), RuntimeError>,
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        (**self).sum_while(len, produce, out)
    }

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
