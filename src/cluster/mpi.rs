//! The cluster of an `mpirun`/`srun` launch: MPI's world. Gradients of CPU replicas are
//! all-gathered over it and summed in replica order on every worker (every worker applies the
//! same update, bit for bit, and the numbers are those of one process mirrored over as many
//! devices); it also carries the NCCL id when every worker's replicas are GPUs.

use super::{Offer, Plan};
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
}

fn err(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Cluster(m.into())
}

/// Values of one replica's gradient buffer per all-gather (4 MiB of float32).
const BUCKET: usize = 1 << 20;

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
        let universe = mpi::initialize().ok_or_else(|| err("MPI was already initialized in this process"))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        // The workers on this host (MPI's shared-memory split), ordered by rank.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        let mpi = Arc::new(Mpi { world: std::sync::Mutex::new(World(world)), rank, size });
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
    /// All-gathers every worker's replica buffers and sums them in replica order, in buckets
    /// of [`BUCKET`] values of each replica's buffer (the gradients fused into one buffer,
    /// then cut so that the gathered copy stays a few MiB per replica).
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        let len = buffers.first().map_or(0, |b| b.len());
        if buffers.iter().any(|b| b.len() != len) {
            return Err(err("all-reduce over buffers of different lengths"));
        }
        let mut start = 0;
        while start < len {
            let end = (start + BUCKET).min(len);
            let local: Vec<f32> = buffers.iter().flat_map(|b| b[start..end].iter().copied()).collect();
            let all = self.with(|w| {
                let mut all = vec![0f32; local.len() * self.size];
                w.all_gather_into(&local[..], &mut all[..]);
                all
            })?;
            let n = end - start;
            let mut sum = all[..n].to_vec();
            for other in all[n..].chunks(n) {
                sum.iter_mut().zip(other).for_each(|(a, &b)| *a += b);
            }
            for b in buffers.iter_mut() {
                b[start..end].copy_from_slice(&sum);
            }
            start = end;
        }
        Ok(())
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
