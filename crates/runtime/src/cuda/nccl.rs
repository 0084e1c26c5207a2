//! The all-reduce across physical GPUs through NCCL (loaded at run time, like the driver).

use crate::collective::Collective;
use crate::RuntimeError;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{group_end, group_start, Comm, Id, ReduceOp};
use std::sync::{Arc, Mutex};

/// One NCCL communicator per GPU, in replica order.
struct Comms(Vec<Comm>);

// SAFETY: the communicators are only used under `Nccl`'s mutex, so never by two threads at once;
// NCCL allows a communicator to be driven from any thread, and every call below binds its
// device's context to the calling thread first (cudarc's copies do; `bind_to_thread` before
// the reduction).
unsafe impl Send for Comms {}

/// An all-reduce over replicas on distinct physical GPUs (`ncclAllReduce`, summing, all
/// replicas in one group call). The buffers are the replicas' host buffers: each goes to its
/// GPU, is reduced there, and comes back.
pub struct Nccl {
    comms: Mutex<Comms>,
    streams: Vec<Arc<CudaStream>>,
}

fn err(what: &str, e: impl std::fmt::Debug) -> RuntimeError {
    RuntimeError::Cuda(format!("NCCL {what}: {e:?}"))
}

/// Whether NCCL can run here: a GPU driver and the NCCL library; else why not (checked before
/// any call into them: a library loaded at run time that is missing would panic).
pub fn nccl_available() -> Result<(), RuntimeError> {
    if let Some(why) = &crate::cuda_status().why_no_gpu {
        return Err(RuntimeError::Cuda(format!("NCCL needs GPUs: {why}")));
    }
    // SAFETY: probing for a shared library by name has no preconditions.
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Err(RuntimeError::Cuda(
            "no NCCL library (libnccl.so.2) on this machine: install NVIDIA's libnccl2 package or the nvidia-nccl-cu13 wheel and put its folder on LD_LIBRARY_PATH".into(),
        ));
    }
    Ok(())
}

/// A fresh NCCL unique id (`ncclGetUniqueId`), made on the chief worker and sent to every other
/// before [`NcclWorkers::new`].
pub fn nccl_unique_id() -> Result<[u8; 128], RuntimeError> {
    nccl_available()?;
    let id = Id::new().map_err(|e| err("unique id", e))?;
    Ok(id.internal().map(|c| c as u8))
}

/// Checks that `ordinals` name at least `at_least` GPUs, each once.
fn distinct(ordinals: &[usize], at_least: usize) -> Result<(), RuntimeError> {
    let mut seen = ordinals.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if ordinals.len() < at_least || seen.len() != ordinals.len() {
        return Err(RuntimeError::Cuda(format!(
            "NCCL reduces across {} distinct physical GPUs, got {ordinals:?}",
            if at_least > 1 { "two or more" } else { "one or more" }
        )));
    }
    Ok(())
}

/// `f` on each communicator and its item, its device's context bound to this thread, all in
/// one NCCL group call (the first error stops the loop; the group is ended either way).
fn in_group<X>(
    comms: &[Comm],
    items: impl IntoIterator<Item = X>,
    mut f: impl FnMut(&Comm, X) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    group_start().map_err(|e| err("group", e))?;
    let result = comms.iter().zip(items).try_for_each(|(c, x)| {
        c.stream().context().bind_to_thread().map_err(|e| err("context", e))?;
        f(c, x)
    });
    group_end().map_err(|e| err("group", e))?;
    result
}

/// Waits for streams' work to finish.
type Wait<'a> = &'a dyn Fn(&[Arc<CudaStream>]) -> Result<(), RuntimeError>;

/// The host buffers `buffers` (one per communicator) summed in place through the
/// communicators `comms` on `streams`: uploaded, reduced in one group call, downloaded.
/// `wait` waits for the streams (a bounded wait across workers).
fn reduce_on<T: cudarc::nccl::safe::NcclType + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    comms: &[Comm],
    streams: &[Arc<CudaStream>],
    buffers: &mut [&mut [T]],
    wait: Wait<'_>,
) -> Result<(), RuntimeError> {
    if buffers.len() != comms.len() {
        return Err(RuntimeError::Cuda(format!("{} buffers for {} GPUs", buffers.len(), comms.len())));
    }
    let len = buffers.first().map_or(0, |b| b.len());
    if len == 0 || buffers.iter().any(|b| b.len() != len) {
        return Err(RuntimeError::Plan("all-reduce over empty buffers or buffers of different lengths".into()));
    }
    let mut dev = Vec::with_capacity(buffers.len());
    for (s, b) in streams.iter().zip(buffers.iter()) {
        dev.push(s.clone_htod(&b[..]).map_err(|e| err("upload", e))?);
    }
    in_group(comms, dev.iter_mut(), |c, d| {
        c.all_reduce_in_place(d, &ReduceOp::Sum).map(|_| ()).map_err(|e| err("all-reduce", e))
    })?;
    wait(streams)?;
    for ((s, d), b) in streams.iter().zip(&dev).zip(buffers.iter_mut()) {
        s.memcpy_dtoh(d, &mut b[..]).map_err(|e| err("download", e))?;
        s.synchronize().map_err(|e| err("synchronize", e))?;
    }
    Ok(())
}

/// Waits for the streams' work without a bound (one process: no peer can vanish).
fn wait_all(streams: &[Arc<CudaStream>]) -> Result<(), RuntimeError> {
    streams.iter().try_for_each(|s| s.synchronize().map_err(|e| err("synchronize", e)))
}

impl Nccl {
    /// Communicators over the visible GPUs `ordinals` (two or more, each once). An error says
    /// why when the driver or the NCCL library (libnccl.so.2) is not on this machine.
    pub fn new(ordinals: &[usize]) -> Result<Nccl, RuntimeError> {
        nccl_available()?;
        distinct(ordinals, 2)?;
        let streams = ordinals
            .iter()
            .map(|&o| CudaContext::new(o).map(|c| c.default_stream()).map_err(|e| err("context", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let comms = Comm::from_devices(streams.clone()).map_err(|e| err("communicators", e))?;
        Ok(Nccl { comms: Mutex::new(Comms(comms)), streams })
    }
}

impl Collective for Nccl {
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        let comms = self.comms.lock().map_err(|_| RuntimeError::Cuda("NCCL lock poisoned".into()))?;
        reduce_on(&comms.0, &self.streams, buffers, &wait_all)
    }

    fn name(&self) -> &'static str {
        "NCCL"
    }
}

/// NCCL across workers (processes, one or several machines): one communicator per local GPU
/// replica, its NCCL rank the replica's place among all the workers' replicas. The id comes
/// from the chief worker (over MPI, or the `TF_CONFIG` rendezvous). A collective that does not
/// finish within the timeout (a worker died, or hangs) is an error; the communicators are then
/// left as they are, for the process to end.
pub struct NcclWorkers {
    comms: Mutex<Comms>,
    streams: Vec<Arc<CudaStream>>,
    first: usize,
    total: usize,
    timeout: std::time::Duration,
}

impl NcclWorkers {
    /// Communicators for this worker's replicas on the GPUs `ordinals` (each once), replicas
    /// `first..first + ordinals.len()` of `total`, joined with NCCL id `id`. Every worker calls
    /// it at once; `timeout` bounds each collective afterwards.
    pub fn new(
        ordinals: &[usize],
        id: &[u8; 128],
        first: usize,
        total: usize,
        timeout: std::time::Duration,
    ) -> Result<NcclWorkers, RuntimeError> {
        nccl_available()?;
        distinct(ordinals, 1)?;
        if first + ordinals.len() > total {
            return Err(RuntimeError::Cuda(format!(
                "replicas {first}..{} of {total}: out of range",
                first + ordinals.len()
            )));
        }
        let streams = ordinals
            .iter()
            .map(|&o| CudaContext::new(o).map(|c| c.default_stream()).map_err(|e| err("context", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let id = Id::uninit(id.map(|b| b as core::ffi::c_char));
        let mut comms = Vec::with_capacity(streams.len());
        group_start().map_err(|e| err("group", e))?;
        let mut result = Ok(());
        for (i, s) in streams.iter().enumerate() {
            if let Err(e) = s.context().bind_to_thread() {
                result = Err(err("context", e));
                break;
            }
            match Comm::from_rank(s.clone(), first + i, total, id) {
                Ok(c) => comms.push(c),
                Err(e) => {
                    result = Err(err("communicator", e));
                    break;
                }
            }
        }
        group_end().map_err(|e| err("group", e))?;
        result?;
        Ok(NcclWorkers { comms: Mutex::new(Comms(comms)), streams, first, total, timeout })
    }

    /// Waits for the streams' work, at most the timeout: a peer that died leaves the collective
    /// unfinished.
    fn wait(&self, streams: &[Arc<CudaStream>]) -> Result<(), RuntimeError> {
        let events =
            streams.iter().map(|s| s.record_event(None).map_err(|e| err("event", e))).collect::<Result<Vec<_>, _>>()?;
        let start = std::time::Instant::now();
        while !events.iter().all(|e| e.is_complete()) {
            if start.elapsed() > self.timeout {
                return Err(RuntimeError::Cuda(format!(
                    "an NCCL collective across the workers did not finish within {} s: a worker died or stalled (KERASC_COLLECTIVE_TIMEOUT sets the bound)",
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        Ok(())
    }

    fn reduce<T: cudarc::nccl::safe::NcclType + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        buffers: &mut [&mut [T]],
    ) -> Result<(), RuntimeError> {
        let comms = self.comms.lock().map_err(|_| RuntimeError::Cuda("NCCL lock poisoned".into()))?;
        reduce_on(&comms.0, &self.streams, buffers, &|s| self.wait(s))
    }
}

impl Collective for NcclWorkers {
    fn all_reduce_sum(&self, buffers: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        self.reduce(buffers)
    }

    fn name(&self) -> &'static str {
        "NCCL"
    }

    fn span(&self, _local: usize) -> (usize, usize) {
        (self.first, self.total)
    }

    fn sum_across(&self, values: &mut [f64]) -> Result<(), RuntimeError> {
        if values.is_empty() {
            return Ok(());
        }
        // The values once per worker: on its first replica, zeros on the others.
        let mut bufs: Vec<Vec<f64>> =
            (0..self.streams.len()).map(|i| if i == 0 { values.to_vec() } else { vec![0.0; values.len()] }).collect();
        let mut refs: Vec<&mut [f64]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        self.reduce(&mut refs)?;
        values.copy_from_slice(&bufs[0]);
        Ok(())
    }

    fn agree(&self, value: f64) -> Result<bool, RuntimeError> {
        // Every replica's value gathered on every replica (all-gather), compared bit for bit.
        let comms = self.comms.lock().map_err(|_| RuntimeError::Cuda("NCCL lock poisoned".into()))?;
        let mut send = Vec::with_capacity(self.streams.len());
        let mut recv = Vec::with_capacity(self.streams.len());
        for s in &self.streams {
            send.push(s.clone_htod(&[value][..]).map_err(|e| err("upload", e))?);
            recv.push(s.alloc_zeros::<f64>(self.total).map_err(|e| err("allocate", e))?);
        }
        in_group(&comms.0, send.iter().zip(recv.iter_mut()), |c, (a, b)| {
            c.all_gather(a, b).map(|_| ()).map_err(|e| err("all-gather", e))
        })?;
        self.wait(&self.streams)?;
        let (s, r) = (&self.streams[0], &recv[0]);
        let mut all = vec![0f64; self.total];
        s.memcpy_dtoh(r, &mut all[..]).map_err(|e| err("download", e))?;
        s.synchronize().map_err(|e| err("synchronize", e))?;
        Ok(all.iter().all(|v| v.to_bits() == value.to_bits()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_gpus_or_nccl_it_says_why() {
        match Nccl::new(&[0, 1]) {
            Ok(n) => {
                // A machine with two GPUs and NCCL: the sum is every replica's.
                let (mut a, mut b) = (vec![1.0f32, 2.0, 3.0], vec![10.0f32, 20.0, 30.0]);
                n.all_reduce_sum(&mut [&mut a[..], &mut b[..]]).unwrap();
                assert_eq!(
                    (a.as_slice(), b.as_slice()),
                    ([11.0, 22.0, 33.0].as_slice(), [11.0, 22.0, 33.0].as_slice())
                );
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("NCCL") || e.contains("GPU"), "{e}");
            }
        }
        assert!(Nccl::new(&[0, 0]).is_err());
    }
}
