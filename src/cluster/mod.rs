//! Several processes training one model (`kerasc fit --strategy multi-worker`), as Horovod's and
//! `MultiWorkerMirroredStrategy`'s workers do: each process (a worker) drives its local
//! device(s), takes its replicas' shares of every global batch, and the gradients of all the
//! workers' replicas are summed on an existing engine.
//!
//! The cluster is named one of two ways:
//! - **MPI** (`mpirun`/`srun`; the cargo feature `mpi`, so that the default build needs no system
//!   library): rank, size and local rank come from MPI's world.
//! - **`TF_CONFIG`** (TensorFlow's JSON cluster spec: `cluster.chief`/`cluster.worker` addresses
//!   and `task.type`/`task.index`), for GPU workers: the chief hands the NCCL id to every worker
//!   at a rendezvous on its address ([`tf_config`]).
//!
//! The engine: NCCL when every worker's replicas are GPUs of their own and every worker has the
//! NCCL library; else MPI (the buffers all-gathered and summed in replica order: bit for bit
//! the numbers of one process mirrored over as many devices).

#[cfg(feature = "mpi")]
mod mpi;
mod plan;
mod tf_config;

use plan::{seconds, Offer};

use crate::runtime::collective::Collective;
use crate::RuntimeError;
use std::sync::Arc;

/// This process's place in the cluster, and the collective over its workers.
#[derive(Clone)]
pub struct Worker {
    /// This worker's index (MPI rank, or its place in `TF_CONFIG`) and the number of workers.
    pub rank: usize,
    pub size: usize,
    /// The all-reduce over every worker's replicas.
    pub collective: Arc<dyn Collective>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Worker {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

/// How this process was launched.
enum Launch {
    #[cfg(feature = "mpi")]
    Mpi(mpi::Launch),
    TfConfig(tf_config::TfConfig),
}

/// Membership of the cluster, before its collective is connected ([`Cluster::connect`]).
pub struct Cluster {
    /// This worker's index, the number of workers, and its index among the workers on its host
    /// (which GPU it takes by default, as Horovod's `local_rank`).
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    launch: Launch,
}

/// Joins the cluster this process was launched in: the one `TF_CONFIG` names, else MPI's world.
pub fn join() -> Result<Cluster, RuntimeError> {
    if let Ok(spec) = std::env::var("TF_CONFIG") {
        let cfg = tf_config::TfConfig::parse(&spec).map_err(|m| RuntimeError::Cluster(format!("TF_CONFIG: {m}")))?;
        return Ok(Cluster {
            rank: cfg.rank,
            size: cfg.size,
            local_rank: cfg.local_rank,
            launch: Launch::TfConfig(cfg),
        });
    }
    #[cfg(feature = "mpi")]
    {
        let l = mpi::Launch::join()?;
        Ok(Cluster { rank: l.rank, size: l.size, local_rank: l.local_rank, launch: Launch::Mpi(l) })
    }
    #[cfg(not(feature = "mpi"))]
    Err(RuntimeError::Cluster(
        "this kerasc was built without MPI: --strategy multi-worker needs `cargo build --release --features mpi` (with Open MPI or MPICH installed: Debian's libopenmpi-dev, openmpi-bin and libclang-dev, as scripts/setup-test-deps.sh installs them), then `mpirun -np N kerasc fit ... --strategy multi-worker`; or, for GPU workers, TF_CONFIG naming the cluster".into(),
    ))
}

impl Cluster {
    /// A worker's device when it names none: the GPU of its local rank where this host has
    /// GPUs (one worker per GPU, as Horovod's `local_rank` places them), else the CPU.
    pub fn default_device(&self, devs: &crate::LogicalDevices) -> Result<crate::LogicalDevice, RuntimeError> {
        let gpus: Vec<crate::Device> = devs.select("all")?.into_iter().filter(|d| !d.is_cpu()).collect();
        match gpus.get(self.local_rank) {
            Some(&d) => Ok(devs.get(d)?.clone()),
            None if gpus.is_empty() => Ok(devs.get(crate::Device::CPU)?.clone()),
            None => Err(RuntimeError::Cluster(format!(
                "worker {} on this host has no GPU of its own ({} visible): launch at most one worker per GPU, or name each worker's devices with --devices",
                self.local_rank,
                gpus.len()
            ))),
        }
    }

    /// [`Cluster::connect`] for a worker's replicas on `devices` (none: its one default device).
    pub fn connect_replicas(
        &mut self,
        devices: &[crate::LogicalDevice],
    ) -> Result<(Worker, Option<String>), RuntimeError> {
        let gpus: Option<Vec<usize>> = devices.iter().map(crate::LogicalDevice::gpu_ordinal).collect();
        self.connect(devices.len().max(1), gpus.as_deref())
    }

    /// Connects the workers' collective for this worker's `local` replicas (`gpus`: their
    /// ordinals, where every one is a GPU): every worker calls it at once. NCCL where every
    /// worker can take it; else MPI, where every worker drives as many replicas. Gives the
    /// worker, and a note to show when this worker's GPUs' gradients go over MPI on the host.
    pub fn connect(&mut self, local: usize, gpus: Option<&[usize]>) -> Result<(Worker, Option<String>), RuntimeError> {
        let nccl = match gpus {
            None => Err("its replicas are not all GPUs".to_string()),
            Some(o) if (1..o.len()).any(|i| o[..i].contains(&o[i])) => {
                Err(format!("its replicas share GPUs ({o:?}); NCCL takes one replica per GPU"))
            }
            Some(_) => crate::runtime::cuda::nccl_available().map_err(|e| e.to_string()),
        };
        let offer = Offer { local, nccl };
        let make_id = || crate::runtime::cuda::nccl_unique_id().map_err(|e| e.to_string());
        let plan = match &self.launch {
            #[cfg(feature = "mpi")]
            Launch::Mpi(l) => l.exchange(&offer, &make_id)?,
            Launch::TfConfig(cfg) => cfg
                .rendezvous(&offer, &make_id)
                .map_err(|m| RuntimeError::Cluster(format!("TF_CONFIG rendezvous: {m}")))?,
        };
        let first: usize = plan.counts[..self.rank].iter().sum();
        let total: usize = plan.counts.iter().sum();
        let worker = |collective: Arc<dyn Collective>| Worker { rank: self.rank, size: self.size, collective };
        match (plan.nccl, gpus, &self.launch) {
            (Ok(id), Some(o), _) => {
                let timeout = seconds("KERASC_COLLECTIVE_TIMEOUT", 300);
                let n = crate::runtime::cuda::NcclWorkers::new(o, &id, first, total, timeout)?;
                Ok((worker(Arc::new(n)), None))
            }
            (Ok(_), None, _) => Err(RuntimeError::Cluster("NCCL was chosen for a worker without GPUs".into())),
            #[cfg(feature = "mpi")]
            (Err(why), _, Launch::Mpi(l)) => {
                if let Some(k) = plan.counts.iter().position(|&c| c != local) {
                    return Err(RuntimeError::Cluster(format!(
                        "over MPI every worker drives as many replicas: worker {} has {local}, worker {k} has {}",
                        self.rank, plan.counts[k]
                    )));
                }
                let note = gpus.map(|_| format!("the GPUs' gradients go over MPI on the host: {why}"));
                Ok((worker(l.collective()), note))
            }
            (Err(why), _, Launch::TfConfig(_)) => Err(RuntimeError::Cluster(format!(
                "TF_CONFIG names a cluster of GPU workers, whose gradients go over NCCL, but {why}; launch CPU workers with mpirun (a kerasc built with --features mpi)"
            ))),
        }
    }
}
