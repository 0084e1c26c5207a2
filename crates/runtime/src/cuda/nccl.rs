//! The all-reduce across physical GPUs through NCCL (loaded at run time, like the driver).

use crate::collective::Collective;
use crate::RuntimeError;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{group_end, group_start, Comm, ReduceOp};
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

impl Nccl {
    /// Communicators over the visible GPUs `ordinals` (two or more, each once). An error says
    /// why when the driver or the NCCL library (libnccl.so.2) is not on this machine.
    pub fn new(ordinals: &[usize]) -> Result<Nccl, RuntimeError> {
        if let Some(why) = &crate::cuda_status().why_no_gpu {
            return Err(RuntimeError::Cuda(format!("NCCL needs GPUs: {why}")));
        }
        // SAFETY: probing for a shared library by name has no preconditions.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return Err(RuntimeError::Cuda("no NCCL library (libnccl.so.2) on this machine".into()));
        }
        let mut seen = ordinals.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if ordinals.len() < 2 || seen.len() != ordinals.len() {
            return Err(RuntimeError::Cuda(format!(
                "NCCL reduces across two or more distinct physical GPUs, got {ordinals:?}"
            )));
        }
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
        if buffers.len() != comms.0.len() {
            return Err(RuntimeError::Cuda(format!("{} buffers for {} GPUs", buffers.len(), comms.0.len())));
        }
        let len = buffers.first().map_or(0, |b| b.len());
        if len == 0 || buffers.iter().any(|b| b.len() != len) {
            return Err(RuntimeError::Plan("all-reduce over empty buffers or buffers of different lengths".into()));
        }
        let mut dev = Vec::with_capacity(buffers.len());
        for (s, b) in self.streams.iter().zip(buffers.iter()) {
            dev.push(s.clone_htod(&b[..]).map_err(|e| err("upload", e))?);
        }
        group_start().map_err(|e| err("group", e))?;
        let mut result = Ok(());
        for (c, d) in comms.0.iter().zip(dev.iter_mut()) {
            if let Err(e) = c.stream().context().bind_to_thread().map_err(|e| err("context", e)) {
                result = Err(e);
                break;
            }
            if let Err(e) = c.all_reduce_in_place(d, &ReduceOp::Sum) {
                result = Err(err("all-reduce", e));
                break;
            }
        }
        group_end().map_err(|e| err("group", e))?;
        result?;
        for ((s, d), b) in self.streams.iter().zip(&dev).zip(buffers.iter_mut()) {
            s.memcpy_dtoh(d, &mut b[..]).map_err(|e| err("download", e))?;
            s.synchronize().map_err(|e| err("synchronize", e))?;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "NCCL"
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
