//! The cluster of an `mpirun`/`srun` launch: MPI's world. Gradients of CPU replicas are
//! all-gathered over it and summed in replica order on every worker (every worker applies the
//! same update, bit for bit, and the numbers are those of one process mirrored over as many
//! devices); it also carries the NCCL id when every worker's replicas are GPUs.

use super::plan::{Offer, Plan};
use crate::runtime::collective::Collective;
use crate::RuntimeError;
use mpi::datatype::PartitionMut;
use mpi::traits::*;
use std::sync::Arc;

/// MPI's world communicator. MPI is initialized single-threaded, and only the thread that
/// runs the training loop calls it (the kernels' threads never do).
struct World(mpi::topology::SimpleCommunicator);

// SAFETY: the communicator is a handle that MPI resolves on each call; kerasc calls MPI from
// the one thread that drives the training loop, one call at a time (the `Mutex` below).
unsafe impl Send for World {}
unsafe impl Sync for World {}

/// The collective over MPI's world: every worker holds `local` replicas.
struct Mpi {
    world: std::sync::Mutex<World>,
    rank: usize,
    size: usize,
    /// MPI may be called from any one thread at a time (not only the main one), so a thread
    /// of the collective's own can send gradients during the backward pass.
    serialized: bool,
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Cluster(m.into())
}

/// The buckets a buffer of `len` values is all-gathered in, in the order they go: from the
/// end of the buffer (the last layers' gradients, which the backward pass makes first), each
/// a quarter of the buffer, but at least 64 Ki values (256 KiB) and at most 1 Mi (4 MiB). Both
/// ways of summing ([`Collective::all_reduce_sum`], [`Collective::sum_while`]) cut alike, so
/// workers that take one or the other still make the same MPI calls.
fn buckets(len: usize) -> Vec<std::ops::Range<usize>> {
    let size = len.div_ceil(4).clamp(1 << 16, 1 << 20);
    let mut out: Vec<_> = (0..len).step_by(size).map(|s| s..(s + size).min(len)).collect();
    out.reverse();
    out
}

/// A buffer being filled by the backward pass while a thread sums its complete buckets: the
/// values, how many of each bucket are still to come, and whether the producer gave up.
struct Filling {
    state: std::sync::Mutex<(Vec<f32>, Vec<usize>, bool)>,
    full: std::sync::Condvar,
    buckets: Vec<std::ops::Range<usize>>,
}

impl Filling {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<f32>, Vec<usize>, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_up(&self) {
        self.lock().2 = true;
        self.full.notify_all();
    }

    /// Bucket `b`'s values once all have come (`None`: the producer gave up).
    fn wait(&self, b: usize) -> Option<Vec<f32>> {
        let mut g = self.lock();
        while g.1[b] > 0 && !g.2 {
            g = self.full.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        (!g.2).then(|| g.0[self.buckets[b].clone()].to_vec())
    }
}

impl crate::runtime::collective::Sink for Filling {
    fn put(&self, offset: usize, values: &[f32], scale: f32) {
        let end = offset + values.len();
        let mut g = self.lock();
        let (buf, left, _) = &mut *g;
        let Some(dst) = buf.get_mut(offset..end) else { return };
        dst.iter_mut().zip(values).for_each(|(d, &v)| *d = v * scale);
        let mut full = false;
        for (b, r) in self.buckets.iter().enumerate() {
            let overlap = end.min(r.end).saturating_sub(offset.max(r.start));
            if overlap > 0 {
                left[b] = left[b].saturating_sub(overlap);
                full |= left[b] == 0;
            }
        }
        drop(g);
        if full {
            self.full.notify_all();
        }
    }
}

/// The MPI launch: this process's place in MPI's world, and MPI itself (ended when dropped).
pub(super) struct Launch {
    pub(super) rank: usize,
    pub(super) size: usize,
    pub(super) local_rank: usize,
    mpi: Arc<Mpi>,
    _universe: mpi::environment::Universe,
}

impl Launch {
    pub(super) fn join() -> Result<Launch, RuntimeError> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| err("MPI was already initialized in this process"))?;
        let serialized = matches!(threading, mpi::Threading::Serialized | mpi::Threading::Multiple)
            && std::env::var("KERASC_OVERLAP").map_or(true, |v| v != "0");
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        // The workers on this host (MPI's shared-memory split), ordered by rank.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        let mpi = Arc::new(Mpi { world: std::sync::Mutex::new(World(world)), rank, size, serialized });
        Ok(Launch { rank, size, local_rank, mpi, _universe: universe })
    }

    /// The all-gather-and-sum collective over MPI's world.
    pub(super) fn collective(&self) -> Arc<dyn Collective> {
        self.mpi.clone()
    }

    /// Every worker's offer gathered; where all can take NCCL, rank 0's NCCL id broadcast.
    pub(super) fn exchange(
        &self,
        offer: &Offer,
        make_id: &dyn Fn() -> Result<[u8; 128], String>,
    ) -> Result<Plan, RuntimeError> {
        let mine = [offer.local as i32, i32::from(offer.nccl.is_ok())];
        let mut all = vec![0i32; 2 * self.size];
        self.mpi.with(|w| w.all_gather_into(&mine[..], &mut all[..]))?;
        let counts: Vec<usize> = all.chunks(2).map(|c| c[0].max(0) as usize).collect();
        let nccl = match all.chunks(2).position(|c| c[1] == 0) {
            Some(k) if k == self.rank => Err(offer.nccl.clone().err().unwrap_or_default()),
            Some(k) => Err(format!("worker {k} cannot take NCCL")),
            None => {
                // Rank 0 makes the id: a status byte, then the id (or why it could not).
                let mut msg = [0u8; 1 + 128];
                if self.rank == 0 {
                    match make_id() {
                        Ok(id) => msg[1..].copy_from_slice(&id),
                        Err(why) => {
                            msg[0] = 1;
                            let b = why.as_bytes();
                            msg[1..1 + b.len().min(128)].copy_from_slice(&b[..b.len().min(128)]);
                        }
                    }
                }
                self.mpi.with(|w| w.process_at_rank(0).broadcast_into(&mut msg[..]))?;
                let mut id = [0u8; 128];
                id.copy_from_slice(&msg[1..]);
                match msg[0] {
                    0 => Ok(id),
                    _ => Err(format!(
                        "worker 0 could not make an NCCL id: {}",
                        String::from_utf8_lossy(&id).trim_end_matches('\0')
                    )),
                }
            }
        };
        Ok(Plan { counts, nccl })
    }
}

impl Mpi {
    fn with<R>(&self, f: impl FnOnce(&mpi::topology::SimpleCommunicator) -> R) -> Result<R, RuntimeError> {
        let w = self.world.lock().map_err(|_| err("the MPI communicator's lock is poisoned"))?;
        Ok(f(&w.0))
    }

    /// Every worker's `local` values (its replicas' parts of one bucket, `n` values each), all
    /// gathered and summed in replica order.
    fn gather_sum(&self, local: &[f32], n: usize) -> Result<Vec<f32>, RuntimeError> {
        let all = self.with(|w| {
            let mut all = vec![0f32; local.len() * self.size];
            w.all_gather_into(local, &mut all[..]);
            all
        })?;
        let mut sum = all[..n].to_vec();
        for other in all[n..].chunks(n) {
            sum.iter_mut().zip(other).for_each(|(a, &b)| *a += b);
        }
        Ok(sum)
    }

    /// Every worker's `local` values, in rank order (workers may give different counts).
    fn gather_f64(&self, local: &[f64]) -> Result<Vec<f64>, RuntimeError> {
        self.with(|w| {
            let n = local.len() as i32;
            let mut counts = vec![0i32; self.size];
            w.all_gather_into(&n, &mut counts[..]);
            let displs: Vec<i32> = counts.iter().scan(0, |a, &c| Some(std::mem::replace(a, *a + c))).collect();
            let mut all = vec![0f64; counts.iter().map(|&c| c as usize).sum()];
            let mut part = PartitionMut::new(&mut all[..], counts, displs);
            w.all_gather_varcount_into(local, &mut part);
            all
        })
    }
}

impl Collective for Mpi {
    /// All-gathers every worker's replica buffers and sums them in replica order, bucket by
    /// bucket ([`buckets`]: the gradients fused into one buffer, then cut so that the gathered
    /// copy stays a few MiB per replica).
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        let len = buffers.first().map_or(0, |b| b.len());
        if buffers.iter().any(|b| b.len() != len) {
            return Err(err("all-reduce over buffers of different lengths"));
        }
        for r in buckets(len) {
            let local: Vec<f32> = buffers.iter().flat_map(|b| b[r.clone()].iter().copied()).collect();
            let sum = self.gather_sum(&local, r.len())?;
            for b in buffers.iter_mut() {
                b[r.clone()].copy_from_slice(&sum);
            }
        }
        Ok(())
    }

    /// Where the buffer is cut in more than one bucket: with one, nothing would overlap.
    fn streams(&self, len: usize) -> bool {
        self.serialized && buckets(len).len() > 1
    }

    /// The backward pass fills the buffer on this thread while a thread of the collective's
    /// own all-gathers each bucket as soon as it is complete (MPI initialized for calls from
    /// one thread at a time: this one makes none meanwhile).
    fn sum_while(
        &self,
        len: usize,
        produce: &mut dyn FnMut(&dyn crate::runtime::collective::Sink) -> Result<(), RuntimeError>,
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        if !self.serialized {
            return crate::runtime::collective::produce_then_sum(self, len, produce, out);
        }
        let buckets = buckets(len);
        let left = buckets.iter().map(|r| r.len()).collect();
        let filling = Filling {
            state: std::sync::Mutex::new((vec![0.0; len], left, false)),
            full: std::sync::Condvar::new(),
            buckets,
        };
        std::thread::scope(|sc| {
            let sender = sc.spawn(|| -> Result<(), RuntimeError> {
                for (b, r) in filling.buckets.iter().enumerate() {
                    let Some(local) = filling.wait(b) else { return Ok(()) };
                    let sum = self.gather_sum(&local, r.len())?;
                    out[r.clone()].copy_from_slice(&sum);
                }
                Ok(())
            });
            let produced = produce(&filling);
            if produced.is_err() {
                filling.give_up();
            }
            let sent = sender.join().map_err(|_| err("the collective's thread panicked"))?;
            produced.and(sent)
        })
    }

    fn name(&self) -> &'static str {
        "MPI"
    }

    fn span(&self, local: usize) -> (usize, usize) {
        (self.rank * local, self.size * local)
    }

    fn sum_across(&self, values: &mut [f64]) -> Result<(), RuntimeError> {
        let all = self.gather_f64(values)?;
        let n = values.len();
        if all.len() != n * self.size {
            return Err(err("the workers disagree on how many values to sum"));
        }
        for (k, v) in values.iter_mut().enumerate() {
            *v = (0..self.size).map(|r| all[r * n + k]).sum();
        }
        Ok(())
    }

    fn agree(&self, value: f64) -> Result<bool, RuntimeError> {
        let all = self.gather_f64(&[value])?;
        Ok(all.iter().all(|v| v.to_bits() == value.to_bits()))
    }
}
