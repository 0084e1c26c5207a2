//! Several processes training one model (`kerasc fit --strategy multi-worker`), launched by
//! `mpirun`/`srun` as Horovod's workers are: each process (a worker) drives its local device(s),
//! takes its replicas' shares of every global batch, and the gradients of all the workers'
//! replicas are summed over MPI. The sum is taken in replica order on every worker (the buffers
//! all-gathered, then added), so every worker applies the same update, bit for bit, and the
//! numbers are those of one process mirrored over as many devices.
//!
//! MPI is a cargo feature (`--features mpi`, Open MPI or MPICH): the default build has no system
//! library, and asking it for a multi-worker run is an error saying how to build one.

use crate::runtime::collective::Collective;
use crate::RuntimeError;

/// This process's place in the cluster, and the collective over its workers.
#[derive(Clone)]
pub struct Worker {
    /// This worker's index (MPI rank) and the number of workers.
    pub rank: usize,
    pub size: usize,
    /// The all-reduce over every worker's replicas.
    pub collective: std::sync::Arc<dyn Collective>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Worker {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

/// Membership of the cluster: the worker, and what ends MPI when dropped (after the run).
pub struct Cluster {
    pub worker: Worker,
    _guard: Box<dyn std::any::Any>,
}

/// Joins the cluster this process was launched in (MPI's world).
#[cfg(not(feature = "mpi"))]
pub fn join() -> Result<Cluster, RuntimeError> {
    Err(RuntimeError::Plan(
        "this kerasc was built without MPI: --strategy multi-worker needs `cargo build --release --features mpi` (with Open MPI or MPICH installed: Debian's libopenmpi-dev, openmpi-bin and libclang-dev, as scripts/setup-test-deps.sh installs them), then `mpirun -np N kerasc fit ... --strategy multi-worker`".into(),
    ))
}

/// Joins the cluster this process was launched in (MPI's world).
#[cfg(feature = "mpi")]
pub fn join() -> Result<Cluster, RuntimeError> {
    mpi_world::join()
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::Cluster;
    use crate::runtime::collective::Collective;
    use crate::RuntimeError;
    use mpi::datatype::PartitionMut;
    use mpi::traits::*;

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
        RuntimeError::Plan(m.into())
    }

    /// Values of one replica's gradient buffer per all-gather (4 MiB of float32).
    const BUCKET: usize = 1 << 20;

    pub(super) fn join() -> Result<Cluster, RuntimeError> {
        let universe = mpi::initialize().ok_or_else(|| err("MPI was already initialized in this process"))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let collective = std::sync::Arc::new(Mpi { world: std::sync::Mutex::new(World(world)), rank, size });
        Ok(Cluster { worker: super::Worker { rank, size, collective }, _guard: Box::new(universe) })
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
}
